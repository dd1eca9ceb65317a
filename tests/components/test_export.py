"""export.jsonl: the file written, projection, default location, records passed on unchanged."""

from __future__ import annotations

import json

import pytest

from components.exporters.jsonl import ExportJsonl
from tests.fakes import FakeCtx

RECORDS = [{"id": 1, "query": "q1", "answer": "é", "extra": [1]}, {"id": 2, "query": "q2", "answer": "b", "extra": []}]


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(tmp_path, records, **params):
    comp = ExportJsonl(ExportJsonl.Params(**params))
    ctx = FakeCtx(comp.params, tmp=tmp_path)
    return comp, ctx, comp.run({"records": records}, ctx)


def test_writes_records_and_passes_them_on(tmp_path):
    target = tmp_path / "out" / "sub" / "data.jsonl"
    comp, ctx, out = run(tmp_path, RECORDS, path=str(target))
    assert out == RECORDS
    assert read(target) == RECORDS
    assert "é" in target.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert comp.summarize(out, ctx) == {"path": str(target), "records": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.jsonl"]  # no temp file left


def test_fields_project_in_the_given_order(tmp_path):
    target = tmp_path / "p.jsonl"
    _, _, out = run(tmp_path, RECORDS, path=str(target), fields=["answer", "id"])
    assert out == RECORDS
    assert [list(r.items()) for r in read(target)] == [[("answer", "é"), ("id", 1)], [("answer", "b"), ("id", 2)]]


def test_default_path_is_in_the_stage_folder(tmp_path):
    _, ctx, _ = run(tmp_path, RECORDS)
    assert read(ctx.artifact_dir / "export.jsonl") == RECORDS


def test_replaces_an_existing_file(tmp_path):
    target = tmp_path / "x.jsonl"
    target.write_text("old line\n" * 10, encoding="utf-8")
    run(tmp_path, RECORDS[:1], path=str(target))
    assert read(target) == RECORDS[:1]


def test_missing_projected_field_names_the_record(tmp_path):
    target = tmp_path / "x.jsonl"
    with pytest.raises(ValueError, match=r"record 1 \(id 2\) lacks field\(s\) score"):
        run(tmp_path, [{"id": 1, "score": 3}, {"id": 2}], path=str(target), fields=["score"])
    assert not target.exists()
