"""The Self-RAG recipe's shipped questions and seed pairs are well formed, and every question is settled by
the quoted sentence of the CPython doc topic it names."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from registry.jsonio import read_jsonl

DATA = Path(__file__).resolve().parents[2] / "recipes" / "data" / "selfrag"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_questions_are_well_formed():
    items = read_jsonl(DATA / "questions.jsonl")
    assert Counter(r["task_type"] for r in items) == {"open": 22, "multiple_choice": 14, "true_false": 14}
    assert len({r["id"] for r in items}) == len(items)
    for r in items:
        assert r["question"].strip() and r["answers"] and all(isinstance(a, str) and a for a in r["answers"])
        if r["task_type"] == "multiple_choice":
            assert r["choices"]["label"] == ["A", "B", "C", "D"] and len(r["choices"]["text"]) == 4
            assert r["answers"] == [r["answerKey"]] and r["answerKey"] in "ABCD"
        if r["task_type"] == "true_false":
            assert r["answers"] in (["true"], ["false"])
    # both verdicts and every answer letter occur
    assert {r["answers"][0] for r in items if r["task_type"] == "true_false"} == {"true", "false"}
    assert {r["answerKey"] for r in items if r["task_type"] == "multiple_choice"} == set("ABCD")


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the quotes are from Python 3.11's doc topics")
def test_every_question_is_settled_by_its_quoted_topic_sentence():
    from pydoc_data.topics import topics

    for r in read_jsonl(DATA / "questions.jsonl"):
        assert _norm(r["evidence"]) in _norm(topics[r["topic"]]), r["id"]


def test_seed_pairs_are_well_formed():
    pairs = read_jsonl(DATA / "seed_pairs.jsonl")
    assert len({p["id"] for p in pairs}) == len(pairs) > 90
    assert {p["source"] for p in pairs} == {"doc-topics", "written"}
    assert all(p["instruction"].strip() and p["output"].strip() for p in pairs)
    assert {p["output"] for p in pairs} >= {"SUPPORTS", "REFUTES"}
