"""The transformers backend on a tiny random llama, checked against direct forward passes of the same
model (manual greedy loop, manual log-softmax), not against the backend's own output."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from registry.resolved import ResolvedModel
from runner.backends import transformers_backend
from runner.backends.base import Sampling
from runner.backends.hf_loading import load_causal_lm, load_tokenizer
from runner.backends.transformers_backend import TransformersLLM

CONVS = [
    [{"role": "user", "content": "the fox"}],
    [{"role": "system", "content": "answer with citations"}, {"role": "user", "content": "what does the document say?"}],
    [{"role": "user", "content": "a"}],
    [{"role": "user", "content": "rewards score helpfulness and faithfulness of long answers"}],
    [{"role": "user", "content": "retrieval brings passages"}],
]


@pytest.fixture(scope="module")
def ref(tiny_llama: Path):
    """The model and tokenizer loaded directly, for manual computations."""
    return load_causal_lm(tiny_llama, device="cpu"), load_tokenizer(tiny_llama)


@pytest.fixture(scope="module")
def llm(tiny_llama: Path) -> TransformersLLM:
    return TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama), batch_size=3)


def prompt_ids(tok, conv) -> list[int]:
    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def manual_greedy(model, tok, ids: list[int], max_new: int) -> list[int]:
    out: list[int] = []
    seq = list(ids)
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            out.append(nxt)
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break
    return out


def manual_logprobs(model, ids: list[int]) -> list[float]:
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_greedy_matches_a_manual_argmax_loop(llm, ref):
    model, tok = ref
    results = llm.chat(CONVS, Sampling(max_new_tokens=10))
    again = llm.chat(CONVS, Sampling(max_new_tokens=10))
    assert [r.text for r in results] == [r.text for r in again]
    for conv, result in zip(CONVS, results):
        ids = prompt_ids(tok, conv)
        gen = manual_greedy(model, tok, ids, 10)
        assert result.text == tok.decode(gen, skip_special_tokens=True)
        assert result.usage.prompt_tokens == len(ids)
        assert result.usage.completion_tokens == len(gen)
        ended = gen[-1] == tok.eos_token_id
        assert result.finish_reason == ("stop" if ended else "length")


def test_left_padded_batches_equal_one_at_a_time(tiny_llama, llm):
    single = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama), batch_size=1)
    batched = llm.chat(CONVS, Sampling(max_new_tokens=12, logprobs=2))
    alone = single.chat(CONVS, Sampling(max_new_tokens=12, logprobs=2))
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [r.usage for r in batched] == [r.usage for r in alone]
    for b, a in zip(batched, alone):
        assert [t.logprob for t in b.logprobs] == pytest.approx([t.logprob for t in a.logprobs], abs=1e-4)


def test_stop_string_cuts_the_text_and_ends_generation(llm):
    conv = [CONVS[3]]
    full = llm.chat(conv, Sampling(max_new_tokens=24))[0]
    # A stop string taken from inside the free-running text: two printable characters after the start.
    start = next(i for i in range(2, len(full.text) - 1) if full.text[i:i + 2].isprintable()
                 and full.text[i:i + 2].strip() and "\ufffd" not in full.text[i:i + 2])
    stop = full.text[start:start + 2]
    expected = full.text[: full.text.index(stop)]
    cut = llm.chat(conv, Sampling(max_new_tokens=24, stop=["NEVER-SEEN", stop]))[0]
    assert cut.text == expected
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens
    # A stop string that never shows up changes nothing.
    same = llm.chat(conv, Sampling(max_new_tokens=24, stop=["NEVER-SEEN"]))[0]
    assert same.text == full.text and same.finish_reason == full.finish_reason


def test_generated_logprobs_match_a_forward_pass(llm, ref):
    model, tok = ref
    conv = CONVS[1]
    result = llm.chat([conv], Sampling(max_new_tokens=8, logprobs=3))[0]
    ids = prompt_ids(tok, conv)
    gen = manual_greedy(model, tok, ids, 8)
    expected = manual_logprobs(model, ids + gen)[len(ids) - 1:]
    assert len(result.logprobs) == len(gen)
    assert [t.logprob for t in result.logprobs] == pytest.approx(expected, abs=1e-4)
    assert sum(t.logprob for t in result.logprobs) == pytest.approx(sum(expected), abs=1e-3)
    seq = ids + gen
    with torch.no_grad():
        dist = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), dim=-1)
    for step, t in enumerate(result.logprobs):
        best3 = torch.topk(dist[len(ids) - 1 + step], 3).values.tolist()
        # Keys are decoded texts: byte pieces that decode alike share one key (their best logprob).
        assert 1 <= len(t.top) <= 3
        assert all(any(abs(v - b) < 1e-4 for b in best3) for v in t.top.values())
        # Greedy picks the most likely token, so its logprob is the best of the top three.
        assert t.logprob == pytest.approx(best3[0], abs=1e-4)
        assert max(t.top.values()) == pytest.approx(best3[0], abs=1e-4)


def test_score_matches_manual_log_softmax(llm, ref):
    model, tok = ref
    texts = ["the quick brown fox jumps", "citations", "a long context model reads the whole document"]
    scored = llm.score(texts)
    for text, s in zip(texts, scored):
        ids = tok(text)["input_ids"]
        assert s.token_ids == ids
        assert s.logprobs[0] is None
        assert s.logprobs[1:] == pytest.approx(manual_logprobs(model, ids), abs=1e-4)
        assert s.tokens == tok.convert_ids_to_tokens(ids)


def test_score_attentions_are_the_response_rows_of_eager_attention(tiny_llama, llm, ref):
    _, tok = ref
    text = "the quick brown fox jumps over the lazy dog"
    ids = tok(text)["input_ids"]
    p = 4
    result = llm.score([text], attentions=True, prompt_lengths=[p])[0]
    att = result.attentions
    assert tuple(att.shape) == (2, len(ids) - p, len(ids))
    # Softmax rows sum to one; causal attention puts no weight on later positions.
    assert torch.allclose(att.sum(-1), torch.ones(2, len(ids) - p), atol=1e-5)
    for row in range(len(ids) - p):
        assert float(att[:, row, p + row + 1:].abs().sum()) == 0.0
    eager = load_causal_lm(tiny_llama, device="cpu", attn_implementation="eager")
    with torch.no_grad():
        out = eager(torch.tensor([ids]), output_attentions=True)
    manual = torch.stack([a[0, :, p:, :].mean(0) for a in out.attentions])
    assert torch.allclose(att, manual, atol=1e-5)
    assert result.logprobs[1:] == pytest.approx(manual_logprobs(eager, ids), abs=1e-4)


def test_seeded_sampling_repeats_and_leaves_global_rng_alone(llm):
    sampling = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=8, seed=7)
    first = llm.chat(CONVS[:2], sampling)
    second = llm.chat(CONVS[:2], sampling)
    assert [r.text for r in first] == [r.text for r in second]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    llm.chat(CONVS[:1], sampling)
    assert torch.equal(torch.rand(3), expected)


def test_prompt_longer_than_context_is_an_item_error(tiny_llama, ref):
    _, tok = ref
    short_ctx = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama,
                                              context_length=20))
    seen = []
    short_ctx.on_result = lambda i, r: seen.append(i)
    results = short_ctx.chat([CONVS[2], CONVS[3]], Sampling(max_new_tokens=3))
    n_long = len(prompt_ids(tok, CONVS[3]))
    assert n_long >= 20 > len(prompt_ids(tok, CONVS[2]))
    assert results[0].error is None and results[0].usage.completion_tokens >= 1
    assert results[1].error == f"prompt is {n_long} tokens; the model's context length is 20"
    assert sorted(seen) == [0, 1]


def test_zoo_chat_template_overrides_the_tokenizer_one(tiny_llama, ref):
    _, tok = ref
    template = "{% for m in messages %}{{ m['content'] }}|{% endfor %}"
    llm = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama, chat_template=template))
    result = llm.chat([[{"role": "user", "content": "the fox"}]], Sampling(max_new_tokens=2))[0]
    assert result.usage.prompt_tokens == len(tok("the fox|", add_special_tokens=False)["input_ids"])


def test_model_loads_lazily_and_once(tiny_llama, monkeypatch):
    calls = []
    real = transformers_backend.load_causal_lm

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers_backend, "load_causal_lm", counting)
    llm = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama))
    assert llm.count_tokens("the quick brown fox") == len(load_tokenizer(tiny_llama).encode(
        "the quick brown fox", add_special_tokens=False))
    assert llm.context_length == 256  # max_position_embeddings of the tiny config
    assert calls == []
    llm.chat(CONVS[:1], Sampling(max_new_tokens=2))
    llm.score(["the fox"])
    assert len(calls) == 1


def test_load_opens_the_weights_now_and_fails_for_a_folder_without_them(tiny_llama: Path, tmp_path: Path):
    llm = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama), device="cpu")
    llm.load()
    assert llm._lm is not None and llm._tok is not None
    (tmp_path / "config.json").write_text((tiny_llama / "config.json").read_text())
    for f in tiny_llama.iterdir():  # the tokenizer and config, but no weights
        if "token" in f.name:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    empty = TransformersLLM(ResolvedModel(name="no-weights", source="file://x", path=tmp_path), device="cpu")
    with pytest.raises(OSError, match="model.safetensors|pytorch_model.bin"):
        empty.load()


def test_model_methods_are_offered_only_with_trusted_remote_code(tiny_llama: Path):
    model = ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama)
    assert TransformersLLM(model).model_method("generate") is None  # untrusted: never the model's own code
    trusted = TransformersLLM(model, trust_remote_code=True)
    assert trusted.model_method("query_longcite") is None  # a plain llama defines no such helper
    forward = trusted.model_method("num_parameters")
    assert forward is not None and forward() == trusted._model().num_parameters()


def test_trust_remote_code_is_a_transformers_option():
    from runner.backends.options import TransformersOptions

    assert TransformersOptions().trust_remote_code is False
    assert TransformersOptions(trust_remote_code=True).trust_remote_code is True
