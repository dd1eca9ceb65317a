"""The openai backend over real HTTP against ``make_server`` serving a scripted LLM, with a handler that
injects 429 (Retry-After), 500, timeouts and malformed bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from registry.resolved import ResolvedModel
from runner.backends import open_llm
from runner.backends.base import BudgetExceeded, ChatResult, Sampling
from runner.backends.serve import ChatHandler, make_server
from tests.fakes import ScriptedLLM


def echo(conv: list[dict]) -> str:
    return "echo " + conv[-1]["content"]


class FaultHandler(ChatHandler):
    """Looks up the user message in ``server.plan`` and, while faults are left for it, answers the next
    attempt with the first one instead of the real completion."""

    def do_POST(self) -> None:
        raw = self.read_body()
        body = json.loads(raw)
        key = body["messages"][-1]["content"]
        server = self.server
        with server.lock:
            server.attempts[key] = server.attempts.get(key, 0) + 1
            server.auth.append(self.headers.get("Authorization"))
            faults = server.plan.get(key) or []
            fault = faults.pop(0) if faults else None
        if fault == "429":
            self.send_error_json(429, "slow down", kind="rate_limit_error", headers={"Retry-After": "7"})
        elif fault == "500":
            self.send_error_json(500, "internal error", kind="server_error")
        elif fault == "400":
            self.send_error_json(400, "bad request")
        elif fault == "timeout":
            time.sleep(server.slow_s)  # the client has given up by now
            self.close_connection = True
        elif fault == "truncated":
            self._raw(200, b'{"id": "x", "choices": [{"index": 0, "mess', "application/json")
        elif fault == "no_choices":
            self._raw(200, b'{"id": "x", "object": "chat.completion"}', "application/json")
        elif fault == "html":
            self._raw(200, b"<html>gateway says hi</html>", "text/html")
        elif fault in ("echo_key_500", "echo_key_401"):
            status = 500 if fault == "echo_key_500" else 401
            self.send_error_json(status, f"Incorrect API key provided: {self.headers.get('Authorization')}")
        else:
            self.respond_chat(raw)

    def _raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def running(llm, handler=ChatHandler, plan: dict | None = None, slow_s: float = 1.5) -> Iterator:
    server = make_server(llm, "127.0.0.1", 0, model_name="test-model", handler=handler)
    server.plan = plan or {}
    server.attempts = {}
    server.auth = []
    server.lock = threading.Lock()
    server.slow_s = slow_s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def api_model(server, **api) -> ResolvedModel:
    host, port = server.server_address[:2]
    return ResolvedModel(
        name="api-test", source="openai://test-model", backend="openai",
        api={"base_url": f"http://{host}:{port}/v1", "api_key_env": "RECIPE_TEST_API_KEY", **api},
    )


class RecordedSleep:
    """Stands in for asyncio.sleep: records the delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def conversations(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_batch_over_http_gives_texts_usage_and_cost(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    scripted = ScriptedLLM(echo)
    with running(scripted) as server:
        llm = open_llm(api_model(server, input_per_mtok=3.0, output_per_mtok=10.0),
                       options={"concurrency": 4})
        try:
            results = llm.chat(conversations(12), Sampling(max_new_tokens=9, stop=["\n"], seed=4))
        finally:
            llm.close()
    assert [r.text for r in results] == [f"echo q{i}" for i in range(12)]
    assert all(r.error is None and r.finish_reason == "stop" for r in results)
    # ScriptedLLM counts words: "be brief q3" = 3 prompt tokens, "echo q3" = 2 completion tokens.
    assert all((r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 2) for r in results)
    per_item = (3 * 3.0 + 2 * 10.0) / 1e6
    assert results[0].usage.cost_usd == pytest.approx(per_item)
    assert llm.total.cost_usd == pytest.approx(12 * per_item)
    assert (llm.total.prompt_tokens, llm.total.completion_tokens) == (36, 24)
    # The sampling settings crossed the wire intact.
    sent = scripted.calls[0][1]
    assert (sent.max_new_tokens, sent.stop, sent.seed, sent.temperature) == (9, ["\n"], 4, 0.0)


def test_faults_are_retried_until_every_item_has_its_text(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    plan = {
        "q1": ["429"],
        "q2": ["500", "500"],
        "q3": ["timeout"],
        "q4": ["truncated"],
        "q5": ["no_choices"],
        "q6": ["html"],
        "q7": ["429", "500", "truncated"],
    }
    injected = sum(len(v) for v in plan.values())
    with running(ScriptedLLM(echo), FaultHandler, {k: list(v) for k, v in plan.items()}) as server:
        llm = open_llm(api_model(server), options={"concurrency": 4, "timeout_s": 0.5, "max_retries": 4,
                                                   "backoff_s": 0.01})
        sleep = RecordedSleep()
        llm._sleep = sleep
        try:
            results = llm.chat(conversations(10), Sampling())
        finally:
            llm.close()
        attempts = dict(server.attempts)
    assert [r.text for r in results] == [f"echo q{i}" for i in range(10)]
    assert all(r.error is None for r in results)
    assert llm.stats["retries"] == injected
    assert llm.stats["requests"] == 10 + injected
    assert attempts == {f"q{i}": 1 + len(plan.get(f"q{i}", [])) for i in range(10)}
    # Two 429s carried "Retry-After: 7": those waits are exactly 7 s; the other waits are backoff.
    assert sorted(sleep.delays)[-2:] == [7.0, 7.0]
    assert all(d < 1.0 for d in sorted(sleep.delays)[:-2])


def test_item_failing_after_all_retries_comes_back_with_an_error(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    plan = {"q1": ["500"] * 10, "q2": ["400"]}
    with running(ScriptedLLM(echo), FaultHandler, plan) as server:
        llm = open_llm(api_model(server), options={"max_retries": 2, "backoff_s": 0.0})
        llm._sleep = RecordedSleep()
        try:
            results = llm.chat(conversations(4), Sampling())
        finally:
            llm.close()
        attempts = dict(server.attempts)
    assert [r.text for r in results] == ["echo q0", "", "", "echo q3"]
    assert "HTTP 500" in results[1].error and "internal error" in results[1].error
    assert "HTTP 400" in results[2].error
    assert attempts["q1"] == 3  # first try + max_retries
    assert attempts["q2"] == 1  # a 400 is not retried
    assert llm.stats["failed"] == 2


def test_budget_stops_sending_and_reports_finished_items_first(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    with running(ScriptedLLM(echo)) as server:
        # One prompt word ("q3") at $1 per token: every item costs exactly $1.
        llm = open_llm(api_model(server, input_per_mtok=1_000_000.0, output_per_mtok=0.0),
                       options={"concurrency": 1, "budget_usd": 3.0})
        seen: list[tuple[int, ChatResult]] = []
        llm.on_result = lambda i, r: seen.append((i, r))
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
        try:
            with pytest.raises(BudgetExceeded) as info:
                llm.chat(convs, Sampling())
            with pytest.raises(BudgetExceeded):  # a spent budget sends nothing more
                llm.chat(convs[:2], Sampling())
        finally:
            llm.close()
        assert len(server.llm.calls) == 3  # the server saw exactly the paid requests
    assert [i for i, _ in seen] == [0, 1, 2]
    assert [r.text for _, r in seen] == ["echo q0", "echo q1", "echo q2"]
    assert llm.total.cost_usd == pytest.approx(3.0)
    assert "7 of 10" in str(info.value)
    partial = info.value.results
    assert [r.text for r in partial[:3]] == ["echo q0", "echo q1", "echo q2"] and partial[3:] == [None] * 7


def test_budget_lets_in_flight_requests_finish(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    scripted = ScriptedLLM(echo)
    with running(scripted) as server:
        llm = open_llm(api_model(server, input_per_mtok=1_000_000.0),
                       options={"concurrency": 4, "budget_usd": 2.0})
        seen: list[int] = []
        llm.on_result = lambda i, r: seen.append(i)
        try:
            with pytest.raises(BudgetExceeded):
                llm.chat([[{"role": "user", "content": f"q{i}"}] for i in range(20)], Sampling())
        finally:
            llm.close()
    # Everything that was sent was paid for and handed to on_result; nothing past the in-flight window.
    assert len(seen) == len(scripted.calls)
    assert 2 <= len(seen) <= 2 + 3
    assert llm.total.cost_usd == pytest.approx(len(seen))


def test_a_result_the_caller_cannot_keep_stops_sending_and_is_raised(monkeypatch):
    """The runner's journal raises when its disk is full: no further request goes out for that batch."""
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    scripted = ScriptedLLM(echo)
    with running(scripted) as server:
        llm = open_llm(api_model(server), options={"concurrency": 1})

        def keep(i: int, r: ChatResult) -> None:
            if i == 1:
                raise OSError(28, "No space left on device")

        try:
            with pytest.raises(OSError, match="No space left"):
                llm.chat([[{"role": "user", "content": f"q{i}"}] for i in range(6)], Sampling(), on_result=keep)
        finally:
            llm.close()
    assert [c[0][-1]["content"] for c in scripted.calls] == ["q0", "q1"]


def test_a_missing_key_is_reported_when_the_model_loads(monkeypatch):
    monkeypatch.delenv("RECIPE_TEST_API_KEY", raising=False)
    model = ResolvedModel(name="remote", source="openai://gpt-x", backend="openai",
                          api={"base_url": "https://api.example.invalid/v1", "api_key_env": "RECIPE_TEST_API_KEY"})
    with pytest.raises(RuntimeError, match="set the environment variable RECIPE_TEST_API_KEY"):
        open_llm(model).load()


def test_api_key_is_sent_but_never_logged_or_put_in_errors(monkeypatch, caplog):
    secret = "sk-planted-9f8e7d6c5b4a3921"
    monkeypatch.setenv("RECIPE_TEST_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    plan = {"q0": ["echo_key_500"], "q1": ["echo_key_401"]}
    with running(ScriptedLLM(echo), FaultHandler, plan) as server:
        llm = open_llm(api_model(server), options={"backoff_s": 0.0})
        try:
            results = llm.chat(conversations(2), Sampling())
        finally:
            llm.close()
        auth = list(server.auth)
    assert auth and all(a == f"Bearer {secret}" for a in auth)
    assert results[0].text == "echo q0"
    assert results[1].error is not None and "HTTP 401" in results[1].error
    assert secret not in results[1].error
    assert "***" in results[1].error  # the echoed key was masked, the rest of the message kept
    assert caplog.records, "the backend logs its retries and failures"
    assert secret not in caplog.text
    assert all(secret not in str(r.args) for r in caplog.records)


def test_missing_key_for_a_remote_endpoint_names_the_variable(monkeypatch):
    monkeypatch.delenv("RECIPE_TEST_API_KEY", raising=False)
    model = ResolvedModel(name="remote", source="openai://gpt-x", backend="openai",
                          api={"base_url": "https://api.example.invalid/v1", "api_key_env": "RECIPE_TEST_API_KEY"})
    llm = open_llm(model)
    try:
        with pytest.raises(RuntimeError, match="RECIPE_TEST_API_KEY"):
            llm.chat(conversations(1), Sampling())
    finally:
        llm.close()


class CountingHandler(ChatHandler):
    """Records how many chat requests are being handled at the same moment."""

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.inflight += 1
            server.peak = max(server.peak, server.inflight)
        try:
            time.sleep(0.05)
            super().do_POST()
        finally:
            with server.lock:
                server.inflight -= 1


def test_concurrency_limit_bounds_requests_in_flight(monkeypatch):
    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    with running(ScriptedLLM(echo), CountingHandler) as server:
        server.inflight = server.peak = 0
        llm = open_llm(api_model(server), options={"concurrency": 3})
        try:
            results = llm.chat(conversations(15), Sampling())
        finally:
            llm.close()
        peak = server.peak
    assert [r.text for r in results] == [f"echo q{i}" for i in range(15)]
    assert 1 < peak <= 3


def test_logprobs_requested_and_mapped(monkeypatch):
    """The server side produces logprobs from a scripted LLM result; the client maps them back."""
    from runner.backends.base import LLM, TokenLogprob, Usage

    class WithLogprobs(LLM):
        backend = "scripted"
        name = "lp"

        def __init__(self) -> None:
            self.seen: list[Sampling] = []

        def chat(self, conversations, sampling):
            self.seen.append(sampling)
            lp = [TokenLogprob(token="hi", logprob=-0.5, top={"hi": -0.5, "yo": -1.5})]
            return [ChatResult(text="hi", usage=Usage(prompt_tokens=1, completion_tokens=1), logprobs=lp)
                    for _ in conversations]

        def count_tokens(self, text):
            return 1

    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")
    fake = WithLogprobs()
    with running(fake) as server:
        llm = open_llm(api_model(server))
        try:
            result = llm.chat(conversations(1), Sampling(logprobs=2))[0]
        finally:
            llm.close()
    assert fake.seen[0].logprobs == 2
    assert result.logprobs == [TokenLogprob(token="hi", logprob=-0.5, top={"hi": -0.5, "yo": -1.5})]


def test_requests_per_minute_limit_spaces_requests(monkeypatch):
    from runner.backends.ratelimit import TokenBucket

    monkeypatch.setenv("RECIPE_TEST_API_KEY", "sk-test")

    class FakeTime:
        now = 0.0

        def clock(self) -> float:
            return self.now

        async def sleep(self, delay: float) -> None:
            self.now += delay

    fake = FakeTime()
    with running(ScriptedLLM(echo)) as server:
        llm = open_llm(api_model(server), options={"rpm": 2, "concurrency": 1})
        # 2 a minute: a burst of 2, then one every 30 s (on a fake clock, so the test does not wait).
        llm._rpm = TokenBucket(llm.settings.rpm, clock=fake.clock, sleep=fake.sleep)
        try:
            results = llm.chat(conversations(5), Sampling())
        finally:
            llm.close()
    assert [r.text for r in results] == [f"echo q{i}" for i in range(5)]
    assert fake.now == pytest.approx(90.0)
