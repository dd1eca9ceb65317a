"""Throughput of API stages through `recipe run`, end to end, against local OpenAI-compatible endpoints
that answer each request after 100 ms.

The endpoints run in a process of their own (as a real endpoint would) with TCP_NODELAY and keep-alive
(without them the test server itself adds ~40 ms a request): by default on an event loop that answers
each request exactly 100 ms after it arrived; `--server threads` uses `recipe serve`'s threading server
instead (a thread per connection, which adds its own CPU time per request). Each scenario is a fresh
`recipe run` of a recipe written here (`load.jsonl` → `generate.chat`), in a subprocess:

1. 32 prompts at `concurrency: 1`                                    ideal 32 × 100 ms = 3.2 s
2. 256 prompts at `concurrency: 32`, default batch size              ideal 256 / 32 × 100 ms = 0.8 s
3. two independent stages on two endpoints, 128 prompts each at 16   ideal 0.8 s (side by side)
4. a chain of two stages (the second asks about the first's replies), 256 prompts at 32 each, on two
   endpoints                                                         ideal 0.8 s + one 100 ms request
5. scenario 2 while the endpoint answers 20 % of attempts with 429 (Retry-After: 0) or 500: records lost

For each: the endpoint's span (first request in → last answer out), the stages' own seconds (from their
manifests), the whole `recipe run` (with Python start-up and imports), the most requests in flight at the
endpoints and the prompts sent more than once.

    python bench/openai_throughput.py [--latency 0.1] [--failure-rate 0.2] [--server asyncio|threads]

The last line is ``name=value`` pairs, e.g. ``c1_s=3.26 c32_s=0.84 ... lost_records=0``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runner.backends.base import LLM, ChatResult, Sampling, Usage  # noqa: E402
from runner.backends.serve import ChatHandler, make_server  # noqa: E402


class EchoLLM(LLM):
    """Answers instantly; the handler adds the latency."""

    backend = "bench"
    name = "echo"

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        return [ChatResult(text="echo " + c[-1]["content"], usage=Usage(prompt_tokens=8, completion_tokens=4))
                for c in conversations]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class Stats:
    """What every endpoint of the child process was sent since the last reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.in_flight = self.peak = self.attempts = 0
        self.first = self.last = None
        self.spans: dict[int, list[float]] = {}  # port -> [first request in, last answer out]
        self.sent: collections.Counter[str] = collections.Counter()
        self.cpu = time.process_time()

    def arrive(self, port: int, rng: random.Random) -> float:
        """A request came in: count it; returns the roll that decides whether it fails."""
        with self.lock:
            now = time.monotonic()
            self.first = self.first if self.first is not None else now
            self.spans.setdefault(port, [now, 0.0])
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.attempts += 1
            return rng.random()

    def leave(self, port: int, prompt: str, failed: bool) -> None:
        """Its answer is ready to go out."""
        with self.lock:
            self.in_flight -= 1
            if not failed:
                self.sent[f"{port}:{prompt}"] += 1
            self.last = self.spans[port][1] = time.monotonic()

    def report(self) -> dict[str, Any]:
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        zero = self.first or 0.0
        spans = {port: [round(a - zero, 3), round(b - zero, 3)] for port, (a, b) in self.spans.items()}
        return {"peak": self.peak, "attempts": self.attempts, "prompts": len(self.sent), "span": span, "spans": spans,
                "twice": sum(1 for n in self.sent.values() if n > 1), "cpu": time.process_time() - self.cpu}


class BenchHandler(ChatHandler):
    """Waits ``latency``, then answers (or, for ``failure_rate`` of attempts, fails with 429 or 500)."""

    def do_GET(self) -> None:
        stats = self.server.stats
        with stats.lock:
            body = stats.report()
            if self.path == "/reset":
                stats.reset()
        self.send_json(200, body)

    def do_POST(self) -> None:
        raw = self.read_body()
        server, stats = self.server, self.server.stats
        prompt = json.loads(raw)["messages"][-1]["content"]
        roll = stats.arrive(server.server_address[1], server.rng)
        time.sleep(server.latency)
        failed = roll < server.failure_rate
        stats.leave(server.server_address[1], prompt, failed)
        if roll < server.failure_rate / 2:
            self.send_error_json(429, "rate limited", kind="rate_limit_error", headers={"Retry-After": "0"})
        elif failed:
            self.send_error_json(500, "internal error", kind="server_error")
        else:
            self.respond_chat(raw)


def completion(prompt: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "echo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "echo " + prompt},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
    }).encode()


def answer(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


async def serve_asyncio(latency: float, failure_rates: list[float], stats: Stats, ports: Any) -> None:
    """The endpoints on one event loop: each request is answered ``latency`` seconds after it arrived,
    whatever else is in flight (keep-alive; asyncio sets TCP_NODELAY)."""

    def handler(rate: float, rng: random.Random):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.split(b"\r\n")
                    method, path = lines[0].split()[:2]
                    length = next((int(line[15:]) for line in lines[1:]
                                   if line[:15].lower() == b"content-length:"), 0)
                    raw = await reader.readexactly(length) if length else b""
                    if method == b"GET":
                        with stats.lock:
                            body = json.dumps(stats.report()).encode()
                            if path == b"/reset":
                                stats.reset()
                        writer.write(answer(200, body))
                        continue
                    prompt = json.loads(raw)["messages"][-1]["content"]
                    roll = stats.arrive(port, rng)
                    await asyncio.sleep(latency)
                    stats.leave(port, prompt, failed=roll < rate)
                    if roll < rate / 2:
                        writer.write(answer(429, b'{"error": {"message": "rate limited"}}', "Retry-After: 0\r\n"))
                    elif roll < rate:
                        writer.write(answer(500, b'{"error": {"message": "internal error"}}'))
                    else:
                        writer.write(answer(200, completion(prompt)))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()
        return handle

    for i, rate in enumerate(failure_rates):
        server = await asyncio.start_server(handler(rate, random.Random(i)), "127.0.0.1", 0, backlog=512)
        ports.put(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def serve_in_child(latency: float, failure_rates: list[float], ports: Any, kind: str = "asyncio") -> None:
    """One endpoint per failure rate, all in this (separate) process, sharing one Stats: on an event loop
    (``asyncio``), or ``recipe serve``'s threading server (``threads``: a thread per connection, the
    answer through its batching worker)."""
    stats = Stats()
    if kind == "asyncio":
        asyncio.run(serve_asyncio(latency, failure_rates, stats, ports))
        return
    for i, rate in enumerate(failure_rates):
        server = make_server(EchoLLM(), "127.0.0.1", 0, model_name="echo", handler=BenchHandler)
        server.latency, server.failure_rate, server.rng, server.stats = latency, rate, random.Random(i), stats
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        ports.put(server.server_address[1])
    threading.Event().wait()


def stats(port: int, reset: bool = False) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{'reset' if reset else 'stats'}", timeout=10) as r:
        return json.loads(r.read())


def model(port: int, concurrency: int, **options: Any) -> str:
    opts = ", ".join(f"{k}: {v}" for k, v in {"concurrency": concurrency, **options}.items())
    return f'{{name: "openai://echo?base_url=http://127.0.0.1:{port}/v1", options: {{{opts}}}}}'


def stage(inputs: str, role: str, template: str, field: str = "response") -> str:
    return (f'{{type: generate.chat, inputs: {{records: {inputs}}}, model: {role}, '
            f'params: {{template: "{template}", output_field: {field}, max_new_tokens: 16}}}}')


def run_recipe(work: Path, name: str, n: int, models: dict[str, str], stages: dict[str, str]) -> tuple[float, dict]:
    """`recipe run` of a fresh recipe in a subprocess: its wall seconds and each stage's manifest seconds."""
    folder = work / name
    folder.mkdir()
    (folder / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "text": f"{name} prompt {i}"}) + "\n"
                                                  for i in range(n)))
    lines = [f"recipe: {name}", "models:"] + [f"  {k}: {v}" for k, v in models.items()]
    lines += ["stages:", "  prompts: {type: load.jsonl, params: {path: prompts.jsonl}}"]
    lines += [f"  {k}: {v}" for k, v in stages.items()]
    (folder / "r.yaml").write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "runner.cli", "run", str(folder / "r.yaml"), "--runs-dir", str(folder / "runs"),
           "--no-progress", "--no-publish"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{name}: recipe run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    latest = json.loads((folder / "runs" / name / "latest.json").read_text())["stages"]
    manifests = {s: json.loads((folder / "runs" / name / latest[s] / "manifest.json").read_text())
                 for s in stages}
    return wall, manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="endpoint latency per request, seconds")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of attempts failing in scenario 5")
    parser.add_argument("--server", choices=["asyncio", "threads"], default="asyncio",
                        help="the endpoints: an event loop answering after exactly the latency, or `recipe "
                        "serve`'s threading server (which adds its own CPU time per request)")
    args = parser.parse_args()
    lat = args.latency

    ctx = multiprocessing.get_context("spawn")
    ports_q = ctx.Queue()
    child = ctx.Process(target=serve_in_child, args=(lat, [0.0, 0.0, args.failure_rate], ports_q, args.server),
                        daemon=True)
    child.start()
    a, b, flaky = (ports_q.get(timeout=60) for _ in range(3))
    os.environ.pop("OPENAI_API_KEY", None)  # a local endpoint needs no key
    work = Path(tempfile.mkdtemp(prefix="recipe-throughput-"))
    chain = {"first": stage("prompts", "a", "{text}"), "second": stage("first", "b", "{response}", "response2")}
    scenarios = [  # name, prompts, models, stages, ideal seconds, what the ideal is
        ("c1", 32, {"a": model(a, 1)}, {"ask": stage("prompts", "a", "{text}")}, 32 * lat, "32 × latency"),
        ("c32", 256, {"a": model(a, 32)}, {"ask": stage("prompts", "a", "{text}")}, 256 / 32 * lat,
         "256 / 32 × latency"),
        ("two_stages", 128, {"a": model(a, 16), "b": model(b, 16)},
         {"left": stage("prompts", "a", "{text}"), "right": stage("prompts", "b", "{text}")}, 128 / 16 * lat,
         "128 / 16 × latency, side by side"),
        ("chain", 256, {"a": model(a, 32), "b": model(b, 32)}, chain, 256 / 32 * lat + lat,
         "the slower stage + one request"),
        ("flaky", 256, {"a": model(flaky, 32, backoff_s=0.05)}, {"ask": stage("prompts", "a", "{text}")},
         256 / 32 * lat / (1 - args.failure_rate), f"256 / 32 × latency / {1 - args.failure_rate:.1f}"),
    ]
    out: dict[str, str] = {}
    try:
        run_recipe(work, "warmup", 4, {"a": model(a, 4)}, {"ask": stage("prompts", "a", "{text}")})
        for name, n, models, stages, ideal, why in scenarios:
            stats(a, reset=True)
            wall, manifests = run_recipe(work, name, n, models, stages)
            got = stats(a)
            seconds = {s: m["seconds"] for s, m in manifests.items()}
            print(f"{name:>10}: endpoint span {got['span']:.2f} s vs ideal {ideal:.2f} s ({why}) = "
                  f"{got['span'] / ideal:.2f}× | stages {seconds} | recipe run {wall:.2f} s | "
                  f"peak in flight {got['peak']} | sent twice {got['twice']}", flush=True)
            out[f"{name}_s"] = f"{got['span']:.2f}"
            out[f"{name}_ratio"] = f"{got['span'] / ideal:.2f}"
            out[f"{name}_peak"] = str(got["peak"])
            if name == "flaky":
                counts = manifests["ask"]["counts"]
                out["lost_records"] = str(counts["failed"])
                print(f"{'':>10}  {got['attempts']} attempts for {n} prompts, {counts['failed']} records lost")
    finally:
        child.terminate()
        child.join(5)
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
