"""Reading LongCite-style answers: ``<statement>S<cite>[s-e]…</cite></statement>`` into cited statements.

This is the post-processing of LongCite's ``query_longcite`` (the one the released models and the
LongBench-Cite numbers were made with), reproduced case for case; none of it is a bug to fix:

* the answer is read left to right. Each ``<statement>`` that has a ``</statement>`` after it closes a
  statement; the text before it (since the last close) is *untagged* text;
* untagged text whose stripped length is more than 5 characters becomes a statement with no citations,
  kept exactly as written (whitespace, stray tags and ``<cite>`` blocks included); shorter untagged text
  is not a statement but stays in the rebuilt answer as it is;
* inside a closed statement every complete ``<cite>…</cite>`` block is removed and the rest of the text
  is the statement, as written (``A<cite>[0-0]</cite> B`` is ``A B``); the citations come from the
  removed blocks. A statement whose inside is blank is skipped (its text stays in the answer); one whose
  text is blank but which has cite blocks is kept, with its citations;
* a final ``<statement>`` that never closes is dropped, with everything after it;
* no tag repair: ``< cite>`` or ``statement>`` are read as plain text;
* citations are ``[s-e]`` ranges of ASCII digits only (a bare ``[k]`` or ``[ 1 - 2 ]`` is ignored); a
  range with ``s > n − 1`` or ``e < s`` is skipped, the others are clamped to the last sentence and merged
  into the previous span when ``s == previous e + 1``; the first 3 merged spans are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

OPEN, CLOSE = "<statement>", "</statement>"
MAX_SPANS = 3
UNTAGGED_MIN_CHARS = 5  # untagged text longer than this (stripped) is an uncited statement
_CITE_BLOCK = re.compile(r"<cite>(.*?)</cite>", re.DOTALL)
_RANGE = re.compile(r"\[([0-9]+)-([0-9]+)\]")  # [0-9], not \d: other scripts' digits do not count


def _bounds(chunk: Mapping) -> tuple[int, int]:
    """A numbered piece's character span; takes ``start_idx``/``end_idx`` or ``start``/``end``."""
    start = chunk["start_idx"] if "start_idx" in chunk else chunk["start"]
    end = chunk["end_idx"] if "end_idx" in chunk else chunk["end"]
    return start, end


def cite_spans(cite_texts: Sequence[str], chunks: Sequence[Mapping]) -> list[dict]:
    """The ``[s-e]`` ranges of the cite blocks' texts, in order → merged, clamped citations of ``chunks``
    (at most 3). Each block is read on its own: a range never spans two blocks."""
    n = len(chunks)
    merged: list[list[int]] = []
    for match in (m for text in cite_texts for m in _RANGE.finditer(text)):
        s, e = int(match.group(1)), int(match.group(2))
        if s > n - 1 or e < s:
            continue
        e = min(e, n - 1)
        if merged and s == merged[-1][1] + 1:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    return [{
        "start_sentence_idx": s,
        "end_sentence_idx": e,
        "start_char_idx": _bounds(chunks[s])[0],
        "end_char_idx": _bounds(chunks[e])[1],
        "cite": "".join(c["content"] for c in chunks[s:e + 1]),
    } for s, e in merged[:MAX_SPANS]]


def read_statement(body: str, chunks: Sequence[Mapping]) -> tuple[str, list[dict]]:
    """The inside of one closed statement → (its text without cite blocks, its citations)."""
    return _CITE_BLOCK.sub("", body), cite_spans(_CITE_BLOCK.findall(body), chunks)


def parse_output(output: str, chunks: Sequence[Mapping]) -> tuple[list[dict], str]:
    """``(statements, rebuilt answer)`` from raw model output (see the module docstring).

    ``statements`` are ``{statement, citation: [{start_sentence_idx, end_sentence_idx, start_char_idx,
    end_char_idx, cite}]}`` in order. The rebuilt answer writes every statement as
    ``<statement>S<cite>[s-e]…</cite></statement>`` with the normalised spans, keeps every other piece of
    text as it came, and is stripped.
    """
    statements: list[dict] = []
    rebuilt: list[str] = []
    pos = 0
    while True:
        open_at = output.find(OPEN, pos)
        if open_at < 0:
            open_at = len(output)
        close_at = output.find(CLOSE, open_at)
        untagged = output[pos:open_at]
        if len(untagged.strip()) > UNTAGGED_MIN_CHARS:
            statements.append({"statement": untagged, "citation": []})
            rebuilt.append(f"{OPEN}{untagged}<cite></cite>{CLOSE}")
        else:
            rebuilt.append(untagged)
        if close_at < 0:  # no more statements, or a last one that never closes: dropped
            break
        body = output[open_at + len(OPEN):close_at]
        if body.strip():
            text, citations = read_statement(body, chunks)
            statements.append({"statement": text, "citation": citations})
            spans = "".join(f"[{c['start_sentence_idx']}-{c['end_sentence_idx']}]" for c in citations)
            rebuilt.append(f"{OPEN}{text}<cite>{spans}</cite>{CLOSE}")
        else:
            rebuilt.append(body)
        pos = close_at + len(CLOSE)
    return statements, "".join(rebuilt).strip()
