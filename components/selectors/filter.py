"""``select.filter``: keep records by length, by field predicates, and/or the top k by a score."""

from __future__ import annotations

import heapq
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.base import Context, Estimate, Fields, Params, WholeComponent

STATS_NAME = "filter_rules"

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "regex", "exists"]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: b in a,
    "regex": lambda a, b: re.search(b, a if isinstance(a, str) else str(a)) is not None,
}


class Predicate(BaseModel):
    """``record[field] <op> value``. ``exists`` checks the field is present and not null (``value: false``
    inverts it). Every other op fails on a record without the field."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the record field to test")
    op: Op = Field(description="eq ne lt le gt ge in not_in contains regex exists")
    value: Any = Field(None, description="the right-hand side (a list for in/not_in, a pattern for regex)")

    @model_validator(mode="after")
    def _value_fits_op(self) -> Predicate:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("op 'regex' needs a pattern string")
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"not a valid regex: {e}") from None
        if self.op == "exists" and self.value is None:
            self.value = True
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ValueError("op 'exists' takes value true or false")
        if self.op not in ("eq", "ne", "exists") and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self

    def describe(self) -> str:
        return f"{self.field} {self.op} {json.dumps(self.value, ensure_ascii=False)}"

    def holds(self, record: dict[str, Any]) -> bool:
        present = record.get(self.field) is not None
        if self.op == "exists":
            return present == self.value
        if self.field not in record:
            return False
        try:
            return bool(_COMPARE[self.op](record[self.field], self.value))
        except TypeError as e:
            raise ValueError(
                f"cannot test {self.describe()} on value {record[self.field]!r}: {e}"
            ) from None


class Filter(WholeComponent):
    """Keeps the records that pass every rule, applied in this order:

    1. length of ``length_field``: ``min_chars``/``max_chars`` (characters) and ``min_tokens``/``max_tokens``
       (whitespace-separated words, no tokenizer needed); a record without the field fails;
    2. each ``where`` predicate, in order (a fixed set of operators; nothing is evaluated as code);
    3. ``top_k``: the k highest ``score_field`` values, highest first, ties in input order. Records with a
       null or missing score are dropped (``drop_null_scores: true``) or ranked after all scored ones.

    Otherwise the input order is kept. ``summarize`` gives, per rule, how many records came in and went out.
    The records stream through: one at a time, and for ``top_k`` a heap of at most k of them.
    """

    type = "select.filter"
    inputs = {"records": Fields()}
    passthrough = "records"
    outputs = Fields()
    streams = True

    class Params(Params):
        length_field: str | None = Field(None, description="the field whose length the length rules test")
        min_chars: int | None = Field(None, ge=0, description="keep records with at least this many characters")
        max_chars: int | None = Field(None, ge=0, description="keep records with at most this many characters")
        min_tokens: int | None = Field(None, ge=0, description="keep records with at least this many words")
        max_tokens: int | None = Field(None, ge=0, description="keep records with at most this many words")
        where: list[Predicate] = Field(default_factory=list, description="predicates every kept record meets")
        top_k: int | None = Field(None, ge=0, description="then keep only the k best records by score_field")
        score_field: str | None = Field(None, description="the numeric field top_k ranks by")
        drop_null_scores: bool = Field(
            True, description="with top_k: drop records without a score (else they rank last)"
        )

        @model_validator(mode="after")
        def _consistent(self) -> Filter.Params:
            bounds = (self.min_chars, self.max_chars, self.min_tokens, self.max_tokens)
            if any(b is not None for b in bounds) and self.length_field is None:
                raise ValueError("length rules (min/max_chars, min/max_tokens) need `length_field`")
            pairs = ((self.min_chars, self.max_chars, "chars"), (self.min_tokens, self.max_tokens, "tokens"))
            for lo, hi, unit in pairs:
                if lo is not None and hi is not None and lo > hi:
                    raise ValueError(f"min_{unit} ({lo}) is larger than max_{unit} ({hi})")
            if (self.top_k is None) != (self.score_field is None):
                raise ValueError("`top_k` and `score_field` go together")
            return self

    def _tests(self) -> list[tuple[str, Callable[[dict], bool]]]:
        """(description, record -> kept?) of the per-record rules, in the order they apply."""
        p = self.params
        tests: list[tuple[str, Callable[[dict], bool]]] = []
        for lo, hi, unit, measure in (
            (p.min_chars, p.max_chars, "chars", len),
            (p.min_tokens, p.max_tokens, "tokens", lambda s: len(s.split())),
        ):
            if lo is None and hi is None:
                continue
            desc = f"{p.length_field} {unit} in [{lo if lo is not None else 0}, {hi if hi is not None else '∞'}]"
            tests.append((desc, self._length_test(lo, hi, measure)))
        for pred in p.where:
            tests.append((pred.describe(), pred.holds))
        return tests

    def _length_test(self, lo: int | None, hi: int | None, measure: Callable[[str], int]) -> Callable[[dict], bool]:
        field = self.params.length_field
        assert field is not None

        def keep(r: dict) -> bool:
            value = r.get(field)
            if value is None:
                return False
            n = measure(value if isinstance(value, str) else str(value))
            return (lo is None or n >= lo) and (hi is None or n <= hi)

        return keep

    def _top_k(self, recs: Iterable[dict]) -> list[dict]:
        """The k best by score, highest first, ties in input order: a heap of at most k records."""
        p = self.params
        assert p.top_k is not None and p.score_field is not None
        k = p.top_k
        heap: list[tuple[float, int, dict]] = []  # (score, -position): the root is the worst kept
        unscored: list[dict] = []  # the first k without a score, in input order
        for pos, r in enumerate(recs):
            value = r.get(p.score_field)
            if value is None:
                if not p.drop_null_scores and len(unscored) < k:
                    unscored.append(r)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"score field {p.score_field!r} must be a number, got {value!r}")
            elif len(heap) < k:
                heapq.heappush(heap, (value, -pos, r))
            elif k and (value, -pos) > heap[0][:2]:
                heapq.heapreplace(heap, (value, -pos, r))
        ranked = [r for _, _, r in sorted(heap, key=lambda t: (-t[0], -t[1]))]
        return (ranked + unscored)[:k]

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("records")
        unfiltered = not self._tests() and self.params.top_k is None
        return Estimate(records_out=n if n is not None and unfiltered else None)

    def run(self, inputs: dict[str, Iterable[dict]], ctx: Context) -> Iterator[dict]:
        """The kept records as they pass (a generator); the per-rule counts are saved once it is done."""
        tests = self._tests()
        # passed[i]: records that passed the first i rules, so rule i takes passed[i] and keeps passed[i + 1]
        passed = [0] * (len(tests) + 1)
        ranked = 0  # what top_k kept

        def passing() -> Iterator[dict]:
            for r in inputs.get("records", []):
                passed[0] += 1
                for i, (_, test) in enumerate(tests, 1):
                    if not test(r):
                        break
                    passed[i] += 1
                else:
                    yield r

        p = self.params
        kept = passing() if p.top_k is None else iter(self._top_k(passing()))
        for r in kept:
            ranked += 1
            yield r
        stats = [{"rule": desc, "in": passed[i], "out": passed[i + 1]} for i, (desc, _) in enumerate(tests)]
        if p.top_k is not None:
            stats.append({"rule": f"top {p.top_k} by {p.score_field}", "in": passed[-1], "out": ranked})
        # summarize() may run in a later process (a resumed run): the counts go to the stats channel
        ctx.save_stats(STATS_NAME, stats)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        rules = ctx.load_stats(STATS_NAME, default=[])
        n_in = rules[0]["in"] if rules else len(records)
        return {"in": n_in, "out": len(records), "rules": rules}

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        m = metrics if metrics is not None else self.summarize(records, ctx)
        lines = [f"Kept {m['out']} of {m['in']} records.", "", "| rule | in | out |", "| --- | ---: | ---: |"]
        lines += [f"| `{r['rule']}` | {r['in']} | {r['out']} |" for r in m["rules"]]
        return "\n".join(lines)
