"""``recipe serve``'s OpenAI-compatible server, spoken to with plain HTTP (httpx)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from registry.resolved import ResolvedModel
from runner.backends import open_llm
from runner.backends import serve as serve_module
from runner.backends.base import LLM, ChatResult, Format, Sampling, Usage
from runner.backends.serve import ChatServer, make_server, serve
from tests.fakes import ScriptedLLM


@contextlib.contextmanager
def running(llm: LLM, **kwargs) -> Iterator[tuple[ChatServer, str]]:
    server = make_server(llm, "127.0.0.1", 0, model_name="tiny-chat", **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield server, f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, body) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=10)


def test_models_and_a_chat_completion_with_all_sampling_fields():
    scripted = ScriptedLLM(lambda conv: f"you said {conv[-1]['content']}")
    with running(scripted) as (_, url):
        models = httpx.get(url + "/v1/models", timeout=10).json()
        reply = post(url, {
            "model": "tiny-chat",
            "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"}],
            "temperature": 0.3, "top_p": 0.9, "max_tokens": 7, "stop": "\n", "seed": 5,
        })
    assert [m["id"] for m in models["data"]] == ["tiny-chat"]
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "you said hello there"}
    # ScriptedLLM counts words: "be kind hello there" = 4, "you said hello there" = 4.
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    conv, sampling = scripted.calls[0]
    assert conv == [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"}]
    assert sampling == Sampling(temperature=0.3, top_p=0.9, max_new_tokens=7, stop=["\n"], seed=5)


def test_openai_defaults_apply_when_fields_are_missing():
    scripted = ScriptedLLM(lambda conv: "ok")
    with running(scripted) as (_, url):
        assert post(url, {"messages": [{"role": "user", "content": "x"}]}).status_code == 200
    assert scripted.calls[0][1] == Sampling(temperature=1.0, top_p=1.0, max_new_tokens=256)


@pytest.mark.parametrize("body, status, param", [
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, 400, "stream"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "model": "other"}, 404, "model"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, 400, None),
])
def test_bad_requests_get_openai_style_errors(body, status, param):
    with running(ScriptedLLM(lambda conv: "never")) as (_, url):
        reply = post(url, body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_invalid_json_unknown_route_and_llm_failure():
    class Failing(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="the model ran out of memory") for _ in conversations]

    with running(Failing(lambda conv: "")) as (_, url):
        bad = httpx.post(url + "/v1/chat/completions", content=b"{nope", timeout=10)
        missing = httpx.get(url + "/v1/other", timeout=10)
        failed = post(url, {"messages": [{"role": "user", "content": "x"}]})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert failed.status_code == 500
    assert failed.json()["error"] == {"message": "the model ran out of memory", "type": "server_error",
                                      "param": None, "code": None}


class GatedLLM(LLM):
    """Blocks its first chat call until released, recording the size of every batch it gets."""

    backend = "scripted"
    name = "gated"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def chat(self, conversations, sampling):
        self.batches.append(len(conversations))
        self.entered.set()
        self.release.wait(10)
        return [ChatResult(text=c[-1]["content"].upper(), usage=Usage(prompt_tokens=1, completion_tokens=1))
                for c in conversations]

    def count_tokens(self, text):
        return 1


def test_concurrent_requests_waiting_together_share_one_batch():
    llm = GatedLLM()
    replies: dict[str, str] = {}

    def ask(word: str, temperature: float = 0.0) -> None:
        r = post(url, {"messages": [{"role": "user", "content": word}], "temperature": temperature})
        replies[word] = r.json()["choices"][0]["message"]["content"]

    with running(llm) as (server, url):
        first = threading.Thread(target=ask, args=("first",))
        first.start()
        assert llm.entered.wait(10)
        later = [threading.Thread(target=ask, args=(w,)) for w in ("a", "b", "c", "d")]
        later.append(threading.Thread(target=ask, args=("hot", 0.7)))  # other sampling: its own batch
        for t in later:
            t.start()
        deadline = time.monotonic() + 10
        while server.batcher._queue.qsize() < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        llm.release.set()
        for t in [first, *later]:
            t.join(10)
    assert replies == {w: w.upper() for w in ("first", "a", "b", "c", "d", "hot")}
    assert llm.batches[0] == 1 and sorted(llm.batches[1:]) == [1, 4]


def test_serve_prints_the_url(monkeypatch, capsys):
    def stop_at_once(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(ChatServer, "serve_forever", stop_at_once)
    monkeypatch.setattr(serve_module, "_has_gpu", lambda: True)
    serve(ScriptedLLM(lambda conv: ""), "127.0.0.1", 0, "tiny-chat")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:" in out and "/v1" in out and "tiny-chat" in out
    assert "vllm serve" in out


def test_transformers_model_served_and_read_back_through_the_openai_backend(tiny_llama, monkeypatch):
    """The same greedy completion, direct and over HTTP."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = open_llm(ResolvedModel(name="tiny-chat", source="file://tiny", path=tiny_llama))
    conv = [[{"role": "user", "content": "the quick brown fox"}], [{"role": "user", "content": "a"}]]
    sampling = Sampling(max_new_tokens=6, logprobs=2)
    direct = local.chat(conv, sampling)
    with running(local) as (_, url):
        remote = open_llm(ResolvedModel(name="tiny-chat", source="openai://tiny-chat", backend="openai",
                                        api={"base_url": url + "/v1"}))
        try:
            over_http = remote.chat(conv, sampling)
        finally:
            remote.close()
    assert [r.text for r in over_http] == [r.text for r in direct]
    assert [r.usage.completion_tokens for r in over_http] == [r.usage.completion_tokens for r in direct]
    assert [r.finish_reason for r in over_http] == [r.finish_reason for r in direct]
    for r, d in zip(over_http, direct):  # batches differ (padding), so equal up to float round-off
        assert [t.logprob for t in r.logprobs] == pytest.approx([t.logprob for t in d.logprobs], abs=1e-4)
        assert [t.token for t in r.logprobs] == [t.token for t in d.logprobs]


class EnforcingScript(ScriptedLLM):
    """A scripted LLM that says it enforces every format (and records what it was asked)."""

    def check_format(self, fmt) -> None:
        pass


@pytest.mark.parametrize("style", ["structured_outputs", "guided"])
def test_the_openai_backends_format_reaches_the_served_llm_unchanged(style, monkeypatch):
    """The same format objects, sent by the openai backend over HTTP, arrive in the served LLM's sampling."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    formats = [Format.regex(r"\[\[(10|[1-9])\]\]"), Format.grammar('start: "yes" | "no"'),
               Format.json_schema({"type": "object", "properties": {"n": {"type": "integer"}}})]
    scripted = EnforcingScript(lambda conv: "[[7]]")
    with running(scripted) as (_, url):
        remote = open_llm(ResolvedModel(name="tiny-chat", source="openai://tiny-chat", backend="openai",
                                        api={"base_url": url + "/v1"}),
                          options={"structured_outputs": ["regex", "grammar", "json_schema"],
                                   "structured_outputs_fields": style})
        try:
            for fmt in formats:
                assert remote.chat([[{"role": "user", "content": "x"}]],
                                   Sampling(max_new_tokens=5, format=fmt))[0].text == "[[7]]"
        finally:
            remote.close()
    assert [sampling.format for _, sampling in scripted.calls] == formats


def test_an_endpoint_that_declares_no_formats_is_never_sent_one(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    scripted = EnforcingScript(lambda conv: "free")
    with running(scripted) as (_, url):
        remote = open_llm(ResolvedModel(name="tiny-chat", source="openai://tiny-chat", backend="openai",
                                        api={"base_url": url + "/v1"}), options={"structured_outputs": ["json_schema"]})
        try:
            with pytest.raises(ValueError, match="does not enforce regex formats"):
                remote.chat([[{"role": "user", "content": "x"}]], Sampling(format=Format.regex("a")))
        finally:
            remote.close()
    assert scripted.calls == []


def test_serve_refuses_a_format_its_llm_cannot_enforce_or_a_malformed_one():
    with running(ScriptedLLM(lambda conv: "never")) as (_, url):  # ScriptedLLM enforces no format
        reply = post(url, {"messages": [{"role": "user", "content": "x"}], "guided_regex": "[0-9]"})
        assert reply.status_code == 400
        assert "cannot enforce" in reply.json()["error"]["message"]
    with running(EnforcingScript(lambda conv: "never")) as (_, url):
        reply = post(url, {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "response_format"


def test_a_format_is_enforced_by_the_transformers_model_behind_serve(tiny_llama, monkeypatch):
    """Over real HTTP: the openai backend's regex goes to `recipe serve`, whose transformers backend
    enforces it (a random model never writes this on its own)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = open_llm(ResolvedModel(name="tiny-chat", source="file://tiny", path=tiny_llama))
    fmt = Format.regex(r"[a-z ]{0,10}\[\[(10|[1-9])\]\]")
    conv = [[{"role": "user", "content": "the quick brown fox"}], [{"role": "user", "content": "a"}]]
    with running(local) as (_, url):
        remote = open_llm(ResolvedModel(name="tiny-chat", source="openai://tiny-chat", backend="openai",
                                        api={"base_url": url + "/v1"}), options={"structured_outputs": ["regex"]})
        try:
            replies = remote.chat(conv, Sampling(temperature=1.0, seed=2, max_new_tokens=30, format=fmt))
        finally:
            remote.close()
    assert [r.error for r in replies] == [None, None]
    assert all(re.fullmatch(fmt.spec, r.text) for r in replies), [r.text for r in replies]
