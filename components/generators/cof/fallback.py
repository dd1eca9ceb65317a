"""The lexical fallback that CoF stages 2 and 3 use when the model cannot follow the citation markup
(ranking by ``components.retrieval.scored_search``).

The fallback is not the paper's method. It lets the pipeline produce training data with models too small
to copy an answer with ``<statement>``/``<cite>`` tags or to write ``[s-e]`` lines (e.g. the 135M CPU
default): a statement then cites the text it shares the most words with. The stages count how many
citations came from it, and the ``paper`` profile keeps ``fallback: none``.
"""

from __future__ import annotations

from components.retrieval import scored_search, terms

# Function words that say nothing about what a text is about: sharing only these is no support.
_STOPWORD_TEXT = """
a an the and or but nor so yet if then than that this these those there here of in on at to for from by
with without about into onto over under between through during before after above below up down out off
as is are was were be been being am do does did done doing have has had having will would shall should
can could may might must not no yes it its they them their theirs he him his she her hers we us our
ours you your yours i me my mine who whom whose which what when where why how all any both each every few
more most other some such only own same too very just also again once s t don isn aren doesn didn one ones
的 了 是 在 和 与 及 或 也 就 都 而 之 其 这 那 我 你 他 她 它 们 个 吗 呢 吧 着 被 把 对 从 以 于
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_terms(text: str) -> set[str]:
    """The lower-cased terms of ``text`` (BM25's terms) that are not stopwords."""
    return {t for t in terms(text) if t not in STOPWORDS}


def supporting(query: str, hits: list[tuple[int, float]], corpus: list[str], top: int,
               min_score: float = 0.0) -> list[int]:
    """Up to ``top`` of the ranked ``hits`` that really match ``query``, best first.

    A hit matches when its score is above ``min_score`` and its text shares at least one content word
    (not a stopword) with the query; no match gives an empty list (the statement stays uncited).
    """
    words = content_terms(query)
    picked: list[int] = []
    for i, score in hits:
        if len(picked) >= top:
            break
        if score > min_score and words & content_terms(corpus[i]):
            picked.append(i)
    return picked


def best_sentences(statement: str, sentences: list[str], top: int = 1, min_score: float = 0.0) -> list[int]:
    """Indices of up to ``top`` of ``sentences`` with the best BM25 overlap with ``statement`` (matching as
    in ``supporting``), in text order."""
    hits = scored_search([statement], sentences, len(sentences), "bm25")[0]
    return sorted(supporting(statement, hits, sentences, top, min_score))
