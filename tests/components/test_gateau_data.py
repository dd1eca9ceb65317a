"""generate.doc_quotes and judge.compare, the GATEAU recipe's data builder and side-by-side report."""

from __future__ import annotations

import pytest

from components.generators.doc_quotes import DocQuotes, quotable_paragraphs
from components.judges.compare import Compare
from components.selectors.gateau import build_hmg_text
from tests.fakes import FakeCtx

P1 = "First paragraph has exactly six words."
P2 = "Second paragraph is here with seven words."
P3 = "Third one is the last paragraph, eight words."
DOC = f"Title\n\n{P1}\n\n    indented code block with many words here\n\n{P2}\n\n{P3}"


def test_quotable_paragraphs_skip_short_indented_and_ambiguous_ones():
    found = quotable_paragraphs(DOC, 6, 8, 2)
    assert [(DOC[s:s + len(p)] == p, p, lead) for s, p, lead in found] == [
        (True, P1, "First paragraph"), (True, P2, "Second paragraph"), (True, P3, "Third one")]
    twice = "Same start one two three.\n\nSame start four five six."
    assert quotable_paragraphs(twice, 1, 10, 2) == []


def test_doc_quotes_puts_the_answer_at_the_requested_depth(tmp_path):
    comp = DocQuotes(DocQuotes.Params(depths=[0.0, 1.0, 0.5], min_words=6, max_words=8, lead_words=3))
    ctx = FakeCtx(params=comp.params, tmp=tmp_path)
    out = comp.run({"documents": [{"id": "d", "context": DOC}]}, ctx)
    assert [r["id"] for r in out] == ["d@0", "d@100", "d@50"]
    assert [r["messages"][1]["content"] for r in out] == [P1, P3, P2]
    assert out[0]["depth"] == round(DOC.index(P1) / len(DOC), 4)
    user = out[0]["messages"][0]["content"]
    assert user == DOC + '\n\nQuote, word for word, the paragraph of the document above that begins with "First paragraph has".'
    instruct, context, _, _ = build_hmg_text(out[0]["messages"])  # the instruction is the last paragraph
    assert instruct.startswith("Quote") and context == DOC + "\n\n"
    assert comp.summarize(out, ctx)["missing"] == 0


def test_doc_quotes_counts_depths_without_a_paragraph(tmp_path):
    comp = DocQuotes(DocQuotes.Params(depths=[0.1, 0.5], min_words=6, max_words=6))
    ctx = FakeCtx(params=comp.params, tmp=tmp_path)
    out = comp.run({"documents": [{"id": "d", "context": DOC}]}, ctx)
    assert [r["messages"][1]["content"] for r in out] == [P1]
    assert comp.summarize(out, ctx)["missing"] == 1


def test_doc_quotes_instruction_must_be_one_paragraph():
    with pytest.raises(ValueError, match="blank line"):
        DocQuotes.Params(instruction="Quote it.\n\nNow.")


def test_compare_puts_both_models_side_by_side(tmp_path):
    comp = Compare(Compare.Params(label_a="GATEAU", label_b="random"))
    ctx = FakeCtx(params=comp.params, tmp=tmp_path)
    inputs = {
        "chat_a": [{"score": 4}, {"score": 6}], "chat_b": [{"score": 3}],
        "needle_a": [{"score": 10.0, "recall": 1.0, "length": 100}, {"score": 1.0, "recall": 0.0, "length": 200}],
        "needle_b": [{"score": 5.5, "recall": 0.5, "length": 100}, {"score": 5.5, "recall": 0.5, "length": 200}],
        "selection_a": [{"id": "x", "score": 0.3, "rank": 1}, {"id": "y", "score": 0.2, "rank": 2}],
        "selection_b": [{"id": "y", "score": 0.2, "rank": 2}, {"id": "z", "score": 0.1, "rank": 3, "depth": 0.5}],
    }
    rows = {r["metric"]: (r["a"], r["b"], r["difference"]) for r in comp.run(inputs, ctx)}
    assert rows["LongBench-Chat: score ×10"] == (50.0, 30.0, 20.0)
    assert rows["LongBench-Chat: n"] == (2, 1, 1)
    assert rows["needle: mean score (1-10)"] == (5.5, 5.5, 0.0)
    assert rows["needle: score at 200 tokens"] == (1.0, 5.5, -4.5)
    assert rows["training selection: mean GATEAU score"][:2] == pytest.approx((0.25, 0.15))
    assert rows["training selection: mean depth"] == (None, 0.5, None)
    assert rows["training selection: records in both"] == (1, 1, None)
    report = comp.report(comp.run(inputs, ctx), None, ctx)
    assert "| metric | GATEAU | random | GATEAU − random |" in report
    assert "| LongBench-Chat: score ×10 | 50 | 30 | 20 |" in report


def test_compare_needs_ports_in_pairs(tmp_path):
    comp = Compare()
    with pytest.raises(ValueError, match="connect both chat_a and chat_b"):
        comp.run({"chat_a": []}, FakeCtx(tmp=tmp_path))
