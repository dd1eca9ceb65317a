"""Failed records fail the run: the limit (max_failed), later stages held back, plain re-runs trying the
failed records again, models that cannot load, empty and duplicate inputs."""

from __future__ import annotations

import json

import pytest
from helpers import CountingLLM, write

from registry.jsonio import read_jsonl
from runner.errors import StageFailure
from runner.load import load_recipe
from runner.session import run_recipe

RECIPE = """\
recipe: demo
seed: 3
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
    params: {fail_while: FAIL_WHILE}
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


def run(tmp_path, text, overrides=(), **kw):
    p = write(tmp_path / "r.yaml", text.replace("FAIL_WHILE", str(tmp_path / "down")))
    return run_recipe(load_recipe(p, overrides=list(overrides)), tmp_path / "runs", progress=False, **kw)


def stage_dir(tmp_path, stage):
    root = tmp_path / "runs" / "demo"
    return root / json.loads((root / "latest.json").read_text())["stages"][stage]


def counted(tmp_path) -> int:
    log = tmp_path / "count.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_failures_beyond_the_limit_exit_3_hold_later_stages_and_a_plain_rerun_retries_them(tmp_path, llm):
    (tmp_path / "down").touch()
    out = run(tmp_path, RECIPE)
    ask = stage_dir(tmp_path, "ask")
    assert out.exit_code == 3 and "finished with failed records" in out.text
    assert out.details[0] == (f"stage ask: 5 of 5 records failed (over its limit of 0); ledger: "
                              f"{ask / 'failures.jsonl'}")
    assert out.details[1] == "  5× the service is down"
    assert out.details[2] == "not run, waiting for the failed records above: count"
    assert llm.generated == 15  # 5 records, each tried 1 + 2 times
    assert counted(tmp_path) == 0, "a stage after one with too many failures does not run on partial data"
    report = (tmp_path / "runs" / "demo" / "report.md").read_text()
    assert "## Failed records" in report and "- stage ask: 5 of 5 records failed (over its limit of 0)" in report
    assert "  - 5× the service is down" in report and "| count | `demo_components:CountRuns` | waiting |" in report
    page = (tmp_path / "runs" / "demo" / "report.html").read_text()
    assert "<td>count</td><td>demo_components:CountRuns</td><td>waiting</td>" in page
    assert "<h3>ask: 5 failed</h3>" in page and page.count("the service is down</summary>") == 5

    (tmp_path / "down").unlink()  # the service is back
    out = run(tmp_path, RECIPE)
    assert out.exit_code == 0 and out.failures == [] and out.text.startswith("[bold green]done")
    assert out.details == [f"report: {tmp_path / 'runs' / 'demo' / 'report.html'} (and report.md)"]
    assert llm.generated == 20, "a plain re-run asks again for the 5 failed records, once each"
    assert [r["id"] for r in read_jsonl(ask / "records.jsonl")] == [f"r{i}" for i in range(5)]
    assert read_jsonl(ask / "failures.jsonl") == []
    assert json.loads((ask / "manifest.json").read_text())["revision"] == 1
    assert counted(tmp_path) == 1

    out = run(tmp_path, RECIPE)
    assert out.exit_code == 0 and llm.generated == 20 and counted(tmp_path) == 1  # all cached


def test_only_the_failed_records_are_asked_again_and_max_failed_accepts_them(tmp_path, llm):
    text = RECIPE.replace("{fail_while: FAIL_WHILE}", '{fail_on: "number 2"}')
    assert run(tmp_path, text).exit_code == 3
    assert llm.generated == 7  # r0..r4 once, r2 twice more
    assert run(tmp_path, text).exit_code == 3
    assert llm.generated == 10, "only r2 is asked again (1 + 2 retries), the 4 records that succeeded are kept"
    assert counted(tmp_path) == 0
    # accepting the failure: the limit is not part of the fingerprint, the stage is reused as it is
    out = run(tmp_path, text, ["max_failed=1"])
    assert out.exit_code == 0 and llm.generated == 10 and counted(tmp_path) == 1
    assert out.details[0].startswith("stage ask: 1 of 5 records failed (within its limit of 1)")
    out = run(tmp_path, text, ["stages.ask.max_failed=0.2"])  # a fraction: 1 of 5 is 20 %
    assert out.exit_code == 0 and llm.generated == 10
    # --retry-failed also tries the failures a limit accepts
    out = run(tmp_path, text, ["max_failed=1"], retry_failed=True)
    assert out.exit_code == 0 and llm.generated == 13


def test_max_failed_must_be_a_count_or_a_fraction(tmp_path):
    from runner.errors import RecipeError

    p = write(tmp_path / "r.yaml", RECIPE.replace("seed: 3", "seed: 3\nmax_failed: 1.5"))
    with pytest.raises(RecipeError, match=r"r\.yaml:3:13: max_failed: value error, a fraction of the input "
                                          r"records lies between 0\.0 and 1\.0"):
        load_recipe(p)


class Unloadable(CountingLLM):
    def load(self) -> None:
        raise OSError("/models/x holds no model weights")


def test_a_model_that_cannot_load_fails_the_stage_before_any_record(tmp_path, monkeypatch):
    fake = Unloadable()
    monkeypatch.setattr("runner.models.ModelManager.llm", lambda self, b: fake)
    with pytest.raises(StageFailure, match=r"stage 'ask': model 'tiny-random-llama' \(slot 'llm'\) cannot be "
                                           r"loaded: OSError: /models/x holds no model weights"):
        run(tmp_path, RECIPE)
    ask = stage_dir(tmp_path, "ask")
    assert fake.generated == 0
    assert not (ask / "wal.jsonl").exists() and not (ask / "failures.jsonl").exists()
    assert json.loads((ask / "manifest.json").read_text())["status"] == "failed"


def test_an_empty_input_stops_the_stage_unless_the_recipe_allows_it(tmp_path, llm):
    text = RECIPE.replace("params: {n: 5}", "params: {n: 0}")
    with pytest.raises(StageFailure, match=r"stage 'ask': its input 'records' \(stage 'nums'\) has no records, "
                                           r"so there is nothing to do; if that is expected, set `allow_empty: "
                                           r"true` on stage 'ask'"):
        run(tmp_path, text)
    text = text.replace("    model: gen\n", "    model: gen\n    allow_empty: true\n")
    text = text.replace("params: {log_file: count.log}", "params: {log_file: count.log}\n    allow_empty: true")
    assert run(tmp_path, text).exit_code == 0
    assert read_jsonl(stage_dir(tmp_path, "ask") / "records.jsonl") == [] and llm.generated == 0


def test_duplicate_ids_in_an_input_stop_the_stage_naming_both(tmp_path, llm):
    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "c", "text": "z"}, {"id": "b", "text": "w"}]
    write(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    text = RECIPE.replace("type: demo_components:Numbers\n    params: {n: 5}",
                          f"type: load.jsonl\n    params: {{path: {tmp_path / 'in.jsonl'}}}")
    with pytest.raises(StageFailure, match=r"stage 'ask': records #2 and #4 of the input both have id 'b'"):
        run(tmp_path, text)
    assert llm.generated == 0


def test_plan_shows_a_stage_beyond_its_limit_as_running_again(tmp_path, llm):
    from runner.folders import StageFolders
    from runner.plan import make_plan

    text = RECIPE.replace("{fail_while: FAIL_WHILE}", '{fail_on: "number 2"}')
    run(tmp_path, text)
    p = tmp_path / "r.yaml"

    def status(overrides):
        rows = make_plan(StageFolders.open(load_recipe(p, overrides=overrides), tmp_path / "runs"))
        return {r.stage: r.status for r in rows}

    assert status([]) == {"nums": "cached", "ask": "run", "count": "run"}
    assert status(["max_failed=1"]) == {"nums": "cached", "ask": "cached", "count": "run"}


def test_a_shard_does_not_retry_failed_records(tmp_path, llm):
    text = RECIPE.replace("{fail_while: FAIL_WHILE}", '{fail_on: "number 2"}')
    run(tmp_path, text)
    with pytest.raises(StageFailure, match="stage 'ask': it finished with failed records; a run without --shard "
                                           "tries them again"):
        run(tmp_path, text, stages=["ask"], shard=(0, 2))
