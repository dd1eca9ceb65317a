"""report.html from a run folder written by hand: overview, failures, lockfile facts, report data sections,
self-containment, and `recipe report RUN [--open]`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from components.report_data import Example, Examples, Link, Pane, Plot, Series, Span, Table, section_list
from runner.cli import main
from runner.report_html import build_html, write_html_report
from runner.report_html.graph import depths
from runner.report_html.run_view import StageView, lock_facts

LOCK = """\
recipe: demo
description: a demo <run>
seed: 7
models:
  base: {name: tiny, backend: null, options: {}}
stages:
  docs: {type: load.jsonl, inputs: {}}
  sft: {type: train.sft, inputs: {train: docs}, model: base}
  eval: {type: judge.llm_score, inputs: {predictions: sft, extra: docs}}
  later: {type: judge.llm_score, inputs: {predictions: eval}}
lock:
  recipe_file: demo.yaml
  profile: tiny
  models:
    tiny: {source: "hf://org/tiny@abc", pin: null}
  python: 3.11.7
  torch: {version: 2.13.0+cpu, build: cpu}
  packages: {torch: 2.13.0+cpu, transformers: 5.24.0, numpy: 2.4.6}
"""


def write_stage(run: Path, name: str, *, status="done", seconds=1.5, usage=None, failures=(), data=None,
                markdown=None) -> None:
    rel = f"stages/{name}/fp{name}"
    sdir = run / rel
    sdir.mkdir(parents=True)
    (sdir / "manifest.json").write_text(json.dumps({
        "stage": name, "status": status, "counts": {"in": 4, "out": 3, "failed": len(failures)},
        "seconds": seconds, "usage": usage or {}}))
    (sdir / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures))
    if data is not None:
        (sdir / "report_data.json").write_text(json.dumps(data))
    if markdown is not None:
        (sdir / "report_section.md").write_text(markdown)
    latest = run / "latest.json"
    got = json.loads(latest.read_text()) if latest.exists() else {"stages": {}}
    got["stages"][name] = rel
    latest.write_text(json.dumps(got))


@pytest.fixture
def run(tmp_path) -> Path:
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "recipe.lock.yaml").write_text(LOCK)
    write_stage(run, "docs")
    loss = Plot(title="SFT: loss per step", chart="line", series=[Series(name="loss", x=[1, 2, 3], y=[3, 2, 1.5])])
    viewer = Examples(title="answers", filters={"uncited": "only uncited"}, examples=[Example(
        title="q1", fields={"f1": 0.5}, panes=[
            Pane(title="answer", spans=[Span(text="It is <b>blue</b>.", tags=["cited"],
                                             links=[Link(target="s1", label="[1-1] relevant", tag="good")]),
                                        Span(text="Trust me.", tags=["uncited"])]),
            Pane(title="context", sep="", spans=[Span(id="s0", number="0", text="Grass is green. "),
                                                 Span(id="s1", number="1", text="The sky is blue.")])])])
    write_stage(run, "sft", seconds=12.25, data=section_list([loss, Table(title="t", columns=["a"], rows=[[1]])]),
                markdown="Loss fell.\n\n![loss curve](loss.png)\n")
    write_stage(run, "eval", usage={"calls": 3, "cached_calls": 1, "prompt_tokens": 100, "completion_tokens": 20,
                                    "cost_usd": 0.25},
                failures=[{"record_id": "r9", "error": "no [[score]]", "raw": "I think <script>alert(1)</script>"}],
                data=section_list([viewer]))
    return run


def test_overview_names_every_stage_with_status_timing_counts_usage_and_failures(run):
    page = build_html(run, statuses={"docs": "cached", "sft": "ran", "eval": "ran"})
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\w.]+)</td><td>([\w ]+)</td>", page)
    assert rows == [("docs", "load.jsonl", "cached"), ("sft", "train.sft", "ran"), ("eval", "judge.llm_score", "ran"),
                    ("later", "judge.llm_score", "not run")]
    assert "<td>12.25</td>" in page and "<td>3 (+1 replayed)</td>" in page and "<td>120</td>" in page
    assert "Total API cost: $0.2500" in page
    # the failure's raw model text is shown, escaped: nothing in a record can run in the page
    assert "I think &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "a demo &lt;run&gt;" in page
    # the stage graph: one box per stage, an arrow per input
    graph = re.search(r'<svg class="graph".*?</svg>', page).group(0)
    assert graph.count("<rect") == 4 and graph.count("<line") == 4


def test_lockfile_facts_are_the_ones_a_reader_checks_first():
    import yaml

    facts = dict(lock_facts(yaml.safe_load(LOCK)))
    assert facts["profile"] == "tiny" and facts["seed"] == "7" and facts["recipe file"] == "demo.yaml"
    assert facts["model: base"] == "tiny (hf://org/tiny@abc)"
    assert facts["torch build"] == "2.13.0+cpu (cpu)"
    assert facts["packages"].startswith("torch 2.13.0+cpu, transformers 5.24.0 (3 in all")


def test_sections_are_rendered_and_the_page_loads_nothing_from_outside(run):
    page = build_html(run)
    # every plot is an inline SVG document
    images = re.findall(r'<img class="plot" alt="([^"]*)" src="data:image/svg\+xml;base64,([^"]+)">', page)
    assert [alt for alt, _ in images] == ["SFT: loss per step"]
    svg = base64.b64decode(images[0][1]).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "loss per step" in svg
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no URL outside the file
    assert "![loss curve]" not in page and "loss.png" not in page and "Loss fell." in page
    # the viewer: the statement links to the sentence it cites, with the verdict; text is escaped
    span = re.search(r'<span class="span item tag-cited"[^>]*>It is &lt;b&gt;blue&lt;/b&gt;.</span>', page).group(0)
    links = json.loads(re.search(r'data-links="([^"]*)"', span).group(1).replace("&quot;", '"'))
    assert links == [{"target": "s1", "label": "[1-1] relevant", "tag": "good"}]
    assert '<span class="span" data-sid="s1"><span class="num">1</span>The sky is blue.</span>' in page
    assert '<input type="checkbox" class="filter" value="uncited"> only uncited' in page


def test_a_damaged_report_data_file_is_named_not_fatal(run):
    (run / "stages/sft/fpsft/report_data.json").write_text(json.dumps([{"kind": "plot", "title": 3}]))
    page = build_html(run)
    assert "report_data.json does not have the report data shape" in page


def test_stage_columns_follow_the_longest_input_path():
    stages = [StageView(n, "t", ins, "done") for n, ins in
              [("a", []), ("b", ["a"]), ("c", ["a", "b"]), ("d", []), ("e", ["d", "c"])]]
    assert depths(stages) == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 3}


def test_recipe_report_writes_the_page_and_opens_it(run, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>") and opened == []
    assert main(["report", "demo", "--runs-dir", str(run.parent), "--open"]) == 0
    assert opened == [(run / "report.html").resolve().as_uri()]
    assert main(["report", str(run.parent / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_write_uses_the_statuses_of_the_last_run(run):
    (run / "last_run.json").write_text(json.dumps({"statuses": {"eval": "failed"}, "error": "boom",
                                                   "finished": "2026-01-02 03:04:05"}))
    page = write_html_report(run).read_text()
    assert "<td>eval</td><td>judge.llm_score</td><td>failed</td>" in page
    assert "<b>Stopped:</b> boom" in page and "last run finished 2026-01-02 03:04:05" in page


def test_refresh_computes_report_data_again_from_the_records(run, capsys):
    needle = run / "stages/needle/fpneedle"
    needle.mkdir(parents=True)
    (needle / "manifest.json").write_text(json.dumps({"status": "done", "params": {"method": "recall"}}))
    rows = [{"depth": 0.0, "length": 100, "score": 10.0, "recall": 1.0, "needle": "n", "prediction": "n"},
            {"depth": 0.0, "length": 100, "score": 2.0, "recall": 0.1, "needle": "n", "prediction": "x"}]
    (needle / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    latest = json.loads((run / "latest.json").read_text())
    latest["stages"]["needle"] = "stages/needle/fpneedle"
    (run / "latest.json").write_text(json.dumps(latest))
    lock = (run / "recipe.lock.yaml").read_text().replace(
        "lock:\n", "  needle: {type: judge.needle, inputs: {}}\n  odd: {type: no.such}\nlock:\n")
    (run / "recipe.lock.yaml").write_text(lock)
    write_stage(run, "odd")
    assert main(["report", str(run), "--refresh"]) == 0
    data = json.loads((needle / "report_data.json").read_text())
    heat = next(s for s in data if s["kind"] == "plot" and s["chart"] == "heatmap")
    assert heat["series"][0]["y"] == [6.0]  # (10 + 2) / 2
    assert "alt=\"needle: mean score per depth and length\"" in (run / "report.html").read_text()
    assert "odd: report data not refreshed (UnknownComponent" in capsys.readouterr().err
