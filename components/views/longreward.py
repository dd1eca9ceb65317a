"""The LongReward viewer as report data: the four scores of each response, its judged facts (each with its
support verdict and the evidence it was checked against) and the judge's replies, plus the score
distribution of every dimension.

Example::

    >>> r = {"id": "p-0", "query": "Q?", "answer": "A.", "scores": {"helpfulness": 8, "logicality": 7,
    ...      "faithfulness": 10.0, "completeness": 6, "total": 31.0}, "details": {"statements": [
    ...      {"statement": "A is so.", "support": 1.0, "evidence": "A is so.", "reply": "[[Fully supported]]"}]}}
    >>> [s.tags for s in response_example(r).panes[2].spans]
    [['supported']]
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from components.judges.longreward import DIMENSIONS
from components.report_data import MAX_EXAMPLES, Example, Examples, Pane, Plot, Span, columns, score_histogram
from components.views.citations import SUPPORT as CITATION_SUPPORT

SUPPORT = {score: tag for score, (tag, _) in CITATION_SUPPORT.items()}  # the same tags as the LongCite viewer
EVIDENCE_CHARS = 1500


def _fact(st: dict) -> Span:
    tag = SUPPORT.get(st.get("support"), "unknown")
    evidence = str(st.get("evidence") or "")[:EVIDENCE_CHARS]
    reply = str(st.get("reply") or "").strip()[:600]
    return Span(text=str(st.get("statement", "")), tags=[tag],
                note=f"verdict: {tag} · judge: {reply}" + (f" · evidence: {evidence}" if evidence else ""))


def response_example(r: dict) -> Example:
    scores = r.get("scores") or {}
    details = r.get("details") or {}
    replies = details.get("replies") or {}
    return Example(
        title=f"response {r.get('id')}", fields={d: scores.get(d) for d in (*DIMENSIONS, "total")},
        tags=sorted({SUPPORT.get(st.get("support"), "unknown") for st in details.get("statements") or []}),
        panes=[Pane(title="question", text=str(r.get("query", ""))), Pane(title="answer", text=str(r.get("answer", ""))),
               Pane(title="judged facts (click one)", spans=[_fact(st) for st in details.get("statements") or []],
                    sep="\n"),
               Pane(title="judge replies", text="\n\n".join(f"[{k}]\n{str(v).strip()}" for k, v in replies.items()))])


def longreward_sections(records: list[dict]) -> list[Any]:
    plot: Plot = score_histogram("LongReward scores per dimension (0–10)",
                                 columns(records, DIMENSIONS, lambda r: r.get("scores") or {}),
                                 low=0, high=10)
    viewer = Examples(title="scored responses", filters={"unsupported": "only unsupported facts",
                                                        "partial": "only partially supported facts"},
                      examples=[response_example(r) for r in islice(records, MAX_EXAMPLES)])
    return [plot, viewer] if records else []
