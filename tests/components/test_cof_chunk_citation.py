"""cof.chunk_citation: snippet budget, snippet selection, prompt, parsing of the marked-up answer."""

from __future__ import annotations

from components.base import Failed
from components.generators.cof.chunk_citation import (
    ChunkCitation,
    chunk_prompt,
    parse_chunk_citations,
    select_chunks,
    snippet_budget,
)
from runner.backends.base import ChatResult
from tests.fakes import BagOfWordsEmbedder, FakeCtx, ScriptedLLM

CONTEXT = "Paris is the capital. Berlin has many parks. Rome was built slowly. Oslo lies by a fjord."
# whitespace tokens, 4 per chunk:
CHUNKS = ["Paris is the capital. ", "Berlin has many parks. ", "Rome was built slowly. ", "Oslo lies by a ", "fjord."]
RECORD = {"idx": 3, "query": "What about Berlin and Rome?", "answer": "Berlin has parks. Rome was built slowly.",
          "context": CONTEXT}


def snippet(i: int, content: str) -> dict:
    return {"c_idx": i, "content": content, "start_idx": 10 * i, "end_idx": 10 * i + 10}


def run(tmp_path, reply, models=None, record=RECORD, **params):
    llm = ScriptedLLM(reply)
    comp = ChunkCitation(ChunkCitation.Params(**{"chunk_size": 4, "retrieval": "bm25", **params}))
    ctx = FakeCtx(params=comp.params, models={None: llm, **(models or {})}, tmp=tmp_path)
    return comp.process([record], ctx), llm


def test_snippet_budget_is_min_of_ten_and_forty_over_statements():
    assert [snippet_budget(n) for n in (1, 4, 5, 7, 40, 100)] == [10, 10, 8, 6, 1, 1]


def test_selected_chunks_are_a_deduplicated_union_in_document_order():
    chunks = [snippet(0, "cats purr"), snippet(1, "dogs bark loudly"), snippet(2, "cats purr"),
              snippet(3, "birds sing")]
    got = select_chunks(["birds sing", "dogs bark", "cats"], chunks, top_k=2, max_snippets=40, method="bm25")
    # "cats" retrieves chunks 0 and 2, which have the same text: kept once, at its first position
    assert [c["c_idx"] for c in got] == [0, 1, 3]


def test_parse_keeps_the_text_after_the_marker_and_maps_snippet_numbers():
    snippets = [snippet(i, f"text {i}") for i in range(7)]
    output = ("I will copy the answer. [Answer with Citations]\n"
              "Some opening words.<statement>First.<cite>[1][1][3][99][0]</cite></statement>\n"
              "<statement>Second.<cite>[1][2][3][4][5][6][7]</cite></statement>"
              "<statement>Third.<cite></cite></statement>ok")
    cited_answer, statements = parse_chunk_citations(output, snippets)
    assert cited_answer.startswith("Some opening words.<statement>First.")
    assert [s["statement"] for s in statements] == ["Some opening words.", "First.", "\n", "Second.", "Third."]
    assert statements[0]["citation"] == []
    assert statements[1]["citation"] == [
        {"start": 0, "end": 10, "idx": 0, "cite": "text 0", "source": "model"},
        {"start": 20, "end": 30, "idx": 2, "cite": "text 2", "source": "model"},
    ]  # 1-based numbers; duplicate, 0 and 99 dropped
    assert [c["idx"] for c in statements[3]["citation"]] == [0, 1, 2, 3, 4]  # at most 5
    assert statements[4]["citation"] == []


def test_prompt_lists_numbered_snippets():
    prompt = chunk_prompt([snippet(4, "alpha"), snippet(9, "beta")], "Q?", "A.")
    assert "[Snippets]\nSnippet [1]\nalpha\n\nSnippet [2]\nbeta\n\n[Question]\nQ?\n\n[Answer]\nA.\n\n" \
           "[Answer with Citations]\n" in prompt


def test_component_end_to_end_with_bm25(tmp_path):
    reply = ("<statement>Berlin has parks.<cite>[1]</cite></statement> "
             "<statement>Rome was built slowly.<cite>[2][9]</cite></statement>")
    out, llm = run(tmp_path, lambda m: reply, top_k=1)
    prompt = llm.calls[0][0][0]["content"]
    assert f"Snippet [1]\n{CHUNKS[1]}\n\nSnippet [2]\n{CHUNKS[2]}\n\n[Question]\n{RECORD['query']}" in prompt
    record = out[0]
    assert {k: record[k] for k in ("idx", "query", "answer", "context")} == RECORD
    assert record["cited_answer"] == reply
    assert record["statements"] == [
        {"statement": "Berlin has parks.",
         "citation": [{"start": 4, "end": 8, "idx": 1, "cite": CHUNKS[1], "source": "model"}]},
        {"statement": " ", "citation": []},
        {"statement": "Rome was built slowly.",
         "citation": [{"start": 8, "end": 12, "idx": 2, "cite": CHUNKS[2], "source": "model"}]},
    ]
    assert record["citation_fallback"] is False


def test_dense_retrieval_uses_the_embedder_slot(tmp_path):
    reply = "<statement>Berlin has parks.<cite>[1]</cite></statement>"
    out, llm = run(tmp_path, lambda m: reply, models={"embedder": BagOfWordsEmbedder()}, retrieval="dense",
                   top_k=1)
    prompt = llm.calls[0][0][0]["content"]
    assert f"Snippet [1]\n{CHUNKS[1]}" in prompt and f"Snippet [2]\n{CHUNKS[2]}" in prompt
    assert out[0]["statements"][0]["citation"][0]["idx"] == 1


def test_output_without_statement_tags_fails_with_raw_text(tmp_path):
    out, _ = run(tmp_path, lambda m: "Sorry, I do not understand the task.")
    assert isinstance(out[0], Failed)
    assert out[0].raw == "Sorry, I do not understand the task."


# --- fallback: retrieval (not the paper's method; for models too small to follow the markup) ----------------

RAMBLE = "Sure! Berlin is a big city and Rome is old. I like both of them very much."
# The middle sentence shares only "is" and "the" with chunk 0 ("Paris is the capital. "): no content word.
THREE = {"idx": 7, "query": "What about Berlin and Rome?",
         "answer": "Berlin has parks. That is the whole story. Rome was built slowly.", "context": CONTEXT}


def cite(i: int, source: str) -> dict:
    return {"start": 4 * i, "end": 4 * i + 4, "idx": i, "cite": CHUNKS[i], "source": source}


def test_rambling_reply_without_fallback_still_fails(tmp_path):
    out, _ = run(tmp_path, lambda m: RAMBLE, record=THREE)
    assert isinstance(out[0], Failed) and out[0].raw == RAMBLE


def test_rambling_reply_with_fallback_cites_the_chunk_sharing_the_sentence_words(tmp_path):
    out, _ = run(tmp_path, lambda m: RAMBLE, record=THREE, fallback="retrieval")
    record = out[0]
    assert {k: record[k] for k in ("idx", "query", "answer", "context")} == THREE
    assert record["citation_fallback"] is True
    # 3 sentences keep 10 chunks each, so all 5 chunks are snippets [1]..[5] in document order
    assert record["statements"] == [
        {"statement": "Berlin has parks.", "citation": [cite(1, "retrieval")]},
        {"statement": " ", "citation": []},
        {"statement": "That is the whole story.", "citation": []},
        {"statement": " ", "citation": []},
        {"statement": "Rome was built slowly.", "citation": [cite(2, "retrieval")]},
    ]
    assert record["cited_answer"] == ("<statement>Berlin has parks.<cite>[2]</cite></statement> "
                                      "<statement>That is the whole story.<cite></cite></statement> "
                                      "<statement>Rome was built slowly.<cite>[3]</cite></statement>")
    assert "Sure" not in record["cited_answer"]


def test_fallback_top_cites_the_next_matching_chunks_best_first(tmp_path):
    rec = {**THREE, "answer": "Berlin parks and Rome."}  # berlin+parks in chunk 1, rome in chunk 2
    out, _ = run(tmp_path, lambda m: RAMBLE, record=rec, fallback="retrieval", fallback_top=2)
    assert out[0]["statements"] == [{"statement": "Berlin parks and Rome.",
                                     "citation": [cite(1, "retrieval"), cite(2, "retrieval")]}]
    assert out[0]["cited_answer"] == "<statement>Berlin parks and Rome.<cite>[2][3]</cite></statement>"
    out, _ = run(tmp_path, lambda m: RAMBLE, record=rec, fallback="retrieval")
    assert out[0]["statements"][0]["citation"] == [cite(1, "retrieval")]


def test_fallback_with_dense_retrieval_needs_a_shared_content_word(tmp_path):
    # the bag-of-words cosine of the middle sentence and chunk 0 is above 0 ("is", "the") yet it is no support
    out, _ = run(tmp_path, lambda m: RAMBLE, record=THREE, models={"embedder": BagOfWordsEmbedder()},
                 retrieval="dense", fallback="retrieval")
    assert [s["citation"] for s in out[0]["statements"] if s["statement"].strip()] == [
        [cite(1, "retrieval")], [], [cite(2, "retrieval")]]


def test_parsed_markup_is_kept_even_without_a_citation(tmp_path):
    reply = ("<statement>Berlin has parks.<cite>[2]</cite></statement> "
             "<statement>That is the whole story.<cite></cite></statement> "
             "<statement>Rome was built slowly.<cite></cite></statement>")
    out, _ = run(tmp_path, lambda m: reply, record=THREE, fallback="retrieval")
    record = out[0]
    assert record["citation_fallback"] is False and record["cited_answer"] == reply
    assert [(s["statement"], s["citation"]) for s in record["statements"] if s["statement"].strip()] == [
        ("Berlin has parks.", [cite(1, "model")]), ("That is the whole story.", []),
        ("Rome was built slowly.", [])]


def test_backend_error_fails_even_with_fallback(tmp_path):
    class Broken(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="timeout") for _ in conversations]

    comp = ChunkCitation(ChunkCitation.Params(chunk_size=4, retrieval="bm25", fallback="retrieval"))
    out = comp.process([THREE], FakeCtx(params=comp.params, models={None: Broken(lambda m: "")}, tmp=tmp_path))
    assert isinstance(out[0], Failed) and "timeout" in out[0].error


def test_summarize_counts_citations_by_source(tmp_path):
    fallback, _ = run(tmp_path, lambda m: RAMBLE, record=THREE, fallback="retrieval")
    reply = ("<statement>Berlin has parks.<cite>[1]</cite></statement> "
             "<statement>Rome was built slowly.<cite>[2]</cite></statement>")
    model, _ = run(tmp_path, lambda m: reply, top_k=1, fallback="retrieval")
    comp = ChunkCitation(ChunkCitation.Params())
    metrics = comp.summarize(fallback + model, FakeCtx(tmp=tmp_path))
    assert metrics == {"records": 2, "statements": 5, "cited_statements": 4, "cited_fraction": 0.8,
                       "citations_from_model": 2, "citations_from_retrieval": 2, "records_with_fallback": 1}
