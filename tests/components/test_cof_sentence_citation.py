"""cof.sentence_citation: chunk windows, passage location, local numbering, stored raw answers."""

from __future__ import annotations

from components.base import Failed
from components.generators.cof.sentence_citation import SentenceCitation, locate_window, merge_windows
from components.selectors.cof_filter import CoFFilter
from components.text import token_chunks
from runner.backends.base import ChatResult
from tests.fakes import FakeCtx, ScriptedLLM

SENTENCES = ["Ants build big nests.", "Bees make sweet honey.", "Cats chase small mice.",
             "Dogs guard old houses.", "Eels swim deep rivers.", "Fish need clean water."]
CONTEXT = " ".join(SENTENCES)  # 4 words each: with 4-token chunks, chunk i is sentence i plus a space


def chunk(i: int) -> dict:
    text = SENTENCES[i] + (" " if i < 5 else "")
    return {"start": 4 * i, "end": 4 * i + 4, "idx": i, "cite": text}


def record(*statements: dict) -> dict:
    return {"idx": 1, "query": "What do animals do?", "answer": "…", "cited_answer": "…", "context": CONTEXT,
            "statements": list(statements)}


def run(tmp_path, rec: dict, reply=lambda m: "[1-1]", llm=None, **params):
    llm = llm or ScriptedLLM(reply)
    comp = SentenceCitation(SentenceCitation.Params(chunk_size=4, **params))
    return comp.process([rec], FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path))[0], llm


def test_windows_are_neighbours_merged_when_they_touch():
    assert merge_windows([3], 10) == [(2, 5)]
    assert merge_windows([0], 10) == [(0, 2)]
    assert merge_windows([9], 10) == [(8, 10)]
    assert merge_windows([4, 2], 10) == [(1, 6)]  # (1,4) and (3,6) overlap
    assert merge_windows([2, 5], 10) == [(1, 7)]  # (1,4) and (4,7) touch
    assert merge_windows([2, 6], 10) == [(1, 4), (5, 8)]


def test_one_cited_chunk_becomes_three_locally_numbered_sentences(tmp_path):
    out, llm = run(tmp_path, record({"statement": "Cats hunt mice.", "citation": [chunk(2)]},
                                    {"statement": " ", "citation": []},
                                    {"statement": "Animals are busy.", "citation": []}))
    prompt = llm.calls[0][0][0]["content"]
    assert ("[Passages]\n<C0>Bees make sweet honey. <C1>Cats chase small mice. <C2>Dogs guard old houses.\n"
            "[Question]\nWhat do animals do?\n[Statement]\nCats hunt mice.\n[Supporting sentences]\n") in prompt
    assert len(llm.calls) == 1  # uncited statements are not asked about
    sampling = llm.calls[0][1]
    assert sampling.temperature == 1.0 and sampling.max_new_tokens == 128
    first = out["statements"][0]
    assert first["citation"] == "[1-1]" and first["citation_source"] == "model"
    assert first["chunk_sents"] == [{"c_idx": 1, "content": SENTENCES[1]}, {"c_idx": 2, "content": SENTENCES[2]},
                                    {"c_idx": 3, "content": SENTENCES[3]}]
    start = len(SENTENCES[0]) + 1
    end = start + len(" ".join(SENTENCES[1:4])) + 1
    assert first["expand_chunk"] == [{"start_chunk": 1, "end_chunk": 4, "start_idx": start, "end_idx": end,
                                      "content": CONTEXT[start:end]}]
    assert out["statements"][1:] == [{"statement": " ", "citation": []},
                                     {"statement": "Animals are busy.", "citation": []}]


def test_numbering_continues_across_separate_passages(tmp_path):
    out, llm = run(tmp_path, record({"statement": "Ants and fish.", "citation": [chunk(0), chunk(5)]}))
    prompt = llm.calls[0][0][0]["content"]
    assert ("<C0>Ants build big nests. <C1>Bees make sweet honey.\n\n"
            "<C2>Eels swim deep rivers. <C3>Fish need clean water.\n[Question]") in prompt
    assert [s["c_idx"] for s in out["statements"][0]["chunk_sents"]] == [0, 1, 4, 5]
    assert [(e["start_chunk"], e["end_chunk"]) for e in out["statements"][0]["expand_chunk"]] == [(0, 2), (4, 6)]


def test_chunking_that_differs_from_stage_two_fails_the_record(tmp_path):
    wrong = {**chunk(2), "cite": "something else "}
    out, llm = run(tmp_path, record({"statement": "Cats hunt mice.", "citation": [wrong]}))
    assert isinstance(out, Failed) and "chunk_size" in out.error
    assert llm.calls == []


def test_backend_error_fails_the_record(tmp_path):
    class Broken(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="timeout") for _ in conversations]

    out, _ = run(tmp_path, record({"statement": "Cats hunt mice.", "citation": [chunk(2)]}),
                 llm=Broken(lambda m: ""))
    assert isinstance(out, Failed) and "timeout" in out.error


class SlowTokenizer:
    """A tokenizer without character offsets whose decoding adds a marker at both ends."""

    def __init__(self, text: str) -> None:
        self.vocab = {w: i for i, w in enumerate(dict.fromkeys(text.split()))}
        self.words = {i: w for w, i in self.vocab.items()}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab[w] for w in text.split()]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "#" + " ".join(self.words[i] for i in ids) + "#"


def test_passage_location_without_offsets_trims_the_ends():
    tok = SlowTokenizer(CONTEXT)
    chunks = token_chunks(CONTEXT, tok, size=4)
    assert chunks[1]["char_start"] is None and chunks[1]["content"] == "#Bees make sweet honey.#"
    start, end = locate_window(CONTEXT, chunks, 1, 3, tok)
    assert CONTEXT[start:end] == "Bees make sweet honey. Cats chase small mice."


# --- fallback: retrieval (not the paper's method; for models too small to write [s-e] lines) -----------------
# A statement citing chunk 2 sees local sentences <C0> Bees (global 1), <C1> Cats (global 2), <C2> Dogs (global 3).

RAMBLE = "The statement talks about animals, I think."


def by_statement(replies: dict[str, str]):
    """A reply chosen by the statement in the prompt."""
    def reply(messages):
        statement = messages[0]["content"].split("[Statement]\n")[-1].split("\n")[0]
        return replies[statement]
    return reply


def test_ramble_without_fallback_is_stored_as_is(tmp_path):
    out, _ = run(tmp_path, record({"statement": "The dogs guard the mice.", "citation": [chunk(2)]}),
                 reply=lambda m: RAMBLE)
    st = out["statements"][0]
    assert st["citation"] == RAMBLE and st["citation_source"] == "none" and "model_reply" not in st


def test_fallback_picks_the_best_local_sentence_and_cof_filter_reads_it(tmp_path):
    # "dogs" and "guard" are in <C2>, only "mice" in <C1>: <C2> is the best, global sentence 3
    rec = record({"statement": "The dogs guard the mice.", "citation": [chunk(2)]})
    out, _ = run(tmp_path, rec, reply=lambda m: RAMBLE, fallback="retrieval")
    st = out["statements"][0]
    assert st["citation"] == "[2-2]" and st["citation_source"] == "retrieval" and st["model_reply"] == RAMBLE
    answer, reason = CoFFilter(CoFFilter.Params()).decide(out)
    assert reason is None and answer == "<statement>The dogs guard the mice.<cite>[3-3]</cite></statement>"

    out, _ = run(tmp_path, rec, reply=lambda m: RAMBLE, fallback="retrieval", fallback_top=2)
    assert out["statements"][0]["citation"] == "[1-1]\n[2-2]"  # one [k-k] line each, in text order
    answer, _ = CoFFilter(CoFFilter.Params()).decide(out)
    assert answer == "<statement>The dogs guard the mice.<cite>[2-2][3-3]</cite></statement>"


def test_fallback_leaves_usable_replies_and_explicit_no_support_alone(tmp_path):
    rec = record({"statement": "Bees make honey.", "citation": [chunk(2)]},
                 {"statement": "Dogs guard houses.", "citation": [chunk(2)]},
                 {"statement": "Cats chase mice.", "citation": [chunk(2)]},
                 {"statement": "Everything went fine.", "citation": [chunk(2)]})
    replies = {"Bees make honey.": "[0-0]",
               "Dogs guard houses.": "No relevant information",
               "Cats chase mice.": "[7-9]",  # past the 3 local sentences: cof.filter drops it, so no usable range
               "Everything went fine.": RAMBLE}  # no content word in common with any local sentence
    out, _ = run(tmp_path, rec, reply=by_statement(replies), fallback="retrieval")
    got = [(s["citation"], s["citation_source"]) for s in out["statements"]]
    assert got == [("[0-0]", "model"), ("No relevant information", "none"), ("[1-1]", "retrieval"),
                   (RAMBLE, "none")]
    answer, reason = CoFFilter(CoFFilter.Params()).decide(out)
    assert reason is None
    assert answer == ("<statement>Bees make honey.<cite>[1-1]</cite></statement>"
                      "<statement>Dogs guard houses.<cite></cite></statement>"
                      "<statement>Cats chase mice.<cite>[2-2]</cite></statement>"
                      "<statement>Everything went fine.<cite></cite></statement>")

    comp = SentenceCitation(SentenceCitation.Params())
    uncited = record({"statement": "Nothing cited.", "citation": []})
    metrics = comp.summarize([out, uncited], FakeCtx(tmp=tmp_path))
    assert metrics == {"records": 2, "refined_statements": 4, "answers_without_spans": 2,
                       "citations_from_model": 1, "citations_from_retrieval": 1, "uncited_refined_statements": 2,
                       "records_with_fallback": 1}
