"""Retrieval of text chunks for queries: BM25 (no model) or dense cosine similarity with an Embedder.

LongCite and LongReward retrieve with Zhipu's remote ``embedding-2``; here the offline replacements are
BM25 and the zoo's sentence embedder (``all-minilm-l6-v2`` by default in the stages that use it)::

    >>> retrieve(["red apples"], ["green pears", "red apples are sweet"], k=1, method="bm25")
    [[1]]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from runner.backends.base import Embedder

# CJK ideographs count one term each (Chinese has no spaces); other word characters form runs.
_TERM = re.compile(r"[\u4e00-\u9fff]|[^\W\u4e00-\u9fff]+")


def terms(text: str) -> list[str]:
    """Lower-cased terms of ``text`` for BM25."""
    return _TERM.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed corpus.

    score(q, d) = Σ_{t∈q} idf(t) · tf(t,d)·(k1+1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl)),
    idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5)) — the variant that is never negative, so a term
    present in most chunks still counts a little instead of pushing a chunk down.
    A query term that repeats counts once per occurrence.
    """

    def __init__(self, corpus: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(terms(doc)) for doc in corpus]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.avgdl = (sum(self.lengths) / len(self.docs)) if self.docs else 0.0
        df: Counter[str] = Counter()
        for doc in self.docs:
            df.update(doc.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        """BM25 score of every corpus document for ``query``."""
        out = []
        for doc, length in zip(self.docs, self.lengths):
            norm = self.k1 * (1.0 - self.b + self.b * length / self.avgdl) if self.avgdl else self.k1
            total = 0.0
            for t in terms(query):
                tf = doc.get(t, 0)
                if tf:
                    total += self.idf[t] * tf * (self.k1 + 1.0) / (tf + norm)
            out.append(total)
        return out


def _ranked(scores: list[float], k: int) -> list[tuple[int, float]]:
    # Stable: equal scores keep corpus order.
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    return [(i, scores[i]) for i in order]


def scored_search(queries: list[str], chunks: list[str], k: int, method: Literal["bm25", "dense"] = "bm25",
                  embedder: Embedder | None = None) -> list[list[tuple[int, float]]]:
    """For each query, the ``k`` best ``(chunk index, score)`` pairs, best first: BM25 score, or cosine
    similarity with ``embedder`` (``dense``). The scores let a caller tell a real match from the best of
    nothing."""
    if k <= 0:
        return [[] for _ in queries]
    if method == "bm25":
        index = BM25(chunks)
        return [_ranked(index.scores(q), k) for q in queries]
    if method != "dense":
        raise ValueError(f"unknown retrieval method {method!r} (expected 'bm25' or 'dense')")
    if embedder is None:
        raise ValueError("dense retrieval needs an embedder")
    if not queries or not chunks:
        return [[] for _ in queries]
    import numpy as np

    q = np.asarray(embedder.embed(queries), dtype="float32")
    c = np.asarray(embedder.embed(chunks), dtype="float32")
    # Normalise again: cosine must not depend on the embedder keeping its promise.
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return [_ranked(row.tolist(), k) for row in q @ c.T]


def retrieve(queries: list[str], chunks: list[str], k: int, method: Literal["bm25", "dense"] = "bm25",
             embedder: Embedder | None = None) -> list[list[int]]:
    """Top-``k`` chunk indices per query with ``method`` (``dense`` needs ``embedder``), best first."""
    return [[i for i, _ in row] for row in scored_search(queries, chunks, k, method, embedder)]
