"""train.sft with added special tokens (Self-RAG's reflection tokens) and passage masking."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from components.selfrag_tokens import REFLECTION_TOKENS
from components.trainers.sft import SFTParams
from components.trainers.span_mask import passage_char_spans
from components.trainers.special_tokens import add_special_tokens, resolve_special_tokens
from components.trainers.tokenize import MaskSpans, tokenize_messages
from registry.model_folder import load_tokenizer, load_weights, read_trained
from tests.components.test_sft import chat, run
from tests.components.test_sft_tiny import make_tokenizer, one_torch_thread, tiny_folder  # noqa: F401

X = -100
# two passages, a generated sentence between them and one after
ANSWER = ("[Retrieval]<paragraph>the cat sat</paragraph>[Relevant] the dog sat [Fully supported]"
          "[Retrieval]<paragraph>red sky</paragraph>[Irrelevant] blue sea [Utility:5]")


def test_preset_is_the_fifteen_reflection_tokens_and_unknown_presets_fail():
    tokens = resolve_special_tokens("selfrag")
    assert len(tokens) == 15 and tokens == list(REFLECTION_TOKENS)
    assert "[Continue to Use Evidence]" in tokens and "</paragraph>" in tokens
    with pytest.raises(ValueError, match="selfrag"):
        SFTParams(special_tokens="self-rag")
    assert SFTParams(special_tokens=["[A]"]).special_tokens == ["[A]"]
    with pytest.raises(ValueError, match="empty"):
        SFTParams(mask_spans=[["<p>", ""]])


def test_each_passage_is_masked_on_its_own_and_the_sentence_between_is_trained():
    tok = make_tokenizer()
    add_special_tokens(tok, resolve_special_tokens("selfrag"))
    msgs = [{"role": "user", "content": "tell me about it"}, {"role": "assistant", "content": ANSWER}]
    ids, labels, _ = tokenize_messages(tok, msgs, 128, MaskSpans((("<paragraph>", "</paragraph>"),)))
    tokens = tok.convert_ids_to_tokens(ids)
    # written out by hand: the word-level tokenizer splits on spaces; every reflection token is one token
    assert tokens == [
        "<s>", "<|user|>", "tell", "me", "about", "it", "<|end|>", "<|assistant|>",
        "[Retrieval]", "<paragraph>", "the", "cat", "sat", "</paragraph>", "[Relevant]", "the", "dog", "sat",
        "[Fully supported]", "[Retrieval]", "<paragraph>", "red", "sky", "</paragraph>", "[Irrelevant]",
        "blue", "sea", "[Utility:5]", "<|end|>",
    ]
    trained = [t for t, lab in zip(tokens, labels) if lab != X]
    assert trained == [
        "[Retrieval]", "<paragraph>", "</paragraph>", "[Relevant]", "the", "dog", "sat", "[Fully supported]",
        "[Retrieval]", "<paragraph>", "</paragraph>", "[Irrelevant]", "blue", "sea", "[Utility:5]", "<|end|>",
    ]
    # compat: reference masks from the first opening to the last closing marker, the sentence included
    _, ref_labels, _ = tokenize_messages(tok, msgs, 128, MaskSpans((("<paragraph>", "</paragraph>"),), whole=True))
    assert [t for t, lab in zip(tokens, ref_labels) if lab != X] == [
        "[Retrieval]", "<paragraph>", "</paragraph>", "[Irrelevant]", "blue", "sea", "[Utility:5]", "<|end|>",
    ]


def test_an_unclosed_passage_is_masked_to_the_end():
    text = "a<p>b</p>c<p>d"
    assert [text[a:b] for a, b in passage_char_spans(text, [("<p>", "</p>")])] == ["b", "d"]
    assert passage_char_spans("no passage", [("<p>", "</p>")]) == []


def test_reflection_tokens_are_single_tokens_after_training_and_their_rows_train_under_lora(tmp_path, tiny_folder):  # noqa: F811
    records = [chat("tell me about it", ANSWER, i) for i in range(2)]
    p = SFTParams(lora={"r": 4, "alpha": 8, "dropout": 0.0}, learning_rate=5e-2, max_steps=2, warmup_ratio=0,
                  max_length=96, lr_scheduler="constant", special_tokens="selfrag",
                  mask_spans=[("<paragraph>", "</paragraph>")])
    comp, ctx, out = run(p, records, tiny_folder, tmp_path)
    model_dir = ctx.artifact_dir / "model"
    settings = read_trained(model_dir).training.settings  # what the model card shows
    assert settings["special_tokens"] == "selfrag" and settings["mask_spans"] == [["<paragraph>", "</paragraph>"]]
    base_tok = make_tokenizer()
    tok = load_tokenizer(model_dir)
    assert len(tok) == len(base_tok) + 15
    for t in REFLECTION_TOKENS:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    ids = tok.convert_tokens_to_ids(list(REFLECTION_TOKENS))
    assert sorted(ids) == list(range(len(base_tok), len(base_tok) + 15))

    base = load_weights(tiny_folder, dtype="float32")
    old_in = base.get_input_embeddings().weight.detach()
    old_out = base.get_output_embeddings().weight.detach()
    trained = load_weights(model_dir, dtype="float32")  # the adapter merged into the grown base
    new_in = trained.get_input_embeddings().weight.detach()
    new_out = trained.get_output_embeddings().weight.detach()
    assert new_in.shape[0] == len(tok) and new_out.shape[0] == len(tok)
    # mean initialisation: a token absent from the data keeps the mean of the old input rows ...
    mean_in, mean_out = old_in.mean(dim=0), old_out.mean(dim=0)
    unseen = tok.convert_tokens_to_ids("[No Retrieval]")
    assert torch.allclose(new_in[unseen], mean_in, atol=1e-6)
    # ... while the input rows of the tokens in the data, and their output rows (untied here), trained
    seen = [t for t in REFLECTION_TOKENS if t in ANSWER]
    assert len(seen) == 7
    for t in seen:
        i = tok.convert_tokens_to_ids(t)
        assert not torch.allclose(new_in[i], mean_in, atol=1e-4), t
        assert not torch.allclose(new_out[i], mean_out, atol=1e-4), t
    # only the listed rows: the old vocabulary's embeddings are untouched
    assert torch.equal(new_in[: len(base_tok)], old_in)
    saved = load_file(str(model_dir / "adapter_model.safetensors"))
    assert any("trainable_tokens" in k for k in saved), sorted(saved)[:5]


def test_tied_embeddings_train_the_new_rows_once_for_input_and_output(tmp_path):
    """SmolLM2 ties its output layer to the input embeddings: the new rows train there and stay tied."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "tied"
    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    p = SFTParams(lora={"r": 4, "alpha": 8, "dropout": 0.0}, learning_rate=5e-2, max_steps=2, warmup_ratio=0,
                  max_length=96, lr_scheduler="constant", special_tokens="selfrag")
    _, ctx, _ = run(p, [chat("tell me about it", ANSWER, i) for i in range(2)], folder, tmp_path / "run")
    trained = load_weights(ctx.artifact_dir / "model", dtype="float32")
    base = load_weights(folder, dtype="float32")
    emb, head = trained.get_input_embeddings().weight, trained.get_output_embeddings().weight
    assert torch.equal(emb, head)
    mean = base.get_input_embeddings().weight.detach().mean(dim=0)
    relevant = load_tokenizer(ctx.artifact_dir / "model").convert_tokens_to_ids("[Relevant]")
    assert not torch.allclose(emb[relevant].detach(), mean, atol=1e-4)
    assert torch.equal(emb[: len(tok)].detach(), base.get_input_embeddings().weight.detach())


def test_resume_after_a_kill_restores_the_trained_token_rows(tmp_path, tiny_folder):  # noqa: F811
    from tests.components.test_sft import KillAfter, Killed

    records = [chat("tell me about it", ANSWER, i) for i in range(3)]
    p = SFTParams(lora={"r": 4, "alpha": 8, "dropout": 0.0}, learning_rate=1e-2, max_steps=3, save_steps=2,
                  batching="naive", max_length=96, seed=5, special_tokens="selfrag",
                  mask_spans=[("<paragraph>", "</paragraph>")])
    _, ctx_a, out_a = run(p, records, tiny_folder, tmp_path / "a")
    with pytest.raises(Killed):
        run(p, records, tiny_folder, tmp_path / "b", ctx_cls=KillAfter, k=2)
    _, ctx_b, out_b = run(p, records, tiny_folder, tmp_path / "b")
    assert out_b == out_a
    wa = load_file(str(ctx_a.artifact_dir / "model" / "adapter_model.safetensors"))
    wb = load_file(str(ctx_b.artifact_dir / "model" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and any("trainable_tokens" in k for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
