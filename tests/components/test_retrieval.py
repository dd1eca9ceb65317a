"""components.retrieval: BM25 against hand-computed scores, dense retrieval by cosine."""

from __future__ import annotations

import math

import pytest

from components.retrieval import BM25, retrieve, scored_search, terms
from runner.backends.base import Embedder
from tests.fakes import BagOfWordsEmbedder


def test_bm25_scores_match_the_okapi_formula():
    corpus = ["apple banana", "apple apple cherry", "cherry date"]
    got = BM25(corpus).scores("apple")
    # N=3, df(apple)=2 → idf = ln(1 + 1.5/2.5); |d| = 2, 3, 2, avgdl = 7/3; k1 = 1.5, b = 0.75
    idf = math.log(1.6)
    norm0 = 1.5 * (0.25 + 0.75 * 2 / (7 / 3))
    norm1 = 1.5 * (0.25 + 0.75 * 3 / (7 / 3))
    assert got[0] == pytest.approx(idf * 1 * 2.5 / (1 + norm0))
    assert got[1] == pytest.approx(idf * 2 * 2.5 / (2 + norm1))
    assert got[2] == 0.0
    assert got[0] == pytest.approx(0.502293, abs=1e-5)


def test_bm25_retrieve_orders_best_first():
    corpus = ["apple banana", "apple apple cherry", "cherry date"]
    assert retrieve(["apple"], corpus, k=3, method="bm25") == [[1, 0, 2]]
    assert retrieve(["date", "banana"], corpus, k=1, method="bm25") == [[2], [0]]


def test_terms_split_chinese_into_characters():
    assert terms("我爱北京 Hello, World_2") == ["我", "爱", "北", "京", "hello", "world_2"]


def test_dense_retrieval_with_bag_of_words():
    chunks = ["green pear", "red apple pie", "blue sky"]
    assert retrieve(["red apple"], chunks, k=1, method="dense", embedder=BagOfWordsEmbedder())[0] == [1]


class FixedEmbedder(Embedder):
    """Returns unnormalised vectors, so dot product and cosine rank differently."""

    name = "fixed"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed(self, texts):
        import numpy as np

        return np.array([self.table[t] for t in texts], dtype="float32")


def test_dense_retrieval_ranks_by_cosine_not_dot_product():
    emb = FixedEmbedder({"q": [1.0, 0.9], "long": [10.0, 0.0], "aligned": [1.0, 1.0]})
    # dot: long 10 > aligned 1.9; cosine: aligned 0.999 > long 0.743
    assert retrieve(["q"], ["long", "aligned"], k=2, method="dense", embedder=emb) == [[1, 0]]


def test_retrieve_errors_and_edges():
    assert retrieve(["x"], ["a"], k=0) == [[]]
    with pytest.raises(ValueError, match="embedder"):
        retrieve(["x"], ["a"], k=1, method="dense")
    with pytest.raises(ValueError, match="unknown retrieval method"):
        retrieve(["x"], ["a"], k=1, method="tfidf")  # type: ignore[arg-type]


def test_scored_search_keeps_scores_and_ties_keep_corpus_order():
    corpus = ["cherry date", "apple banana", "cherry fig"]
    # "banana" occurs only in chunk 1; the other two score 0 and keep their corpus order
    (row,) = scored_search(["banana"], corpus, k=3)
    assert [i for i, _ in row] == [1, 0, 2]
    idf = math.log(1 + 2.5 / 1.5)  # N=3, df=1
    assert row[0][1] == pytest.approx(idf * 2.5 / (1 + 1.5))  # |d| = avgdl = 2, so norm = k1
    assert row[1][1] == row[2][1] == 0.0
    assert scored_search(["x"], [], k=2) == [[]]
    assert scored_search(["x"], ["a"], k=1, method="dense", embedder=BagOfWordsEmbedder())[0][0][0] == 0
