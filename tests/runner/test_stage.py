"""A stage's lifecycle: reuse or run, the manifest through running/done/failed, failures recorded."""

from __future__ import annotations

import json

import pytest
from helpers import write

from registry.atomic import atomic_write_json
from runner.errors import StageFailure
from runner.folders import StageFolders
from runner.load import load_recipe
from runner.session import run_recipe
from runner.stage import decide
from runner.store import RunStore

RECIPE = """\
recipe: demo
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 3}
  broken:
    type: demo_components:Broken
    inputs: {records: nums}
"""


class NoZoo:
    def get(self, name):
        raise KeyError(name)


def folders(tmp_path, text=RECIPE):
    loaded = load_recipe(write(tmp_path / "r.yaml", text))
    return StageFolders(loaded, RunStore(tmp_path / "runs" / "demo"), NoZoo())


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_a_failing_stage_leaves_a_failed_manifest_and_stops_the_run(tmp_path):
    with pytest.raises(StageFailure, match="RuntimeError: broken on purpose"):
        run_recipe(load_recipe(write(tmp_path / "r.yaml", RECIPE)), tmp_path / "runs", progress=False)
    f = folders(tmp_path)
    assert manifest(f.dir("nums"))["status"] == "done"
    m = manifest(f.dir("broken"))
    assert m["status"] == "failed" and m["error"] == "RuntimeError: broken on purpose"
    assert m["inputs"] == {"records": f.fingerprint("nums")} and m["revision"] == 0
    assert not (f.dir("broken") / "records.jsonl").exists()
    report = (tmp_path / "runs" / "demo" / "report.md").read_text()
    assert "## Stopped" in report and "| broken | `demo_components:Broken` | failed |" in report


def test_a_failing_summary_fails_the_stage_after_its_records_are_written(tmp_path):
    text = RECIPE + "    params: {in_summary: true}\n"
    with pytest.raises(StageFailure, match="summarising its records failed: RuntimeError: no summary"):
        run_recipe(load_recipe(write(tmp_path / "r.yaml", text)), tmp_path / "runs", progress=False)
    f = folders(tmp_path, text)
    assert manifest(f.dir("broken"))["status"] == "failed"
    assert len((f.dir("broken") / "records.jsonl").read_text().splitlines()) == 3


def test_decide_reuses_a_done_folder_whose_failures_are_within_its_limit(tmp_path):
    f = folders(tmp_path)
    assert decide(f, "nums", retry_failed=False).cached is None  # nothing there yet
    fp = f.fingerprint("nums")
    atomic_write_json(f.dir("nums") / "manifest.json", {"fingerprint": fp, "status": "done", "revision": 2,
                                                        "counts": {"in": 3, "out": 2, "failed": 1},
                                                        "seconds": 1.5, "usage": {"calls": 4}})
    atomic_write_json(f.dir("nums") / "metrics.json", {"acc": 0.5})
    d = decide(f, "nums", retry_failed=False, limit=1)
    assert d.cached is not None and not d.in_place
    assert (d.cached.status, d.cached.fingerprint, d.cached.dir) == ("cached", fp, f.dir("nums"))
    assert (d.cached.counts["failed"], d.cached.seconds, d.cached.usage, d.cached.metrics) == \
        (1, 1.5, {"calls": 4}, {"acc": 0.5})
    assert decide(f, "nums", retry_failed=False, limit=0.34).cached is not None  # 1 of 3 is within 34 %
    # --retry-failed asks for failures within the limit too
    d = decide(f, "nums", retry_failed=True, limit=1)
    assert d.cached is None and d.in_place and d.revision == 3


def test_decide_runs_failed_records_again_when_beyond_the_limit(tmp_path):
    f = folders(tmp_path)
    atomic_write_json(f.dir("nums") / "manifest.json", {"fingerprint": f.fingerprint("nums"), "status": "done",
                                                        "counts": {"in": 3, "out": 2, "failed": 1}})
    for limit in (0, 0.3):
        d = decide(f, "nums", retry_failed=False, limit=limit)
        assert d.cached is None and d.in_place and d.revision == 1
        assert d.note == "stage nums: trying its 1 failed record(s) again (records that succeeded are kept)"


def test_decide_runs_again_a_done_folder_whose_files_changed(tmp_path):
    from runner.store import file_sums

    f = folders(tmp_path)
    sdir = f.dir("nums")
    sdir.mkdir(parents=True)
    write(sdir / "records.jsonl", '{"id": "r0"}\n{"id": "r1"}\n')
    m = {"fingerprint": f.fingerprint("nums"), "status": "done", "counts": {"in": 0, "out": 2, "failed": 0},
         "files": file_sums(sdir)}
    atomic_write_json(sdir / "manifest.json", m)
    assert m["files"]["records.jsonl"]["lines"] == 2
    assert decide(f, "nums", retry_failed=False).cached is not None
    write(sdir / "records.jsonl", '{"id": "r0"}\n')  # lost its last line
    d = decide(f, "nums", retry_failed=False)
    assert d.cached is None and not d.in_place and d.revision == 0
    assert d.note.startswith(f"stage nums: {sdir / 'records.jsonl'} has 13 bytes, but the stage wrote 26")
    write(sdir / "records.jsonl", '{"id": "r0"}\n{"id": "r9"}\n')  # same size, other content
    assert "changed since the stage wrote it" in decide(f, "nums", retry_failed=False).note
    (sdir / "records.jsonl").unlink()
    assert "records.jsonl is missing" in decide(f, "nums", retry_failed=False).note


def test_decide_runs_again_a_folder_left_running_or_failed(tmp_path):
    f = folders(tmp_path)
    for status in ("running", "failed"):
        atomic_write_json(f.dir("nums") / "manifest.json", {"fingerprint": f.fingerprint("nums"), "status": status})
        d = decide(f, "nums", retry_failed=True)
        assert d.cached is None and not d.in_place and d.revision == 0
