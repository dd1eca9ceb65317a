"""load.jsonl, load.hf_dataset (local files only, no network) and load.pydoc_topics."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from pydoc_data.topics import topics as PYDOC

import pytest
from pydantic import ValidationError

from components.loaders.hf_dataset import LoadHfDataset
from components.loaders.jsonl import LoadJsonl
from components.loaders.pydoc_topics import LoadPydocTopics, truncate_paragraphs
from tests.fakes import FakeCtx


def run(cls, tmp_path: Path, seed: int = 0, **params):
    comp = cls(cls.Params(**params))
    return list(comp.run({}, FakeCtx(comp.params, tmp=tmp_path, seed=seed)))  # a loader may stream


# ---------------------------------------------------------------------------------------------- load.jsonl

def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_reads_records_skipping_blank_lines(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", ['{"idx": 0, "text": "a"}', "", '{"idx": 1, "text": "b"}'])
    assert run(LoadJsonl, tmp_path, path=str(f)) == [{"idx": 0, "text": "a"}, {"idx": 1, "text": "b"}]


def test_jsonl_limit_keeps_the_first_records(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", [json.dumps({"idx": i}) for i in range(5)] + ["not json"])
    assert run(LoadJsonl, tmp_path, path=str(f), limit=2) == [{"idx": 0}, {"idx": 1}]


def test_jsonl_bad_line_names_its_line_number(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", ['{"a": 1}', '{"a": 2}', '{"a": 3,,}'])
    with pytest.raises(ValueError, match=r"d\.jsonl:3: not valid JSON"):
        run(LoadJsonl, tmp_path, path=str(f))


def test_jsonl_non_object_line_is_an_error(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", ['{"a": 1}', "[1, 2]"])
    with pytest.raises(ValueError, match=r":2: expected a JSON object, got list"):
        run(LoadJsonl, tmp_path, path=str(f))


def test_jsonl_required_fields_name_the_line_and_field(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", ['{"query": "q", "context": "c"}', "", '{"query": "q2"}'])
    with pytest.raises(ValueError, match=r":3: record lacks required field\(s\) context"):
        run(LoadJsonl, tmp_path, path=str(f), fields=["query", "context"])


def test_jsonl_output_fields_follow_the_fields_param():
    assert LoadJsonl(LoadJsonl.Params(path="x.jsonl")).output_fields() is None
    assert LoadJsonl(LoadJsonl.Params(path="x.jsonl", fields=["a", "b"])).output_fields() == {"a", "b"}


def test_jsonl_gzip_and_missing_file(tmp_path):
    gz = tmp_path / "d.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write('{"t": "é"}\n')
    assert run(LoadJsonl, tmp_path, path=str(gz)) == [{"t": "é"}]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        run(LoadJsonl, tmp_path, path=str(tmp_path / "nope.jsonl"))


def test_jsonl_unknown_param_is_rejected():
    with pytest.raises(ValidationError):
        LoadJsonl.Params(path="x", limt=3)


# ---------------------------------------------------------------------------------------------- load.hf_dataset

@pytest.fixture
def local_data(tmp_path) -> Path:
    rows = [{"question": f"q{i}", "answer": f"a{i}", "extra": i} for i in range(4)]
    folder = tmp_path / "ds"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [json.dumps(r) for r in rows])
    return folder


def test_hf_dataset_local_file_with_columns_rename_and_limit(tmp_path, local_data):
    got = run(LoadHfDataset, tmp_path, path=str(local_data / "train.jsonl"), columns=["question", "answer"],
              rename={"question": "query"}, limit=2)
    assert got == [{"query": "q0", "answer": "a0"}, {"query": "q1", "answer": "a1"}]


def test_hf_dataset_local_folder(tmp_path, local_data):
    got = run(LoadHfDataset, tmp_path, path=str(local_data))
    assert [r["extra"] for r in got] == [0, 1, 2, 3]


def test_hf_dataset_unknown_column_lists_the_columns(tmp_path, local_data):
    with pytest.raises(ValueError, match=r"no column\(s\) qestion .*columns: question, answer, extra"):
        run(LoadHfDataset, tmp_path, path=str(local_data / "train.jsonl"), columns=["qestion"])


def test_hf_dataset_output_fields_and_rename_check():
    comp = LoadHfDataset(LoadHfDataset.Params(path="hf://o/n", columns=["a", "b"], rename={"a": "x"}))
    assert comp.output_fields() == {"x", "b"}
    with pytest.raises(ValidationError, match="rename names columns that `columns` drops: c"):
        LoadHfDataset.Params(path="hf://o/n", columns=["a"], rename={"c": "d"})


def test_hf_dataset_missing_absolute_path_suggests_hf_scheme(tmp_path):
    with pytest.raises(FileNotFoundError, match="hf://org/name"):
        run(LoadHfDataset, tmp_path, path=str(tmp_path / "org" / "name"))


def _unreachable(*args, **kwargs):
    raise ConnectionError("Couldn't reach 'org/name' on the Hub")


def test_hf_dataset_no_network_says_so_and_suggests_local_data(tmp_path, monkeypatch):
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or _unreachable())
    with pytest.raises(RuntimeError, match="cannot be reached") as err:
        run(LoadHfDataset, tmp_path, path="hf://org/name", name="cfg", split="test", revision="abc")
    assert "load.jsonl" in str(err.value) and "local" in str(err.value)
    assert calls == [(("org/name",), {"name": "cfg", "split": "test", "revision": "abc"})]


def test_hf_dataset_offline_mode_is_named(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def not_cached(*a, **k):
        raise FileNotFoundError("Dataset org/name is not cached")

    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(RuntimeError, match=r"HF_HUB_OFFLINE is set \(offline mode\).*load\.jsonl"):
        run(LoadHfDataset, tmp_path, path="hf://org/name")


# ---------------------------------------------------------------------------------------------- load.pydoc_topics

def test_truncate_paragraphs_by_hand():
    text = "aaa\n\nbbb\n\nccc"
    assert truncate_paragraphs(text, 100) == text
    assert truncate_paragraphs(text, 8) == "aaa\n\nbbb"
    assert truncate_paragraphs(text, 7) == "aaa"
    assert truncate_paragraphs("hello world again\n\nmore", 13) == "hello world"
    assert truncate_paragraphs("abcdefghij", 4) == "abcd"


def test_pydoc_records_are_the_shipped_topics(tmp_path):
    got = run(LoadPydocTopics, tmp_path)
    names = sorted(PYDOC)
    assert [r["id"] for r in got] == names
    rec = next(r for r in got if r["id"] == "assert")
    assert rec["idx"] == names.index("assert")
    assert rec["context"] == PYDOC["assert"].strip()
    assert rec["title"] == PYDOC["assert"].strip().splitlines()[0].strip()
    assert set(rec) == {"id", "idx", "title", "context"}


def test_pydoc_max_chars_cuts_at_paragraph_ends(tmp_path):
    got = run(LoadPydocTopics, tmp_path, max_chars=600)
    assert got
    for r in got:
        full = PYDOC[r["id"]].strip()
        assert len(r["context"]) <= 600
        assert full.startswith(r["context"])
        if len(full) > 600 and "\n\n" in full[:601]:
            assert full[len(r["context"]):].startswith("\n\n")


def test_pydoc_min_chars_drops_short_topics(tmp_path):
    got = run(LoadPydocTopics, tmp_path, min_chars=5000)
    assert {r["id"] for r in got} == {k for k, v in PYDOC.items() if len(v.strip()) >= 5000}


def test_pydoc_limit_and_seeded_sample(tmp_path):
    first = run(LoadPydocTopics, tmp_path, limit=3)
    assert [r["id"] for r in first] == sorted(PYDOC)[:3]
    a = run(LoadPydocTopics, tmp_path, seed=0, limit=5, sample=True)
    again = run(LoadPydocTopics, tmp_path, seed=0, limit=5, sample=True)
    other = run(LoadPydocTopics, tmp_path, seed=1, limit=5, sample=True)
    assert len(a) == 5 and a == again
    assert {r["id"] for r in a} != {r["id"] for r in other}
    assert [r["idx"] for r in a] == sorted(r["idx"] for r in a)


def test_pydoc_explicit_topics_keep_their_order_and_typos_get_a_hint(tmp_path):
    got = run(LoadPydocTopics, tmp_path, topics=["while", "assert"])
    assert [r["id"] for r in got] == ["while", "assert"]
    with pytest.raises(ValidationError, match="did you mean 'assert'"):
        LoadPydocTopics.Params(topics=["asert"])
    with pytest.raises(ValidationError, match="min_chars"):
        LoadPydocTopics.Params(min_chars=10, max_chars=5)


def test_pydoc_estimate_counts_records(tmp_path):
    comp = LoadPydocTopics(LoadPydocTopics.Params(min_chars=5000))
    assert comp.estimate({}).records_out == sum(len(v.strip()) >= 5000 for v in PYDOC.values())
    assert LoadPydocTopics(LoadPydocTopics.Params(limit=2)).estimate({}).records_out == 2
