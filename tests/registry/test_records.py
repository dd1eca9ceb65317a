"""registry.records: records files read lazily, written as they come, linked when only read."""

from __future__ import annotations

import os

import pytest

from registry.records import Records, RecordWriter, link_records, write_records


def test_reading_skips_blank_lines_and_checks_every_line(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"id": 1, "x": NaN}\n\n  \n{"id": 2}\r\n{"id": 3}')  # NaN: as the json module writes it
    recs = Records(f)
    assert [r["id"] for r in recs] == [1, 2, 3] and len(recs) == 3
    assert [r["id"] for r in Records(f, limit=2)] == [1, 2]
    assert [len(b) for b in recs.batches(2)] == [2, 1]
    with pytest.raises(ValueError, match=r"a\.jsonl:4: record lacks required field\(s\) x"):
        list(Records(f, fields=["x"]))
    f.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: expected a JSON object, got list"):
        list(Records(f))
    f.write_bytes(b'{"id": 1}\n{"id": "\xff"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: not UTF-8 text"):
        list(Records(f))


def test_records_by_position_read_each_line_when_asked(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"id": 0}\n\n{"id": 1}\n{"id": 2}\n')
    with Records(f).by_position() as at:
        assert len(at) == 3 and [at[i]["id"] for i in (2, 0, 1)] == [2, 0, 1]
    with Records(f, limit=2).by_position() as at:
        assert len(at) == 2


def test_a_writer_that_fails_leaves_neither_the_file_nor_its_temp(tmp_path):
    def gen():
        yield {"id": 1}
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        write_records(tmp_path / "out.jsonl", gen())
    assert list(tmp_path.iterdir()) == []
    with RecordWriter(tmp_path / "out.jsonl") as w:
        w.write({"big": 2**70, "t": ("a", 1)})  # beyond orjson: written by the standard library
    assert list(Records(tmp_path / "out.jsonl")) == [{"big": 2**70, "t": ["a", 1]}]


def test_a_linked_file_is_the_same_file_unless_it_holds_a_secret(tmp_path, monkeypatch):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"id": i, "text": "plain"} for i in range(3)])
    assert link_records(Records(src), tmp_path / "linked.jsonl") == 3
    assert os.path.samefile(src, tmp_path / "linked.jsonl")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-1234567890")
    src.write_text('{"id": 0, "text": "key tok-1234567890 here"}\n')
    assert link_records(Records(src), tmp_path / "masked.jsonl") == 1
    assert not os.path.samefile(src, tmp_path / "masked.jsonl")
    assert list(Records(tmp_path / "masked.jsonl")) == [{"id": 0, "text": "key *** here"}]
    write_records(tmp_path / "w.jsonl", [{"k": "tok-1234567890"}])
    assert b"tok-1234567890" not in (tmp_path / "w.jsonl").read_bytes()
