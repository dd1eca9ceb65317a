"""Preference pairs: best vs worst scored response per prompt, LongReward's tie rules, hand-checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.selectors.preference_pairs import PreferencePairs, build_pairs
from tests.fakes import FakeCtx

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RECIPE_SHARED_DATA", REPO / ".." / "shared" / "data"))


def resp(prompt: int, k: int, total: float, prefix: str = "run") -> dict:
    return {"idx": f"{prefix}-{prompt}-{k}", "query": f"q{prompt}", "answer": f"a{prompt}.{k}",
            "scores": {"total": total}}


def test_ties_go_to_the_first_maximum_and_the_last_minimum():
    responses = [resp(1, k, t) for k, t in enumerate([5, 9, 9, 2, 2])]
    (pair,) = build_pairs(responses, {1: "doc one"})
    assert pair == {"idx": 1, "context": "doc one", "query": "q1", "win_response": "a1.1",
                    "lose_response": "a1.4", "win_id": "run-1-1", "lose_id": "run-1-4"}


def test_an_all_equal_group_still_pairs_its_first_and_last():
    (pair,) = build_pairs([resp(3, k, 7.5) for k in range(5)], {3: "d"})
    assert (pair["win_id"], pair["lose_id"]) == ("run-3-0", "run-3-4")


def test_prompts_in_first_seen_order_small_and_context_less_ones_skipped():
    responses = []
    for k in range(5):  # interleaved: prompt 8 appears first
        responses += [resp(8, k, k), resp(2, k, 10 - k)]
    responses += [resp(4, k, k) for k in range(4)]  # only 4 responses
    responses += [resp(6, k, k) for k in range(5)]  # no context
    pairs = build_pairs(responses, {8: "d8", 2: "d2", 4: "d4"})
    assert [(p["idx"], p["win_id"], p["lose_id"]) for p in pairs] == [
        (8, "run-8-4", "run-8-0"), (2, "run-2-0", "run-2-4")]
    assert [p["idx"] for p in build_pairs(responses, {8: "d8", 2: "d2", 4: "d4"}, min_responses=4)] == [8, 2, 4]


def test_the_prompt_id_is_the_number_before_the_sample_number():
    responses = [{"idx": f"a-b-12-{k}", "query": "q", "answer": str(k), "scores": {"total": k}} for k in range(5)]
    (pair,) = build_pairs(responses, {12: "c"})
    assert (pair["idx"], pair["win_response"], pair["lose_response"]) == (12, "4", "0")


def test_min_margin_skips_close_calls():
    responses = [resp(1, k, 20 + k * 0.5) for k in range(5)]  # margin 2.0
    assert build_pairs(responses, {1: "d"}, min_margin=2.0)
    assert build_pairs(responses, {1: "d"}, min_margin=2.5) == []


def test_the_reference_example_pairs_its_best_and_worst_sample():
    sampled = SHARED / "longreward" / "sampled_responses.jsonl"
    if not sampled.exists():
        pytest.skip(f"reference data not found at {SHARED} (set RECIPE_SHARED_DATA)")
    responses = [json.loads(line) for line in sampled.read_text().splitlines() if line.strip()]
    # scores written by hand: the total of "11-k" is k + 20, except 11-5 which ties 11-9 for the top
    for r in responses:
        k = int(r["idx"].split("-")[1])
        r["scores"] = {"total": 29 if k == 5 else k + 20}
    (pair,) = build_pairs(responses, {11: "the context"})
    order = [r["idx"] for r in responses]  # the file's order: 11-7, 11-0, 11-8, 11-5, 11-2, ...
    first_top = min(order.index("11-5"), order.index("11-9"))
    assert pair["win_id"] == order[first_top]
    assert pair["lose_id"] == "11-0"
    assert pair["win_response"] == responses[first_top]["answer"]


def test_component_writes_dpo_records_and_counts_what_it_skipped(tmp_path):
    comp = PreferencePairs(PreferencePairs.Params(min_responses=3, template="Doc: {context}\nQ: {query}",
                                                  system="Answer from {title}."))
    scored = [{"id": f"p1-{k}", "prompt_id": "p1", "answer": f"a{k}", "scores": {"total": t}}
              for k, t in enumerate([10, 30, 20])]
    scored += [{"id": "p2-0", "prompt_id": "p2", "answer": "x", "scores": {"total": 1}}]
    prompts = [{"id": "p1", "context": "C1", "query": "Q1", "title": "T"},
               {"id": "p2", "context": "C2", "query": "Q2", "title": "T"}]
    ctx = FakeCtx(comp.params, tmp=tmp_path)
    (pair,) = comp.run({"responses": scored, "prompts": prompts}, ctx)
    assert pair == {"id": "p1", "prompt": [{"role": "system", "content": "Answer from T."},
                                           {"role": "user", "content": "Doc: C1\nQ: Q1"}],
                    "chosen": "a1", "rejected": "a0", "context": "C1", "query": "Q1",
                    "chosen_id": "p1-1", "rejected_id": "p1-0", "chosen_total": 30, "rejected_total": 10,
                    "margin": 20}
    metrics = comp.summarize([pair], ctx)
    assert metrics["skipped_too_few"] == 1 and metrics["pairs"] == 1 and metrics["prompts"] == 2
    assert "1 with fewer than 3 responses" in comp.report([pair], metrics, ctx)
