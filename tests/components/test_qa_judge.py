"""judge.qa: the reference's match, closed-task accuracy, SQuAD EM / F1 and retrieval frequency per task
and mode."""

from __future__ import annotations

import pytest

from components.judges.qa import QAJudge, QAParams, exact_match, f1_score, match, normalize_answer
from tests.fakes import FakeCtx


def test_match_is_a_case_sensitive_substring_test_of_any_gold():
    assert match("The capital is Paris.", ["Lyon", "Paris"]) == 1
    assert match("the capital is paris.", ["Paris"]) == 0
    assert match("True", ["true"]) == 0
    assert match("A cat", "A") == 1  # a one-letter gold matches any capital A, as in the reference
    assert match("anything", []) == 0
    # a bare string is one whole answer (the reference's loop would test "Lyon" letter by letter: "n" in it)
    assert match("nothing", "Lyon") == 0 and match("Lyon!", "Lyon") == 1
    assert match("x", [""]) == 1  # the empty string is in every prediction
    assert match("in 1999", [1999]) == 1  # non-string golds as strings


def test_squad_exact_match_and_f1():
    assert normalize_answer("  The Eiffel Tower, Paris! ") == "eiffel tower paris"
    assert exact_match("the Eiffel tower.", ["Eiffel Tower"]) == 1
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0
    # pred {eiffel}, gold {eiffel, tower}: precision 1, recall 1/2 -> F1 2/3
    assert f1_score("Eiffel", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    assert f1_score("x", ["y", "x z"]) == pytest.approx(2 / 3)  # the best gold
    assert f1_score("", ["y"]) == 0.0


def test_metrics_per_mode_and_task():
    recs = [
        {"mode": "always", "task_type": "open", "prediction": "It is Paris", "answers": ["Paris"], "retrieve": True},
        {"mode": "always", "task_type": "open", "prediction": "paris", "answers": ["Paris"], "retrieve": True},
        {"mode": "always", "task_type": "multiple_choice", "prediction": "B: it loops", "answerKey": "B",
         "retrieve": True},
        {"mode": "always", "task_type": "true_false", "prediction": "SUPPORTS", "answers": "true", "retrieve": True},
        {"mode": "never", "task_type": "open", "prediction": "Lyon", "answers": ["Paris"], "retrieve": False},
        {"mode": "never", "task_type": "true_false", "prediction": "false", "answers": ["true"], "retrieve": False},
    ]
    comp = QAJudge(QAParams())
    ctx = FakeCtx(params=comp.params)
    out = comp.process(recs, ctx)
    assert [r["match"] for r in out] == [1, 0, 1, 1, 0, 0]
    assert [r["em"] for r in out] == [0, 1, 0, 1, 0, 0]
    assert [r.get("accuracy") for r in out] == [None, None, 1, 1, None, 0]
    m = comp.summarize(out, ctx)
    always, never = m["groups"]["always"], m["groups"]["never"]
    assert always["open"]["match"] == 0.5 and always["open"]["em"] == 0.5 and always["open"]["n"] == 2
    # F1: "it is paris" vs "paris": precision 1/3, recall 1 -> 0.5; "paris": 1
    assert always["open"]["f1"] == pytest.approx(0.75)
    # accuracy reads the option letter / truth word: "B: it loops" -> B, SUPPORTS -> true
    assert always["all"]["accuracy"] == 1.0 and always["all"]["retrieval_frequency"] == 1.0
    assert never["all"]["retrieval_frequency"] == 0.0 and never["true_false"]["accuracy"] == 0.0
    report = comp.report(out, m, ctx)
    assert "| open | match | 0.500 | 0.000 |" in report


def test_closed_answers_read_the_first_letter_or_truth_word():
    from components.judges.qa import closed_answer

    assert closed_answer("The answer is C.", "multiple_choice") == "C"
    assert closed_answer("no letter here", "multiple_choice") is None
    assert closed_answer("TRUE, as stated", "true_false") == "true"
    assert closed_answer("untrue", "true_false") is None
