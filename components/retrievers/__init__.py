"""Passage retrieval over a saved index: the ``index.build`` and ``retrieve`` stages and the in-process API.

Other components search an index folder directly::

    from components.retrievers import open_index
    index = open_index(ctx.input_artifact("index"), ctx.embedder("embedder"))
    hits = index.search(queries, k=5, method="hybrid")   # [[{id, title, text, score}, ...], ...]

(``components.retrieval`` is the separate, index-free chunk retrieval of LongCite and LongReward.)
"""

from components.retrievers.passage_index import (
    IndexSettings,
    InputIndex,
    PassageIndex,
    build_index,
    open_index,
)

__all__ = ["IndexSettings", "InputIndex", "PassageIndex", "build_index", "open_index"]
