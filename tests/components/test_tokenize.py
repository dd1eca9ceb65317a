"""data.tokenize: loss labels on exactly the assistant tokens; LongAlign's clean-up."""

from __future__ import annotations

from components.trainers.tokenize import (
    IGNORE_INDEX,
    Tokenize,
    TokenizeParams,
    prepare_messages,
    tokenize_messages,
    tokenize_records,
)
from tests.components.test_sft_tiny import make_tokenizer, one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

X = IGNORE_INDEX


def tokens(tok, ids):
    return tok.convert_ids_to_tokens(ids)


def labelled(tok, labels):
    return [
        t if lab != X else None
        for t, lab in zip(tok.convert_ids_to_tokens([max(x, 0) for x in labels]), labels)
    ]


def test_labels_cover_exactly_the_assistant_tokens():
    tok = make_tokenizer()
    msgs = [
        {"role": "system", "content": "please tell me"},
        {"role": "user", "content": "what is two plus two"},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": "and three"},
        {"role": "assistant", "content": "five , yes"},
    ]
    ids, labels, truncated = tokenize_messages(tok, prepare_messages(msgs), max_length=100)
    assert tokens(tok, ids) == [
        "<s>",
        "<|system|>",
        "please",
        "tell",
        "me",
        "<|end|>",
        "<|user|>",
        "what",
        "is",
        "two",
        "plus",
        "two",
        "<|end|>",
        "<|assistant|>",
        "four",
        "<|end|>",
        "<|user|>",
        "and",
        "three",
        "<|end|>",
        "<|assistant|>",
        "five",
        ",",
        "yes",
        "<|end|>",
    ]
    # by hand: targets are the answer words and the end-of-turn marker after them, nothing else
    expected = [None] * 14 + ["four", "<|end|>"] + [None] * 5 + ["five", ",", "yes", "<|end|>"]
    assert labelled(tok, labels) == expected
    assert [lab for lab in labels if lab != X] == [i for i, e in zip(ids, expected) if e is not None]
    assert not truncated


def test_sharegpt_odd_turns_and_zero_width_chars():
    tok = make_tokenizer()
    rec = {
        "id": "c1",
        "conversations": [
            {"from": "human", "value": "hello"},
            {"from": "gpt", "value": "hi\u200b friend\ufeff"},
            {"from": "human", "value": "tell me about it"},
        ],
    }  # odd: the last user turn is cut
    rows, stats = tokenize_records([rec], tok, max_length=100)
    assert stats.rows_out == 1 and stats.rows_in == 1
    row = rows[0]
    assert row["id"] == "c1"
    assert tokens(tok, row["input_ids"]) == [
        "<s>",
        "<|user|>",
        "hello",
        "<|end|>",
        "<|assistant|>",
        "hi",
        "friend",
        "<|end|>",
    ]
    assert labelled(tok, row["labels"]) == [None] * 5 + ["hi", "friend", "<|end|>"]
    assert "[UNK]" not in tokens(tok, row["input_ids"])  # the zero-width characters are gone


def test_zero_width_chars_stay_in_user_turns():
    msgs = prepare_messages(
        [{"role": "user", "content": "a\u200bb"}, {"role": "assistant", "content": "c\u200dd"}]
    )
    assert msgs == [{"role": "user", "content": "a\u200bb"}, {"role": "assistant", "content": "cd"}]


def test_truncation_and_rows_without_targets_are_dropped_and_counted():
    tok = make_tokenizer()
    recs = [
        {
            "idx": 7,
            "messages": [
                {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "hi friend"},
            ],
        },
        # an empty answer carries no loss, so the row has no target
        {
            "id": "empty",
            "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": " "}],
        },
        # cut at 5 tokens: <s> <|user|> what is two — the answer is gone
        {
            "id": "long",
            "messages": [
                {"role": "user", "content": "what is two plus three"},
                {"role": "assistant", "content": "five"},
            ],
        },
        {"id": "bad", "text": "no conversation here"},
    ]
    rows, stats = tokenize_records(recs, tok, max_length=7)
    assert [r["id"] for r in rows] == [7]
    assert rows[0]["idx"] == 7
    # 9 tokens cut to 7: <s> <|user|> hello there <|end|> <|assistant|> hi
    assert labelled(tok, rows[0]["labels"]) == [None] * 6 + ["hi"]
    assert (stats.rows_in, stats.rows_out, stats.dropped_no_target, stats.invalid, stats.truncated) == (
        4,
        1,
        2,
        1,
        1,
    )
    assert (stats.tokens, stats.target_tokens) == (7, 1)


def test_byte_level_tokenizer_spans_decode_to_the_answers():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(["user\nassistant\nthe cat sat on the mat. the dog sat."] * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="<|im_end|>")
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    msgs = [
        {"role": "user", "content": "where is the cat?"},
        {"role": "assistant", "content": "the cat sat on the mat."},
        {"role": "user", "content": "and the dog?"},
        {"role": "assistant", "content": "the dog sat."},
    ]
    ids, labels, _ = tokenize_messages(tok, msgs, max_length=1000)
    spans, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != X:
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    assert [tok.decode(s) for s in spans] == [
        "the cat sat on the mat.<|im_end|>\n",
        "the dog sat.<|im_end|>\n",
    ]


def test_component_writes_counts_into_metrics(tmp_path, tiny_folder):  # noqa: F811
    recs = [
        {
            "id": "a",
            "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        },
        {"id": "b", "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": ""}]},
    ]
    comp = Tokenize(TokenizeParams(max_length=64))
    ctx = FakeCtx(params=comp.params, tmp=tmp_path, models={("source", "base"): resolved(tiny_folder)})
    out = comp.run({"records": recs}, ctx)
    assert [r["id"] for r in out] == ["a"]
    assert set(out[0]) == {"id", "input_ids", "labels"}
    metrics = comp.summarize(out, ctx)
    assert metrics["rows_in"] == 2 and metrics["rows_out"] == 1 and metrics["dropped_no_target"] == 1
    assert ctx.load_stats("tokenize")["target_tokens"] == 2  # through the stats channel, no side file
    assert list(ctx.artifact_dir.iterdir()) == []
