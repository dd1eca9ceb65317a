"""LongReward's judge: its parsers, the chunk information stage and the four-dimension scores, against a
scripted judge whose every verdict the test writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.base import Failed
from components.judges.longreward import (
    LongReward,
    option_score,
    parse_numeric_score,
    parse_statements,
    parse_support_verdict,
    prompt_key,
)
from components.judges.longreward_chunks import ChunkInfo, span_key
from components.judges.longreward_prompts import (
    CHUNK_INFO,
    COMPLETENESS,
    FACTS,
    HELPFULNESS,
    LOGICALITY,
    SUPPORT,
)
from tests.fakes import FakeCtx, ScriptedLLM

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RECIPE_SHARED_DATA", REPO / ".." / "shared" / "data"))


# ---- parsers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("good answer [[7]]", 7.0),
    ("[[8]] out of [[10]]", 10.0),  # the last bracketed number
    ("score: [[7.5]]", 7.5),
    ("[[15]]", 15.0),  # not clamped
    ("[[7]] and then [[n/a]]", 7.0),  # the last *numeric* one
    ("[[8/10]]", None), ("[[ 8 ]]", None), ("[[-3]]", None), ("[[Rating: 8]]", None),
    ("8 out of 10", None), ("", None),
])
def test_numeric_score_is_the_last_bare_number_in_double_brackets(text, want):
    assert parse_numeric_score(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("... [[Fully supported]]", 1.0),
    ("[[fully supported]]", 1.0),
    ("[[Partially supported]]", 0.5),
    ("[[No support]]", 0.0),
    ("[[Unsupported]]", 0.0),
    ("[[Not fully supported]]", 0.0),  # not full support (the reference scores it 1)
    ("[[Partially supported]] ... final: [[Fully supported]]", 1.0),  # the last label
    ("[[Fully supported]] ... final: [[No support]]", 0.0),
    ("[[完全支持]]", None),  # not letters, spaces and slashes
    ("[[3]]", None),
    ("no verdict", None),
])
def test_support_verdict_is_the_last_label(text, want):
    assert parse_support_verdict(text) == want


def test_statements_are_the_tagged_texts_in_order():
    reply = "Facts:\n<statement>The river is long.</statement>\n< statement>It ends in the sea.</statement>" \
            "<statement> </statement>"
    assert parse_statements(reply) == ["The river is long.", "It ends in the sea."]
    assert parse_statements("no tags here") is None


def test_chunk_spans_are_rounded_percentages_half_to_even():
    assert span_key(0, 5, 8) == "0% - 62%"  # 62.5 rounds to the even 62
    assert span_key(5, 8, 8) == "62% - 100%"
    assert span_key(1, 3, 8) == "12% - 38%"  # 12.5 -> 12, 37.5 -> 38


def test_a_response_finds_its_prompt():
    assert prompt_key({"idx": "11-3"}) == "11"
    assert prompt_key({"id": "bltin-types-0", "idx": 7}) == "bltin-types"
    assert prompt_key({"id": "x-2", "prompt_id": 5}) == "5"
    assert prompt_key({"id": "plain"}) == "plain"


def test_option_score_weighs_the_options_by_probability():
    import math

    top = {"A": math.log(0.5), " B": math.log(0.25), "The": math.log(0.25)}
    assert option_score(top, {"A": 1.0, "B": 0.5, "C": 0.0}) == pytest.approx((0.5 + 0.125) / 0.75)
    assert option_score({"x": 0.0}, {"A": 1.0}) is None


# ---- a scripted judge ---------------------------------------------------------------------------------


# words only one kind of question has, in English and in Chinese
MARKS = {"chunk": ("[Document part]", "[文档片段]"), "help": ("HELPFULNESS", "有用性"),
         "logic": ("LOGICALITY", "逻辑性"), "complete": ("COMPLETENESS", "完整性"),
         "facts": ("[Factual statements]", "[事实性陈述]"), "support": ("[Statement]", "[陈述]")}


class Judge:
    """Answers each kind of LongReward question with what the test says."""

    def __init__(self, **answers):
        self.answers = {"chunk": "1. the river rises in the mountains", "help": "[[7]]", "logic": "[[8]]",
                        "complete": "[[5]]", "facts": "<statement>A</statement><statement>B</statement>",
                        "support": {"A": "[[Fully supported]]", "B": "[[Partially supported]]"}}
        self.answers.update(answers)
        self.kinds: list[str] = []

    def kind(self, text: str) -> str:
        (kind,) = [k for k, marks in MARKS.items() if any(m in text for m in marks)]
        return kind

    def __call__(self, conv: list[dict]) -> str:
        text = conv[-1]["content"]
        kind = self.kind(text)
        self.kinds.append(kind)
        answer = self.answers[kind]
        if callable(answer):
            return answer(text)
        if kind == "support":
            return answer[text.split("[Statement]\n")[-1].split("\n")[0]]
        return answer


def prompt(context: str = "alpha beta gamma delta epsilon zeta eta theta iota kappa", **extra) -> dict:
    return {"idx": 11, "query": "What does the text list?", "context": context, **extra}


def run_chunk_info(tmp_path, judge: Judge, prompts: list[dict], **params) -> list:
    comp = ChunkInfo(ChunkInfo.Params(**params))
    return comp.process(prompts, FakeCtx(comp.params, models={None: ScriptedLLM(judge)}, tmp=tmp_path))


def run_judge(tmp_path, judge: Judge, responses: list[dict], prompts: list[dict], **params):
    comp = LongReward(LongReward.Params(**{"retrieval": "bm25", **params}))
    llm = ScriptedLLM(judge)
    ctx = FakeCtx(comp.params, models={None: llm}, tmp=tmp_path, inputs={"prompts": prompts})
    return comp.process(responses, ctx), llm


def test_chunk_info_lists_each_chunk_in_its_own_language(tmp_path):
    judge = Judge(chunk=lambda text: "中文信息" if "[文档片段]" in text else "1. english info")
    context = "one two three four five six 七八九十"  # whitespace words: 7 tokens, 4 per chunk
    (out,) = run_chunk_info(tmp_path, judge, [prompt(context)], chunk_size=4)
    assert out["chunk_info"] == [
        {"span": "0% - 57%", "lang": "en", "info": "1. english info"},
        {"span": "57% - 100%", "lang": "zh", "info": "中文信息"},
    ]
    assert out["context"] == context  # the prompt's fields pass through


def test_the_four_dimensions_and_their_sum(tmp_path):
    judge = Judge()
    (info,) = run_chunk_info(tmp_path, judge, [prompt()], chunk_size=5)
    (scored,), llm = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "The list has ten words."}], [info],
                               evidence_chunk_size=2, top_k=2)
    assert scored["scores"] == {"helpfulness": 7.0, "logicality": 8.0, "faithfulness": 7.5,  # 10 x (1 + 0.5) / 2
                                "completeness": 5.0, "total": 27.5}
    assert scored["mean"] == 27.5 / 4
    assert (scored["id"], scored["prompt_id"]) == ("11-0", "11")
    assert [s["support"] for s in scored["details"]["statements"]] == [1.0, 0.5]
    texts = {judge.kind(c[-1]["content"]): c[-1]["content"] for c, _ in llm.calls}
    # helpfulness and logicality never see the document; completeness sees every chunk's information
    assert "alpha" not in texts["help"] and "alpha" not in texts["logic"]
    assert "[Relevant information from 0% - 50% of the document]" in texts["complete"]
    assert "[Relevant information from 50% - 100% of the document]" in texts["complete"]
    # first asks at the low temperature
    assert {s.temperature for _, s in llm.calls} == {0.01}


def test_evidence_is_shown_in_document_order(tmp_path):
    judge = Judge(facts="<statement>kappa iota alpha</statement>", support={"kappa iota alpha": "[[No support]]"})
    (info,) = run_chunk_info(tmp_path, judge, [prompt()], chunk_size=100)
    (scored,), llm = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "a"}], [info],
                               evidence_chunk_size=2, top_k=2)
    # BM25 ranks the chunk "iota kappa" (two terms) before "alpha beta" (one); they are shown in document order
    assert scored["details"]["statements"][0]["evidence"] == [0, 4]
    support_text = next(c[-1]["content"] for c, _ in llm.calls if judge.kind(c[-1]["content"]) == "support")
    assert support_text.index("[Excerpt 1]\nalpha beta") < support_text.index("[Excerpt 2]\niota kappa")
    assert scored["scores"]["faithfulness"] == 0.0


def test_unparsed_verdicts_are_asked_again_hot_then_the_response_fails_with_the_raw_replies(tmp_path):
    replies = iter(["I think it is good", "[[6]]"])
    judge = Judge(help=lambda text: next(replies))
    (info,) = run_chunk_info(tmp_path, judge, [prompt()])
    (scored,), llm = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "x"}], [info])
    assert scored["scores"]["helpfulness"] == 6.0
    help_temps = [s.temperature for c, s in llm.calls if judge.kind(c[-1]["content"]) == "help"]
    assert help_temps == [0.01, 0.95]

    judge = Judge(logic="no score at all")
    (failed,), llm = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "x"}], [info], tries=5)
    assert isinstance(failed, Failed) and not failed.retry
    assert failed.error == "no verdict for logicality after 5 tries"
    assert json.loads(failed.raw)["logicality"] == "no score at all"
    assert sum(1 for c, _ in llm.calls if judge.kind(c[-1]["content"]) == "logic") == 5


def test_no_factual_statement_fails_the_response(tmp_path):
    judge = Judge(facts="The answer has no facts.")
    (info,) = run_chunk_info(tmp_path, judge, [prompt()])
    (failed,), _ = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "x"}], [info], tries=2)
    assert isinstance(failed, Failed) and failed.error == "faithfulness: no factual statement in the judge's reply"


def test_chinese_documents_get_chinese_prompts(tmp_path):
    judge = Judge(support=lambda text: "[[Fully supported]]")
    zh = prompt("河流发源于山区，向东流入大海。沿途经过三个城市。")
    (info,) = run_chunk_info(tmp_path, judge, [zh])
    (scored,), llm = run_judge(tmp_path, judge, [{"id": "11-0", "answer": "河流流入大海。"}], [info])
    assert scored["details"]["lang"] == "zh"
    assert all(c[-1]["content"].startswith(tuple(t["zh"][:10] for t in (
        CHUNK_INFO, HELPFULNESS, LOGICALITY, COMPLETENESS, FACTS, SUPPORT))) for c, _ in llm.calls)


def test_a_response_without_its_prompt_fails(tmp_path):
    (failed,), _ = run_judge(tmp_path, Judge(), [{"id": "12-0", "answer": "x"}], [])
    assert isinstance(failed, Failed) and "prompt '12'" in failed.error


def test_chunk_information_is_asked_once_per_prompt_not_per_response(tmp_path):
    """The real LongReward example: one long document, its 10 sampled responses."""
    sft, sampled = SHARED / "longreward" / "sft_example.jsonl", SHARED / "longreward" / "sampled_responses.jsonl"
    if not sft.exists():
        pytest.skip(f"reference data not found at {SHARED} (set RECIPE_SHARED_DATA)")
    record = json.loads(sft.read_text().splitlines()[0])
    responses = [json.loads(line) for line in sampled.read_text().splitlines() if line.strip()]
    judge = Judge(facts=lambda text: "<statement>A</statement>", support={"A": "[[Fully supported]]"})
    (info,) = run_chunk_info(tmp_path, judge, [record], chunk_size=1024)
    n_chunks = len(info["chunk_info"])
    assert n_chunks == -(-len(record["context"].split()) // 1024)  # whitespace words, ceil
    scored, _ = run_judge(tmp_path, judge, responses, [info], retrieval="bm25")
    assert [r["id"] for r in scored] == [r["idx"] for r in responses]
    assert all(r["prompt_id"] == "11" for r in scored)
    assert judge.kinds.count("chunk") == n_chunks  # once for the prompt, not once per response
    assert judge.kinds.count("complete") == len(responses)
    assert all(r["scores"]["total"] == 7 + 8 + 10 + 5 for r in scored)


def test_digit_probabilities_score_small_judges_from_the_first_token(tmp_path):
    """For judges too small to write [[n]]: one token, probability-weighted digit (x10/9) or option."""
    import math

    from runner.backends.base import ChatResult, TokenLogprob

    class FirstToken(ScriptedLLM):
        def chat(self, conversations, sampling):
            out = []
            for conv in conversations:
                self.calls.append((conv, sampling))
                text = conv[-1]["content"]
                top = ({"A": math.log(0.75), "C": math.log(0.25)} if "[Statement]" in text
                       else {"7": math.log(0.5), "8": math.log(0.25), "x": math.log(0.25)})
                out.append(ChatResult(text="", logprobs=[TokenLogprob(token="7", logprob=-0.7, top=top)]))
            return out

    (info,) = run_chunk_info(tmp_path, Judge(), [prompt()])
    comp = LongReward(LongReward.Params(scoring="digit_probabilities", statements="sentences",
                                        retrieval="bm25", top_logprobs=5))
    llm = FirstToken(lambda conv: "")
    ctx = FakeCtx(comp.params, models={None: llm}, tmp=tmp_path, inputs={"prompts": [info]})
    (scored,) = comp.process([{"id": "11-0", "answer": "Alpha comes first. Kappa comes last."}], ctx)
    rating = (7 * 0.5 + 8 * 0.25) / 0.75 * 10 / 9
    assert scored["scores"]["helpfulness"] == pytest.approx(rating)
    assert scored["scores"]["faithfulness"] == pytest.approx(7.5)  # both sentences 0.75 supported
    assert [s["statement"] for s in scored["details"]["statements"]] == ["Alpha comes first.", "Kappa comes last."]
    assert {(s.max_new_tokens, s.logprobs, s.temperature) for _, s in llm.calls} == {(1, 5, 0.0)}
    assert len(llm.calls) == 3 + 2  # three ratings, two support verdicts: no fact extraction
