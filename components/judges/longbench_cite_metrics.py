"""LongBench-Cite arithmetic: reading the judges' verdicts and averaging the scores (LongCite §1.4).

Verdict labels are read as the reference reads them (first ``[[Label]]``, matched by substring); the
correctness rating is the number in the last ``[[…]]``. Aggregation follows the reference's scripts:

* a dataset row takes every record whose dataset contains its name (so ``multifieldqa`` pools en and
  zh), and averages the per-response recall, precision and F1 (F1 is not recomputed from the means);
* ``avg_recall`` / ``avg_precision`` / ``avg_f1`` / ``avg_correctness`` are means over the five groups;
* a response left out of the citation scores (a citation verdict that never parsed, see the judge's
  ``unparsed_verdicts``) counts in ``n`` and ``excluded`` but not in the recall, precision, F1 or
  citation-length means — the reference's scoring raises on it, so it never reaches its scores file;
* citation length is tokens per citation over all citations: per row, and as ``avg_citation_length``
  one average over every citation of every scored response (the reference's ``cnt_citation_len.py``),
  not a mean of the rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from components.text import first_bracket_label, last_bracket_number

# The five groups of the LongBench-Cite average; "multifieldqa" pools en and zh by substring.
GROUPS = ("longbench-chat", "multifieldqa", "hotpotqa", "dureader", "gov_report")
ROWS = ("longbench-chat", "multifieldqa_en", "multifieldqa_zh", "multifieldqa", "hotpotqa", "dureader",
        "gov_report")
_CITE_BLOCK = re.compile(r"<cite>.*?</cite>", re.DOTALL)


def label_parser(score: Callable[[str], float]) -> Callable[[str], float | None]:
    """Reads the first ``[[Label]]`` (letters, spaces, slashes) and scores its lower-cased text; None when
    there is no such label. Any label parses, as in the reference: the scores match by substring."""
    def parse(text: str) -> float | None:
        label = first_bracket_label(text)
        return score(label.lower()) if label is not None else None
    return parse


def support_score(label: str) -> float:
    """"fully" anywhere → 1, else "partially" → 0.5, else 0 (the reference's matching: ``[[Not fully
    supported]]`` scores 1 and an unknown label 0)."""
    return 1.0 if "fully" in label else 0.5 if "partially" in label else 0.0


def needs_citation_score(label: str) -> float:
    """"yes" anywhere → 1 (the sentence needs a citation), else 0."""
    return 1.0 if "yes" in label else 0.0


def relevance_score(label: str) -> float:
    """0 for a negative label, else 1. The reference's prompt names its negative label "Unrelevant" and only
    that substring scores 0 there; this judge's prompt names it "Irrelevant", so both count."""
    return 0.0 if "unrelevant" in label or "irrelevant" in label else 1.0


def rating_parser(low: int, high: int, transform: Callable[[float], float]) -> Callable[[str], float | None]:
    """Reads the number in the last ``[[…]]``; a rating outside ``low..high`` counts as unparsable."""
    def parse(text: str) -> float | None:
        rating = last_bracket_number(text)
        return transform(rating) if rating is not None and low <= rating <= high else None
    return parse


def strip_markup(text: str) -> str:
    """The answer as the reference shows it to judges: complete ``<cite>…</cite>`` blocks removed, then
    the statement tags."""
    return _CITE_BLOCK.sub("", text).replace("<statement>", "").replace("</statement>", "")


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of one response's precision and recall (0 when both are 0)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def citation_length(records: list[dict]) -> float | None:
    """Tokens per citation over every citation of the scored (not excluded) responses."""
    kept = [r for r in records if r.get("recall") is not None]
    n = sum(r["n_citations"] for r in kept)
    return sum(r["citation_tokens"] for r in kept) / n if n else None


def _rows(records: list[dict]) -> dict[str, Any]:
    kept = [r for r in records if r.get("recall") is not None]
    return {
        "n": len(records),
        "excluded": len(records) - len(kept),
        "recall": _mean([r["recall"] for r in kept]),
        "precision": _mean([r["precision"] for r in kept]),
        "f1": _mean([r["f1"] for r in kept]),
        "correctness": _mean([r["correctness"] for r in records if r.get("correctness") is not None]),
        "citation_length": citation_length(records),
    }


def aggregate(records: list[dict]) -> dict[str, Any]:
    """Per-dataset rows, an ``all`` row, and the headline ``avg_*`` (see the module docstring): recall,
    precision, F1 and correctness are means over the five groups present (all records when none of them
    is); ``avg_citation_length`` is one average over all citations."""
    names = list(ROWS) + sorted({r.get("dataset", "") for r in records} - set(ROWS) - {""})
    datasets: dict[str, Any] = {}
    for name in names:
        chosen = [r for r in records if name in r.get("dataset", "")]
        if chosen:
            datasets[name] = _rows(chosen)
    if records:
        datasets["all"] = _rows(records)
    groups = [g for g in GROUPS if g in datasets]
    source = [datasets[g] for g in groups] or ([datasets["all"]] if records else [])
    metrics: dict[str, Any] = {"records": len(records), "avg_groups": groups}
    for key in ("recall", "precision", "f1", "correctness"):
        metrics[f"avg_{key}"] = _mean([row[key] for row in source if row[key] is not None])
    whole = datasets.get("all", {})  # the `all` row already holds the headline length and exclusions
    metrics["avg_citation_length"] = whole.get("citation_length")
    metrics["excluded"] = whole.get("excluded", 0)
    metrics["unparsed_verdicts"] = sum(r.get("unparsed_verdicts", 0) for r in records)
    metrics["unparsed_correctness"] = sum(r.get("unparsed_correctness", 0) for r in records)
    metrics["datasets"] = datasets
    return metrics
