"""The Self-RAG viewer as report data: per record the retrieval decision, the passages, each candidate
(its text with the reflection tokens, its scores) and the answer. Clicking a candidate highlights the
passage it was generated from; the best-scored candidate is tagged ``selected``.

Records look like ``decode.selfrag``'s output: ``retrieve``, ``retrieval_ratio``, ``passages_used``
(``[{id, title, text, score}]``), ``candidates`` (``[{passage_id, text, relevance, grounding, utility,
score, ...}]``) and ``prediction``.

Example::

    >>> r = {"question": "Who?", "retrieve": True, "retrieval_ratio": 0.7, "prediction": "Ada.",
    ...      "passages_used": [{"id": 3, "title": "Ada", "text": "Ada wrote it."}],
    ...      "candidates": [{"passage_id": 3, "text": "[Relevant]Ada.[Fully supported]", "score": 1.5}]}
    >>> cand = selfrag_example(r).panes[2].spans[0]
    >>> cand.links[0].target, cand.tags
    ('p3', ['selected'])
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from components.report_data import MAX_EXAMPLES, Example, Examples, Link, Pane, Span, score_histogram

SCORES = ("relevance", "grounding", "utility", "seq_score", "segment_score", "score")
PASSAGE_CHARS = 3000


def _number(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def selfrag_example(r: dict, question_field: str = "question") -> Example:
    passages = r.get("passages_used") or []
    candidates = r.get("candidates") or []
    scored = [c for c in candidates if isinstance(c.get("score"), (int, float))]
    best = max(scored, key=lambda c: c["score"]) if scored else None
    passage_spans = [Span(id=f"p{p.get('id')}", number=str(p.get("id")),
                          text=(f"{p.get('title')}: " if p.get("title") else "") + str(p.get("text", ""))[:PASSAGE_CHARS],
                          note=f"retrieval score {_number(p['score'])}" if p.get("score") is not None else None)
                     for p in passages]
    cand_spans = [Span(text=str(c.get("text", "")), tags=["selected"] if c is best else [],
                       links=[Link(target=f"p{c.get('passage_id')}", label=f"passage {c.get('passage_id')}")]
                       if c.get("passage_id") is not None else [],
                       note=" · ".join(f"{k} {_number(c[k])}" for k in SCORES if c.get(k) is not None) or None)
                  for c in candidates]
    fields = {"retrieved": r.get("retrieve"), "p(retrieve)": r.get("retrieval_ratio"), "mode": r.get("mode"),
              "candidates": len(candidates)}
    return Example(title=str(r.get("id", r.get("idx", ""))) or "record",
                   fields={k: v for k, v in fields.items() if v is not None},
                   tags=["retrieved" if r.get("retrieve") else "no retrieval"], panes=[
                       Pane(title="question", text=str(r.get(question_field, ""))),
                       Pane(title="passages", spans=passage_spans, sep="\n"),
                       Pane(title="candidates (click one)", spans=cand_spans, sep="\n"),
                       Pane(title="answer", text=str(r.get("prediction", "")))])


def selfrag_sections(records: list[dict], question_field: str = "question") -> list[Any]:
    """Candidate score distributions and the records in the viewer."""
    cands = [c for r in records for c in r.get("candidates") or []]
    plot = score_histogram("Self-RAG candidate scores", {k: [c.get(k) for c in cands]
                                                         for k in ("relevance", "grounding", "utility", "score")})
    viewer = Examples(title="retrieval decisions, passages and candidates",
                      filters={"selected": "only the chosen candidate"},
                      examples=[selfrag_example(r, question_field) for r in islice(records, MAX_EXAMPLES)])
    return [plot, viewer] if records else []
