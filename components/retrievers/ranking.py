"""Ranking helpers shared by the passage index: a deterministic top-n and reciprocal-rank fusion.

Reciprocal-rank fusion (Cormack et al., 2009) scores a passage by ``Σ_lists 1 / (rrf_k + rank)``, rank
starting at 1 in each list where the passage appears; ties keep the order in which the passages were first
seen, the lists taken in the order given::

    >>> [(row, round(score, 5)) for row, score in rrf([[(7, 0.9), (3, 0.8)], [(3, 12.0), (5, 4.0)]], 60)]
    [(3, 0.03252), (7, 0.01639), (5, 0.01613)]

    (3: 1/62 + 1/61; 7: 1/61; 5: 1/62.)
"""

from __future__ import annotations

from typing import Any


def top_n(scores: Any, n: int, *, positive: bool = False) -> list[tuple[int, float]]:
    """The ``n`` best ``(row, score)`` of a 1-d score array, best first, equal scores in row order;
    with ``positive`` only rows scoring above 0 (a BM25 passage sharing no term is no match)."""
    import numpy as np

    scores = np.asarray(scores)
    rows = np.flatnonzero(scores > 0) if positive else np.arange(len(scores))
    if n <= 0 or len(rows) == 0:
        return []
    if len(rows) > n:
        values = scores[rows]
        kth = np.partition(values, len(values) - n)[len(values) - n]  # the n-th largest score
        above = rows[values > kth]
        tied = rows[values == kth][: n - len(above)]  # the earliest rows among those tied at the cut
        rows = np.concatenate([above, tied])
    order = np.lexsort((rows, -scores[rows]))  # by score descending, then row
    return [(int(rows[i]), float(scores[rows[i]])) for i in order]


def rrf(rankings: list[list[tuple[int, float]]], rrf_k: int = 60, n: int | None = None) -> list[tuple[int, float]]:
    """Fuse ranked ``(row, score)`` lists by reciprocal rank; the ``n`` best ``(row, fused score)``."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    order = sorted(fused.items(), key=lambda item: -item[1])  # stable: first seen wins a tie
    return order if n is None else order[:n]
