"""A passage index on disk, searched in-process: dense vectors in a usearch HNSW graph (cosine) and a BM25
index (bm25s), with ``dense``, ``bm25`` or ``hybrid`` search.

Build once, open anywhere (a component holding an index folder, a script, a notebook)::

    build_index(passages, folder, embedder)            # passages: [{id, title, text}, ...]
    index = open_index(folder, embedder)                # memory-mapped; embedder only for dense/hybrid
    index.search(["what does a for loop do"], k=5, method="hybrid")
    # -> [[{"id": ..., "title": ..., "text": ..., "score": ...}, ...]]   one list per query, best first

Scores: ``dense`` the cosine similarity of query and passage vectors; ``bm25`` the BM25 score (Lucene's
variant, bm25s' default: idf = ln(1 + (N − df + 0.5)/(df + 0.5)), tf part tf / (tf + k1·(1 − b + b·|d|/avgdl)))
over lower-cased word terms of the title and text, only passages sharing a term with the query;
``hybrid`` reciprocal-rank fusion (``ranking.rrf``, rrf_k 60) of the dense and BM25 top ``candidates``.
Passages are embedded as ``title\\ntext`` (the text alone when it has no title) with the embedder's document
prompt, queries with its query prompt, where the model defines them.

Folder layout: ``meta.json`` (format, count, embedder name and dimension, settings), ``passages.jsonl``
with ``offsets.npy`` (passage i is read on demand), ``dense.usearch`` (absent when built without an
embedder), ``bm25/`` (bm25s' files). Everything is opened memory-mapped.
"""

from __future__ import annotations

import json
import mmap
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from components.retrieval import terms
from components.retrievers.ranking import rrf, top_n
from registry.atomic import atomic_write_json

if TYPE_CHECKING:
    from runner.backends.base import Embedder

FORMAT = 1
Method = Literal["dense", "bm25", "hybrid"]
METHODS: tuple[str, ...] = ("dense", "bm25", "hybrid")


class IndexSettings(BaseModel):
    """How an index is built (saved in its ``meta.json``)."""

    model_config = ConfigDict(extra="forbid")

    connectivity: int = Field(16, ge=2, description="HNSW links per node (usearch `connectivity`)")
    expansion_add: int = Field(128, ge=1, description="HNSW candidates while inserting (`expansion_add`)")
    expansion_search: int = Field(64, ge=1, description="HNSW candidates while searching (`expansion_search`)")
    k1: float = Field(1.5, ge=0, description="BM25 term-frequency saturation")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation")
    embed_title: bool = Field(True, description="embed and BM25-index `title\\ntext` rather than the text alone")
    embed_batch_size: int = Field(256, ge=1, description="passages per embedder call while building",
                                  json_schema_extra={"fingerprint": False})  # speed only


def passage_text(passage: dict, with_title: bool = True) -> str:
    """What is embedded and BM25-indexed for a passage."""
    title = str(passage.get("title") or "")
    return f"{title}\n{passage['text']}" if with_title and title else str(passage["text"])


def build_index(passages: list[dict], folder: Path, embedder: Embedder | None = None, *,
                settings: IndexSettings | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Write an index of ``passages`` (``{id, title, text}``) into ``folder`` (replaced whole, only once it
    is complete) and return its ``meta``. Without ``embedder`` only BM25 is built. ``progress(n)`` is
    called after each batch of ``n`` passages embedded."""
    import numpy as np

    s = settings or IndexSettings()
    if not passages:
        raise ValueError("an index needs at least one passage")
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    offsets = _write_passages(passages, tmp / "passages.jsonl")
    np.save(tmp / "offsets.npy", offsets)
    texts = [passage_text(p, s.embed_title) for p in passages]
    _build_bm25(texts, tmp / "bm25", s)
    meta: dict[str, Any] = {"format": FORMAT, "count": len(passages), "embedder": None, "dim": None,
                            "settings": s.model_dump()}
    if embedder is not None:
        meta["embedder"] = embedder.name
        meta["dim"] = _build_dense(texts, tmp / "dense.usearch", embedder, s, progress)
    atomic_write_json(tmp / "meta.json", meta)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return meta


def _write_passages(passages: list[dict], path: Path) -> Any:
    import numpy as np

    offsets = np.zeros(len(passages) + 1, dtype="int64")
    with open(path, "wb") as f:
        for i, p in enumerate(passages):
            row = {"id": str(p["id"]), "title": str(p.get("title") or ""), "text": str(p["text"])}
            f.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
            offsets[i + 1] = f.tell()
    return offsets


def _build_bm25(texts: list[str], folder: Path, s: IndexSettings) -> None:
    import bm25s

    retriever = bm25s.BM25(k1=s.k1, b=s.b, method="lucene")
    retriever.index([terms(t) for t in texts], show_progress=False)
    retriever.save(str(folder), show_progress=False)


def _build_dense(texts: list[str], path: Path, embedder: Embedder, s: IndexSettings,
                 progress: Callable[[int], None] | None) -> int:
    import numpy as np
    from usearch.index import Index

    index = None
    for start in range(0, len(texts), s.embed_batch_size):
        vectors = np.asarray(embedder.embed_documents(texts[start:start + s.embed_batch_size]), dtype="float32")
        if index is None:
            index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32", connectivity=s.connectivity,
                          expansion_add=s.expansion_add, expansion_search=s.expansion_search)
        index.add(np.arange(start, start + len(vectors), dtype="uint64"), vectors)
        if progress is not None:
            progress(len(vectors))
    assert index is not None  # texts is not empty
    index.save(str(path))
    return int(index.ndim)


class PassageIndex:
    """An index folder opened for search (memory-mapped; safe to search from several threads)."""

    def __init__(self, folder: Path, embedder: Embedder | None = None) -> None:
        import numpy as np

        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a passage index (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: index format {self.meta.get('format')!r}, expected {FORMAT}")
        self.settings = IndexSettings(**self.meta["settings"])
        self.embedder = embedder
        self._offsets = np.load(self.folder / "offsets.npy", mmap_mode="r")
        with open(self.folder / "passages.jsonl", "rb") as f:
            self._text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._lock = threading.Lock()
        self._bm25: Any = None
        self._dense: Any = None

    def __len__(self) -> int:
        return int(self.meta["count"])

    @property
    def has_dense(self) -> bool:
        return self.meta.get("embedder") is not None

    def passage(self, row: int) -> dict:
        """Passage ``row`` (0-based, in build order) as ``{id, title, text}``."""
        return json.loads(self._text[int(self._offsets[row]):int(self._offsets[row + 1])])

    def search(self, queries: list[str], k: int = 10, method: Method = "hybrid", *, candidates: int = 100,
               rrf_k: int = 60, exact: bool = False) -> list[list[dict]]:
        """The top ``k`` passages per query, best first: ``{id, title, text, score}``. ``exact`` searches
        the dense vectors exhaustively instead of through the graph; ``hybrid`` fuses the dense and BM25
        top ``max(k, candidates)``."""
        if method not in METHODS:
            raise ValueError(f"unknown retrieval method {method!r} (expected one of {', '.join(METHODS)})")
        if method == "bm25":
            ranked = self.bm25_ranked(queries, k)
        elif method == "dense":
            ranked = self.dense_ranked(queries, k, exact=exact)
        else:
            n = max(k, candidates)
            dense = self.dense_ranked(queries, n, exact=exact)
            ranked = [rrf([d, b], rrf_k, k) for d, b in zip(dense, self.bm25_ranked(queries, n))]
        return [[{**self.passage(row), "score": score} for row, score in rows] for rows in ranked]

    def bm25_ranked(self, queries: list[str], n: int) -> list[list[tuple[int, float]]]:
        """Per query, the ``n`` best ``(row, BM25 score)`` among passages sharing a term with it."""
        import numpy as np

        bm25 = self._bm25_index()
        out = []
        for q in queries:
            ids = [bm25.vocab_dict[t] for t in terms(q) if t in bm25.vocab_dict]
            if not ids:
                out.append([])
                continue
            scores = bm25.get_scores_from_ids(ids)
            out.append(top_n(np.asarray(scores), n, positive=True))
        return out

    def dense_ranked(self, queries: list[str], n: int, *, exact: bool = False) -> list[list[tuple[int, float]]]:
        """Per query, the ``n`` nearest ``(row, cosine similarity)``."""
        import numpy as np

        if not self.has_dense:
            raise ValueError(f"{self.folder}: the index was built without an embedder, so only bm25 search works")
        if self.embedder is None:
            raise ValueError("dense and hybrid search need the embedder the index was built with "
                             f"({self.meta['embedder']!r}): open_index(folder, embedder)")
        if self.embedder.name != self.meta["embedder"]:
            raise ValueError(f"{self.folder} was built with the embedder {self.meta['embedder']!r}; "
                             f"searching it with {self.embedder.name!r} would compare unrelated vectors")
        if not queries or n <= 0:
            return [[] for _ in queries]
        vectors = np.asarray(self.embedder.embed_queries(queries), dtype="float32")
        if vectors.shape[1] != self.meta["dim"]:
            raise ValueError(f"query vectors have {vectors.shape[1]} dimensions, the index {self.meta['dim']}")
        matches = self._dense_index().search(vectors, min(n, len(self)), exact=exact)
        if not hasattr(matches, "counts"):  # one query: usearch answers with its matches alone
            rows = [(matches.keys, matches.distances)]
        else:
            rows = [(matches.keys[i][:c], matches.distances[i][:c]) for i, c in enumerate(matches.counts)]
        return [[(int(key), 1.0 - float(d)) for key, d in zip(keys, dist)] for keys, dist in rows]

    def _bm25_index(self) -> Any:
        with self._lock:
            if self._bm25 is None:
                import bm25s

                self._bm25 = bm25s.BM25.load(str(self.folder / "bm25"), mmap=True, show_progress=False)
            return self._bm25

    def _dense_index(self) -> Any:
        with self._lock:
            if self._dense is None:
                from usearch.index import Index

                dense = Index.restore(str(self.folder / "dense.usearch"), view=True)
                dense.expansion_search = self.settings.expansion_search  # a search setting, not in the file
                self._dense = dense
            return self._dense


def open_index(folder: str | Path, embedder: Embedder | None = None) -> PassageIndex:
    """Open the index in ``folder`` for search; ``embedder`` (the one it was built with) for dense and
    hybrid search."""
    return PassageIndex(Path(folder), embedder)


class InputIndex:
    """The index on a stage's ``index`` input, opened on first use and shared by the stage's batches
    (which may run in threads); dense and hybrid search embed queries with its ``embedder`` model."""

    def __init__(self) -> None:
        self._index: PassageIndex | None = None
        self._lock = threading.Lock()

    def get(self, ctx: Any, method: Method) -> PassageIndex:
        with self._lock:
            if self._index is None:
                embedder = ctx.embedder("embedder") if method != "bm25" else None
                self._index = open_index(ctx.input_artifact("index"), embedder)
            return self._index
