"""The LongCite viewer as report data: an answer's statements beside the ``<Ci>``-numbered context.

Clicking a statement highlights the sentences it cites; with a judge's verdicts each citation shows
whether it was judged relevant and the statement's note gives its support verdict. Statements are
tagged ``cited``/``uncited`` and, when judged, ``supported``/``partial``/``unsupported`` (an uncited
statement the judge says needs a citation is ``unsupported`` too), which the section's filters use.

Example::

    >>> ex = citation_example("q", "Why?", "<C0>Sky is blue. <C1>Grass is green.",
    ...                       [{"statement": "Blue.", "citation": [{"start_sentence_idx": 0,
    ...                                                             "end_sentence_idx": 0}]}])
    >>> [(s.text, [link.target for link in s.links]) for s in ex.panes[0].spans]
    [('Blue.', ['s0'])]
"""

from __future__ import annotations

import re
from typing import Any

from components.report_data import MAX_EXAMPLES, Example, Examples, Link, Pane, Span, Value
from components.text import repair_tags, statement_segments

_MARKER = re.compile(r"<C(\d+)>")
_RANGE = re.compile(r"\[\s*(\d+)\s*-\s*(\d+)\s*\]")
_DOCUMENT = re.compile(r"\[Document Start\]\n?(.*?)\n?\[Document End\]", re.DOTALL)
MAX_CONTEXT_CHARS = 60_000  # beyond this, only the cited sentences and their neighbours are shown
NEIGHBOURS = 2
FILTERS = {"uncited": "only uncited statements", "unsupported": "only unsupported statements"}
SUPPORT = {1.0: ("supported", "fully supported"), 0.5: ("partial", "partially supported"),
           0.0: ("unsupported", "no support")}


def numbered_sentences(numbered: str) -> list[tuple[int, str]]:
    """``(number, text)`` of each ``<Ci>`` sentence of a numbered context (text before ``<C0>`` dropped)."""
    parts = _MARKER.split(numbered)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def document_of(prompt: str) -> str:
    """The numbered document inside a LongCite prompt (between ``[Document Start]`` and ``[Document End]``),
    else the whole prompt."""
    m = _DOCUMENT.search(prompt)
    return m.group(1) if m else prompt


def answer_statements(answer: str) -> list[dict]:
    """Statements of a ``<statement>S<cite>[s-e]…</cite></statement>`` answer, each with its sentence ranges."""
    out = []
    for seg in statement_segments(repair_tags(answer)):
        if seg["kind"] == "space":
            continue
        ranges = [{"start_sentence_idx": int(a), "end_sentence_idx": int(b)}
                  for a, b in _RANGE.findall(seg["cite"] or "")]
        out.append({"statement": seg["text"], "citation": ranges})
    return out


def _relevance(value: Any) -> tuple[str, str]:
    if value is None:
        return "not judged", "unknown"
    return ("relevant", "good") if float(value) >= 1 else ("irrelevant", "bad")


def _statement(st: dict, n: int) -> tuple[Span, set[int]]:
    cites = [c for c in (st.get("citation") or []) if isinstance(c, dict)]
    links: list[Link] = []
    cited: set[int] = set()
    for c in cites:
        a, b = int(c.get("start_sentence_idx", -1)), int(c.get("end_sentence_idx", -1))
        judged = "relevant" in c
        label, tag = _relevance(c.get("relevant")) if judged else (None, None)
        for k, i in enumerate(range(max(a, 0), min(b, n - 1) + 1)):
            cited.add(i)
            links.append(Link(target=f"s{i}", label=f"[{a}-{b}] {label}" if judged and k == 0 else None, tag=tag))
    tags = ["cited" if links else "uncited"]
    notes = []
    if "support" in st:
        tag, words = SUPPORT.get(st["support"], ("unknown", "verdict not parsed"))
        tags.append(tag)
        notes.append(f"judge: {words}")
    if "needs_citation" in st:
        need = st["needs_citation"]
        if need is not None and float(need) >= 1:
            tags.append("unsupported")
        notes.append("judge: " + ("needs a citation" if need and float(need) >= 1 else
                                  "needs no citation" if need is not None else "verdict not parsed"))
    raw = st.get("support_raw") or st.get("need_raw")
    if raw:
        notes.append(f"reply: {str(raw).strip()[:300]}")
    return Span(text=str(st.get("statement", "")), links=links, tags=tags, note=" · ".join(notes) or None), cited


def _context_spans(sentences: list[tuple[int, str]], cited: set[int]) -> list[Span]:
    total = sum(len(t) for _, t in sentences)
    keep = None
    if total > MAX_CONTEXT_CHARS:
        keep = {j for i in cited for j in range(i - NEIGHBOURS, i + NEIGHBOURS + 1)} | set(range(NEIGHBOURS))
    spans: list[Span] = []
    for i, text in sentences:
        if keep is None or i in keep:
            spans.append(Span(id=f"s{i}", number=str(i), text=text))
        elif not spans or spans[-1].id is not None:
            spans.append(Span(text="[…] "))
    return spans


def citation_example(title: str, question: str, numbered_context: str, statements: list[dict],
                     fields: dict[str, Value] | None = None) -> Example:
    """One answer (its statements, judged or not) beside its numbered context."""
    sentences = numbered_sentences(numbered_context)
    n = max((i for i, _ in sentences), default=-1) + 1
    spans, cited = [], set()
    for st in statements:
        span, got = _statement(st, n)
        spans.append(span)
        cited |= got
    tags = sorted({t for s in spans for t in s.tags})
    return Example(title=title, fields={"question": question, **(fields or {})}, tags=tags, panes=[
        Pane(title="answer (click a statement)", spans=spans),
        Pane(title="numbered context", spans=_context_spans(sentences, cited), sep="")])


def citation_section(title: str, examples: list[Example], note: str | None = None) -> Examples:
    return Examples(title=title, note=note, filters=FILTERS, examples=examples[:MAX_EXAMPLES])
