"""``Sampling.logprob_tokens``: the log-probabilities of given tokens at every generated position
(transformers: checked against a forward pass; vLLM: the mapping; openai: refused), and continuing a
final assistant message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from components.selfrag_tokens import REFLECTION_TOKENS, SCORED_TOKENS
from registry.resolved import ResolvedModel
from runner.backends.base import Sampling
from runner.backends.vllm_backend import chat_result, sampling_kwargs

CONV = [{"role": "user", "content": "retrieval brings passages"}]
CONV2 = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]


@pytest.fixture(scope="module")
def reflection_llama(tmp_path_factory) -> Path:
    """The tiny backend llama with the 15 reflection tokens in its tokenizer and embeddings."""
    pytest.importorskip("torch")
    from transformers import AutoTokenizer

    from components.trainers.special_tokens import add_special_tokens
    from tests.backends.conftest import build_llama, build_tokenizer

    folder = tmp_path_factory.mktemp("reflection-llama")
    build_tokenizer(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    add_special_tokens(tok, REFLECTION_TOKENS)
    tok.save_pretrained(folder)
    build_llama(folder)
    return folder


def make_llm(folder: Path, batch_size: int = 4):
    from runner.backends.transformers_backend import TransformersLLM

    return TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=folder), batch_size=batch_size)


def forward_logprobs(llm, ids: list[int]):
    import torch

    lm = llm._model()
    with torch.no_grad():
        return torch.log_softmax(lm(torch.tensor([ids])).logits[0].float(), dim=-1)


def test_tracked_tokens_match_a_forward_pass_batched(reflection_llama):
    llm = make_llm(reflection_llama)
    tok = llm.tokenizer()
    tracked = list(SCORED_TOKENS)
    results = llm.chat([CONV, CONV2], Sampling(max_new_tokens=5, logprob_tokens=tracked))
    for conv, res in zip([CONV, CONV2], results):
        ids = llm._prompt_ids(conv)
        assert res.logprobs and len(res.logprobs) <= 5
        for t in res.logprobs:  # a greedy pass by hand, one forward per step
            row = forward_logprobs(llm, ids)[-1]
            assert set(t.tracked) == set(tracked)
            for name, value in t.tracked.items():
                assert value == pytest.approx(float(row[tok.convert_tokens_to_ids(name)]), abs=1e-4)
            assert t.logprob == pytest.approx(float(row.max()), abs=1e-4)
            ids = ids + [int(row.argmax())]
        assert res.cumulative_logprob == pytest.approx(sum(t.logprob for t in res.logprobs))
    # one conversation alone gives the same numbers as in the batch (left padding does not leak)
    alone = llm.chat([CONV2], Sampling(max_new_tokens=5, logprob_tokens=tracked))[0]
    assert [t.token for t in alone.logprobs] == [t.token for t in results[1].logprobs]
    assert alone.logprobs[0].tracked == pytest.approx(results[1].logprobs[0].tracked, abs=1e-4)


def test_first_token_distribution_in_one_step_and_with_n(reflection_llama):
    llm = make_llm(reflection_llama)
    tok = llm.tokenizer()
    pair = ["[Retrieval]", "[No Retrieval]"]
    res = llm.chat([CONV], Sampling(max_new_tokens=1, logprob_tokens=pair))[0]
    assert len(res.logprobs) == 1 and res.usage.completion_tokens == 1
    row = forward_logprobs(llm, llm._prompt_ids(CONV))[-1]
    for name in pair:
        assert res.logprobs[0].tracked[name] == pytest.approx(float(row[tok.convert_tokens_to_ids(name)]), abs=1e-4)
    sampled = llm.chat([CONV, CONV2], Sampling(temperature=1.0, seed=3, n=2, max_new_tokens=3, logprob_tokens=pair))
    for r in sampled:
        assert len(r.choices) == 2
        for c in r.choices:
            assert c.logprobs and all(set(t.tracked) == set(pair) for t in c.logprobs)
            assert c.cumulative_logprob == pytest.approx(sum(t.logprob for t in c.logprobs))


def test_tracked_tokens_stay_in_the_text_and_unknown_tokens_are_refused(reflection_llama):
    from runner.backends.generation import reply_text, tracked_ids

    llm = make_llm(reflection_llama)
    tok = llm.tokenizer()
    ids = tok.convert_tokens_to_ids(["[Relevant]", "<paragraph>"]) + tok.encode("the fox", add_special_tokens=False)
    ids.append(tok.eos_token_id)
    wanted = tracked_ids(tok, ["[Relevant]"])
    assert reply_text(tok, ids, wanted) == "[Relevant]the fox"  # other special tokens (and eos) dropped
    assert reply_text(tok, ids, None) == "the fox"
    with pytest.raises(ValueError, match=r"\[Nope\]"):
        llm.chat([CONV], Sampling(max_new_tokens=1, logprob_tokens=["[Nope]"]))


def test_a_final_assistant_message_is_continued(reflection_llama):
    from runner.backends.hf_loading import render_chat

    llm = make_llm(reflection_llama)
    text = render_chat(llm.tokenizer(), CONV + [{"role": "assistant", "content": "[Retrieval]<paragraph>x"}])
    assert text.endswith("<|im_start|>assistant\n[Retrieval]<paragraph>x")
    plain = render_chat(llm.tokenizer(), CONV)
    assert text.startswith(plain)


# ---------------------------------------------------------------------------------------------- vllm


def lp(value: float, text: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, rank=1, decoded_token=text)


def test_vllm_asks_for_the_whole_vocabulary_and_keeps_the_tracked_tokens():
    s = Sampling(max_new_tokens=4, logprob_tokens=["[Relevant]", "[Irrelevant]"])
    assert sampling_kwargs(s, vocab_size=32016) == {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 4, "stop": [],
        "include_stop_str_in_output": False, "logprobs": 32016, "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
    }
    with pytest.raises(ValueError):
        sampling_kwargs(s)
    output = SimpleNamespace(prompt_token_ids=[1, 2], outputs=[SimpleNamespace(
        text="[Relevant]ok", token_ids=[30, 7], finish_reason="stop", cumulative_logprob=-0.7,
        logprobs=[{30: lp(-0.2, "[Relevant]"), 31: lp(-1.8, "[Irrelevant]"), 7: lp(-3.0, "ok")},
                  {7: lp(-0.5, "ok"), 30: lp(-4.0, "[Relevant]")}],
    )])
    res = chat_result(output, s, decode=lambda i: f"<{i}>", wanted={"[Relevant]": 30, "[Irrelevant]": 31})
    assert res.cumulative_logprob == -0.7 and res.text == "[Relevant]ok"
    assert [t.token for t in res.logprobs] == ["[Relevant]", "ok"]
    assert res.logprobs[0].tracked == {"[Relevant]": -0.2, "[Irrelevant]": -1.8}
    assert res.logprobs[1].tracked == {"[Relevant]": -4.0}  # [Irrelevant] not returned there: left out
    assert res.logprobs[0].top == {}  # no top-k asked for
    two = SimpleNamespace(prompt_token_ids=[1], outputs=[
        SimpleNamespace(text="a", token_ids=[7], finish_reason="stop", cumulative_logprob=-1.0,
                        logprobs=[{7: lp(-1.0, "a"), 30: lp(-2.0, "[Relevant]")}]),
        SimpleNamespace(text="[Relevant]", token_ids=[30], finish_reason="length", cumulative_logprob=-0.25,
                        logprobs=[{30: lp(-0.25, "[Relevant]"), 31: lp(-3.0, "[Irrelevant]")}])])
    both = chat_result(two, s.model_copy(update={"n": 2, "temperature": 1.0}), decode=str,
                       wanted={"[Relevant]": 30, "[Irrelevant]": 31})
    assert [c.cumulative_logprob for c in both.choices] == [-1.0, -0.25]
    assert [c.logprobs[0].tracked for c in both.choices] == [{"[Relevant]": -2.0},
                                                             {"[Relevant]": -0.25, "[Irrelevant]": -3.0}]
    assert both.cumulative_logprob == -1.0


def test_sampling_without_tracked_tokens_dumps_as_before():
    assert "logprob_tokens" not in Sampling().model_dump()
    assert Sampling(logprob_tokens=["[A]"]).model_dump()["logprob_tokens"] == ["[A]"]


def test_the_openai_backend_refuses_tracked_tokens():
    from runner.backends.openai_backend import OpenAILLM

    llm = OpenAILLM.__new__(OpenAILLM)
    with pytest.raises(ValueError, match="local model"):
        llm.chat([CONV], Sampling(logprob_tokens=["[Retrieval]"]))


def test_decode_selfrag_scores_candidates_from_the_model_distribution(reflection_llama):
    """decode.selfrag on the transformers backend: a candidate's relevance is the model's own
    p([Relevant]) / (p([Relevant]) + p([Irrelevant])) right after the inserted passage."""
    import math

    from components.decoders.selfrag import SelfRAGDecoder, SelfRAGParams
    from tests.fakes import FakeCtx

    llm = make_llm(reflection_llama)
    tok = llm.tokenizer()
    passages = [{"id": "p1", "title": "x", "text": "citations point"}, {"id": "p2", "title": "y", "text": "fox"}]
    params = SelfRAGParams(mode="always", max_new_tokens=3)
    [out] = SelfRAGDecoder(params).process([{"question": "the quick brown fox", "passages": passages}],
                                           FakeCtx(params=params, models={"generator": llm}))
    assert out["retrieve"] is True and [c["passage_id"] for c in out["candidates"]] == ["p1", "p2"]
    for passage, cand in zip(passages, out["candidates"]):
        prefix = f"[Retrieval]<paragraph>{passage['title']}\n{passage['text']}</paragraph>"
        ids = llm._prompt_ids([{"role": "user", "content": "the quick brown fox"},
                               {"role": "assistant", "content": prefix}])
        row = forward_logprobs(llm, ids)[-1]
        p_rel = math.exp(float(row[tok.convert_tokens_to_ids("[Relevant]")]))
        p_irr = math.exp(float(row[tok.convert_tokens_to_ids("[Irrelevant]")]))
        assert cand["relevance"] == pytest.approx(p_rel / (p_rel + p_irr), abs=1e-4)
