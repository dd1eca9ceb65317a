"""The passage index: BM25 scores and dense search against hand computations, hybrid fusion by hand,
loading from disk, passage cutting and corpus files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("usearch")
pytest.importorskip("bm25s")
np = pytest.importorskip("numpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import BagOfWordsEmbedder  # noqa: E402

from components.retrievers import build_index, open_index  # noqa: E402
from components.retrievers.passages import read_corpus, split_words  # noqa: E402
from runner.backends.base import Embedder  # noqa: E402


class TableEmbedder(Embedder):
    """Vectors from a table (text -> vector), counting calls; queries and documents may get prompts."""

    def __init__(self, table: dict[str, list[float]], name: str = "table", query_prompt: str = "") -> None:
        self.table, self.name, self.query_prompt = table, name, query_prompt
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]):
        self.calls.append(list(texts))
        v = np.asarray([self.table[t] for t in texts], dtype="float32")
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_queries(self, texts: list[str]):
        return self.embed([self.query_prompt + t for t in texts])


def corpus(*texts: str) -> list[dict]:
    return [{"id": f"p{i}", "title": "", "text": t} for i, t in enumerate(texts)]


def test_bm25_scores_and_order_match_the_formula_by_hand(tmp_path):
    # N = 3, lengths 2, 3, 2 (avgdl 7/3); "apple" is in p0 (tf 1) and p1 (tf 2): df 2
    build_index(corpus("apple banana", "Apple apple cherry", "cherry date"), tmp_path / "ix")
    index = open_index(tmp_path / "ix")
    k1, b, avgdl = 1.5, 0.75, 7 / 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))

    def lucene(tf: int, dl: int) -> float:
        return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    [hits] = index.search(["apple"], k=3, method="bm25")
    assert [h["id"] for h in hits] == ["p1", "p0"]  # p2 shares no word with the query: no match
    assert hits[0]["score"] == pytest.approx(lucene(2, 3), rel=1e-5)  # 0.24598
    assert hits[1]["score"] == pytest.approx(lucene(1, 2), rel=1e-5)  # 0.20092
    assert index.search(["kiwi"], k=3, method="bm25") == [[]]  # no known word: nothing
    # two query words add up: "cherry" has df 2 as well (p1 tf 1 dl 3, p2 tf 1 dl 2)
    [[both]] = index.search(["apple cherry"], k=1, method="bm25")
    assert both["id"] == "p1" and both["score"] == pytest.approx(lucene(2, 3) + lucene(1, 3), rel=1e-5)


def test_bm25_ties_keep_corpus_order_and_k_cuts(tmp_path):
    build_index(corpus("x one", "x two", "x three", "y"), tmp_path / "ix")
    [hits] = open_index(tmp_path / "ix").search(["x"], k=2, method="bm25")
    assert [h["id"] for h in hits] == ["p0", "p1"]  # three equal scores: the first two in corpus order


def test_dense_search_equals_exact_cosine_search(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16))
    queries = rng.normal(size=(20, 16))
    table = {f"t{i}": v.tolist() for i, v in enumerate(vectors)}
    table.update({f"q{i}": v.tolist() for i, v in enumerate(queries)})
    embedder = TableEmbedder(table)
    build_index([{"id": str(i), "text": f"t{i}"} for i in range(300)], tmp_path / "ix", embedder)
    index = open_index(tmp_path / "ix", embedder)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cos = q @ unit.T
    exact_hits = index.search([f"q{i}" for i in range(20)], k=10, method="dense", exact=True)
    for i, hits in enumerate(exact_hits):
        want = np.argsort(-cos[i])[:10]
        assert [int(h["id"]) for h in hits] == want.tolist()
        assert [h["score"] for h in hits] == pytest.approx(cos[i][want].tolist(), abs=1e-5)
    # the HNSW graph is approximate: each hit's score is its true cosine and nearly all true top 10 are found
    graph_hits = index.search([f"q{i}" for i in range(20)], k=10, method="dense", exact=False)
    found = 0
    for i, hits in enumerate(graph_hits):
        ids = [int(h["id"]) for h in hits]
        assert [h["score"] for h in hits] == pytest.approx(cos[i][ids].tolist(), abs=1e-5)
        found += len(set(ids) & set(np.argsort(-cos[i])[:10].tolist()))
    assert found / 200 >= 0.9


def test_hybrid_is_reciprocal_rank_fusion_computed_by_hand(tmp_path):
    # dense order for the query: p2 (cos 1), p0 (cos 0.6), p1 (cos 0); BM25: p0, p1 ("red" twice in p0)
    table = {"red red apple": [0.6, 0.8, 0.0], "red pear": [0.0, 0.0, 1.0], "blue sky": [1.0, 0.0, 0.0],
             "red": [1.0, 0.0, 0.0]}
    embedder = TableEmbedder(table)
    build_index(corpus("red red apple", "red pear", "blue sky"), tmp_path / "ix", embedder)
    index = open_index(tmp_path / "ix", embedder)
    assert [h["id"] for h in index.search(["red"], k=3, method="dense")[0]] == ["p2", "p0", "p1"]
    assert [h["id"] for h in index.search(["red"], k=3, method="bm25")[0]] == ["p0", "p1"]
    [hits] = index.search(["red"], k=3, method="hybrid", rrf_k=60)
    assert [h["id"] for h in hits] == ["p0", "p1", "p2"]
    assert [h["score"] for h in hits] == pytest.approx([1 / 62 + 1 / 61, 1 / 63 + 1 / 62, 1 / 61])
    [top] = index.search(["red"], k=1, method="hybrid", rrf_k=0)  # rrf_k 0: p0 1/2 + 1/1, p2 1/1
    assert top[0]["id"] == "p0" and top[0]["score"] == pytest.approx(1.5)


def test_passages_are_embedded_with_title_and_document_prompt_queries_with_query_prompt(tmp_path):
    table = {"T\nbody": [1.0, 0.0], "Q: ask": [1.0, 0.0]}
    embedder = TableEmbedder(table, query_prompt="Q: ")
    build_index([{"id": "a", "title": "T", "text": "body"}], tmp_path / "ix", embedder)
    open_index(tmp_path / "ix", embedder).search(["ask"], k=1, method="dense")
    assert embedder.calls == [["T\nbody"], ["Q: ask"]]


def test_a_saved_index_loads_from_disk_with_its_passages(tmp_path):
    passages = [{"id": f"id{i}", "title": f"Title {i}", "text": f"passage number {i} about topic {i % 3}"}
                for i in range(50)]
    build_index(passages, tmp_path / "ix", BagOfWordsEmbedder())
    assert not (tmp_path / "ix.building").exists()
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["count"] == 50 and meta["embedder"] == "bow" and meta["dim"] == 256
    index = open_index(tmp_path / "ix", BagOfWordsEmbedder())  # a fresh embedder object, same model
    assert len(index) == 50 and index.passage(37) == passages[37]
    [hits] = index.search(["Title 7 passage number 7 about topic 1"], k=1, method="dense")  # title + text
    assert hits[0]["id"] == "id7" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    [hits] = index.search(["number 7"], k=1, method="bm25")
    assert hits[0]["id"] == "id7"


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_an_opened_index_is_memory_mapped_with_its_search_settings(tmp_path):
    from components.retrievers import IndexSettings

    build_index(corpus("red apple", "green pear"), tmp_path / "ix", BagOfWordsEmbedder(),
                settings=IndexSettings(expansion_search=200))
    index = open_index(tmp_path / "ix", BagOfWordsEmbedder())
    index.search(["apple"], k=1, method="hybrid")
    maps = Path("/proc/self/maps").read_text()
    for name in ("dense.usearch", "passages.jsonl", "offsets.npy", "bm25/data.csc.index.npy"):
        assert str((tmp_path / "ix" / name).resolve()) in maps, name
    assert index._dense_index().expansion_search == 200  # not stored in the usearch file: set on open


def test_rebuilding_replaces_the_folder_whole(tmp_path):
    build_index(corpus("one", "two"), tmp_path / "ix")
    build_index(corpus("three"), tmp_path / "ix")
    index = open_index(tmp_path / "ix")
    assert len(index) == 1 and index.search(["three"], k=5, method="bm25")[0][0]["text"] == "three"


def test_wrong_embedder_bm25_only_index_and_unknown_method_are_errors(tmp_path):
    build_index(corpus("red apple"), tmp_path / "dense", TableEmbedder({"red apple": [1.0]}, name="a"))
    with pytest.raises(ValueError, match="built with the embedder 'a'.*'b'"):
        open_index(tmp_path / "dense", TableEmbedder({}, name="b")).search(["x"], k=1, method="dense")
    with pytest.raises(ValueError, match="need the embedder"):
        open_index(tmp_path / "dense").search(["x"], k=1, method="hybrid")
    build_index(corpus("red apple"), tmp_path / "sparse")
    with pytest.raises(ValueError, match="without an embedder"):
        open_index(tmp_path / "sparse", BagOfWordsEmbedder()).search(["x"], k=1, method="dense")
    with pytest.raises(ValueError, match="unknown retrieval method 'sparse'"):
        open_index(tmp_path / "sparse").search(["x"], k=1, method="sparse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one passage"):
        build_index([], tmp_path / "empty")


def test_split_words_cuts_100_word_passages_and_keeps_every_word():
    text = "\n".join(" ".join(f"w{i}_{j}" for j in range(10)) for i in range(27))  # 270 words, 27 lines
    pieces = split_words(text, 100)
    assert [len(p.split()) for p in pieces] == [100, 100, 70]  # a 70-word tail (>= 50) stays a passage
    assert " ".join(pieces).split() == text.split()
    assert pieces[0].startswith("w0_0 w0_1") and pieces[0].endswith("w9_9") and "\n" in pieces[0]
    assert pieces[1].startswith("w10_0")
    short_tail = split_words(" ".join(["w"] * 240), 100)
    assert [len(p.split()) for p in short_tail] == [100, 140]  # a 40-word tail joins the passage before
    assert split_words("   ", 100) == [] and split_words("one two", 100) == ["one two"]


def test_corpus_files_jsonl_and_tsv(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": 1, "title": "A", "text": "alpha"}\n\n{"id": "b", "text": "beta"}\n')
    assert read_corpus(tmp_path / "c.jsonl") == [{"id": "1", "title": "A", "text": "alpha"},
                                                 {"id": "b", "title": "", "text": "beta"}]
    (tmp_path / "c.tsv").write_text("id\ttext\ttitle\n1\talpha text\tAlpha\n2\tbeta\tBeta\n")
    assert read_corpus(tmp_path / "c.tsv") == [{"id": "1", "title": "Alpha", "text": "alpha text"},
                                               {"id": "2", "title": "Beta", "text": "beta"}]
    (tmp_path / "bad.tsv").write_text("id\ttext\n1\ta\textra\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: 3 columns, the header has 2"):
        read_corpus(tmp_path / "bad.tsv")
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "text": "a"}\n{"title": "no id"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: a passage is an object with `id` and `text`"):
        read_corpus(tmp_path / "bad.jsonl")
