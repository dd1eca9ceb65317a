"""``kill -9`` in the middle of a windowed API stage, and of two API stages running side by side, then
run again: every record comes out once, and each stage sends again at most the requests it had in flight
(its ``concurrency``), counted at local endpoints that outlive the killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from endpoint import api_model, endpoints

from registry.jsonio import read_jsonl

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys
from runner.cli import main
sys.exit(main(["run", {recipe!r}, "--runs-dir", {runs!r}, "--no-progress", "--no-publish"]))
"""
CONCURRENCY = 8


def recipe(urls: list[str], n: int) -> str:
    lines = ["recipe: demo", "models:"]
    lines += [f"  m{i}: {api_model(url, CONCURRENCY)}" for i, url in enumerate(urls)]
    lines += ["stages:", f"  nums: {{type: demo_components:Numbers, params: {{n: {n}}}}}"]
    lines += [f'  ask{i}: {{type: generate.chat, inputs: {{records: nums}}, model: m{i}, '
              f'params: {{template: "{{text}}", max_new_tokens: 8}}}}' for i in range(len(urls))]
    return "\n".join(lines) + "\n"


def start(tmp_path: Path) -> subprocess.Popen:
    code = DRIVER.format(recipe=str(tmp_path / "r.yaml"), runs=str(tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wal_lines(tmp_path: Path, stage: str) -> int:
    return sum(len(p.read_text().splitlines()) for p in (tmp_path / "runs").glob(f"demo/stages/{stage}/*/wal.jsonl"))


def kill_then_resume(tmp_path: Path, stages: list[str]) -> None:
    """Start the run, kill -9 it once every stage has finished 3 batches, then run it to the end."""
    proc = start(tmp_path)
    deadline = time.time() + 60
    while min(wal_lines(tmp_path, s) for s in stages) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    assert all(wal_lines(tmp_path, s) < 20 for s in stages), "killed in the middle"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = start(tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]


def outputs(tmp_path: Path, stage: str) -> list[dict]:
    root = tmp_path / "runs" / "demo"
    return read_jsonl(root / json.loads((root / "latest.json").read_text())["stages"][stage] / "records.jsonl")


def test_kill_9_in_a_windowed_stage_resends_at_most_its_window(tmp_path):
    n = 200
    with endpoints(1, latency=0.05) as (counts, urls):
        (tmp_path / "r.yaml").write_text(recipe(urls, n))
        kill_then_resume(tmp_path, ["ask0"])
    assert [r["id"] for r in outputs(tmp_path, "ask0")] == [f"r{i}" for i in range(n)], "every record once"
    assert len(counts.sent) == n
    assert len(counts.twice()) <= CONCURRENCY, counts.twice()
    assert max(counts.sent.values()) <= 2


def test_kill_9_with_two_stages_side_by_side_resends_at_most_each_window(tmp_path):
    n = 160
    with endpoints(2, latency=0.05) as (counts, urls):
        (tmp_path / "r.yaml").write_text(recipe(urls, n))
        kill_then_resume(tmp_path, ["ask0", "ask1"])
    for i in range(2):
        assert [r["id"] for r in outputs(tmp_path, f"ask{i}")] == [f"r{k}" for k in range(n)]
        sent = {p: c for p, c in counts.sent.items() if p.startswith(f"{i}:")}
        assert len(sent) == n
        assert sum(1 for c in sent.values() if c > 1) <= CONCURRENCY
        assert max(sent.values()) <= 2
