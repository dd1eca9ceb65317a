"""Passage index (``index.build`` / ``retrieve``): build rate, query latency and HNSW recall, side by side.

Synthetic corpora of 10k and 100k passages of 100 words each (a 30k-word vocabulary; every passage belongs
to one of 200 topics and draws half its words from that topic's 300 words and half from a Zipf-like
distribution over the whole vocabulary, so the corpus has clusters and common words, as text does). The
embedder is a hashed bag of words: each word a fixed random 128-d unit vector (seeded), a passage the
normalised sum of its words'. The word vectors are a 32-d latent vector projected to 128-d plus noise, so
passages have a low intrinsic dimension as sentence embeddings do; with independent random word vectors
(``--unstructured``) the exact top 10 is mostly near-ties at noise level and recall@10 says little (0.69
at 10k). So the scale part measures the index, not a neural encoder (which on 2 CPU cores would take
most of the time at 100k). Queries are 8 words of a random passage.

Measured through the same code the stages use (``components.retrievers.build_index`` / ``open_index``):
build rate (passages/s: embedding, HNSW graph, BM25, passage store), per-query latency searched one at a
time (dense through the HNSW graph, dense exhaustive, BM25, hybrid with 100 candidates per method), and
recall@10 of the HNSW search against exact search (a brute-force numpy cosine top 10).

    python3 bench/retrieval.py [--sizes 10000 100000] [--queries 200] [--dim 128] [--unstructured]

The last line is ``name=value`` pairs, e.g. ``build_rate_100k=… dense_ms_100k=… recall10_100k=…``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from components.retrievers import build_index, open_index
from runner.backends.base import Embedder

VOCAB, TOPICS, TOPIC_WORDS, WORDS = 30_000, 200, 300, 100


class HashedEmbedder(Embedder):
    """Normalised sum of fixed random word vectors (one per vocabulary word, seeded)."""

    name = "hashed-bow"

    def __init__(self, dim: int, seed: int = 0, latent: int | None = 32, noise: float = 0.2) -> None:
        rng = np.random.default_rng(seed)
        if latent:
            table = rng.normal(size=(VOCAB, latent)) @ rng.normal(size=(latent, dim)) / np.sqrt(latent)
            table += noise * rng.normal(size=(VOCAB, dim))
        else:
            table = rng.normal(size=(VOCAB, dim))
        self.table = (table / np.linalg.norm(table, axis=1, keepdims=True)).astype("float32")

    def embed(self, texts: list[str]):
        ids = [np.fromiter((int(w[1:]) for w in t.split()), dtype="int64") for t in texts]
        starts = np.cumsum([0] + [len(i) for i in ids[:-1]])
        sums = np.add.reduceat(self.table[np.concatenate(ids)], starts, axis=0)
        return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def make_corpus(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(VOCAB) + 10.0)
    common = rng.choice(VOCAB, size=(n, WORDS // 2), p=weights / weights.sum())
    topic_vocab = rng.integers(0, VOCAB, size=(TOPICS, TOPIC_WORDS))
    topics = rng.integers(0, TOPICS, size=n)
    own = topic_vocab[topics[:, None], rng.integers(0, TOPIC_WORDS, size=(n, WORDS // 2))]
    words = np.concatenate([own, common], axis=1)
    return [{"id": str(i), "title": "", "text": " ".join(f"w{w}" for w in row)} for i, row in enumerate(words)]


def make_queries(passages: list[dict], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(passages), size=n):
        words = passages[int(i)]["text"].split()
        out.append(" ".join(words[j] for j in rng.choice(len(words), size=8, replace=False)))
    return out


def per_query_ms(index, queries: list[str], method: str, **kwargs) -> float:
    start = time.perf_counter()
    for q in queries:
        index.search([q], k=10, method=method, **kwargs)
    return 1000 * (time.perf_counter() - start) / len(queries)


def measure(n: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    passages = make_corpus(n, args.seed)
    queries = make_queries(passages, args.queries, args.seed + 1)
    embedder = HashedEmbedder(args.dim, args.seed, latent=None if args.unstructured else 32)
    start = time.perf_counter()
    build_index(passages, folder, embedder)
    build_s = time.perf_counter() - start
    index = open_index(folder, embedder)
    row = {"build_s": build_s, "build_rate": n / build_s}
    for method, kwargs, name in (("dense", {}, "dense_ms"), ("dense", {"exact": True}, "exact_ms"),
                                 ("bm25", {}, "bm25_ms"), ("hybrid", {}, "hybrid_ms")):
        row[name] = per_query_ms(index, queries, method, **kwargs)
    # recall@10 against a brute-force cosine top 10 over the same vectors
    vectors = np.concatenate([embedder.embed_documents([p["text"] for p in passages[s:s + 4096]])
                              for s in range(0, n, 4096)])
    q = embedder.embed_queries(queries)
    exact = np.argsort(-(q @ vectors.T), axis=1)[:, :10]
    found = index.dense_ranked(queries, 10)
    row["recall10"] = float(np.mean([len(set(exact[i].tolist()) & {r for r, _ in hits}) / 10
                                     for i, hits in enumerate(found)]))
    return row


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unstructured", action="store_true", help="independent random word vectors")
    args = ap.parse_args()
    rows = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        for n in args.sizes:
            rows[n] = measure(n, args, tmp / f"ix{n}")
            print(f"{n} passages: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[n].items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'passages':>9} {'build s':>8} {'build/s':>8} {'dense ms':>9} {'exact ms':>9} {'bm25 ms':>8} "
          f"{'hybrid ms':>10} {'recall@10':>10}")
    for n, r in rows.items():
        print(f"{n:>9} {r['build_s']:>8.1f} {r['build_rate']:>8.0f} {r['dense_ms']:>9.2f} {r['exact_ms']:>9.2f} "
              f"{r['bm25_ms']:>8.2f} {r['hybrid_ms']:>10.2f} {r['recall10']:>10.3f}")
    print("(per query, one at a time, k=10; dense: HNSW graph, exact: exhaustive; recall@10: HNSW against "
          f"brute-force cosine; hashed {args.dim}-d bag-of-words vectors)")
    pairs = []
    for n, r in rows.items():
        tag = label(n)
        pairs += [f"build_rate_{tag}={r['build_rate']:.0f}", f"dense_ms_{tag}={r['dense_ms']:.3f}",
                  f"exact_ms_{tag}={r['exact_ms']:.3f}", f"bm25_ms_{tag}={r['bm25_ms']:.3f}",
                  f"hybrid_ms_{tag}={r['hybrid_ms']:.3f}", f"recall10_{tag}={r['recall10']:.3f}"]
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
