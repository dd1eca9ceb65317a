"""A run never lies: `recipe run` against a local fake OpenAI-compatible endpoint (a thread of this test
process), as a user would run it (the CLI in subprocesses). The endpoint counts every prompt it answers
and echoes the request's key back in each reply.

Checked: endpoint down → nonzero exit and the failures said on the console; endpoint back → a plain re-run
gives all 20 records with 20 calls; two runs at once in one runs folder → no prompt called twice, 20
records; a finished stage's records.jsonl cut by one line → re-run with a warning, nothing paid; keys
named anywhere and echoed by the endpoint → in no file of the run or published folder, nor on the
console; an inline api_key → located error, exit 2; a model that cannot load → the stage fails naming it;
a 500-byte alias bomb → located error, exit 2, within 10 s under a 3 GB memory limit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from runner.backends.base import ChatResult, Usage
from runner.backends.serve import ChatHandler, completion_body, make_server
from tests.fakes import ScriptedLLM

REPO = Path(__file__).resolve().parents[2]
N = 20
KEYS = {  # every place a user can name a key: model options, the zoo's api block, the backend's default
    "MY_SERVICE_APIKEY": "sk-options-0123456789abcdef",
    "ZOO_SVC_APIKEY": "sk-zoo-0123456789abcdef",
    "OPENAI_API_KEY": "sk-default-0123456789abcdef",
    "HF_TOKEN": "hf_publish_0123456789abcdef",
}


class EchoHandler(ChatHandler):
    """Answers ``echo <prompt> (key <Authorization header>)`` and counts each prompt it answers."""

    def do_POST(self) -> None:
        body = json.loads(self.read_body())
        prompt = body["messages"][-1]["content"]
        server = self.server
        with server.lock:
            server.calls.append(prompt)
        server.gate.wait(60)
        text = f"echo {prompt} (key {self.headers.get('Authorization')})"
        result = ChatResult(text=text, usage=Usage(prompt_tokens=3, completion_tokens=5))
        self.send_json(200, completion_body(result, server.model_name))


class Endpoint:
    """The fake endpoint on a fixed port, so it can be down and come back at the same address."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.calls: list[str] = []
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, gate: threading.Event | None = None) -> None:
        """Answer requests; with a ``gate``, each answer waits until it is set."""
        if gate is None:
            gate = threading.Event()
            gate.set()
        server = make_server(ScriptedLLM(lambda conv: ""), "127.0.0.1", self.port, model_name="test-model",
                             handler=EchoHandler)
        server.calls, server.lock, server.gate = self.calls, threading.Lock(), gate
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.stop()


RECIPE = """\
recipe: never-lies
zoo: [zoo.yaml]
models:
  g: {name: fake-api, options: {api_key_env: MY_SERVICE_APIKEY, max_retries: 0, timeout_s: 20}}
stages:
  prompts: {type: load.jsonl, params: {path: prompts.jsonl}}
  ask:
    type: generate.chat
    inputs: {records: prompts}
    model: g
    params: {template: "{text}", max_new_tokens: 8}
publish: {to: "file://PUBLISHED"}
"""

ZOO = """\
models:
  fake-api:
    source: openai://test-model
    api: {model_id: test-model, base_url: "URL", api_key_env: ZOO_SVC_APIKEY, input_per_mtok: 1.0,
          output_per_mtok: 2.0}
"""


def setup(tmp_path: Path, endpoint: Endpoint, recipe: str = RECIPE) -> Path:
    (tmp_path / "zoo.yaml").write_text(ZOO.replace("URL", endpoint.url))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "text": f"prompt {i}"}) + "\n"
                                                    for i in range(N)))
    path = tmp_path / "r.yaml"
    path.write_text(recipe.replace("PUBLISHED", str(tmp_path / "published")).replace("URL", endpoint.url))
    return path


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **KEYS, "PYTHONPATH": str(REPO), "RECIPE_ZOO_HOME": str(tmp_path / "zoo-home"),
            "COLUMNS": "200"}


def recipe_cmd(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner.cli", *args]


def run(tmp_path: Path, recipe: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(recipe_cmd(tmp_path, "run", str(recipe), "--runs-dir", str(tmp_path / "runs"),
                                     "--no-progress", *extra),
                          cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=300)


def ask_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "never-lies"
    return root / json.loads((root / "latest.json").read_text())["stages"]["ask"]


def records(tmp_path: Path) -> list[dict]:
    path = ask_dir(tmp_path) / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_endpoint_down_fails_the_run_then_a_plain_rerun_pays_each_prompt_once(tmp_path, endpoint):
    recipe = setup(tmp_path, endpoint)
    down = run(tmp_path, recipe)  # nothing listens on the endpoint's port
    assert down.returncode == 3, down.stdout + down.stderr
    ledger = ask_dir(tmp_path) / "failures.jsonl"
    assert f"stage ask: {N} of {N} records failed (over its limit of 0); ledger: {ledger}" in down.stdout
    assert f"{N}× model call failed: connection error" in down.stdout
    assert "Nothing was published" in down.stdout and not (tmp_path / "published").exists()
    assert "## Failed records" in (tmp_path / "runs" / "never-lies" / "report.md").read_text()

    endpoint.start()
    back = run(tmp_path, recipe)
    assert back.returncode == 0, back.stdout + back.stderr
    assert len(records(tmp_path)) == N and len(endpoint.calls) == N
    assert set(Counter(endpoint.calls).values()) == {1}
    assert (tmp_path / "published").exists()

    # a finished stage's records.jsonl cut by one line: run again, rebuilt, nothing paid
    path = ask_dir(tmp_path) / "records.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    again = run(tmp_path, recipe)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{path} has" in again.stdout + again.stderr and "running it again" in again.stdout + again.stderr
    assert len(records(tmp_path)) == N and len(endpoint.calls) == N


def test_two_runs_at_once_pay_no_prompt_twice(tmp_path, endpoint):
    recipe = setup(tmp_path, endpoint)
    gate = threading.Event()
    endpoint.start(gate)  # answers wait until the third run has tried the folder
    cmd = recipe_cmd(tmp_path, "run", str(recipe), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--wait")
    both = [subprocess.Popen(cmd, cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    deadline = time.monotonic() + 120
    while not endpoint.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.calls, "one run reached the endpoint"
    third = run(tmp_path, recipe)  # without --wait, while a run holds the folder
    gate.set()
    outs = [p.communicate(timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0], outs
    assert sum("waiting for it to finish" in out for out, _ in outs) == 1  # one waited for the other
    assert third.returncode == 1
    assert any(f"is in use by process {p.pid}" in third.stdout for p in both), third.stdout
    assert len(endpoint.calls) == N and set(Counter(endpoint.calls).values()) == {1}
    assert len(records(tmp_path)) == N


SECRETS_RECIPE = """\
recipe: never-lies
zoo: [zoo.yaml]
models:
  opt: {name: fake-api, options: {api_key_env: MY_SERVICE_APIKEY}}
  zoo: fake-api
  default: "openai://test-model?base_url=URL"
stages:
  prompts: {type: load.jsonl, params: {path: prompts.jsonl, limit: 2}}
  ask: {type: generate.chat, inputs: {records: prompts}, model: opt, params: {template: "{text}"}}
  ask_zoo: {type: generate.chat, inputs: {records: prompts}, model: zoo, params: {template: "zoo {text}"}}
  ask_default: {type: generate.chat, inputs: {records: prompts}, model: default, params: {template: "d {text}"}}
publish: {to: "file://PUBLISHED"}
"""


def test_keys_named_anywhere_reach_no_file_and_no_console(tmp_path, endpoint):
    recipe = setup(tmp_path, endpoint, SECRETS_RECIPE)
    endpoint.start()
    done = run(tmp_path, recipe, "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [r["response"] for r in records(tmp_path)]
    assert answers == ["echo prompt 0 (key Bearer ***)", "echo prompt 1 (key Bearer ***)"]
    files = [f for d in ("runs", "published") for f in (tmp_path / d).rglob("*") if f.is_file()]
    assert len(files) > 20
    leaks = [(f, name) for f in files for name, value in KEYS.items() if value in f.read_text(errors="ignore")]
    assert leaks == []
    for name, value in KEYS.items():
        assert value not in done.stdout + done.stderr, name
    # each key did reach the endpoint: the masking is what kept it out
    assert len(endpoint.calls) == 6


def test_an_inline_key_is_a_located_error(tmp_path, endpoint):
    recipe = setup(tmp_path, endpoint, RECIPE.replace("api_key_env: MY_SERVICE_APIKEY", "api_key: sk-inline-123456"))
    r = subprocess.run(recipe_cmd(tmp_path, "validate", str(recipe)), cwd=tmp_path, env=env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == (f"{recipe}:4:42: models.g.options.api_key: 'api_key' holds a secret written "
                                        "into the recipe; put it in an environment variable and name that instead "
                                        "(api_key_env: MY_VARIABLE)")
    assert run(tmp_path, recipe).returncode == 2 and not (tmp_path / "runs").exists()


def test_a_model_that_cannot_load_fails_its_stage_before_any_record(tmp_path, endpoint):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "README.txt").write_text("these are notes, not weights")
    recipe = setup(tmp_path, endpoint, RECIPE.replace("{name: fake-api, options: {api_key_env: MY_SERVICE_APIKEY, "
                                                      "max_retries: 0, timeout_s: 20}}", "notes"))
    (tmp_path / "zoo.yaml").write_text("models:\n  notes: {source: 'file://not-a-model'}\n")
    r = run(tmp_path, recipe)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "failed: stage 'ask': model 'notes' (slot 'llm') cannot be loaded: " in r.stdout
    assert not (ask_dir(tmp_path) / "failures.jsonl").exists() and not (ask_dir(tmp_path) / "wal.jsonl").exists()


def test_an_alias_bomb_is_a_located_error_in_seconds_under_a_memory_limit(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size <= 600

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3_000_000 * 1024, 3_000_000 * 1024))  # ulimit -v 3000000

    start = time.monotonic()
    r = subprocess.run(recipe_cmd(tmp_path, "validate", str(bomb)), cwd=tmp_path, env=env(tmp_path),
                       capture_output=True, text=True, timeout=60, preexec_fn=limit_memory)
    assert time.monotonic() - start < 10
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{bomb}:") and "the file expands to more than 200000 values" in r.stderr
