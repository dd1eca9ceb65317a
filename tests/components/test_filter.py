"""select.filter: length rules, predicates, top_k, per-rule counts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.selectors.filter import Filter
from tests.fakes import FakeCtx


def run(tmp_path, records, **params):
    comp = Filter(Filter.Params(**params))
    ctx = FakeCtx(comp.params, tmp=tmp_path)
    out = list(comp.run({"records": records}, ctx))  # the filter streams: a generator
    return out, comp.summarize(out, ctx)


def ids(records):
    return [r["id"] for r in records]


TEXTS = [{"id": 1, "text": "abc"}, {"id": 2, "text": "one two three"}, {"id": 3, "text": "abcde"},
         {"id": 4}, {"id": 5, "text": "a b c d e f g h"}]


def test_char_length_bounds_are_inclusive(tmp_path):
    out, m = run(tmp_path, TEXTS, length_field="text", min_chars=5, max_chars=13)
    # lengths: 3, 13, 5, (missing), 15
    assert ids(out) == [2, 3]
    assert m == {"in": 5, "out": 2, "rules": [{"rule": "text chars in [5, 13]", "in": 5, "out": 2}]}


def test_token_length_counts_whitespace_words(tmp_path):
    out, _ = run(tmp_path, TEXTS, length_field="text", min_tokens=3)
    assert ids(out) == [2, 5]  # 1, 3, 1, -, 8 words
    out, _ = run(tmp_path, TEXTS, length_field="text", max_tokens=1)
    assert ids(out) == [1, 3]


ROWS = [
    {"id": "a", "lang": "en", "score": 3, "tags": ["x", "y"], "text": "The cat sat."},
    {"id": "b", "lang": "zh", "score": 7, "tags": ["y"], "text": "Dogs bark"},
    {"id": "c", "lang": "en", "score": None, "tags": [], "text": "cat 42"},
    {"id": "d", "score": 5, "text": "no lang"},
]


@pytest.mark.parametrize("pred, expected", [
    ({"field": "lang", "op": "eq", "value": "en"}, ["a", "c"]),
    ({"field": "lang", "op": "ne", "value": "en"}, ["b"]),  # a record without the field fails
    ({"field": "score", "op": "gt", "value": 3}, ["b", "d"]),
    ({"field": "score", "op": "ge", "value": 3}, ["a", "b", "d"]),
    ({"field": "score", "op": "lt", "value": 5}, ["a"]),
    ({"field": "score", "op": "le", "value": 5}, ["a", "d"]),
    ({"field": "lang", "op": "in", "value": ["zh", "fr"]}, ["b"]),
    ({"field": "lang", "op": "not_in", "value": ["zh"]}, ["a", "c"]),
    ({"field": "tags", "op": "contains", "value": "y"}, ["a", "b"]),
    ({"field": "text", "op": "contains", "value": "cat"}, ["a", "c"]),
    ({"field": "text", "op": "regex", "value": r"\d+$"}, ["c"]),
    ({"field": "lang", "op": "exists"}, ["a", "b", "c"]),
    ({"field": "score", "op": "exists", "value": False}, ["c"]),
])
def test_predicates(tmp_path, pred, expected):
    rows = [r for r in ROWS if not (pred["op"] in ("gt", "ge", "lt", "le") and r["score"] is None)]
    out, _ = run(tmp_path, rows, where=[pred])
    assert ids(out) == expected


def test_predicates_chain_and_count_per_rule(tmp_path):
    out, m = run(tmp_path, ROWS, where=[{"field": "lang", "op": "exists"}, {"field": "text", "op": "contains",
                                                                             "value": "cat"}])
    assert ids(out) == ["a", "c"]
    assert [(r["in"], r["out"]) for r in m["rules"]] == [(4, 3), (3, 2)]
    assert m["rules"][1]["rule"] == 'text contains "cat"'


def test_comparing_incompatible_types_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot test score lt 5 on value None"):
        run(tmp_path, ROWS, where=[{"field": "score", "op": "lt", "value": 5}])


def test_top_k_highest_first_ties_in_input_order(tmp_path):
    rows = [{"id": 1, "s": 3}, {"id": 2, "s": 9}, {"id": 3, "s": None}, {"id": 4, "s": 9}, {"id": 5, "s": 5.5},
            {"id": 6}]
    out, m = run(tmp_path, rows, top_k=3, score_field="s")
    assert ids(out) == [2, 4, 5]
    assert m["rules"] == [{"rule": "top 3 by s", "in": 6, "out": 3}]
    out, _ = run(tmp_path, rows, top_k=6, score_field="s", drop_null_scores=False)
    assert ids(out) == [2, 4, 5, 1, 3, 6]
    out, _ = run(tmp_path, rows, top_k=10, score_field="s")
    assert ids(out) == [2, 4, 5, 1]


def test_rules_apply_in_order_length_where_top_k(tmp_path):
    rows = [{"id": i, "text": "x" * i, "s": 10 - i, "ok": i % 2 == 0} for i in range(1, 9)]
    out, m = run(tmp_path, rows, length_field="text", min_chars=3, where=[{"field": "ok", "op": "eq", "value": True}],
                 top_k=2, score_field="s")
    # length keeps 3..8; ok keeps 4, 6, 8; top 2 by s (6, 4, 2) keeps 4, 6
    assert ids(out) == [4, 6]
    assert [(r["in"], r["out"]) for r in m["rules"]] == [(8, 6), (6, 3), (3, 2)]
    assert Filter(Filter.Params(top_k=1, score_field="s")).report(out, m, FakeCtx(tmp=tmp_path)).startswith(
        "Kept 2 of 8 records.")


def test_no_rules_passes_everything(tmp_path):
    out, m = run(tmp_path, ROWS)
    assert out == ROWS and m == {"in": 4, "out": 4, "rules": []}
    assert Filter(Filter.Params()).estimate({"records": 4}).records_out == 4


def test_non_numeric_score_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="must be a number"):
        run(tmp_path, [{"s": "high"}], top_k=1, score_field="s")


@pytest.mark.parametrize("params, message", [
    ({"min_chars": 3}, "need `length_field`"),
    ({"length_field": "t", "min_tokens": 5, "max_tokens": 2}, "min_tokens"),
    ({"top_k": 3}, "go together"),
    ({"score_field": "s"}, "go together"),
    ({"where": [{"field": "a", "op": "in", "value": "x"}]}, "needs a list"),
    ({"where": [{"field": "a", "op": "regex", "value": "("}]}, "not a valid regex"),
    ({"where": [{"field": "a", "op": "gt"}]}, "needs a value"),
    ({"where": [{"field": "a", "op": "eval", "value": "1"}]}, "literal_error"),
    ({"where": [{"field": "a", "op": "eq", "value": 1, "extra": 2}]}, "extra"),
])
def test_params_are_checked(params, message):
    with pytest.raises(ValidationError, match=message):
        Filter.Params(**params)
