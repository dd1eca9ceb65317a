"""GATEAU's arithmetic (components.selectors.gateau) and select.gateau_rank, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from components.selectors.gateau import (
    build_hmg_text,
    cas_scores,
    contextual_awareness,
    hmg_scores,
    minmax,
    rank,
    top_count,
)
from components.selectors.gateau_rank import GateauRank
from tests.fakes import FakeCtx


def chat(user: str, answer: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


# ---------------------------------------------------------------------------------------------- text

def test_build_hmg_text_splits_the_last_paragraph_and_finds_the_response_exactly():
    instruct, context, whole, start = build_hmg_text(chat("Doc line one.\n\nDoc two.\n\nWhat is it?", "It is X."))
    assert instruct == "What is it?"
    assert context == "Doc line one.\n\nDoc two.\n\n"
    assert whole == ("### Input:Doc line one.\n\nDoc two.\n\n\n\n ### Instruction: What is it?"
                     "\n\n ### Response: It is X.")
    assert start == len(whole) - len("It is X.")
    assert whole[start:] == "It is X."


def test_a_user_turn_ending_in_a_blank_line_keeps_its_context():
    instruct, context, whole, start = build_hmg_text(chat("The document.\n\nQuestion?\n\n", "Answer"))
    assert instruct == ""
    assert context == "The document.\n\nQuestion?\n\n"
    assert whole[start:] == "Answer"


def test_the_response_marker_inside_the_input_or_response_does_not_move_the_start():
    user = "Text with ### Response: inside.\n\nSay it."
    answer = "Sure. ### Response: again"
    _, _, whole, start = build_hmg_text(chat(user, answer, system="sys"))
    assert whole[start:] == answer
    assert start == len("### Input:Text with ### Response: inside.\n\n\n\n ### Instruction: Say it.\n\n ### Response: ")


def test_a_record_without_an_answered_user_turn_is_an_error():
    with pytest.raises(ValueError, match="no user turn"):
        build_hmg_text([{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------------------------------- HMG

def test_hmg_is_the_softmax_of_minmax_differences():
    # n_A = [0, .5, 1], n_B = [0, 0, 1] -> d = [0, .5, 0]; softmax = [1, e^.5, 1] / (2 + e^.5)
    got = hmg_scores([10.0, 20.0, 30.0], [5.0, 5.0, 10.0])
    e = math.exp(0.5)
    assert got == pytest.approx([1 / (2 + e), e / (2 + e), 1 / (2 + e)], abs=1e-12)


def test_a_constant_perplexity_column_gives_finite_scores():
    # n_B is all zeros, so HMG is the softmax of n_A = [0, 1]
    got = hmg_scores([3.0, 7.0], [4.0, 4.0])
    assert got == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], abs=1e-12)
    assert hmg_scores([2.0, 2.0], [2.0, 2.0]) == [0.5, 0.5]
    assert minmax([5.0, 5.0, 5.0]) == [0.0, 0.0, 0.0]


def test_hmg_rejects_non_finite_and_mismatched_columns():
    with pytest.raises(ValueError, match=r"ppl_short\[1\]"):
        hmg_scores([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 short-model perplexities but 1"):
        hmg_scores([1.0, 2.0], [1.0])


def test_hmg_does_not_overflow_on_large_differences():
    assert sum(hmg_scores([1.0, 1e6], [1.0, 1.0])) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- CAS

def test_cas_is_zero_when_attention_matches_importance():
    assert contextual_awareness([0.2, 0.2], [math.e, math.e]) == pytest.approx(0.0, abs=1e-12)


def test_cas_of_one_sided_attention_over_equally_important_segments():
    # att = [1, 0], imp = [.5, .5]: cos = .5 / sqrt(.5) = 1/sqrt(2)
    assert contextual_awareness([3.0, 0.0], [2.0, 2.0]) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-12)


def test_cas_averages_layers_and_weighs_segments_by_inverse_perplexity():
    # layers average to [.5, .5]; imp = softmax(-log [1, 3]) = [3/4, 1/4]
    # cos = (.375 + .125) / (sqrt(.5) * sqrt(.625))
    expected = 1 - 0.5 / (math.sqrt(0.5) * math.sqrt(0.625))
    assert contextual_awareness([[1.0, 0.0], [0.0, 1.0]], [1.0, 3.0]) == pytest.approx(expected, abs=1e-12)


def test_cas_without_segments_is_zero_and_mismatches_are_errors():
    assert contextual_awareness([], []) == 0.0
    with pytest.raises(ValueError, match="2 attention segments but 1"):
        contextual_awareness([0.5, 0.5], [2.0])


def test_cas_is_normalised_over_the_dataset_like_hmg():
    # minmax([.1, .3, .5]) = [0, .5, 1]
    got = cas_scores([0.1, 0.3, 0.5])
    z = 1 + math.exp(0.5) + math.e
    assert got == pytest.approx([1 / z, math.exp(0.5) / z, math.e / z], abs=1e-12)


# ---------------------------------------------------------------------------------------------- rank

def test_rank_mixes_with_alpha_and_sorts_descending():
    finals, order = rank(["a", "b", "c"], [0.1, 0.5, 0.4], [0.9, 0.0, 0.2], 0.8)
    assert finals == pytest.approx([0.8 * 0.1 + 0.2 * 0.9, 0.4, 0.8 * 0.4 + 0.2 * 0.2], abs=1e-12)
    assert order == ["b", "c", "a"]


def test_rank_keeps_ties_in_input_order():
    _, order = rank(["x", "y", "z", "w"], [0.25, 0.5, 0.25, 0.25], [0.25, 0.5, 0.25, 0.25], 0.7)
    assert order == ["y", "x", "z", "w"]


def test_rank_checks_its_inputs():
    with pytest.raises(ValueError, match="one hmg and one cas per id"):
        rank(["a"], [0.1, 0.2], [0.1], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        rank(["a"], [0.1], [0.1], 1.5)


@pytest.mark.parametrize(("n", "k", "frac", "want"), [
    (10, 3, None, 3), (10, 30, None, 10), (10, None, 0.25, 3), (10, None, 0.5, 5), (3, None, 0.5, 2),
    (4, None, 0.1, 1), (7, None, None, 7), (0, None, 0.5, 0),
])
def test_top_count(n, k, frac, want):
    assert top_count(n, k, frac) == want


# ---------------------------------------------------------------------------------------------- component

def _hmg_records():
    # ppl_short [10, 20, 30, 40], ppl_long [10, 10, 10, 10] -> d = [0, 1/3, 2/3, 1]
    return [{"id": f"r{i}", "messages": [], "ppl_short": 10.0 * (i + 1), "ppl_long": 10.0} for i in range(4)]


def _run(params: dict, hmg: list[dict], cam: list[dict] | None, tmp_path, seed: int = 0):
    comp = GateauRank(GateauRank.Params(**params))
    ctx = FakeCtx(params=comp.params, tmp=tmp_path, seed=seed)
    inputs = {"hmg": hmg} if cam is None else {"hmg": hmg, "cam": cam}
    return comp, ctx, comp.run(inputs, ctx)


def test_component_joins_by_id_and_keeps_the_top_share(tmp_path):
    # cas given out of order: joined by id. minmax(cas by id) = [1, 0, 0, 0] for r0..r3
    cam = [{"id": "r3", "cas": 0.1}, {"id": "r1", "cas": 0.1}, {"id": "r0", "cas": 0.9}, {"id": "r2", "cas": 0.1}]
    _, _, out = _run({"alpha": 0.5, "top_fraction": 0.5}, _hmg_records(), cam, tmp_path)
    d = [0.0, 1 / 3, 2 / 3, 1.0]
    zh = sum(math.exp(x) for x in d)
    zc = math.e + 3
    finals = [0.5 * math.exp(x) / zh + 0.5 * c / zc for x, c in zip(d, [math.e, 1, 1, 1])]
    best = sorted(range(4), key=lambda i: -finals[i])[:2]
    assert [r["id"] for r in out] == [f"r{i}" for i in best]
    assert out[0]["score"] == pytest.approx(finals[best[0]], abs=1e-12)
    assert [r["rank"] for r in out] == [1, 2]
    assert all("messages" in r for r in out)


def test_a_missing_cas_is_a_located_error(tmp_path):
    cam = [{"id": "r0", "cas": 0.1}, {"id": "r1", "cas": 0.2}, {"id": "r3", "cas": 0.3}]
    with pytest.raises(ValueError, match=r"'r2' \(record 3 of input 'hmg'\) has no CAS"):
        _run({"top_k": 2}, _hmg_records(), cam, tmp_path)
    _, ctx, out = _run({"top_k": 2, "on_missing": "drop"}, _hmg_records(), cam, tmp_path)
    assert "r2" not in {r["id"] for r in out}
    assert ctx.load_stats("ranking")["dropped_missing_cas"] == ["r2"]


def test_duplicate_ids_are_errors(tmp_path):
    hmg = _hmg_records() + [{"id": "r1", "messages": [], "ppl_short": 1.0, "ppl_long": 1.0}]
    with pytest.raises(ValueError, match="'r1' appears twice in input 'hmg'"):
        _run({}, hmg, None, tmp_path)


def test_without_cam_the_ranking_is_hmg_alone(tmp_path):
    _, _, out = _run({"top_k": 3, "alpha": 0.3}, _hmg_records(), None, tmp_path)
    assert [r["id"] for r in out] == ["r3", "r2", "r1"]  # d rises with the short-model perplexity


def test_random_method_keeps_as_many_records_seeded(tmp_path):
    _, _, ranked = _run({"top_fraction": 0.5}, _hmg_records(), None, tmp_path)
    _, _, a = _run({"top_fraction": 0.5, "method": "random"}, _hmg_records(), None, tmp_path, seed=1)
    _, _, b = _run({"top_fraction": 0.5, "method": "random"}, _hmg_records(), None, tmp_path, seed=1)
    assert len(a) == len(ranked) == 2
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert all(r["score"] > 0 for r in a)  # scored like the rest, so the report can compare


def test_summary_and_report(tmp_path):
    comp, ctx, out = _run({"top_k": 1}, _hmg_records(), None, tmp_path)
    metrics = comp.summarize(out, ctx)
    assert metrics["candidates"] == 4 and metrics["selected"] == 1
    text = comp.report(out, metrics, ctx)
    assert "| 1 | r3 | yes |" in text and "| 4 | r0 |  |" in text
