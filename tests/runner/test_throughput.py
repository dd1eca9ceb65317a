"""API stages at the endpoint's speed, counted at local endpoints: a stage keeps its model's
``concurrency`` requests in flight over its whole input, independent stages run side by side, a map
stage downstream of a running map stage starts on its finished records, and every prompt is sent once.
(Timings are in bench/openai_throughput.py; these tests count requests.)"""

from __future__ import annotations

import json

import pytest
from endpoint import api_model, endpoints
from helpers import write

from registry.jsonio import read_jsonl
from runner.backends.base import BudgetExceeded
from runner.load import load_recipe
from runner.session import run_recipe


def recipe(models: dict[str, str], stages: dict[str, str], n: int) -> str:
    lines = ["recipe: demo", "models:"] + [f"  {k}: {v}" for k, v in models.items()]
    lines += ["stages:", f"  nums: {{type: demo_components:Numbers, params: {{n: {n}}}}}"]
    return "\n".join(lines + [f"  {k}: {v}" for k, v in stages.items()]) + "\n"


def ask(inputs: str, role: str, template: str = "{text}", field: str = "response") -> str:
    """A generate.chat stage with no batch size (the component's default, 8)."""
    return (f'{{type: generate.chat, inputs: {{records: {inputs}}}, model: {role}, '
            f'params: {{template: "{template}", output_field: {field}, max_new_tokens: 8}}}}')


def run(tmp_path, text: str, **kw):
    loaded = load_recipe(write(tmp_path / "r.yaml", text))
    run.outcome = run_recipe(loaded, tmp_path / "runs", progress=False, publish=False, **kw)
    return tmp_path / "runs" / "demo"


def records(root, stage: str) -> list[dict]:
    latest = json.loads((root / "latest.json").read_text())["stages"]
    return read_jsonl(root / latest[stage] / "records.jsonl")


def manifest(root, stage: str) -> dict:
    latest = json.loads((root / "latest.json").read_text())["stages"]
    return json.loads((root / latest[stage] / "manifest.json").read_text())


def test_a_stage_keeps_concurrency_requests_in_flight_across_batches(tmp_path):
    # the README's pattern: concurrency on the model, no batch size (8 per batch): 32 in flight, not 8
    with endpoints(1, latency=0.1) as (counts, urls):
        root = run(tmp_path, recipe({"a": api_model(urls[0], 32)}, {"ask": ask("nums", "a")}, 128))
    assert counts.peak == 32
    assert counts.total == 128 and counts.twice() == []
    assert [r["id"] for r in records(root, "ask")] == [f"r{i}" for i in range(128)], "in input order"
    assert all(r["response"] == f"echo number {r['id'][1:]}" for r in records(root, "ask"))


def test_concurrency_one_sends_one_request_at_a_time(tmp_path):
    with endpoints(1, latency=0.01) as (counts, urls):
        run(tmp_path, recipe({"a": api_model(urls[0], 1)}, {"ask": ask("nums", "a")}, 12))
    assert counts.peak == 1 and counts.total == 12 and counts.twice() == []


def test_retries_and_retry_after_waits_keep_their_slot(tmp_path):
    refusals = {f"number {i}": 2 for i in range(0, 40, 3)}  # 14 prompts refused twice each
    with endpoints(1, latency=0.1, refusals=refusals) as (counts, urls):
        root = run(tmp_path, recipe({"a": api_model(urls[0], 8)}, {"ask": ask("nums", "a")}, 40))
    assert counts.peak == 8, "never more than the window, waits included"
    assert counts.refused == 28 and counts.total == 40 and counts.twice() == []
    assert [r["id"] for r in records(root, "ask")] == [f"r{i}" for i in range(40)]


def test_independent_stages_run_side_by_side(tmp_path):
    models = {"a": api_model("{0}", 16), "b": api_model("{1}", 16)}
    stages = {"left": ask("nums", "a"), "right": ask("nums", "b")}
    with endpoints(2, latency=0.1) as (counts, urls):
        root = run(tmp_path, recipe(models, stages, 64).replace("{0}", urls[0]).replace("{1}", urls[1]))
    assert counts.peak == 32, "both stages' windows full at once"
    assert counts.total == 128 and counts.twice() == []
    for s in ("left", "right"):
        assert [r["id"] for r in records(root, s)] == [f"r{i}" for i in range(64)]


def test_jobs_1_runs_one_stage_at_a_time(tmp_path):
    models = {"a": api_model("{0}", 16), "b": api_model("{1}", 16)}
    stages = {"left": ask("nums", "a"), "right": ask("nums", "b")}
    with endpoints(2, latency=0.1) as (counts, urls):
        run(tmp_path, recipe(models, stages, 48).replace("{0}", urls[0]).replace("{1}", urls[1]), jobs=1)
    assert counts.peak == 16 and counts.total == 96


def test_two_stages_on_one_model_share_its_window(tmp_path):
    stages = {"left": ask("nums", "a"), "right": ask("nums", "a", "again {text}")}
    with endpoints(1, latency=0.1) as (counts, urls):
        run(tmp_path, recipe({"a": api_model(urls[0], 16)}, stages, 64))
    assert counts.peak == 16, "one model, one window, whatever runs beside what"
    assert counts.total == 128 and counts.twice() == []


def test_a_chain_of_map_stages_is_pipelined(tmp_path):
    models = {"a": api_model("{0}", 16), "b": api_model("{1}", 16)}
    stages = {"first": ask("nums", "a"), "second": ask("first", "b", "{response}", "again")}
    with endpoints(2, latency=0.1) as (counts, urls):
        root = run(tmp_path, recipe(models, stages, 128).replace("{0}", urls[0]).replace("{1}", urls[1]))
    assert counts.peak > 16, "the second stage sent requests while the first still had some in flight"
    assert counts.total == 256 and counts.twice() == []
    out = records(root, "second")
    assert [r["id"] for r in out] == [f"r{i}" for i in range(128)]
    assert all(r["again"] == f"echo echo number {r['id'][1:]}" for r in out)
    assert manifest(root, "second")["counts"] == {"in": 128, "out": 128, "failed": 0, "dropped": 0}


def priced(url: str, concurrency: int, budget: float | None) -> str:
    """An endpoint at $1 per prompt token (each request costs $4), with an optional budget."""
    budget_opt = f", budget_usd: {budget}" if budget is not None else ""
    return (f'{{name: "openai://echo?base_url={url}&input_per_mtok=1000000", '
            f'options: {{concurrency: {concurrency}{budget_opt}}}}}')


@pytest.mark.parametrize("shape", ["side by side", "chain"])
def test_a_failure_stops_the_stages_running_beside_it_and_a_rerun_sends_nothing_twice(tmp_path, shape):
    with endpoints(2, latency=0.05) as (counts, urls):
        def text(budget):
            models = {"a": priced(urls[0], 4, budget), "b": api_model(urls[1], 4)}
            second = ask("nums", "b") if shape == "side by side" else ask("first", "b", "{response}", "again")
            return recipe(models, {"first": ask("nums", "a"), "second": second}, 48)

        with pytest.raises(BudgetExceeded):  # the first failure is the one raised, not the others' stop
            run(tmp_path, text(40))
        root = tmp_path / "runs" / "demo"
        assert manifest(root, "first")["status"] == "failed"
        assert manifest(root, "second")["status"] in ("failed", "done")
        if manifest(root, "second")["status"] == "failed":
            assert "stopped" in manifest(root, "second")["error"]
        sent_before = counts.total
        assert 0 < sent_before < 96
        run(tmp_path, text(None))
    assert counts.total == 96 and counts.twice() == [], "finished calls were journaled, none paid twice"
    assert [r["id"] for r in records(root, "second")] == [f"r{i}" for i in range(48)]


def test_jobs_flag_takes_a_whole_number_of_at_least_one(capsys):
    from runner.cli import build_parser

    assert build_parser().parse_args(["run", "r.yaml", "--jobs", "3"]).jobs == 3
    assert build_parser().parse_args(["run", "r.yaml"]).jobs is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "r.yaml", "--jobs", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_a_stage_over_its_max_failed_holds_the_stage_it_was_feeding(tmp_path):
    # "first" fails the 11 records whose text holds "number 1" (r1, r10..r19); "second" starts on its
    # finished records, then waits once "first" ends over its max_failed
    with endpoints(2, latency=0.05) as (counts, urls):
        def text(max_failed: int) -> str:
            models = {"a": api_model(urls[0], 4), "b": api_model(urls[1], 4)}
            stages = {"first": '{type: demo_components:Ask, inputs: {records: nums}, model: a, retries: 0, '
                               f'max_failed: {max_failed}, params: {{fail_on: "number 1"}}}}',
                      "second": ask("first", "b", "{answer}", "again")}
            return recipe(models, stages, 40)

        root = run(tmp_path, text(0))
        assert run.outcome.exit_code == 3 and "second" in str(run.outcome)  # not run: waits for "first"
        assert manifest(root, "first")["counts"]["failed"] == 11
        assert manifest(root, "second")["status"] == "failed"
        assert "more failed records than it allows" in manifest(root, "second")["error"]
        run(tmp_path, text(11))  # the failures are accepted now: "second" resumes where it stopped
    assert [r["id"] for r in records(root, "second")] == [f"r{i}" for i in (0, *range(2, 10), *range(20, 40))]
    assert counts.twice() == [], "what the stopped stage had done was kept, none of it paid twice"
    assert run.outcome.exit_code == 0
