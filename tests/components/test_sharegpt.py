"""load.sharegpt: both layouts normalised to {id, messages}; empty assistant turns filtered and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.loaders.sharegpt import ShareGPTLoader, ShareGPTParams
from tests.fakes import FakeCtx

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "recipes" / "data" / "longalign"


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


def load(path: Path, tmp_path: Path, **params) -> tuple[ShareGPTLoader, list[dict]]:
    comp = ShareGPTLoader(ShareGPTParams(path=str(path), **params))
    return comp, comp.run({}, FakeCtx(tmp=tmp_path))


ITEMS = [
    {"id": "a", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    {
        "id": "b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
    },
    # second assistant turn empty -> dropped
    {
        "id": "c",
        "conversations": [
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "A1"},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "  \n"},
        ],
    },
    # no assistant turn at all -> dropped
    {"id": "d", "conversations": [{"from": "human", "value": "anyone?"}]},
    # a speaker that is no chat role -> dropped
    {"id": "e", "conversations": [{"from": "narrator", "value": "x"}, {"from": "gpt", "value": "y"}]},
    {"conversations": [{"from": "user", "value": "no id"}, {"from": "chatgpt", "value": "fine"}]},
]


def test_both_layouts_are_normalised(tmp_path):
    _, out = load(write_jsonl(tmp_path / "chats.jsonl", ITEMS), tmp_path)
    assert out[0] == {
        "id": "a",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    }
    assert out[1] == {
        "id": "b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
    }
    # the record without an id gets one from its position in the file (0-based line 5)
    assert out[2] == {
        "id": "sharegpt-5",
        "messages": [{"role": "user", "content": "no id"}, {"role": "assistant", "content": "fine"}],
    }
    assert len(out) == 3


def test_dropped_conversations_are_counted(tmp_path):
    comp, out = load(write_jsonl(tmp_path / "chats.jsonl", ITEMS), tmp_path)
    metrics = comp.summarize(out, FakeCtx(tmp=tmp_path))
    assert metrics == {
        "n": 3,
        "read": 6,
        "dropped": 3,
        "dropped_by_reason": {"empty assistant turn": 1, "no assistant turn": 1, "unknown role": 1},
    }
    # a fresh instance (a stage reused from cache) counts the same
    fresh = ShareGPTLoader(ShareGPTParams(path=str(tmp_path / "chats.jsonl")))
    assert fresh.summarize(out, FakeCtx(tmp=tmp_path))["dropped"] == 3


def test_empty_turns_can_be_kept(tmp_path):
    _, out = load(write_jsonl(tmp_path / "chats.jsonl", ITEMS), tmp_path, drop_empty_assistant=False)
    assert [r["id"] for r in out] == ["a", "b", "c", "sharegpt-5"]
    assert out[2]["messages"][-1] == {"role": "assistant", "content": "  \n"}


def test_json_list_and_limit(tmp_path):
    path = tmp_path / "chats.json"
    path.write_text(json.dumps(ITEMS), encoding="utf-8")
    _, out = load(path, tmp_path, limit=2)
    assert [r["id"] for r in out] == ["a", "b"]


def test_duplicate_ids_are_made_unique(tmp_path):
    item = {"id": "same", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    _, out = load(write_jsonl(tmp_path / "dup.jsonl", [item, item]), tmp_path)
    assert [r["id"] for r in out] == ["same", "same-1"]


def test_missing_file_and_bad_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load(tmp_path / "nope.jsonl", tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load(bad, tmp_path)


def test_sample_short_chats(tmp_path):
    comp, out = load(SAMPLES / "short_chat.jsonl", tmp_path)
    raw = [
        json.loads(line) for line in (SAMPLES / "short_chat.jsonl").read_text().splitlines() if line.strip()
    ]
    # the sample holds one chat with an empty answer, to show the filter
    empty = [r for r in raw if any(t["from"] == "gpt" and not t["value"].strip() for t in r["conversations"])]
    assert len(empty) == 1
    assert len(out) == len(raw) - 1 >= 20
    assert comp.summarize(out, FakeCtx(tmp=tmp_path))["dropped"] == 1
    assert all(m["role"] in ("user", "assistant") for r in out for m in r["messages"])


def test_sample_long_sft(tmp_path):
    _, out = load(SAMPLES / "long_sft.jsonl", tmp_path)
    assert len(out) == 12
    for r in out:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert len(r["messages"][0]["content"].split()) > 600  # a long document precedes the question
