"""Before/after reward table and win rate, against hand-computed numbers."""

from __future__ import annotations

import pytest

from components.judges.reward_compare import CompareRewards, win_rate
from tests.fakes import FakeCtx


def scored(prompt: str, total: float, **dims: float) -> dict:
    scores = {"helpfulness": 0.0, "logicality": 0.0, "faithfulness": 0.0, "completeness": 0.0, **dims}
    return {"prompt_id": prompt, "scores": {**scores, "total": total}}


def test_win_rate_counts_every_pair_of_a_prompt_and_weighs_prompts_equally():
    # prompt 1: after [30, 10] vs before [20]: 1 win, 1 loss -> 0.5; prompt 2: [5] vs [5, 1]: tie + win -> 0.75
    assert win_rate([[30, 10], [5]], [[20], [5, 1]]) == (pytest.approx(0.625), 2, 1, 1)
    assert win_rate([[1], []], [[2], [3]]) == (0.0, 0, 0, 1)  # a prompt with no after-response is left out
    assert win_rate([], [])[0] is None


def test_table_and_win_rate_of_after_over_before(tmp_path):
    before = [scored("p", 20, helpfulness=5), scored("p", 10, helpfulness=3), scored("q", 8, helpfulness=2)]
    after = [scored("p", 25, helpfulness=7), scored("q", 8, helpfulness=4), scored("r", 40)]
    comp = CompareRewards()
    ctx = FakeCtx(comp.params, tmp=tmp_path)
    rows = comp.run({"before": before, "after": after}, ctx)
    assert rows == [{"prompt_id": "p", "before_total": 15.0, "after_total": 25.0, "wins": 2, "ties": 0, "losses": 0},
                    {"prompt_id": "q", "before_total": 8.0, "after_total": 8.0, "wins": 0, "ties": 1, "losses": 0}]
    m = comp.summarize(rows, ctx)
    assert m["win_rate"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["before_helpfulness"] == pytest.approx(10 / 3) and m["after_helpfulness"] == pytest.approx(11 / 3)
    assert (m["before_n"], m["after_n"]) == (3, 3)
    report = comp.report(rows, m, ctx)
    assert "| helpfulness | 3.33 | 3.67 | +0.33 |" in report
    assert "| total | 12.67 | 24.33 | +11.67 |" in report
    assert "**75.0%** over 2 prompts (2 wins, 1 ties, 0 losses" in report
