"""judge.llm_score: [[n]] parsing, re-asks, kept-and-counted parse failures, metrics by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.base import Failed
from components.judges.llm_score import LlmScore, parse_score
from runner.backends.base import ChatResult
from tests.fakes import FakeCtx, ScriptedLLM


def make(tmp_path, reply, **params):
    comp = LlmScore(LlmScore.Params(**params))
    llm = ScriptedLLM(reply)
    return comp, llm, FakeCtx(comp.params, models={None: llm}, tmp=tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("Good answer. [[7]]", 7.0),
    ("first [[2]] then, all considered: [[9]]", 9.0),
    ("Rating: [[Rating: 8/10]]", 8.0),
    ("[[6.5]]", 6.5),
    ("[[11]]", None),  # outside 1..10
    ("[[0]]", None),
    ("[[great]]", None),
    ("score 7", None),
])
def test_parse_score(text, expected):
    assert parse_score(text, 1, 10) == expected


def test_scores_records_and_keeps_their_fields(tmp_path):
    replies = {"good": "Clear and right. [[8]]", "bad": "Wrong. [[2]]"}
    comp, llm, ctx = make(tmp_path, lambda conv: replies[conv[-1]["content"].split("[Response]\n")[1]])
    out = comp.process([{"id": 1, "query": "q", "response": "good"}, {"id": 2, "query": "q", "response": "bad"}],
                       ctx)
    assert out == [
        {"id": 1, "query": "q", "response": "good", "score": 8.0, "judge_raw": "Clear and right. [[8]]"},
        {"id": 2, "query": "q", "response": "bad", "score": 2.0, "judge_raw": "Wrong. [[2]]"},
    ]
    conv, sampling = llm.calls[0]
    assert conv[0]["role"] == "system" and "from 1 (worst) to 10 (best)" in conv[1]["content"]
    assert sampling.max_new_tokens == 512 and sampling.temperature == 0.0


def test_parse_failure_is_reasked_at_retry_temperature(tmp_path):
    answers = {"a": iter(["I think it is fine.", "Fine. [[6]]"]), "b": iter(["[[9]]"])}
    comp, llm, ctx = make(tmp_path, lambda conv: next(answers[conv[-1]["content"]]),
                          template="{response}", system=None, seed=3)
    out = comp.process([{"id": "x", "response": "a"}, {"id": "y", "response": "b"}], ctx)
    assert [r["score"] for r in out] == [6.0, 9.0]
    # first call: both records greedily; second call: only the unparsed one, hotter, next seed
    assert len(llm.calls) == 3
    assert [(s.temperature, s.seed) for _, s in llm.calls] == [(0.0, 3), (0.0, 3), (0.7, 4)]
    assert llm.calls[2][0] == [{"role": "system", "content": comp.prompts["system"]},
                               {"role": "user", "content": "a"}]


def test_unparsable_after_retries_is_kept_with_null_score(tmp_path):
    texts = iter(["no score", "still none", "[[42]]"])
    comp, llm, ctx = make(tmp_path, lambda conv: next(texts), template="{response}",
                          tries=3)
    (rec,) = comp.process([{"id": 1, "response": "r"}], ctx)
    assert rec["score"] is None and rec["judge_raw"] == "[[42]]"
    assert len(llm.calls) == 3


def test_custom_template_gets_the_scale(tmp_path):
    comp, llm, ctx = make(tmp_path, lambda conv: "[[5]]", template="{scale_min}-{scale_max}: {text}",
                          system="judge {text}", scale_min=0, scale_max=5, score_field="rating")
    (rec,) = comp.process([{"text": "hi"}], ctx)
    assert rec["rating"] == 5.0
    assert llm.calls[0][0] == [{"role": "system", "content": "judge hi"}, {"role": "user", "content": "0-5: hi"}]
    assert comp.output_fields() == {"rating", "judge_raw"}


def test_missing_field_and_backend_error_fail_the_record(tmp_path):
    class Broken(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="timeout") for _ in conversations]

    comp = LlmScore(LlmScore.Params())
    ctx = FakeCtx(comp.params, models={None: Broken(lambda c: "")}, tmp=tmp_path)
    no_query, timeout = comp.process([{"response": "r"}, {"query": "q", "response": "r"}], ctx)
    assert isinstance(no_query, Failed) and not no_query.retry and "'query'" in no_query.error
    assert isinstance(timeout, Failed) and timeout.retry and "timeout" in timeout.error


def test_summarize_by_hand(tmp_path):
    comp = LlmScore(LlmScore.Params())
    records = [{"score": 7.0}, {"score": 9.0}, {"score": None, "judge_raw": "?"}, {"score": 7.0}]
    m = comp.summarize(records, FakeCtx(tmp=tmp_path))
    assert m["n"] == 4 and m["n_scored"] == 3
    assert m["mean_score"] == pytest.approx(23 / 3)
    assert m["parse_failures"] == 1 and m["parse_failure_rate"] == 0.25
    assert m["histogram"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0, "6": 0, "7": 2, "8": 0, "9": 1, "10": 0}
    section = comp.report(records, m, FakeCtx(tmp=tmp_path))
    assert "7.667" in section and "| 7 | 2 |" in section and "1 of 4" in section


def test_summarize_empty_and_decimal_scores(tmp_path):
    comp = LlmScore(LlmScore.Params(scale_min=0, scale_max=1))
    assert comp.summarize([], FakeCtx(tmp=tmp_path))["mean_score"] is None
    m = comp.summarize([{"score": 0.5}, {"score": 1.0}], FakeCtx(tmp=tmp_path))
    assert m["mean_score"] == 0.75 and m["histogram"] == {"0": 1, "1": 1}


def test_estimate_and_params():
    est = LlmScore(LlmScore.Params(max_new_tokens=100)).estimate({"records": 4})
    assert (est.records_out, est.llm_calls, est.completion_tokens) == (4, 4, 400)
    assert est.prompt_tokens > 0
    with pytest.raises(ValidationError, match="scale_min"):
        LlmScore.Params(scale_min=5, scale_max=5)
    with pytest.raises(ValidationError, match="bad template"):
        LlmScore.Params(template="{oops")


def test_digit_probabilities_scores_the_weighted_first_token(tmp_path):
    """P(7)=0.5, P(8)=0.25, P(' 3')=0.125 on a 1-9 scale, 'The' ignored → (7·.5 + 8·.25 + 3·.125)/.875."""
    import math

    from runner.backends.base import ChatResult, TokenLogprob

    class OneToken(ScriptedLLM):
        def chat(self, conversations, sampling):
            assert sampling.max_new_tokens == 1 and sampling.logprobs == 20 and sampling.temperature == 0
            self.calls += [(c, sampling) for c in conversations]
            top = {"7": math.log(0.5), "8": math.log(0.25), " 3": math.log(0.125), "The": math.log(0.125)}
            return [ChatResult(text="7", logprobs=[TokenLogprob(token="7", logprob=math.log(0.5), top=top)])
                    for _ in conversations]

    comp = LlmScore(LlmScore.Params(scoring="digit_probabilities", scale_min=1, scale_max=9))
    judge = OneToken(lambda m: "")
    (out,) = comp.process([{"id": "a", "query": "q", "response": "r"}],
                          FakeCtx(params=comp.params, models={"judge": judge, None: judge}, tmp=tmp_path))
    assert out["score"] == round((7 * 0.5 + 8 * 0.25 + 3 * 0.125) / 0.875, 4)
    assert out["score_mass"] == 0.875
    assert "one digit" in judge.calls[0][0][-1]["content"]


def test_digit_probabilities_needs_a_single_digit_scale():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="within 0-9"):
        LlmScore.Params(scoring="digit_probabilities", scale_min=1, scale_max=10)
