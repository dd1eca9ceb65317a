"""Disk and file faults: a full disk stops a stage at once (no model call retried for it), damaged log lines
cost only themselves, a finished stage whose files changed runs again, and no run-file error is a traceback."""

from __future__ import annotations

import errno
import hashlib
import json
import logging

import pytest
from helpers import CountingLLM, write

from registry.jsonio import read_jsonl
from runner.cli import main
from runner.errors import StageFailure
from runner.load import load_recipe
from runner.session import run_recipe
from runner.store import AppendLog

RECIPE = """\
recipe: demo
models:
  gen: tiny-random-llama
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 5}
  ask:
    type: demo_components:Ask
    inputs: {records: nums}
    model: gen
  count:
    type: demo_components:CountRuns
    inputs: {records: ask}
    params: {log_file: count.log}
"""


@pytest.fixture
def llm(monkeypatch):
    fake = CountingLLM()
    monkeypatch.setattr("runner.models.ModelManager.llm", lambda self, b: fake)
    return fake


def run(tmp_path, text=RECIPE):
    return run_recipe(load_recipe(write(tmp_path / "r.yaml", text)), tmp_path / "runs", progress=False)


def stage_dir(tmp_path, stage):
    root = tmp_path / "runs" / "demo"
    return root / json.loads((root / "latest.json").read_text())["stages"][stage]


def counted(tmp_path) -> int:
    return len((tmp_path / "count.log").read_text().splitlines())


def full_disk_on(monkeypatch, name: str, nth: int) -> None:
    """Writes to log files called ``name`` fail with ENOSPC from the ``nth`` one on."""
    real = AppendLog._write
    seen = {"n": 0}

    def write(self, text):
        if self.path.name == name:
            seen["n"] += 1
            if seen["n"] >= nth:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text)

    monkeypatch.setattr(AppendLog, "_write", write)


def test_a_full_disk_stops_the_stage_at_once_and_a_rerun_pays_nothing_twice(tmp_path, llm, monkeypatch):
    with monkeypatch.context() as m:
        full_disk_on(m, "wal.jsonl", 2)  # the log of the second batch cannot be written
        with pytest.raises(StageFailure) as e:
            run(tmp_path)
    ask = stage_dir(tmp_path, "ask")
    assert str(e.value).startswith(f"stage 'ask': {ask / 'wal.jsonl'}: cannot write: No space left on device (")
    assert "free on its disk" in str(e.value)
    assert llm.generated == 4, "batches [r0 r1] [r2 r3] ran, no record was retried, batch [r4] never started"
    m = json.loads((ask / "manifest.json").read_text())
    assert m["status"] == "failed" and "No space left on device" in m["error"]
    run(tmp_path)  # space freed
    assert llm.generated == 5, "batch 2 comes back from the call journal, only r4 is new"
    assert [r["id"] for r in read_jsonl(ask / "records.jsonl")] == [f"r{i}" for i in range(5)]


def test_a_journal_that_cannot_be_written_stops_the_stage_without_retries(tmp_path, llm, monkeypatch):
    full_disk_on(monkeypatch, "calls.jsonl", 1)
    with pytest.raises(StageFailure, match=r"calls\.jsonl: cannot write: No space left on device"):
        run(tmp_path)
    assert llm.generated == 0  # the first answer could not be kept: nothing else was asked or retried


def test_the_cli_says_a_full_disk_in_one_message(tmp_path, llm, monkeypatch, capsys):
    full_disk_on(monkeypatch, "wal.jsonl", 1)
    p = write(tmp_path / "r.yaml", RECIPE)
    assert main(["run", str(p), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--trust-code"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and text.count("No space left on device") == 1
    assert "wal.jsonl: cannot write" in text and "free on its disk" in text
    assert llm.generated == 2


def test_a_damaged_journal_line_costs_only_its_own_call(tmp_path, llm, caplog):
    run(tmp_path)
    ask = stage_dir(tmp_path, "ask")
    assert llm.generated == 5
    lines = (ask / "calls.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"  # one damaged line in the middle
    (ask / "calls.jsonl").write_text("".join(lines))
    (ask / "wal.jsonl").unlink()  # lose the write-ahead log: every answer must come from the journal
    (ask / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="recipe.files"):
        run(tmp_path)
    assert llm.generated == 6, "the 3 journaled calls after the damaged line are not paid again"
    assert f"{ask / 'calls.jsonl'}:2: damaged line skipped" in caplog.text


def test_a_damaged_wal_line_is_skipped_and_its_records_come_back_from_the_journal(tmp_path, llm, caplog):
    run(tmp_path)
    ask = stage_dir(tmp_path, "ask")
    wal = (ask / "wal.jsonl").read_text().splitlines(keepends=True)
    wal[0] = "garbage\n"
    (ask / "wal.jsonl").write_text("".join(wal))
    (ask / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="recipe.files"):
        run(tmp_path)
    assert llm.generated == 5
    assert f"{ask / 'wal.jsonl'}:1: damaged line skipped" in caplog.text
    assert [r["id"] for r in read_jsonl(ask / "records.jsonl")] == [f"r{i}" for i in range(5)]


def test_a_finished_stage_records_its_files_and_runs_again_when_they_change(tmp_path, llm, caplog):
    run(tmp_path)
    ask = stage_dir(tmp_path, "ask")
    files = json.loads((ask / "manifest.json").read_text())["files"]
    data = (ask / "records.jsonl").read_bytes()
    assert files["records.jsonl"] == {"bytes": len(data), "lines": 5, "sha256": hashlib.sha256(data).hexdigest()}
    assert files["failures.jsonl"] == {"bytes": 0, "lines": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    lines = data.decode().splitlines(keepends=True)
    (ask / "records.jsonl").write_text("".join(lines[:-1]))  # lost its last line
    with caplog.at_level(logging.WARNING):
        out = run(tmp_path)
    assert out.exit_code == 0
    assert f"stage ask: {ask / 'records.jsonl'} has" in caplog.text and "running it again" in caplog.text
    assert (ask / "records.jsonl").read_bytes() == data, "rebuilt from the write-ahead log"
    assert llm.generated == 5, "nothing paid again"
    assert counted(tmp_path) == 1, "the records are the same again: later stages stay cached"


def test_damaged_records_without_checksums_are_a_message_naming_the_file(tmp_path, llm, capsys):
    run(tmp_path)
    ask = stage_dir(tmp_path, "ask")
    m = json.loads((ask / "manifest.json").read_text())
    del m["files"]  # a manifest written before checksums
    (ask / "manifest.json").write_text(json.dumps(m))
    (ask / "records.jsonl").write_text('{"id": "r0", "answer": "x"}\n{"id": "r1", "ans\n')
    (stage_dir(tmp_path, "count") / "manifest.json").unlink()  # the stage after it must read them
    p = tmp_path / "r.yaml"
    assert main(["run", str(p), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--trust-code"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert f"{ask / 'records.jsonl'}: damaged, line 2: not valid JSON" in text


def test_a_run_level_file_that_cannot_be_written_is_one_message(tmp_path, llm, monkeypatch, capsys):
    import registry.atomic

    real = registry.atomic.atomic_write_bytes

    def full(path, data):
        if path.name == "recipe.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(registry.atomic, "atomic_write_bytes", full)
    p = write(tmp_path / "r.yaml", RECIPE)
    assert main(["run", str(p), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--trust-code"]) == 1
    text = "".join(capsys.readouterr())
    assert "Traceback" not in text
    assert f"{tmp_path / 'runs' / 'demo' / 'recipe.yaml'}: cannot write: No space left on device (" in text
