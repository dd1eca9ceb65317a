"""``kill -9`` during a map stage, then run again: every input record appears exactly once in the output
and no LLM call is generated twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from registry.jsonio import read_jsonl

REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
recipe: demo
models: {gen: tiny-random-llama}
stages:
  nums: {type: demo_components:Numbers, params: {n: 60}}
  ask:
    type: demo_components:Ask
    inputs: {records: nums}
    model: gen
    batch_size: 3
    params: {sleep: 0.03}
"""

DRIVER = """
import sys
sys.path.insert(0, {here!r})
from helpers import CountingLLM
import runner.models
fake = CountingLLM({log!r})
runner.models.ModelManager.llm = lambda self, b: fake
from runner.cli import main
sys.exit(main(["run", {recipe!r}, "--runs-dir", {runs!r}, "--no-progress"]))
"""


def _start(tmp_path: Path) -> subprocess.Popen:
    code = DRIVER.format(here=str(Path(__file__).parent), log=str(tmp_path / "gen.log"),
                         recipe=str(tmp_path / "r.yaml"), runs=str(tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wal_lines(tmp_path: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (tmp_path / "runs").rglob("wal.jsonl"))


def test_kill_9_then_resume_exactly_once(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    kills = 0
    for wait_lines in (2, 7, 13):
        proc = _start(tmp_path)
        deadline = time.time() + 60
        while _wal_lines(tmp_path) < wait_lines and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            time.sleep(0.01 * wait_lines % 0.04)  # land at different points inside a batch
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills >= 2, "the run finished before it could be killed"
    proc = _start(tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]

    latest = json.loads((tmp_path / "runs" / "demo" / "latest.json").read_text())
    recs = read_jsonl(tmp_path / "runs" / "demo" / latest["stages"]["ask"] / "records.jsonl")
    assert [r["id"] for r in recs] == [f"r{i}" for i in range(60)], "every input exactly once, in order"
    assert all(r["answer"] == f"echo: Say something about: number {r['id'][1:]}" for r in recs)
    generated = collections.Counter(json.loads(line) for line in (tmp_path / "gen.log").read_text().splitlines())
    assert max(generated.values()) == 1, [k for k, v in generated.items() if v > 1]
