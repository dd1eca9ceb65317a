"""Running recipes: caching, reuse after edits, failures ledger, call journal, lockfile, report, secrets."""

from __future__ import annotations

import json

import pytest
from helpers import CountingLLM, write

from registry.jsonio import read_jsonl
from runner.load import load_recipe
from runner.session import run_recipe

RECIPE = """\
recipe: demo
seed: 3
max_failed: 1  # the one record that fails on purpose is accepted
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
    params: {fail_on: "number 2"}
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


def run(tmp_path, text=RECIPE, overrides=(), **kw):
    p = write(tmp_path / "r.yaml", text)
    loaded = load_recipe(p, overrides=list(overrides))
    run_recipe(loaded, tmp_path / "runs", progress=False, **kw)
    return tmp_path / "runs" / "demo"


def stage_dir(root, stage):
    return root / json.loads((root / "latest.json").read_text())["stages"][stage]


def test_run_writes_records_failures_manifest_report_lock(tmp_path, llm):
    root = run(tmp_path)
    ask = stage_dir(root, "ask")
    recs = read_jsonl(ask / "records.jsonl")
    assert [r["id"] for r in recs] == ["r0", "r1", "r3", "r4"]
    assert recs[0]["answer"] == "echo: Say something about: number 0"
    fails = read_jsonl(ask / "failures.jsonl")
    assert len(fails) == 1 and fails[0]["record_id"] == "r2" and fails[0]["error"] == "unparsable answer"
    assert fails[0]["raw"] == "echo: Say something about: number 2"
    # 5 records + 2 retries of the failing one (retries=2 by default), the retries are fresh calls
    assert llm.generated == 7
    m = json.loads((ask / "manifest.json").read_text())
    assert m["status"] == "done" and m["counts"] == {"in": 5, "out": 4, "failed": 1, "dropped": 0}
    assert m["usage"]["calls"] == 7 and abs(m["usage"]["cost_usd"] - 0.007) < 1e-9
    report = (root / "report.md").read_text()
    assert "| ask | `demo_components:Ask` | ran | 5 | 4 | 1 |" in report
    assert "record `r2`: unparsable answer" in report
    lock = (root / "recipe.lock.yaml").read_text()
    assert "fail_on: number 2" in lock and "max_new_tokens: 8" in lock  # defaults filled in
    assert "fingerprints:" in lock and "packages:" in lock


def test_second_run_is_cached_and_edit_reruns_only_downstream(tmp_path, llm):
    root = run(tmp_path)
    log = tmp_path / "count.log"
    assert len(log.read_text().splitlines()) == 1
    n = llm.generated
    run(tmp_path)
    assert llm.generated == n, "a cached run calls no model"
    assert len(log.read_text().splitlines()) == 1
    # changing the last stage reruns it alone
    run(tmp_path, RECIPE.replace("log_file: count.log}", "log_file: count.log, tag: x}"))
    assert llm.generated == n
    assert len(log.read_text().splitlines()) == 2
    # changing a middle stage reruns it and what depends on it
    run(tmp_path, overrides=["stages.ask.params.max_new_tokens=9"])
    assert llm.generated == n + 7
    assert len(log.read_text().splitlines()) == 3
    assert (root / "report.md").exists()


def test_lockfile_reproduces_from_cache(tmp_path, llm):
    root = run(tmp_path)
    n = llm.generated
    loaded = load_recipe(root / "recipe.lock.yaml")
    assert loaded.components["count"].params.log_file == str(tmp_path / "count.log")
    run_recipe(loaded, tmp_path / "runs", progress=False)
    assert llm.generated == n  # same fingerprints → everything served from cache


def test_exception_in_batch_retries_records_alone(tmp_path, llm):
    text = RECIPE.replace("demo_components:Ask", "demo_components:Explode").replace("    model: gen\n", "") \
        .replace('    params: {fail_on: "number 2"}\n', "")
    root = run(tmp_path, text)
    recs = read_jsonl(stage_dir(root, "ask") / "records.jsonl")
    fails = read_jsonl(stage_dir(root, "ask") / "failures.jsonl")
    # batches of 8: the whole batch raised, each record was retried alone; only r3 fails for good
    assert [r["id"] for r in recs] == ["r0", "r1", "r2", "r4"]
    assert [f["record_id"] for f in fails] == ["r3"] and "cannot handle 3" in fails[0]["error"]


def test_call_journal_replays_paid_calls(tmp_path, llm):
    """A stage rerun after a crash (its WAL lost) gets its completed calls back from the journal."""
    root = run(tmp_path)
    ask = stage_dir(root, "ask")
    n = llm.generated
    (ask / "wal.jsonl").unlink()
    (ask / "manifest.json").unlink()
    run(tmp_path)
    assert llm.generated == n, "no call is paid twice"
    m = json.loads((ask / "manifest.json").read_text())
    assert m["usage"]["calls"] == 0 and m["usage"]["cached_calls"] == 7
    assert [r["id"] for r in read_jsonl(ask / "records.jsonl")] == ["r0", "r1", "r3", "r4"]


def test_retry_failed_processes_the_ledger_again(tmp_path, llm):
    root = run(tmp_path)
    ask = stage_dir(root, "ask")
    n = llm.generated
    run(tmp_path, retry_failed=True)
    assert llm.generated == n + 3  # only r2 again, asked afresh: one try + 2 retries, none replayed
    assert len(read_jsonl(ask / "failures.jsonl")) == 1
    assert json.loads((ask / "manifest.json").read_text())["revision"] == 1
    assert len((tmp_path / "count.log").read_text().splitlines()) == 2, "downstream reran on the new input"
    # downstream moved to a new folder (its input changed in place), and a plain rerun is fully cached
    n = llm.generated
    run(tmp_path)
    assert llm.generated == n and len((tmp_path / "count.log").read_text().splitlines()) == 2


def test_secrets_never_reach_run_files(tmp_path, llm, monkeypatch):
    secret = "sk-planted-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("HF_TOKEN", "hf_planted_987654321")
    root = run(tmp_path, RECIPE.replace('"number 2"', f'"{secret}"'))
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_text(errors="ignore")
            assert secret not in data, f
            assert "hf_planted_987654321" not in data, f


def test_shards_split_a_map_stage_and_an_unsharded_run_merges_them(tmp_path, llm):
    text = RECIPE.replace('    params: {fail_on: "number 2"}\n', "")
    p = write(tmp_path / "r.yaml", text)
    run_recipe(load_recipe(p), tmp_path / "runs", progress=False, stages=["nums"])
    for i in range(2):
        msg = run_recipe(load_recipe(p), tmp_path / "runs", progress=False, stages=["ask"], shard=(i, 2))
        assert f"shard {i}/2 done" in str(msg)
    ask = stage_dir(tmp_path / "runs" / "demo", "ask")
    # batch_size 2 over 5 records: batches [r0 r1] [r2 r3] [r4]; shard 0 takes batches 0 and 2
    shard0 = [json.loads(x) for x in (ask / "wal.shard0of2.jsonl").read_text().splitlines()]
    assert [sorted(e["items"]) for e in shard0] == [["r0", "r1"], ["r4"]]
    assert not (ask / "records.jsonl").exists()
    assert llm.generated == 5
    run(tmp_path, text)  # unsharded: merges both shards' logs, runs nothing again, finishes downstream too
    assert llm.generated == 5
    assert [r["id"] for r in read_jsonl(ask / "records.jsonl")] == ["r0", "r1", "r2", "r3", "r4"]


def test_shard_refuses_unfinished_upstream(tmp_path, llm):
    from runner.errors import StageFailure

    p = write(tmp_path / "r.yaml", RECIPE)
    with pytest.raises(StageFailure, match="run the upstream stages first"):
        run_recipe(load_recipe(p), tmp_path / "runs", progress=False, stages=["ask"], shard=(0, 2))


def test_concurrent_batches_journal_each_answer_under_its_own_request(tmp_path, monkeypatch):
    from helpers import PerCallLLM

    fake = PerCallLLM()
    monkeypatch.setattr("runner.models.ModelManager.llm", lambda self, b: fake)
    text = RECIPE.replace("params: {n: 5}", "params: {n: 24}").replace(
        '    params: {fail_on: "number 2"}\n', "    concurrency: 4\n")
    root = run(tmp_path, text)
    ask = stage_dir(root, "ask")
    assert fake.generated == 24
    (ask / "wal.jsonl").unlink()  # lose the write-ahead log: every answer must come back from the journal
    (ask / "manifest.json").unlink()
    run(tmp_path, text)
    assert fake.generated == 24
    recs = read_jsonl(ask / "records.jsonl")
    assert [r["id"] for r in recs] == [f"r{i}" for i in range(24)]
    assert all(r["answer"] == f"echo: Say something about: number {r['id'][1:]}" for r in recs)
