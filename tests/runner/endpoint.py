"""A local OpenAI-compatible endpoint for runner tests: answers ``echo <prompt>`` after ``latency`` seconds
and counts what it was sent (requests in flight now and at most, each prompt's sends)."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterator

from runner.backends.base import LLM, ChatResult, Sampling, Usage
from runner.backends.serve import ChatHandler, make_server


class EchoLLM(LLM):
    backend = "echo"
    name = "echo"

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        return [ChatResult(text="echo " + c[-1]["content"], usage=Usage(prompt_tokens=4, completion_tokens=4))
                for c in conversations]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class Counts:
    """What one or more endpoints were sent; ``peak`` is the most requests in flight at once over all of
    them (a request is in flight from its arrival until its answer is ready to go out)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.sent: collections.Counter[str] = collections.Counter()  # answered, by endpoint and prompt
        self.refused = 0  # requests answered 429

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def twice(self) -> list[str]:
        """The prompts sent more than once."""
        return [p for p, n in self.sent.items() if n > 1]


class SlowCountingHandler(ChatHandler):
    def do_POST(self) -> None:
        raw = self.read_body()
        server = self.server
        counts: Counts = server.counts
        prompt = json.loads(raw)["messages"][-1]["content"]
        with counts.lock:
            counts.in_flight += 1
            counts.peak = max(counts.peak, counts.in_flight)
            refuse = server.refusals.get(prompt, 0) > 0
            if refuse:
                server.refusals[prompt] -= 1
                counts.refused += 1
            else:
                counts.sent[server.tag + prompt] += 1
        time.sleep(server.latency)
        with counts.lock:  # before the answer goes out: the client may send the next one once it has it
            counts.in_flight -= 1
        if refuse:
            self.send_error_json(429, "slow down", kind="rate_limit_error", headers={"Retry-After": "0.05"})
        else:
            self.respond_chat(raw)


@contextlib.contextmanager
def endpoints(n: int = 1, latency: float = 0.05, counts: Counts | None = None,
              refusals: dict[str, int] | None = None) -> Iterator[tuple[Counts, list[str]]]:
    """``n`` endpoints sharing one ``Counts`` (prompts keyed ``<i>:prompt`` by endpoint); yields the counts
    and each endpoint's base URL. ``refusals``: how many times each prompt is first answered 429 with
    ``Retry-After: 0.05``."""
    counts = counts or Counts()
    servers = []
    for i in range(n):
        server = make_server(EchoLLM(), "127.0.0.1", 0, model_name="echo", handler=SlowCountingHandler)
        server.counts, server.latency, server.tag = counts, latency, f"{i}:"
        server.refusals = dict(refusals or {})
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
    try:
        yield counts, [f"http://127.0.0.1:{s.server_address[1]}/v1" for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def api_model(url: str, concurrency: int) -> str:
    """A recipe's inline model entry for the endpoint at ``url``."""
    return f'{{name: "openai://echo?base_url={url}", options: {{concurrency: {concurrency}}}}}'
