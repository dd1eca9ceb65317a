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
from tests.fakes import BagOfWordsEmbedder, FakeCtx, ScriptedLLM

CONTEXT = "Paris is the capital. Berlin has many parks. Rome was built slowly. Oslo lies by a fjord."
# whitespace tokens, 4 per chunk:
CHUNKS = ["Paris is the capital. ", "Berlin has many parks. ", "Rome was built slowly. ", "Oslo lies by a ", "fjord."]
RECORD = {"idx": 3, "query": "What about Berlin and Rome?", "answer": "Berlin has parks. Rome was built slowly.",
          "context": CONTEXT}


def snippet(i: int, content: str) -> dict:
    return {"c_idx": i, "content": content, "start_idx": 10 * i, "end_idx": 10 * i + 10}


def run(tmp_path, reply, models=None, **params):
    llm = ScriptedLLM(reply)
    comp = ChunkCitation(ChunkCitation.Params(**{"chunk_size": 4, "retrieval": "bm25", **params}))
    ctx = FakeCtx(params=comp.params, models={None: llm, **(models or {})}, tmp=tmp_path)
    return comp.process([RECORD], ctx), llm


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
        {"start": 0, "end": 10, "idx": 0, "cite": "text 0"},
        {"start": 20, "end": 30, "idx": 2, "cite": "text 2"},
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
        {"statement": "Berlin has parks.", "citation": [{"start": 4, "end": 8, "idx": 1, "cite": CHUNKS[1]}]},
        {"statement": " ", "citation": []},
        {"statement": "Rome was built slowly.", "citation": [{"start": 8, "end": 12, "idx": 2, "cite": CHUNKS[2]}]},
    ]


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
