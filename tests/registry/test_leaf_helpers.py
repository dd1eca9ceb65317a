"""The leaf helpers every package uses: bounded JSON/JSONL reading, atomic writes, YAML merges."""

from __future__ import annotations

import gzip

import pytest

from registry.atomic import atomic_write_text
from registry.jsonio import read_json_records, read_jsonl
from registry.yamlpos import YamlSyntaxError, loads_yaml


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"in\.jsonl:2: not UTF-8"):
        read_jsonl(p)


def test_overlong_line_is_an_error_not_a_load(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text('{"a": 1}\n' + '{"a": "' + "x" * 5000 + '"}\n')
    from registry import jsonio

    with pytest.raises(ValueError, match=r"big\.jsonl:2: line longer than 1000 bytes"):
        list(jsonio.iter_lines(p, max_line_bytes=1000))


def test_limit_fields_and_gzip(tmp_path):
    p = tmp_path / "r.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write('{"id": 1, "t": "a"}\n\n{"id": 2, "t": "b"}\n{"id": 3}\n')
    assert read_jsonl(p, limit=2) == [{"id": 1, "t": "a"}, {"id": 2, "t": "b"}]
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz:4: record lacks required field\(s\) t \(has: id\)"):
        read_jsonl(p, fields=["t"])


def test_missing_file(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "none.jsonl")


def test_json_records_list_or_lines(tmp_path):
    a = tmp_path / "a.json"
    a.write_text('\n [{"x": 1},\n {"x": 2}]')
    b = tmp_path / "b.json"
    b.write_text('{"x": 1}\n{"x": 2}\n')
    assert read_json_records(a) == read_json_records(b) == [{"x": 1}, {"x": 2}]
    a.write_text('[{"x": 1},\n {"x": }]')
    with pytest.raises(ValueError, match=r"a\.json:2:8: not valid JSON"):
        read_json_records(a)


def test_atomic_write_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-1234567890")
    p = tmp_path / "log.txt"
    atomic_write_text(p, "sent tok-1234567890 to the endpoint")
    assert p.read_text() == "sent *** to the endpoint"
    assert [f.name for f in tmp_path.iterdir()] == ["log.txt"]  # no temp file left behind


def test_yaml_merge_keys_only_where_allowed():
    text = "base: &b {x: 1, y: 2}\nentry:\n  <<: *b\n  y: 3\n"
    data, smap = loads_yaml(text, "z.yaml", merge_keys=True)
    assert data["entry"] == {"y": 3, "x": 1}
    assert str(smap.find(("entry", "y"), key=True)) == "z.yaml:4:3"
    with pytest.raises(YamlSyntaxError, match="z.yaml:3:3: '<<' merge keys are not supported"):
        loads_yaml(text, "z.yaml")


def test_alias_bomb_is_a_located_error_not_a_memory_blowup(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert p.stat().st_size < 600  # 9**9 = 387 million values once expanded
    from registry.yamlpos import load_yaml

    with pytest.raises(YamlSyntaxError, match=r"bomb\.yaml:\d+:\d+: the file expands to more than 200000 values"):
        load_yaml(p)


def test_yaml_that_is_not_utf8_names_line_and_column(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"recipe: x\nstages:\n  a: caf\xe9\n")
    from registry.yamlpos import load_yaml

    with pytest.raises(YamlSyntaxError, match=r"r\.yaml:3:9: not UTF-8 text"):
        load_yaml(p)
