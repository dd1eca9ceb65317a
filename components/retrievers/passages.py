"""Passages for a search index: cutting text into ~100-word pieces, and reading a corpus file.

The cut follows DPR's Wikipedia passages (consecutive, non-overlapping runs of 100 words), with one change:
a last piece shorter than half the size joins the piece before it, so no passage is a stub::

    >>> [len(p.split()) for p in split_words(" ".join(["w"] * 230), 100)]
    [100, 130]
    >>> split_words("a\\n  b c d", 2)
    ['a\\n  b', 'c d']
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from registry.jsonio import iter_jsonl

_WORD = re.compile(r"\S+")


def split_words(text: str, words: int = 100) -> list[str]:
    """``text`` cut into pieces of ``words`` whitespace-separated words (the last one up to 1.5×), each
    the original text between its first and last word, so line breaks and code layout survive."""
    if words < 1:
        raise ValueError("words must be at least 1")
    spans = [m.span() for m in _WORD.finditer(text)]
    starts = list(range(0, len(spans), words))
    if len(starts) > 1 and len(spans) - starts[-1] < words / 2:
        starts.pop()  # a short tail joins the piece before it
    ends = starts[1:] + [len(spans)]
    return [text[spans[a][0]:spans[b - 1][1]] for a, b in zip(starts, ends)]


def passage(id_: object, title: object, text: object) -> dict:
    """One corpus record ``{id, title, text}`` with string values (a missing title is empty)."""
    return {"id": str(id_), "title": "" if title is None else str(title), "text": "" if text is None else str(text)}


def read_corpus(path: Path) -> list[dict]:
    """Passages ``{id, title, text}`` from JSON Lines (one object per line, ``.jsonl`` or ``.jsonl.gz``) or
    from a TSV file whose header names the columns (``id``, ``text``, optional ``title``; DPR's
    ``psgs_w100.tsv`` reads as is). Errors name the file and line."""
    path = Path(path)
    if path.suffix.lower() in (".tsv", ".tab"):
        return _read_tsv(path)
    out = []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
            raise ValueError(f"{path}:{line}: a passage is an object with `id` and `text` (and `title`)")
        out.append(passage(obj["id"], obj.get("title"), obj["text"]))
    return out


def _read_tsv(path: Path) -> list[dict]:
    csv.field_size_limit(1 << 24)
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = [h.strip().lower() for h in next(rows, [])]
        missing = [c for c in ("id", "text") if c not in header]
        if missing:
            raise ValueError(f"{path}:1: the TSV header must name the columns id, text (and title); "
                             f"missing: {', '.join(missing)}")
        col = {name: i for i, name in enumerate(header)}
        out = []
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
            title = row[col["title"]] if "title" in col else ""
            out.append(passage(row[col["id"]], title, row[col["text"]]))
    return out
