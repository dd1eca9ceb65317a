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
