"""Low-level pieces: torn write-ahead log lines, atomic writes, YAML positions, secret masking."""

from __future__ import annotations

import json
import logging

from registry.atomic import atomic_write_json
from registry.secrets import RedactingFilter, redact
from registry.yamlpos import loads_yaml
from runner.store import AppendLog


def test_torn_last_line_is_cut_on_open(tmp_path):
    p = tmp_path / "wal.jsonl"
    p.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    log = AppendLog(p)
    assert list(log) == [{"a": 1}, {"b": 2}]
    log.append({"d": 4})
    assert [json.loads(x) for x in p.read_text().splitlines()] == [{"a": 1}, {"b": 2}, {"d": 4}]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"x": 1})
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 1}


def test_yaml_positions_of_keys_and_values():
    data, smap = loads_yaml("a: 1\nb:\n  c: [x, 2]\n", "f.yaml")
    assert data == {"a": 1, "b": {"c": ["x", 2]}}
    assert str(smap.values[("b", "c", 1)]) == "f.yaml:3:10"
    assert str(smap.keys[("b", "c")]) == "f.yaml:3:3"
    assert str(smap.find(("b", "c", 7))) == "f.yaml:3:6"  # closest known ancestor


def test_secret_values_are_masked(monkeypatch, caplog):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "abcdef123456")
    assert redact("key=abcdef123456!") == "key=***!"
    logger = logging.getLogger("t")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "token %s", ("abcdef123456",), None)
    handler.filter(rec)
    assert rec.getMessage() == "token ***"
    del logger


def test_a_damaged_line_in_the_middle_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    p = tmp_path / "calls.jsonl"
    p.write_text('{"a": 1}\n{"b": \n{"c": 3}\n{"d": 4}\n{"e": ')
    with caplog.at_level(logging.WARNING, logger="recipe.files"):
        log = AppendLog(p)
        assert list(log) == [{"a": 1}, {"c": 3}, {"d": 4}]  # every good entry after the damage is kept
    assert f"{p}:2: damaged line skipped" in caplog.text
    assert p.read_text() == '{"a": 1}\n{"b": \n{"c": 3}\n{"d": 4}\n', "only the torn tail is cut"
    from runner.store import read_complete_lines

    assert read_complete_lines(p) == [{"a": 1}, {"c": 3}, {"d": 4}]


def test_a_failed_append_is_undone_and_names_the_file_and_free_space(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    from runner.errors import RunFileError

    p = tmp_path / "wal.jsonl"
    log = AppendLog(p)
    log.append({"a": 1})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunFileError) as e:
        log.append({"b": 2})
    monkeypatch.setattr(os, "fsync", real_fsync)
    msg = str(e.value)
    assert msg.startswith(f"{p}: cannot write: No space left on device (") and "free on its disk" in msg
    assert p.read_text() == '{"a": 1}\n', "no half-written line is left for the next run"


def test_an_atomic_write_that_fails_names_its_file(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_json(tmp_path / "manifest.json", {"x": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "manifest.json")
    assert list(tmp_path.iterdir()) == []


def test_file_sums_cover_what_a_stage_wrote_not_its_logs(tmp_path):
    import hashlib

    from runner.store import check_files, file_sums

    (tmp_path / "records.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "s.json").write_text("[]")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"0" * 10)
    for skipped in ("wal.jsonl", "calls.jsonl", "calls.shard0of2.jsonl", "manifest.json"):
        (tmp_path / skipped).write_text("x")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "ckpt").write_text("x")
    sums = file_sums(tmp_path)
    assert sorted(sums) == ["metrics.json", "model/w.bin", "records.jsonl", "stats/s.json"]
    assert sums["records.jsonl"] == {"bytes": 20, "lines": 2,
                                     "sha256": hashlib.sha256(b'{"id": 1}\n{"id": 2}\n').hexdigest()}
    assert sums["model/w.bin"] == {"bytes": 10}  # weights by size only
    assert check_files(tmp_path, sums) is None
    (tmp_path / "wal.jsonl").write_text("grown")  # logs may grow: not checked
    assert check_files(tmp_path, sums) is None
    (tmp_path / "stats" / "s.json").write_text("{}")
    assert check_files(tmp_path, sums) == f"{tmp_path / 'stats' / 's.json'} changed since the stage wrote it " \
                                          "(its sha256 differs)"


def test_secret_env_names_widened_and_registered(monkeypatch):
    from registry.secrets import register_secret_env

    monkeypatch.setenv("MY_SERVICE_APIKEY", "apikey-value-1")
    monkeypatch.setenv("X-API-KEY", "dash-value-22")
    monkeypatch.setenv("CLOUD_ACCESS_KEY_ID", "akid-value-333")
    monkeypatch.setenv("SERVICE_AUTH", "auth-value-4444")
    monkeypatch.setenv("BOOK_AUTHOR", "Jane Austen")
    monkeypatch.setenv("PLAIN_NAME", "named-value-55555")
    text = "apikey-value-1 dash-value-22 akid-value-333 auth-value-4444 Jane Austen named-value-55555"
    assert redact(text) == "*** *** *** *** Jane Austen named-value-55555"
    register_secret_env("PLAIN_NAME")
    assert redact(text).endswith("Jane Austen ***")
