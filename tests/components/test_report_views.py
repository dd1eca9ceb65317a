"""Report data of the components: the citation viewer, side-by-side answers, trainer curves, the needle
heatmap, GATEAU's selected-against-rest split and LongReward's before/after bars, checked by hand."""

from __future__ import annotations

import types

import pytest

from components.report_data import Examples, Plot, Table, read_sections, section_list, step_curves
from components.views.answers import MAX_PANE_CHARS, answer_example
from components.views.citations import (
    MAX_CONTEXT_CHARS,
    answer_statements,
    citation_example,
    document_of,
    numbered_sentences,
)

CONTEXT = "<C0>Grass is green. <C1>The sky is blue. <C2>Snow is white. <C3>Coal is black."


def test_numbered_sentences_and_the_document_inside_a_longcite_prompt():
    assert numbered_sentences(CONTEXT) == [(0, "Grass is green. "), (1, "The sky is blue. "), (2, "Snow is white. "),
                                           (3, "Coal is black.")]
    assert document_of("Answer.\n\n[Document Start]\n<C0>A.\n[Document End]\n\nQ?") == "<C0>A."


def test_answer_statements_read_every_sentence_range():
    got = answer_statements("<statement>Sky and snow.<cite>[1-1][2-3]</cite></statement> "
                            "<statement>No source.<cite></cite></statement>")
    assert got == [{"statement": "Sky and snow.", "citation": [{"start_sentence_idx": 1, "end_sentence_idx": 1},
                                                                {"start_sentence_idx": 2, "end_sentence_idx": 3}]},
                   {"statement": "No source.", "citation": []}]


def test_judged_statements_link_their_sentences_with_verdicts_and_tags():
    statements = [
        {"statement": "The sky is blue.", "support": 1.0, "support_raw": "[[Fully supported]]",
         "citation": [{"start_sentence_idx": 1, "end_sentence_idx": 2, "relevant": 1.0},
                      {"start_sentence_idx": 3, "end_sentence_idx": 9, "relevant": 0.0}]},
        {"statement": "Trust me.", "citation": [], "needs_citation": 1.0},
        {"statement": "Hello.", "citation": [], "needs_citation": 0.0},
    ]
    ex = citation_example("q1", "Colours?", CONTEXT, statements, {"f1": 0.5})
    answer, context = ex.panes
    first, second, third = answer.spans
    # a range past the last sentence is clamped to it (sentence 3 here)
    assert [(link.target, link.label, link.tag) for link in first.links] == [
        ("s1", "[1-2] relevant", "good"), ("s2", None, "good"), ("s3", "[3-9] irrelevant", "bad")]
    assert first.tags == ["cited", "supported"] and "fully supported" in first.note
    assert second.tags == ["uncited", "unsupported"] and "needs a citation" in second.note
    assert third.tags == ["uncited"] and "needs no citation" in third.note
    assert [(s.id, s.number) for s in context.spans] == [("s0", "0"), ("s1", "1"), ("s2", "2"), ("s3", "3")]
    assert ex.fields == {"question": "Colours?", "f1": 0.5}
    assert ex.tags == ["cited", "supported", "uncited", "unsupported"]


def test_a_long_context_keeps_only_the_cited_sentences_and_their_neighbours():
    filler = "x" * (MAX_CONTEXT_CHARS // 10)
    context = "".join(f"<C{i}>{filler}" for i in range(30))
    ex = citation_example("q", "?", context, [{"statement": "s", "citation": [
        {"start_sentence_idx": 20, "end_sentence_idx": 20}]}])
    kept = [s.id for s in ex.panes[1].spans]
    # sentences 0-1 (the start), a gap, 18-22 (cited ± 2), a gap
    assert kept == ["s0", "s1", None, "s18", "s19", "s20", "s21", "s22", None]


def test_side_by_side_answers_leave_out_missing_panes_and_cut_long_ones_in_the_middle():
    ex = answer_example("r", question="Q" * (MAX_PANE_CHARS + 100), answer="A", reference=None, analysis="ok")
    assert [p.title for p in ex.panes] == ["question", "answer", "judge analysis"]
    q = ex.panes[0].text
    assert q.startswith("Q" * (MAX_PANE_CHARS // 2)) and "[… 100 characters left out …]" in q


def test_step_curves_plot_each_field_over_the_steps():
    plots = step_curves([{"step": 1, "loss": 3.0, "lr": 0.1}, {"step": 2, "loss": 2.0, "lr": 0.2}],
                        {"loss": "loss", "lr": "learning rate", "missing": "x"}, "SFT")
    assert [(p.title, p.series[0].x, p.series[0].y) for p in plots] == [
        ("SFT: loss per step", [1.0, 2.0], [3.0, 2.0]), ("SFT: learning rate per step", [1.0, 2.0], [0.1, 0.2])]


def test_sections_survive_their_json_round_trip():
    data = section_list([Table(title="t", columns=["a"], rows=[[1.5]]), Plot(title="p", chart="hist")])
    assert [type(s).__name__ for s in read_sections(data)] == ["Table", "Plot"]
    with pytest.raises(ValueError):
        read_sections([{"kind": "chart", "title": "?"}])


def ctx(stats=None, inputs=None):
    return types.SimpleNamespace(load_stats=lambda name, default=None: (stats or {}).get(name, default),
                                 inputs=inputs or {}, artifact_dir=None)


def test_needle_report_data_is_the_mean_per_cell_heatmap_and_the_answers():
    from components.judges.needle import NeedleJudge

    recs = [{"depth": 0.0, "length": 100, "score": 10.0, "recall": 1.0, "needle": "n", "prediction": "a"},
            {"depth": 0.0, "length": 100, "score": 4.0, "recall": 0.3, "needle": "n", "prediction": "b"},
            {"depth": 50.0, "length": 200, "score": 1.0, "recall": 0.0, "needle": "n", "prediction": "c"}]
    heat, hist, answers = NeedleJudge().report_data(recs, None, ctx())
    assert heat.chart == "heatmap" and heat.rows == ["0", "50"] and heat.labels == ["100", "200"]
    assert [s.y for s in heat.series] == [[7.0, None], [None, 1.0]]  # (10 + 4) / 2 and the one score
    assert (heat.low, heat.high) == (1, 10) and hist.series[0].y == [10.0, 4.0, 1.0]
    assert isinstance(answers, Examples) and [p.title for p in answers.examples[0].panes] == [
        "answer", "reference", "judge analysis"]


def test_gateau_report_data_splits_each_score_into_selected_and_rest():
    from components.selectors.gateau_rank import STATS, GateauRank

    rows = [{"id": i, "ppl_short": 1.0, "ppl_long": 2.0 + i, "hmg": 0.1 * i, "cas_score": 0.2, "score": 1.0 - 0.1 * i,
             "rank": i + 1} for i in range(4)]
    candidates = [{"id": i, "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]
    selected = [{**candidates[1], "rank": 2}, {**candidates[0], "rank": 1}]
    out = GateauRank().report_data(selected, None, ctx({STATS: {"rows": rows}}, {"hmg": candidates}))
    final = next(p for p in out if p.title.startswith("final score"))
    assert {s.name: s.y for s in final.series} == {"selected": [1.0, 0.9], "rest": [0.8, 0.7]}
    table = next(p for p in out if isinstance(p, Table))
    assert [r[2] for r in table.rows] == [True, True, False, False]
    examples = out[-1].examples
    assert [e.title for e in examples] == ["selected: 0", "selected: 1", "left out: 2", "left out: 3"]
    assert examples[2].panes[0].text == "q2"


def test_compare_rewards_report_data_draws_before_and_after_per_dimension():
    from components.judges.reward_compare import CompareRewards

    metrics = {"before_helpfulness": 5.0, "after_helpfulness": 7.0, "before_total": 20.0, "after_total": 26.0}
    bars, _ = CompareRewards().report_data([{"before_total": 20.0, "after_total": 26.0}], metrics, ctx())
    assert bars.labels == ["helpfulness", "logicality", "faithfulness", "completeness", "total"]
    assert {s.name: s.y for s in bars.series} == {"before": [5.0, None, None, None, 20.0],
                                                  "after": [7.0, None, None, None, 26.0]}


def test_selfrag_viewer_links_candidates_to_their_passages_and_marks_the_best():
    from components.views.selfrag import selfrag_sections

    record = {"id": "q1", "question": "Who?", "retrieve": True, "retrieval_ratio": 0.7, "prediction": "Ada.",
              "passages_used": [{"id": 3, "title": "Ada", "text": "Ada wrote it.", "score": 12.5},
                                {"id": 8, "title": "", "text": "Other."}],
              "candidates": [{"passage_id": 3, "text": "[Relevant]Ada.", "relevance": 0.9, "score": 1.5},
                             {"passage_id": 8, "text": "[Irrelevant]Bob.", "relevance": 0.1, "score": 0.2}]}
    plot, viewer = selfrag_sections([record])
    assert {s.name: s.y for s in plot.series}["score"] == [1.5, 0.2]
    ex = viewer.examples[0]
    assert ex.fields == {"retrieved": True, "p(retrieve)": 0.7, "candidates": 2}
    passages, candidates = ex.panes[1].spans, ex.panes[2].spans
    assert [(p.id, p.text, p.note) for p in passages] == [("p3", "Ada: Ada wrote it.", "retrieval score 12.5"),
                                                          ("p8", "Other.", None)]
    assert [(c.links[0].target, c.tags, c.note) for c in candidates] == [
        ("p3", ["selected"], "relevance 0.9 · score 1.5"), ("p8", [], "relevance 0.1 · score 0.2")]
