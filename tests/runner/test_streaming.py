"""Records stream through stages: memory does not grow with their number, a load stage links its input
instead of copying it, a streaming stage's records are written as they are made."""

from __future__ import annotations

import json
import os
import tracemalloc

from helpers import write

from registry.records import Records
from runner.load import load_recipe
from runner.session import run_recipe

PIPELINE = """\
recipe: stream
stages:
  load: {{type: load.jsonl, params: {{path: {src}}}}}
  keep:
    type: select.filter
    inputs: {{records: load}}
    params: {{where: [{{field: score, op: ge, value: 5}}]}}
  export:
    type: export.jsonl
    inputs: {{records: keep}}
    params: {{path: {out}}}
"""


def make_input(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "score": i % 10, "text": f"{i} " + "y" * 1000}) + "\n")
    return path


def stage_dir(root, stage):
    [d] = (root / "stages" / stage).iterdir()
    return d


def counts(sdir):
    return json.loads((sdir / "manifest.json").read_text())["counts"]


MAPPED = PIPELINE.replace("inputs: {{records: keep}}", "inputs: {{records: stamp}}") + """\
  stamp: {{type: demo_components:Stamp, inputs: {{records: keep}}, batch_size: 16}}
"""


def peak_of_run(tmp_path, n, recipe=PIPELINE):
    """Peak Python memory (tracemalloc) of one in-process run of ``recipe`` over ``n`` records."""
    d = tmp_path / str(n)
    d.mkdir()
    src = make_input(d / "in.jsonl", n)
    loaded = load_recipe(write(d / "r.yaml", recipe.format(src=src, out=d / "out.jsonl")))
    tracemalloc.start()
    try:
        run_recipe(loaded, d / "runs", progress=False, publish=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with open(d / "out.jsonl") as f:
        assert sum(1 for _ in f) == n // 2  # scores 5..9 of every ten
    return peak


def test_peak_memory_of_load_filter_export_does_not_grow_with_the_records(tmp_path):
    peak_of_run(tmp_path, 200)  # imports and first-use caches, out of the way
    small = peak_of_run(tmp_path, 3000)  # 3 MB of records
    large = peak_of_run(tmp_path, 12000)  # 12 MB: holding them (as dicts) would add well over 9 MB
    assert large - small < 1.5 * 2**20, (small, large)


def test_a_map_stage_holds_keys_and_an_index_not_its_records(tmp_path):
    peak_of_run(tmp_path, 200, MAPPED)
    small = peak_of_run(tmp_path, 3000, MAPPED)
    large = peak_of_run(tmp_path, 12000, MAPPED)  # 4500 more records through the map stage: about 5 MB
    assert large - small < 2 * 2**20, (small, large)


def test_a_load_stage_links_its_input_and_is_reused_until_the_input_changes(tmp_path):
    src = make_input(tmp_path / "in.jsonl", 20)
    p = write(tmp_path / "r.yaml", PIPELINE.format(src=src, out=tmp_path / "out.jsonl"))
    run_recipe(load_recipe(p), tmp_path / "runs", progress=False, publish=False)
    root = tmp_path / "runs" / "stream"
    load = stage_dir(root, "load")
    assert os.path.samefile(load / "records.jsonl", src), "the input is linked, not copied"
    manifest = json.loads((load / "manifest.json").read_text())
    assert manifest["counts"]["out"] == 20 and manifest["files"]["records.jsonl"]["lines"] == 20
    # the export stage passes its input on: its records are the filter's file, linked
    assert os.path.samefile(stage_dir(root, "export") / "records.jsonl", stage_dir(root, "keep") / "records.jsonl")
    assert [r["id"] for r in Records(tmp_path / "out.jsonl")] == [f"r{i}" for i in range(20) if i % 10 >= 5]

    out = run_recipe(load_recipe(p), tmp_path / "runs", progress=False, publish=False)
    assert "0 stage(s) ran, 3 cached" in out.text
    with open(src, "a") as f:  # a new record: the load stage and everything after it run again
        f.write(json.dumps({"id": "r20", "score": 9, "text": "new"}) + "\n")
    out = run_recipe(load_recipe(p), tmp_path / "runs", progress=False, publish=False)
    assert "3 stage(s) ran, 0 cached" in out.text
    assert [r["id"] for r in Records(tmp_path / "out.jsonl")][-1] == "r20"


def test_a_streaming_stage_is_written_as_it_yields_and_others_still_get_lists(tmp_path):
    p = write(tmp_path / "r.yaml", """\
recipe: gush
stages:
  gush: {type: demo_components:Gush, params: {n: 3000}}
  listed: {type: demo_components:Kinds, inputs: {records: gush}}
  streamed: {type: select.filter, inputs: {records: gush}}
""")
    run_recipe(load_recipe(p), tmp_path / "runs", progress=False, publish=False)
    root = tmp_path / "runs" / "gush"
    gush = stage_dir(root, "gush")
    # 3 MB made one record at a time: most of it was on disk before the last record was handed over
    assert json.loads((gush / "stats" / "written_before_the_end.json").read_text())["bytes"] > 2**20
    assert counts(gush)["out"] == 3000 and len(Records(gush / "records.jsonl")) == 3000
    kinds = json.loads((stage_dir(root, "listed") / "stats" / "kinds.json").read_text())
    assert kinds == {"records": "list"}, "a component that does not stream gets lists, as before"
    assert counts(stage_dir(root, "streamed")) == {"in": 3000, "out": 3000, "failed": 0}
