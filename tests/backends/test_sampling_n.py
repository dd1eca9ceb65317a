"""``Sampling.n``: several replies per conversation in one request, mapped onto each backend's own argument
(transformers ``num_return_sequences``, vLLM and OpenAI ``n``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from registry.resolved import ResolvedModel
from runner.backends.base import ChatResult, Choice, Sampling, Usage


def test_a_result_lists_its_replies_and_mirrors_the_first():
    result = ChatResult.of_choices([Choice(text="a", finish_reason="stop"), Choice(text="b")],
                                   Usage(prompt_tokens=3, completion_tokens=5))
    assert result.replies() == ["a", "b"]
    assert (result.text, result.finish_reason) == ("a", "stop")
    assert ChatResult(text="only").replies() == ["only"]


# ---- vLLM: SamplingParams(n=...) and every completion of the RequestOutput


def test_vllm_maps_n_and_keeps_every_completion():
    from runner.backends.vllm_backend import chat_result, sampling_kwargs

    assert sampling_kwargs(Sampling(temperature=0.9, n=4))["n"] == 4
    assert sampling_kwargs(Sampling())["n"] == 1
    output = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[
        SimpleNamespace(text="one", token_ids=[5, 6], finish_reason="stop", logprobs=None),
        SimpleNamespace(text="two", token_ids=[7, 8, 9], finish_reason="length", logprobs=None),
    ])
    result = chat_result(output, Sampling(temperature=0.9, n=2), decode=str)
    assert result.replies() == ["one", "two"]
    assert [c.finish_reason for c in result.choices] == ["stop", "length"]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 5)
    single = chat_result(output, Sampling(), decode=str)
    assert single.choices is None and single.text == "one" and single.usage.completion_tokens == 2


# ---- OpenAI-compatible APIs: the request's `n` and the response's choices


@pytest.fixture
def api_llm(monkeypatch):
    from runner.backends import open_llm

    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    llm = open_llm(ResolvedModel(name="api", source="openai://m", backend="openai",
                                 api={"base_url": "http://127.0.0.1:9/v1", "api_key_env": "RECIPE_TEST_API_KEY"}))
    yield llm
    llm.close()


def test_openai_request_carries_n_only_above_one(api_llm):
    conv = [{"role": "user", "content": "q"}]
    assert api_llm._request(conv, Sampling(temperature=1.0, n=3))["n"] == 3
    assert "n" not in api_llm._request(conv, Sampling())
    assert api_llm.supports_n


def test_openai_choices_come_back_in_index_order(api_llm):
    from runner.backends.openai_backend import _Malformed

    body = {"choices": [
        {"index": 1, "message": {"content": "second"}, "finish_reason": "stop"},
        {"index": 0, "message": {"content": "first"}, "finish_reason": "length"},
    ], "usage": {"prompt_tokens": 4, "completion_tokens": 6}}
    result = api_llm._parse(body, [{"role": "user", "content": "q"}], 2)
    assert result.replies() == ["first", "second"]
    assert result.finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 6)
    with pytest.raises(_Malformed, match="asked for 3 choices"):
        api_llm._parse(body, [{"role": "user", "content": "q"}], 3)


# ---- transformers: num_return_sequences


def test_transformers_maps_n_to_num_return_sequences_when_sampling():
    from runner.backends.transformers_backend import generation_kwargs

    sampled = generation_kwargs(Sampling(temperature=0.7, top_p=0.9, max_new_tokens=8, n=3))
    assert sampled == {"max_new_tokens": 8, "do_sample": True, "repetition_penalty": 1.0,
                       "num_return_sequences": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    # greedy replies are all the same: decoded once
    assert generation_kwargs(Sampling(n=3))["num_return_sequences"] == 1


def test_transformers_answers_n_replies_in_one_generate_call(tiny_llama, monkeypatch):
    pytest.importorskip("torch")
    from runner.backends.transformers_backend import TransformersLLM

    llm = TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama), batch_size=4)
    calls = []
    lm = llm._model()
    real = lm.generate
    monkeypatch.setattr(lm, "generate", lambda **kw: calls.append(kw) or real(**kw))
    convs = [[{"role": "user", "content": "the quick brown fox"}], [{"role": "user", "content": "citations"}]]
    sampling = Sampling(temperature=1.0, max_new_tokens=6, seed=3, n=3)
    first = llm.chat(convs, sampling)
    # 2 prompts x 3 replies = 6 rows, more than batch_size 4: one prompt per generate call
    assert [c["input_ids"].shape[0] for c in calls] == [1, 1]
    assert all(c["num_return_sequences"] == 3 for c in calls)
    assert [len(r.replies()) for r in first] == [3, 3]
    for conv, r in zip(convs, first):  # the prompt counted once, the tokens of all three replies
        assert r.usage.prompt_tokens == len(llm._prompt_ids(conv))
        assert 3 <= r.usage.completion_tokens <= 3 * 6
    assert [r.replies() for r in llm.chat(convs, sampling)] == [r.replies() for r in first], "seeded: repeats"
    greedy = llm.chat(convs[:1], Sampling(max_new_tokens=6, n=2))[0]
    assert greedy.replies() == [llm.chat(convs[:1], Sampling(max_new_tokens=6))[0].text] * 2
