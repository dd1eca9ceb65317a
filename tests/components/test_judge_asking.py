"""components.judges.asking: which conversations are re-asked, in which calls, with which sampling."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from components.base import Failed
from components.judges.asking import Verdict, ask_until_parsed
from components.text import last_bracket_number
from runner.backends.base import LLM, ChatResult, Sampling


class BatchLLM(LLM):
    """Answers from a script per conversation (one reply per ask, in order); ``ERR`` is a backend error.
    Records every ``chat`` call as (the user texts it carried, its sampling)."""

    backend = "batch"
    name = "batch"

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[tuple[list[str], Sampling]] = []

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        texts = [c[-1]["content"] for c in conversations]
        self.calls.append((texts, sampling))
        out = []
        for t in texts:
            reply = self.script[t].pop(0)
            out.append(ChatResult(text="", error="timeout") if reply == "ERR" else ChatResult(text=reply))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def ask(llm: LLM, names: list[str], sampling: Sampling | list[Sampling], parse: Callable = last_bracket_number,
        **kw) -> list[Verdict]:
    return ask_until_parsed(llm, [user(n) for n in names], sampling, parse, **kw)


def test_only_unparsed_are_reasked_together_until_tries_run_out():
    llm = BatchLLM({"a": ["[[7]]"], "b": ["no", "[[3]]"], "c": ["no", "still no", "never"]})
    got = ask(llm, ["a", "b", "c"], Sampling(temperature=0.0, seed=10), tries=3, retry_temperature=0.8)
    assert got == [Verdict(7.0, "[[7]]", 1), Verdict(3.0, "[[3]]", 2), Verdict(None, "never", 3)]
    assert [texts for texts, _ in llm.calls] == [["a", "b", "c"], ["b", "c"], ["c"]]
    # re-ask k: the retry temperature and seed + k
    assert [(s.temperature, s.seed) for _, s in llm.calls] == [(0.0, 10), (0.8, 11), (0.8, 12)]


def test_without_retry_temperature_reasks_repeat_the_first_sampling():
    llm = BatchLLM({"a": ["no", "[[2]]"]})
    sampling = Sampling(temperature=0.3, max_new_tokens=9, stop=["x"])
    ask(llm, ["a"], sampling, tries=5)
    assert [s for _, s in llm.calls] == [sampling, sampling]


def test_backend_errors_are_reasked_and_keep_the_last_reply():
    llm = BatchLLM({"a": ["nothing", "ERR", "ERR"]})
    (v,) = ask(llm, ["a"], Sampling(), tries=3)
    assert v == Verdict(None, "nothing", 3, "timeout")
    assert v.failure("[[rating]]") == Failed("judge call failed after 3 tries: timeout", raw="nothing")


def test_backend_errors_stop_the_conversation_when_not_reasked():
    llm = BatchLLM({"a": ["ERR"], "b": ["no", "[[4]]"]})
    got = ask(llm, ["a", "b"], Sampling(), tries=3, reask_errors=False)
    assert got == [Verdict(None, "", 1, "timeout"), Verdict(4.0, "[[4]]", 2)]
    assert [texts for texts, _ in llm.calls] == [["a", "b"], ["b"]]


def test_unparsed_failure_is_final_and_keeps_the_reply():
    assert Verdict(None, "meh", 2).failure("[[rating]]") == Failed(
        "no [[rating]] in the judge reply after 2 tries", raw="meh", retry=False)


def test_per_conversation_sampling_and_parsers_one_call_per_sampling_per_round():
    short, long = Sampling(max_new_tokens=4), Sampling(max_new_tokens=32)
    labels = {"[[yes]]": 1.0, "[[no]]": 0.0}
    llm = BatchLLM({"q1": ["[[no]]"], "r1": ["bad", "[[5]]"], "q2": ["?", "[[yes]]"]})
    got = ask(llm, ["q1", "r1", "q2"], [short, long, short], [labels.get, last_bracket_number, labels.get],
              tries=2, retry_temperature=1.0)
    assert [v.value for v in got] == [0.0, 5.0, 1.0]  # 0.0 is a parsed verdict, not a missing one
    assert [(texts, s.max_new_tokens, s.temperature) for texts, s in llm.calls] == [
        (["q1", "q2"], 4, 0.0), (["r1"], 32, 0.0),  # round 1: groups in order of first appearance
        (["r1"], 32, 1.0), (["q2"], 4, 1.0),  # round 2: r1 is the first pending
    ]


def test_nothing_to_ask_makes_no_call_and_bad_arguments_raise():
    llm = BatchLLM({})
    assert ask(llm, [], Sampling(), tries=3) == []
    assert llm.calls == []
    with pytest.raises(ValueError, match="at least 1"):
        ask(llm, ["a"], Sampling(), tries=0)
    with pytest.raises(ValueError, match="one per conversation"):
        ask(llm, ["a", "b"], [Sampling()], tries=1)
