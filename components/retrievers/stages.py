"""``index.build`` and ``retrieve``: a passage index as a cached stage artifact, and top-k passages per query.

``index.build`` writes the index into its stage folder (``index/``, see ``passage_index``); the runner's
fingerprint (corpus records or file, embedder, params) decides when it is reused, so a second run with the
same corpus and embedder embeds nothing. ``retrieve`` opens the index of the stage on its ``index`` input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from components.base import (
    Context,
    Estimate,
    Failed,
    Fields,
    MapComponent,
    ModelSlot,
    Out,
    Params,
    WholeComponent,
)
from components.retrievers.passage_index import IndexSettings, InputIndex, Method, build_index
from components.retrievers.passages import passage, read_corpus

EMBEDDER = "all-minilm-l6-v2"


class IndexBuild(WholeComponent):
    """Builds a passage index: dense vectors (usearch HNSW, cosine) and BM25 (bm25s) over a corpus.

    The corpus is the records on the optional ``passages`` input (``{id, text}`` and optionally
    ``title``, e.g. ``load.pydoc_topics`` with ``passage_words: 100``) or the JSONL/TSV file ``path``
    (exactly one of the two). The index is the stage's artifact folder ``index/``; ``retrieve`` (or any
    component, through ``components.retrievers.open_index``) searches it. Passage ids must be unique.
    The output records are the passages ``{id, title, text}`` in index order. With ``dense: false`` only
    BM25 is built (the embedder is not loaded).
    """

    type = "index.build"
    inputs: ClassVar[dict[str, Fields]] = {"passages": Fields("id", "text")}
    optional_inputs = frozenset({"passages"})
    outputs = Fields("id", "title", "text")
    models: ClassVar[dict[str, ModelSlot]] = {
        "embedder": ModelSlot(kind="embed", required=False, default=EMBEDDER,
                              doc="sentence embedder for the dense vectors (the same one `retrieve` binds)")}
    produces_artifact = "index"

    class Params(Params, IndexSettings):
        path: str | None = Field(None, description="a corpus file instead of the `passages` input: JSON Lines "
                                 "`{id, title, text}` or a TSV whose header names id, text, title")
        dense: bool = Field(True, description="build the dense index too (false: BM25 only, no embedder)")

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("passages"))

    def _corpus(self, inputs: dict[str, list[dict]]) -> list[dict]:
        path, records = self.params.path, inputs.get("passages")
        if (path is None) == (records is None):
            raise ValueError("index.build reads its passages from the `passages` input or from `path`: give "
                             "exactly one" + (" (both are set)" if path is not None else ""))
        if records is None:
            return read_corpus(Path(path))
        missing = [i for i, r in enumerate(records) if "id" not in r or not isinstance(r.get("text"), str)]
        if missing:
            raise ValueError(f"passage record {missing[0]} has no `id` or no `text` string")
        return [passage(r["id"], r.get("title"), r["text"]) for r in records]

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        passages = self._corpus(inputs)
        seen: dict[str, int] = {}
        for i, p in enumerate(passages):
            if p["id"] in seen:
                raise ValueError(f"passages {seen[p['id']]} and {i} have the same id {p['id']!r}")
            seen[p["id"]] = i
        settings = IndexSettings(**{k: getattr(self.params, k) for k in IndexSettings.model_fields})
        embedder = ctx.embedder("embedder") if self.params.dense else None
        start = time.perf_counter()
        ctx.advance(0, total=len(passages))
        meta = build_index(passages, ctx.artifact_dir / "index", embedder, settings=settings,
                           progress=lambda n: ctx.advance(n))
        seconds = time.perf_counter() - start
        ctx.save_stats("build", {"passages": len(passages), "embedder": meta["embedder"], "dim": meta["dim"],
                                 "seconds": round(seconds, 3)})
        return passages

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any] | None:
        build = ctx.load_stats("build") or {}
        seconds = build.get("seconds") or 0
        return {"passages": len(records), "embedder": build.get("embedder"), "dim": build.get("dim"),
                "build_seconds": seconds, "passages_per_s": round(len(records) / seconds, 1) if seconds else None}


class Retrieve(MapComponent):
    """Top-k passages per query from the index built by the stage on the ``index`` input.

    Each record's ``query_field`` (default ``question``) is searched with ``method``: ``dense`` (cosine
    similarity of the embedder's vectors, through the HNSW graph, or exhaustively with ``exact: true``),
    ``bm25`` (only passages sharing a word with the query, so possibly fewer than k) or ``hybrid``
    (reciprocal-rank fusion, score Σ 1/(rrf_k + rank), of the dense and BM25 top ``candidates``). The
    record gains ``field`` (default ``passages``): ``[{id, title, text, score}]``, best first. Bind the
    embedder the index was built with (both default to ``all-minilm-l6-v2``); another one is an error.
    """

    type = "retrieve"
    inputs: ClassVar[dict[str, Fields]] = {"queries": Fields(), "index": Fields("id", "text")}
    map_over = "queries"
    passthrough = "queries"
    artifact_inputs: ClassVar[dict[str, str]] = {"index": "index"}
    models: ClassVar[dict[str, ModelSlot]] = {
        "embedder": ModelSlot(kind="embed", required=False, default=EMBEDDER,
                              doc="the sentence embedder the index was built with (dense and hybrid)")}
    batch_size = 32

    class Params(Params):
        method: Method = Field("hybrid", description="dense | bm25 | hybrid (reciprocal-rank fusion)")
        k: int = Field(5, ge=1, description="passages per query")
        query_field: str = Field("question", min_length=1, description="the record field holding the query")
        field: str = Field("passages", min_length=1, description="the record field the passages go into")
        candidates: int = Field(100, ge=1, description="hybrid: each method's top this many (at least k) fused")
        rrf_k: int = Field(60, ge=0, description="hybrid: the constant of reciprocal-rank fusion")
        exact: bool = Field(False, description="dense: exhaustive search instead of the HNSW graph")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._index = InputIndex()

    def output_fields(self) -> Fields | None:
        return Fields(self.params.field)

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("queries"))

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        index = self._index.get(ctx, p.method)
        good = [r for r in batch if isinstance(r.get(p.query_field), str)]
        found = iter(index.search([r[p.query_field] for r in good], p.k, p.method, candidates=p.candidates,
                                  rrf_k=p.rrf_k, exact=p.exact))
        out: list[Out] = []
        for r in batch:
            if isinstance(r.get(p.query_field), str):
                out.append({**r, p.field: next(found)})
            else:
                out.append(Failed(f"the record has no string field {p.query_field!r} to search with "
                                  f"(fields: {', '.join(sorted(r))})", retry=False))
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any] | None:
        counts = [len(r.get(self.params.field) or []) for r in records]
        return {"method": self.params.method, "k": self.params.k, "queries": len(records),
                "mean_passages": round(sum(counts) / len(counts), 3) if counts else 0.0}
