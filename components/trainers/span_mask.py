"""Spans of a training text kept out of the loss (``train.sft``'s ``mask_spans``).

Self-RAG (spec §5.3) trains the generator on outputs that hold retrieved passages as
``<paragraph>…</paragraph>``; the passages are the retriever's text, not the model's, so they carry no
loss. Each ``(open, close)`` pair masks the text strictly between an ``open`` marker and the next
``close`` marker, every passage on its own; the markers themselves, and the generated text between two
passages, are trained. An ``open`` without a ``close`` masks to the end of the text.

The reference masks one span from the first ``<paragraph>`` to the LAST ``</paragraph>`` (its search for
the closing marker never stops at the first), so the sentences generated between two passages are masked
too; ``whole=True`` (``compat: reference``) reproduces that.

>>> t = "a<p>x</p>b<p>y</p>c"
>>> [t[a:b] for a, b in passage_char_spans(t, [("<p>", "</p>")])]
['x', 'y']
>>> [t[a:b] for a, b in passage_char_spans(t, [("<p>", "</p>")], whole=True)]
['x</p>b<p>y']
"""

from __future__ import annotations

from collections.abc import Sequence


def passage_char_spans(text: str, pairs: Sequence[Sequence[str]], *, whole: bool = False) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of ``text`` to mask, for each ``(open, close)`` pair."""
    spans: list[tuple[int, int]] = []
    for open_marker, close_marker in pairs:
        if whole:
            first = text.find(open_marker)
            last = text.rfind(close_marker)
            if first >= 0:
                start = first + len(open_marker)
                spans.append((start, last if last >= start else len(text)))
            continue
        pos = 0
        while (at := text.find(open_marker, pos)) >= 0:
            start = at + len(open_marker)
            end = text.find(close_marker, start)
            if end < 0:
                spans.append((start, len(text)))
                break
            spans.append((start, end))
            pos = end + len(close_marker)
    return spans
