"""decode.longcite: citation parsing pitfalls, truncation after numbering, the output record."""

from __future__ import annotations

import re

from components.base import Failed
from components.decoders.longcite import LongCiteDecoder, input_limit, parse_citations
from components.text import number_sentences
from runner.backends.base import ChatResult
from tests.fakes import FakeCtx, ScriptedLLM

CONTEXT = "Alpha one. Beta two.  Gamma three.\nDelta four. Epsilon five."
# the pieces as the prompt shows them (sentence + whitespace up to the next one)
PIECES = ["Alpha one. ", "Beta two.  ", "Gamma three.\n", "Delta four. ", "Epsilon five."]
STARTS = [0, 11, 22, 35, 47, 60]


def chunks() -> list[dict]:
    return [{"c_idx": i, "content": p, "start_idx": STARTS[i], "end_idx": STARTS[i + 1]}
            for i, p in enumerate(PIECES)]


def spans(output: str) -> list[list[tuple[int, int]]]:
    return [[(c["start_sentence_idx"], c["end_sentence_idx"]) for c in s["citation"]]
            for s in parse_citations(output, chunks())]


def test_hand_built_pieces_match_number_sentences():
    assert number_sentences(CONTEXT)[0] == chunks()


def test_zero_based_ids_and_cite_text_with_trailing_whitespace():
    got = parse_citations("<statement>Beta and gamma.<cite>[1-2]</cite></statement>", chunks())
    assert got == [{"statement": "Beta and gamma.", "citation": [{
        "start_sentence_idx": 1, "end_sentence_idx": 2, "start_char_idx": 11, "end_char_idx": 35,
        "cite": "Beta two.  Gamma three.\n"}]}]


def test_bare_numbers_are_ignored():
    assert spans("<statement>A.<cite>[3][0-0]</cite></statement>") == [[(0, 0)]]
    assert spans("<statement>A.<cite>[3]</cite></statement>") == [[]]


def test_adjacent_spans_merge_and_others_do_not():
    assert spans("<statement>A.<cite>[0-1][2-3]</cite></statement>") == [[(0, 3)]]
    assert spans("<statement>A.<cite>[0-0][2-2]</cite></statement>") == [[(0, 0), (2, 2)]]
    assert spans("<statement>A.<cite>[0-2][1-3]</cite></statement>") == [[(0, 2), (1, 3)]]
    got = parse_citations("<statement>A.<cite>[0-1][2-3]</cite></statement>", chunks())[0]["citation"][0]
    assert got["cite"] == "".join(PIECES[0:4]) and (got["start_char_idx"], got["end_char_idx"]) == (0, 47)


def test_at_most_three_spans_after_merging():
    assert spans("<statement>A.<cite>[0-0][2-2][4-4][1-1]</cite></statement>") == [[(0, 0), (2, 2), (4, 4)]]
    # five adjacent one-sentence ranges merge into one span: the cap counts spans, not ranges
    assert spans("<statement>A.<cite>[0-0][1-1][2-2][3-3][4-4]</cite></statement>") == [[(0, 4)]]


def test_out_of_range_spans_are_skipped_or_clamped():
    # n = 5: [5-6] starts past the end, [3-1] is reversed, [3-9] is clamped to the last sentence
    assert spans("<statement>A.<cite>[5-6][3-1][3-9]</cite></statement>") == [[(3, 4)]]
    got = parse_citations("<statement>A.<cite>[3-9]</cite></statement>", chunks())[0]["citation"][0]
    assert got["cite"] == "Delta four. Epsilon five." and got["end_char_idx"] == 60


def test_untagged_text_blank_statements_and_several_cite_blocks():
    output = ("Here is what I found.\n<statement>  <cite>[0-0]</cite></statement>"
              "<statement>Two parts.<cite>[0-0]</cite> more <cite>[1-1]</cite></statement> ok")
    got = parse_citations(output, chunks())
    # text as written; a blank statement with a citation is kept; " ok" (3 characters) is no statement
    assert [s["statement"] for s in got] == ["Here is what I found.\n", "  ", "Two parts. more "]
    assert got[0]["citation"] == []
    assert [(c["start_sentence_idx"], c["end_sentence_idx"]) for c in got[1]["citation"]] == [(0, 0)]
    assert [(c["start_sentence_idx"], c["end_sentence_idx"]) for c in got[2]["citation"]] == [(0, 1)]


def run(tmp_path, records: list[dict], reply, **params):
    llm = ScriptedLLM(reply)
    comp = LongCiteDecoder(LongCiteDecoder.Params(**params))
    return comp.process(records, FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path)), llm


def test_decoder_output_record_and_sampling(tmp_path):
    rec = {"idx": 4, "dataset": "hotpotqa", "query": "Which come first?", "answer": ["Alpha and Beta"],
           "few_shot_scores": [], "context": CONTEXT}
    reply = "<statement>Alpha and beta come first.<cite>[0-0][1-1]</cite></statement>\n\nThat is all there is."
    out, llm = run(tmp_path, [rec], lambda m: reply)
    sampling = llm.calls[0][1]
    assert (sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (0.95, 0.7, 1024)
    got = out[0]
    assert {k: got[k] for k in ("idx", "dataset", "query", "answer", "few_shot_scores")} == \
        {k: rec[k] for k in ("idx", "dataset", "query", "answer", "few_shot_scores")}
    assert "context" not in got
    assert got["splited_context"] == "".join(f"<C{i}>{p}" for i, p in enumerate(PIECES))
    assert got["prediction"] == ("<statement>Alpha and beta come first.<cite>[0-1]</cite></statement>"
                                 "<statement>\n\nThat is all there is.<cite></cite></statement>")
    assert [s["statement"] for s in got["statements"]] == ["Alpha and beta come first.",
                                                           "\n\nThat is all there is."]
    assert got["statements"][0]["citation"][0]["cite"] == "Alpha one. Beta two.  "


def test_truncation_happens_after_numbering(tmp_path):
    sentences = [f"Fact number {i} is here." for i in range(60)]
    context = " ".join(sentences)
    rec = {"idx": 0, "query": "Which facts?", "context": context}
    # untrained Punkt: trained on sixty near-identical sentences it learns "here." as an abbreviation
    _, llm = run(tmp_path, [rec], lambda m: "", train_punkt=False)
    full = llm.calls[0][0][0]["content"]
    limit = len(full.split()) - 30  # whitespace fallback: a token is a word
    out, llm = run(tmp_path, [rec], lambda m: "<statement>Last ones.<cite>[58-59]</cite></statement>",
                   max_input_tokens=limit, train_punkt=False)
    prompt = llm.calls[0][0][0]["content"]
    assert len(prompt.split()) <= limit
    assert prompt.startswith(full[:200]) and prompt.endswith("[Document End]\n\nWhich facts?")
    kept = [int(n) for n in re.findall(r"<C(\d+)>", prompt)]
    assert kept[0] == 0 and kept[-1] == 59
    missing = sorted(set(range(60)) - set(kept))
    assert len(missing) >= 4 and missing == list(range(missing[0], missing[-1] + 1))  # a middle run vanished
    cut = max(k for k in kept if k < missing[0])  # the head may end inside this sentence
    for n in kept:
        if n != cut:  # every other kept marker still introduces its own, whole sentence
            assert f"<C{n}>Fact number {n} is here." in prompt
    cite = out[0]["statements"][0]["citation"][0]
    assert (cite["start_sentence_idx"], cite["end_sentence_idx"]) == (58, 59)
    assert cite["cite"] == "Fact number 58 is here. Fact number 59 is here."
    assert out[0]["splited_context"].count("<C") == 60  # the stored numbering is the untruncated one


def test_prompt_budget_fits_the_context_window(tmp_path):
    assert input_limit(128000, None, 1024) == 128000
    assert input_limit(128000, 8192, 1024) == 8192 - 1024 - 64
    assert input_limit(500, 8192, 1024) == 500

    class Small(ScriptedLLM):
        @property
        def context_length(self):
            return 200

    llm = Small(lambda m: "")
    comp = LongCiteDecoder(LongCiteDecoder.Params(max_new_tokens=50))
    context = " ".join(f"Fact number {i} is here." for i in range(60))
    comp.process([{"idx": 0, "query": "Q?", "context": context}],
                 FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path))
    assert len(llm.calls[0][0][0]["content"].split()) <= 200 - 50 - 64


def test_generation_error_fails_the_record(tmp_path):
    class Broken(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="out of memory") for _ in conversations]

    comp = LongCiteDecoder()
    out = comp.process([{"idx": 0, "query": "Q?", "context": CONTEXT}],
                       FakeCtx(params=comp.params, models={None: Broken(lambda m: "")}, tmp=tmp_path))
    assert isinstance(out[0], Failed) and "out of memory" in out[0].error


DOCTORS = ("Dr. Smith came home. Dr. Jones left early. Dr. Brown stayed late. Mr. Lee was there too. "
           "Dr. Smith said hello. Dr. Jones said goodbye.")


def test_sentences_are_numbered_with_punkt_trained_on_the_context(tmp_path):
    rec = {"idx": 0, "query": "Who left?", "context": DOCTORS}
    # trained on this text, Punkt learns "Dr." (five times, always before a name) as an abbreviation;
    # "Mr." occurs once and still ends a sentence
    out, llm = run(tmp_path, [rec], lambda m: "")
    assert out[0]["splited_context"] == (
        "<C0>Dr. Smith came home. <C1>Dr. Jones left early. <C2>Dr. Brown stayed late. <C3>Mr. "
        "<C4>Lee was there too. <C5>Dr. Smith said hello. <C6>Dr. Jones said goodbye.")
    # the untrained splitter (CoF's) cuts after every "Dr." as well: 12 pieces
    out, _ = run(tmp_path, [rec], lambda m: "", train_punkt=False)
    assert out[0]["splited_context"].count("<C") == 12
    assert out[0]["splited_context"].startswith("<C0>Dr. <C1>Smith came home. <C2>Dr. ")


def test_a_prompt_file_gives_the_whole_user_turn(tmp_path):
    file = tmp_path / "prompt.txt"
    file.write_text("Answer as \"<statement>{S}<cite>[{s1}-{e1}]</cite></statement>\".\n\n"
                    "[Document Start]\n<<context>>\n[Document End]\n\n<<question>>", encoding="utf-8")
    rec = {"idx": 0, "query": "Why <<context>>?", "context": "One. Two."}
    _, llm = run(tmp_path, [rec], lambda m: "", prompt_file=str(file))
    assert llm.calls[0][0][0]["content"] == (
        "Answer as \"<statement>{S}<cite>[{s1}-{e1}]</cite></statement>\".\n\n"
        "[Document Start]\n<C0>One. <C1>Two.\n[Document End]\n\nWhy <<context>>?")
    comp = LongCiteDecoder(LongCiteDecoder.Params(prompt_file=str(file)))
    assert comp.prompt_texts() == {"user": file.read_text(encoding="utf-8")}
    bad = tmp_path / "bad.txt"
    bad.write_text("no markers <<context>>", encoding="utf-8")
    try:
        LongCiteDecoder(LongCiteDecoder.Params(prompt_file=str(bad))).prompt_texts()
    except ValueError as e:
        assert "<<question>>" in str(e)
    else:
        raise AssertionError("a prompt file without <<question>> must be refused")


def test_tags_are_repaired_only_when_asked(tmp_path):
    rec = {"idx": 0, "query": "Q?", "context": CONTEXT}
    reply = "<statement>Alpha.< cite>[0-0]</cite></statement>"
    out, _ = run(tmp_path, [rec], lambda m: reply)
    assert out[0]["statements"] == [{"statement": "Alpha.< cite>[0-0]</cite>", "citation": []}]
    out, _ = run(tmp_path, [rec], lambda m: reply, repair_tags=True)
    assert out[0]["statements"][0]["statement"] == "Alpha."
    assert out[0]["statements"][0]["citation"][0]["cite"] == "Alpha one. "


def test_paper_profile_numbers_sentences_with_trained_punkt():
    from pathlib import Path

    from runner.load import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "longcite.yaml"
    assert load_recipe(recipe, profile="paper").components["decode"].params.train_punkt is True


class RemoteCodeLLM(ScriptedLLM):
    """A model whose repository code defines query_longcite (as the released LongCite models do)."""

    def __init__(self, result) -> None:
        super().__init__(lambda m: "")
        self.result, self.queries = result, []

    def tokenizer(self):
        return "the tokenizer"

    def model_method(self, name):
        if name != "query_longcite":
            return None

        def query(context, query, tokenizer=None, max_input_length=None, max_new_tokens=None):
            self.queries.append((context, query, tokenizer, max_input_length, max_new_tokens))
            if isinstance(self.result, Exception):
                raise self.result
            return self.result
        return query


def test_model_query_uses_the_models_own_query_longcite(tmp_path):
    result = {"answer": "<statement>A.<cite>[0-0]</cite></statement>",
              "statements_with_citations": [{"statement": "A.", "citation": []}],
              "splited_context": "<C0>One.", "all_statements": []}
    llm = RemoteCodeLLM(result)
    comp = LongCiteDecoder(LongCiteDecoder.Params(model_query=True, max_new_tokens=99))
    rec = {"idx": 3, "dataset": "hotpotqa", "query": "Q?", "answer": ["x"], "context": "One."}
    out = comp.process([rec], FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path))
    assert llm.queries == [("One.", "Q?", "the tokenizer", 128000, 99)] and llm.calls == []
    assert out[0] == {"idx": 3, "dataset": "hotpotqa", "query": "Q?", "answer": ["x"],
                      "prediction": result["answer"], "statements": result["statements_with_citations"],
                      "splited_context": "<C0>One."}
    llm = RemoteCodeLLM(RuntimeError("out of memory"))
    out = comp.process([rec], FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path))
    assert isinstance(out[0], Failed) and "out of memory" in out[0].error


def test_model_query_without_remote_code_is_refused(tmp_path):
    import pytest

    comp = LongCiteDecoder(LongCiteDecoder.Params(model_query=True))
    with pytest.raises(ValueError, match="trust_remote_code"):
        comp.process([{"query": "Q", "context": "C."}],
                     FakeCtx(params=comp.params, models={None: ScriptedLLM(lambda m: "")}, tmp=tmp_path))
