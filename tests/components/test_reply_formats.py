"""The reply formats components declare: hand-written replies the regex accepts parse as the component
expects (and wrong ones are rejected), replies a tiny random model writes under each format parse, and
the components send their formats when constrained (on by default for local backends only)."""

from __future__ import annotations

import re

import pytest

from components.base import Failed
from components.decoders.longcite import LongCiteDecoder, answer_format, parse_output
from components.formats import (
    analysis_chars,
    chat_each,
    constrained,
    integers,
    number_verdict,
    span_pairs,
    spans,
    verdict,
)
from components.generators.cof.chunk_citation import citation_format, parse_chunk_citations
from components.generators.cof.qa_generation import (
    ANSWER_FORMAT,
    QAGeneration,
    parse_questions,
    questions_format,
)
from components.generators.cof.sentence_citation import spans_format
from components.judges.llm_score import LlmScore, parse_score
from components.judges.longbench_chat import LongBenchChatJudge
from components.judges.longbench_cite import (
    NEEDS_CITATION,
    NEEDS_CITATION_FORMAT,
    RELEVANCE,
    RELEVANCE_FORMAT,
    SUPPORT,
    SUPPORT_FORMAT,
    correctness_scale,
    label_parser,
)
from components.judges.needle import NeedleJudge
from components.selectors.cof_filter import global_spans
from components.text import last_bracket_number, split_sentences
from runner.backends.base import Format, Sampling
from tests.fakes import FakeCtx, ScriptedLLM


def matches(fmt: Format, text: str) -> bool:
    return re.fullmatch(fmt.spec, text) is not None


# ---- the shared builders ------------------------------------------------------------------------------


def test_builders():
    assert integers(1, 3) == ["3", "2", "1"]
    assert verdict(["Yes", "No"]).spec == r"\[\[(Yes|No)\]\]"
    assert verdict(["1"], analysis_chars=5).spec == r"([\x00-\x5a\x5c\x5e-\x7f]{0,5}|[^\[\]]{0,1})\[\[(1)\]\]"
    # ASCII analysis up to 8 characters, any other text up to 8 // 4 characters (at most 8 tokens either way)
    fmt = verdict(["1"], analysis_chars=8)
    assert matches(fmt, "ok, fine[[1]]") and not matches(fmt, "ok, fine.[[1]]")
    assert matches(fmt, "好的[[1]]") and not matches(fmt, "好的吧[[1]]") and not matches(fmt, "a]b[[1]]")
    # [[10]] is 6 characters: 48 tokens leave 48 - 6 - 2 for the analysis
    assert analysis_chars(48, integers(1, 10)) == 40
    assert analysis_chars(5, ["Fully supported"]) == 0
    assert [bool(re.fullmatch(span_pairs(2), t)) for t in ("0-0", "0-1", "1-1", "1-0", "0-2")] == [
        True, True, True, False, False]
    assert spans(3) == span_pairs(3)
    assert re.fullmatch(spans(100), "99-3") and not re.fullmatch(spans(100), "100-3")  # unordered past 64
    fmt = number_verdict(0, 1.5, 40)
    assert matches(fmt, "ok [[1.25]]") and not matches(fmt, "[[x]]")
    assert number_verdict(1, 5, 40) == verdict(integers(1, 5), analysis_chars(40, ["5"]))


def test_constrained_by_default_only_on_local_backends():
    llm = ScriptedLLM(lambda c: "")
    for backend, default in (("transformers", True), ("vllm", True), ("openai", False), ("scripted", False)):
        llm.backend = backend
        assert constrained(llm, None) is default
        assert constrained(llm, True) is True and constrained(llm, False) is False


def test_chat_each_groups_equal_samplings_and_keeps_the_order():
    llm = ScriptedLLM(lambda conv: conv[0]["content"].upper())
    a, b = Sampling(max_new_tokens=3), Sampling(max_new_tokens=3, format=Format.regex("x"))
    convs = [[{"role": "user", "content": w}] for w in ("p", "q", "r", "s")]
    out = chat_each(llm, convs, [a, b, a, b])
    assert [r.text for r in out] == ["P", "Q", "R", "S"]
    # two calls, one per sampling, in order of first appearance
    assert [(c[0]["content"], s.format) for c, s in llm.calls] == [
        ("p", None), ("r", None), ("q", b.format), ("s", b.format)]


# ---- hand-written replies: accepted ones parse, wrong ones are rejected -------------------------------


def test_question_and_answer_formats():
    fmt = questions_format()
    good = "1: What is a loop?\n2: Why break?\n3: How?\n4: When does it stop?\n5: Which one"
    assert matches(fmt, good)
    assert parse_questions(good) == ["What is a loop?", "Why break?", "How?", "When does it stop?", "Which one"]
    for bad in ("1: a\n2: b", "Questions:\n1: a\n2: b\n3: c\n4: d\n5: e", "1:  a\n2: b\n3: c\n4: d\n5: e",
                "1: a\n2: b\n3: c\n4: d\n5: e\n6: f"):
        assert not matches(fmt, bad)
    assert matches(ANSWER_FORMAT, "It stops.\n\nThen it ends.") and not matches(ANSWER_FORMAT, " x")


ANSWER = "Loops repeat code. A break ends them.\n\nContinue skips ahead."
SNIPPETS = [{"c_idx": i, "content": f"chunk {i}", "start_idx": 10 * i, "end_idx": 10 * i + 10} for i in range(3)]


def test_chunk_citation_format_is_the_answer_copied_with_snippet_numbers():
    fmt = citation_format(ANSWER, split_sentences(ANSWER), n_snippets=3)
    good = ("<statement>Loops repeat code.<cite>[2]</cite></statement> <statement>A break ends them.<cite>"
            "</cite></statement>\n\n<statement>Continue skips ahead.<cite>[3][1]</cite></statement>")
    assert matches(fmt, good)
    cited, statements = parse_chunk_citations(good, SNIPPETS)
    assert cited == good
    assert [(s["statement"], [c["idx"] for c in s["citation"]]) for s in statements] == [
        ("Loops repeat code.", [1]), (" ", []), ("A break ends them.", []), ("\n\n", []),
        ("Continue skips ahead.", [2, 0])]
    for bad in (good.replace("[3]", "[4]"), good.replace("[3]", "[0]"), good.replace("repeat", "repeats"),
                good.replace(" <statement>A break ends them.<cite></cite></statement>", ""),  # a sentence lost
                good.replace("code.<cite>[2]</cite></statement> <statement>", "code. "),  # two in one
                "[1][2][3][1][2][3]".join(["<cite>", "</cite>"]), "Loops repeat code."):
        assert not matches(fmt, bad)


def test_sentence_citation_format():
    fmt = spans_format(4)
    chunk_sents = [{"c_idx": 10 + i} for i in range(4)]
    assert matches(fmt, "[0-1]\n[3-3]") and global_spans("[0-1]\n[3-3]", chunk_sents) == [(10, 11), (13, 13)]
    assert matches(fmt, "No relevant information")
    for bad in ("[2-1]", "[0-4]", "[0-0]\n[1-1]\n[2-2]\n[3-3]", "[1]", "none", "[0-1] "):
        assert not matches(fmt, bad)


def test_decoder_answer_format():
    fmt = answer_format(3, max_new_tokens=160)
    chunks = [{"start_idx": 5 * i, "end_idx": 5 * i + 5, "content": f"s{i}. "} for i in range(3)]
    text = "<statement>Loops repeat.<cite>[0-1][2-2]</cite></statement>\n<statement>That is all.<cite></cite></statement>"
    assert matches(fmt, text) and matches(fmt, "<statement>" + "x" * 288 + "<cite></cite></statement>")
    statements, _ = parse_output(text, chunks)
    assert [(s["statement"], [(c["start_sentence_idx"], c["end_sentence_idx"]) for c in s["citation"]])
            for s in statements] == [("Loops repeat.", [(0, 2)]), ("That is all.", [])]
    for bad in (text.replace("[2-2]", "[3-3]"), text.replace("[0-1]", "[1-0]"), "Loops repeat.",
                "<statement>" + "x" * 289 + "<cite></cite></statement>"):  # text capped at 3 * (160 - 64)
        assert not matches(fmt, bad)


@pytest.mark.parametrize("fmt, scale, replies", [
    (SUPPORT_FORMAT, SUPPORT, {"[[Fully supported]]": 1.0, "[[Partially supported]]": 0.5, "[[No support]]": 0.0}),
    (NEEDS_CITATION_FORMAT, NEEDS_CITATION, {"[[Yes]]": 1.0, "[[No]]": 0.0}),
    (RELEVANCE_FORMAT, RELEVANCE, {"[[Relevant]]": 1.0, "[[Irrelevant]]": 0.0}),
])
def test_longbench_cite_label_formats(fmt, scale, replies):
    for reply, value in replies.items():
        assert matches(fmt, reply) and label_parser(scale)(reply) == value
    assert not matches(fmt, "Analysis: fine [[Yes]]") and not matches(fmt, "[[yes it is]]")


@pytest.mark.parametrize("dataset, reply, value", [
    ("hotpotqa", "[[3]]", 1.0), ("gov_report", "[[2]]", 0.25), ("longbench-chat", "[[10]]", 1.0)])
def test_longbench_cite_correctness_formats(dataset, reply, value):
    _, parse, fmt = correctness_scale(dataset)
    assert matches(fmt, reply) and parse(reply) == value
    assert not matches(fmt, "[[0]]") and not matches(fmt, "[[11]]")


def test_rating_judges_allow_bounded_analysis_then_the_verdict():
    for comp in (LongBenchChatJudge(LongBenchChatJudge.Params(max_new_tokens=20)),
                 NeedleJudge(NeedleJudge.Params(max_new_tokens=20))):
        fmt = comp.rating_format()
        assert matches(fmt, "Right.[[7]]") and last_bracket_number("Right.[[7]]") == 7
        assert matches(fmt, "[[10]]") and not matches(fmt, "[[0]]")
        assert matches(fmt, "x" * 12 + "[[1]]") and not matches(fmt, "x" * 13 + "[[1]]")  # 20 - 6 - 2
        assert matches(fmt, "éèà[[1]]") and not matches(fmt, "éèàç[[1]]")  # 12 // 4
    fmt = LlmScore(LlmScore.Params(scale_min=0, scale_max=4, max_new_tokens=30)).score_format()
    assert matches(fmt, "Fine.\n[[4]]") and parse_score("Fine.\n[[4]]", 0, 4) == 4
    assert not matches(fmt, "[[5]]")


# ---- generated replies: whatever a model writes under the format parses ------------------------------


@pytest.fixture(scope="module")
def random_llm(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("llguidance")
    from registry.zoo import Zoo
    from runner.backends import open_llm

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECIPE_ZOO_HOME", str(tmp_path_factory.mktemp("zoo")))
        llm = open_llm(Zoo.load([]).resolve("tiny-random-llama"), options={"batch_size": 4, "num_threads": 1})
        llm.tokenizer()
        yield llm


def generate(llm, fmt: Format, max_new_tokens: int, n: int = 4) -> list[str]:
    convs = [[{"role": "user", "content": f"write {k}"}] for k in range(n)]
    out = llm.chat(convs, Sampling(temperature=1.0, seed=7, max_new_tokens=max_new_tokens, format=fmt))
    assert all(r.error is None for r in out)
    return [r.text for r in out]


def test_generated_cof_replies_parse(random_llm):
    for text in generate(random_llm, questions_format(), 200):
        assert parse_questions(text), text
    sentences = split_sentences(ANSWER)
    for text in generate(random_llm, citation_format(ANSWER, sentences, 3), 300):
        assert re.fullmatch(citation_format(ANSWER, sentences, 3).spec, text)
        cited, statements = parse_chunk_citations(text, SNIPPETS)
        assert "".join(s["statement"] for s in statements) == ANSWER  # copied exactly, nothing lost
    chunk_sents = [{"c_idx": 20 + i} for i in range(5)]
    for text in generate(random_llm, spans_format(5), 40):
        assert text == "No relevant information" or 1 <= len(global_spans(text, chunk_sents)) <= 3


def test_generated_decoder_answers_parse(random_llm):
    chunks = [{"start_idx": i, "end_idx": i + 1, "content": "s"} for i in range(7)]
    for text in generate(random_llm, answer_format(7, 120), 120):
        statements, _ = parse_output(text, chunks)
        assert statements, text
        assert all(0 <= c["start_sentence_idx"] <= c["end_sentence_idx"] < 7
                   for s in statements for c in s["citation"])


def test_generated_verdicts_parse_within_the_judges_token_budget(random_llm):
    # the byte-level tokenizer writes one character per token: the tightest case of the analysis bound
    for comp in (LongBenchChatJudge(LongBenchChatJudge.Params(max_new_tokens=24)),
                 NeedleJudge(NeedleJudge.Params(max_new_tokens=24))):
        for text in generate(random_llm, comp.rating_format(), 24):
            assert 1 <= (last_bracket_number(text) or 0) <= 10, (text, len(text.encode()))
    score = LlmScore(LlmScore.Params(scale_min=1, scale_max=5, max_new_tokens=16))
    for text in generate(random_llm, score.score_format(), 16):
        assert parse_score(text, 1, 5) is not None, text
    for fmt, scale in ((SUPPORT_FORMAT, SUPPORT), (NEEDS_CITATION_FORMAT, NEEDS_CITATION),
                       (RELEVANCE_FORMAT, RELEVANCE)):
        for text in generate(random_llm, fmt, 30):
            assert label_parser(scale)(text) is not None, text


# ---- the components send their formats when constrained ----------------------------------------------


def test_components_send_formats_only_when_constrained(tmp_path):
    record = {"idx": 1, "query": "q", "prediction": "p", "answer": "a",
              "few_shots": [{"answer": "x", "score": 3}]}
    for flag, backend, sent in ((None, "transformers", True), (None, "openai", False), (False, "vllm", False),
                                (True, "openai", True)):
        llm = ScriptedLLM(lambda conv: "fine [[6]]")
        llm.backend = backend
        comp = LongBenchChatJudge(LongBenchChatJudge.Params(constrained=flag))
        out = comp.process([record], FakeCtx(params=comp.params, models={"judge": llm, None: llm}, tmp=tmp_path))
        assert out[0]["score"] == 6
        assert llm.calls[0][1].format == (comp.rating_format() if sent else None)


def test_qa_generation_sends_the_question_and_answer_formats(tmp_path):
    replies = iter(["1: What?\n2: Why?\n3: How?\n4: Who?\n5: When?", "Because."])
    llm = ScriptedLLM(lambda conv: next(replies))
    llm.backend = "transformers"
    comp = QAGeneration(QAGeneration.Params())
    out = comp.process([{"idx": 0, "context": "A text about loops."}], FakeCtx(params=comp.params,
                                                                            models={None: llm}, tmp=tmp_path))
    assert not isinstance(out[0], Failed) and out[0]["answer"] == "Because."
    assert [s.format for _, s in llm.calls] == [questions_format(), ANSWER_FORMAT]


def test_decoder_sends_one_format_per_sentence_count(tmp_path):
    llm = ScriptedLLM(lambda conv: "<statement>A.<cite>[0-0]</cite></statement>")
    llm.backend = "transformers"
    comp = LongCiteDecoder(LongCiteDecoder.Params(max_new_tokens=100))
    records = [{"idx": 0, "query": "q", "context": "One. Two. Three."},
               {"idx": 1, "query": "q", "context": "Alpha here. Beta there."}]
    out = comp.process(records, FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path))
    assert [len(r["statements"][0]["citation"]) for r in out] == [1, 1]
    n_sentences = [len(r["splited_context"].split("<C")) - 1 for r in out]
    assert {s.format for _, s in llm.calls} == {answer_format(n, 100) for n in n_sentences}
