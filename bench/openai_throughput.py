"""Throughput of the openai backend against a local OpenAI-compatible server with 100 ms latency.

The server runs in its own process (as a real endpoint would), so the numbers measure the client.

1. N requests at concurrency 1, then at concurrency 32: requests per second of each and the ratio.
2. N requests at concurrency 32 while the server answers 20 % of attempts with 429 (Retry-After: 0) or
   500: how many items still end with an error after the backend's retries.

    python3 bench/openai_throughput.py [--n 128] [--latency 0.1] [--failure-rate 0.2]

The last line is ``name=value`` pairs, e.g.
``rps_c1=9.6 rps_c32=280.1 speedup_32_vs_1=29.2 lost_records=0``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.resolved import ResolvedModel
from runner.backends import open_llm
from runner.backends.base import LLM, ChatResult, Sampling, Usage
from runner.backends.serve import ChatHandler, make_server


class EchoLLM(LLM):
    """Answers instantly; the server's handler adds the latency."""

    backend = "bench"
    name = "echo"

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        return [ChatResult(text="echo " + c[-1]["content"], usage=Usage(prompt_tokens=8, completion_tokens=4))
                for c in conversations]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class SlowFlakyHandler(ChatHandler):
    """Waits ``server.latency`` seconds per request, then fails ``server.failure_rate`` of them."""

    def do_POST(self) -> None:
        raw = self.read_body()
        server = self.server
        time.sleep(server.latency)
        with server.lock:
            roll = server.rng.random()
            server.attempts.value += 1
        if roll < server.failure_rate / 2:
            self.send_error_json(429, "rate limited", kind="rate_limit_error", headers={"Retry-After": "0"})
        elif roll < server.failure_rate:
            self.send_error_json(500, "internal error", kind="server_error")
        else:
            self.respond_chat(raw)


def serve_in_child(latency: float, failure_rates: list[float], ports: Any, attempts: Any) -> None:
    """One server per failure rate, in this (separate) process, so the client under test does not
    share its interpreter lock with the server."""
    servers = []
    for rate in failure_rates:
        server = make_server(EchoLLM(), "127.0.0.1", 0, model_name="echo", handler=SlowFlakyHandler)
        server.latency, server.failure_rate = latency, rate
        server.rng, server.lock, server.attempts = random.Random(0), threading.Lock(), attempts
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
    for server in servers:
        ports.put(server.server_address[1])
    threading.Event().wait()


def run(llm: LLM, n: int) -> tuple[float, list[ChatResult]]:
    conversations = [[{"role": "user", "content": f"request {i}"}] for i in range(n)]
    start = time.perf_counter()
    results = llm.chat(conversations, Sampling(max_new_tokens=16))
    return time.perf_counter() - start, results


def api_model(port: int) -> ResolvedModel:
    return ResolvedModel(name="echo", source="openai://echo", backend="openai",
                         api={"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "BENCH_UNUSED_KEY"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="requests per run")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of attempts failing in run 2")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports, attempts = ctx.Queue(), ctx.Value("i", 0)
    child = ctx.Process(target=serve_in_child, args=(args.latency, [0.0, args.failure_rate], ports, attempts),
                        daemon=True)
    child.start()
    clean_port, flaky_port = ports.get(timeout=60), ports.get(timeout=60)
    os.environ.pop("BENCH_UNUSED_KEY", None)  # a local server needs no key

    try:
        rps = {}
        for concurrency in (1, 32):
            llm = open_llm(api_model(clean_port), options={"concurrency": concurrency})
            run(llm, max(4, concurrency))  # warm up: imports, one pooled connection per concurrent request
            elapsed, results = run(llm, args.n)
            assert all(r.error is None for r in results)
            rps[concurrency] = args.n / elapsed
            print(f"concurrency {concurrency:>2}: {args.n} requests in {elapsed:.2f}s = {rps[concurrency]:.1f} req/s")
            llm.close()

        llm = open_llm(api_model(flaky_port), options={"concurrency": 32, "max_retries": 5, "backoff_s": 0.05})
        before = attempts.value
        elapsed, results = run(llm, args.n)
        lost = sum(r.error is not None for r in results)
        print(f"with {args.failure_rate:.0%} of attempts failing (429/500): {args.n} requests, "
              f"{attempts.value - before} attempts, {llm.stats['retries']} retries, {lost} lost, {elapsed:.2f}s")
        llm.close()
    finally:
        child.terminate()
        child.join(5)

    print(f"rps_c1={rps[1]:.1f} rps_c32={rps[32]:.1f} speedup_32_vs_1={rps[32] / rps[1]:.1f} "
          f"retries={llm.stats['retries']} lost_records={lost}")


if __name__ == "__main__":
    main()
