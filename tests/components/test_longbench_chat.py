"""LongBench-Chat: loader (few-shot alignment), prediction (middle truncation), few-shot judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.base import Failed
from components.generators.longbench_chat_predict import LongBenchChatPredict, LongBenchChatPredictParams
from components.judges.longbench_chat import LongBenchChatJudge, LongBenchChatJudgeParams
from components.loaders.longbench_chat import LongBenchChatLoader, LongBenchChatParams
from tests.fakes import FakeCtx, ScriptedLLM

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"
SAMPLES = REPO / "recipes" / "data" / "longalign"


# ---------------------------------------------------------------- judge prompt

SHOTS = [
    {"answer": "Paris is the capital.", "score": 9},
    {"answer": "Lyon, I think.", "score": 2},
    {"answer": "It is Paris, a city in Germany.", "score": 5.5},
]
RECORD = {
    "idx": 3,
    "query": "What is the capital of France?",
    "answer": "Paris.",
    "prediction": "The capital\nis Paris.",
    "few_shots": SHOTS,
}


def judge(tmp_path, reply, **params):
    llm = ScriptedLLM(reply)
    ctx = FakeCtx(models={None: llm, "judge": llm}, tmp=tmp_path, inputs={"predictions": [RECORD]})
    return LongBenchChatJudge(LongBenchChatJudgeParams(**params)), llm, ctx


# ---------------------------------------------------------------- rating parser (last [[...]], first number)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("[[7]]", 7.0),
        ("Rating: [[ 9 ]]", 9.0),
        ("At first I thought [[3]], but on reflection the rating is [[8]].", 8.0),
        ("[[Rating: 6.5 out of 10]]", 6.5),
        ("The answer earns [[10]]/10", 10.0),
        ("[[4]] ... final: [[n/a]]", None),  # the last bracket decides, even when an earlier one had a number
        ("Rating: 7", None),
        ("[7]", None),
        ("", None),
    ],
)
def test_rating_is_the_first_number_in_the_last_double_bracket(tmp_path, reply, expected):
    comp, llm, ctx = judge(tmp_path, lambda m: reply, tries=2)
    [out] = comp.process([RECORD], ctx)
    if expected is None:
        assert isinstance(out, Failed) and out.raw == reply and len(llm.calls) == 2
    else:
        assert out["score"] == expected and len(llm.calls) == 1


def test_prompt_shows_the_three_examples_with_their_scores_then_the_candidate(tmp_path):
    comp, _, ctx = judge(tmp_path, lambda m: "[[5]]")
    system, user = comp.build_messages(RECORD, ctx)
    assert system == {"role": "system", "content": comp.params.system_prompt}
    text = user["content"]
    blocks = [
        f"{SHOTS[0]['answer']}\nRating: [[9]]",
        f"{SHOTS[1]['answer']}\nRating: [[2]]",
        f"{SHOTS[2]['answer']}\nRating: [[5.5]]",
    ]
    positions = [text.index(b) for b in blocks]
    assert positions == sorted(positions)  # file order
    q, ref, cand = text.index(RECORD["query"]), text.index("Paris.\n"), text.index("The capital is Paris.")
    assert q < ref < positions[0] and positions[-1] < cand  # question, reference, examples, candidate
    assert "The capital\nis Paris." not in text  # newlines in the prediction became spaces
    assert text.rstrip().endswith("Rating:")
    assert text.count("[[") == 3 + 1  # three example ratings + the format example in the instructions


def test_newlines_kept_when_asked(tmp_path):
    comp, _, ctx = judge(tmp_path, lambda m: "[[5]]", newlines_to_spaces=False)
    assert "The capital\nis Paris." in comp.build_messages(RECORD, ctx)[1]["content"]


def test_shuffled_examples_are_a_seeded_permutation(tmp_path):
    comp, _, ctx = judge(tmp_path, lambda m: "[[5]]", shuffle_examples=True)
    many = [{**RECORD, "idx": i} for i in range(12)]
    orders = []
    for r in many:
        text = comp.build_messages(r, ctx)[1]["content"]
        orders.append(tuple(sorted(range(3), key=lambda k: text.index(SHOTS[k]["answer"]))))
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len(set(orders)) > 1  # 12 records, not all in file order
    again = [comp.build_messages(r, ctx)[1]["content"] for r in many]
    assert again == [comp.build_messages(r, ctx)[1]["content"] for r in many]


# ---------------------------------------------------------------- judge process + summary


def test_score_retry_and_failure(tmp_path):
    replies = iter(["I cannot decide.", "Fine answer. Rating: [[8]]"])
    comp, llm, ctx = judge(tmp_path, lambda m: next(replies))
    [out] = comp.process([RECORD], ctx)
    assert out["score"] == 8.0 and out["judge_calls"] == 2
    assert out["prediction"] == RECORD["prediction"] and out["idx"] == 3  # the record is kept
    assert all(s.temperature == 0.0 for _, s in llm.calls)

    comp, llm, ctx = judge(tmp_path, lambda m: "no verdict here")
    [out] = comp.process([RECORD], ctx)
    assert isinstance(out, Failed) and out.raw == "no verdict here"
    assert len(llm.calls) == 5  # the default number of tries

    comp, llm, ctx = judge(tmp_path, lambda m: "still nothing", tries=2)
    [out] = comp.process([RECORD], ctx)
    assert isinstance(out, Failed) and len(llm.calls) == 2


def test_batch_only_resends_unparsed(tmp_path):
    seen: dict[str, int] = {}

    def reply(messages):
        q = "A" if "Question A" in messages[1]["content"] else "B"
        seen[q] = seen.get(q, 0) + 1
        return "[[6]]" if q == "A" or seen[q] > 1 else "hmm"

    comp, _, ctx = judge(tmp_path, reply)
    records = [{**RECORD, "idx": 1, "query": "Question A"}, {**RECORD, "idx": 2, "query": "Question B"}]
    out = comp.process(records, ctx)
    assert [o["score"] for o in out] == [6.0, 6.0]
    assert seen == {"A": 1, "B": 2}


def test_summary(tmp_path):
    comp, _, _ = judge(tmp_path, lambda m: "")
    records = [
        {"idx": 1, "score": 6.0, "judge_calls": 1},
        {"idx": 2, "score": 7.0, "judge_calls": 3},
        {"idx": 3, "score": 8.5, "judge_calls": 1},
    ]
    ctx = FakeCtx(tmp=tmp_path, inputs={"predictions": [{"idx": i} for i in range(1, 5)]})
    m = comp.summarize(records, ctx)
    # (6 + 7 + 8.5) / 3 = 7.1666...; one of the 4 inputs never got a rating; one record needed 2 extra calls
    assert m["mean_score"] == pytest.approx(21.5 / 3)
    assert m["score_x10"] == pytest.approx(215 / 3)
    assert (m["n"], m["parse_failures"], m["retried_replies"]) == (3, 1, 2)


# ---------------------------------------------------------------- loader


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_few_shot_item_k_belongs_to_idx_k_plus_1(tmp_path):
    shots = [[{"answer": f"ex{k}-{j}", "score": j + 1} for j in range(3)] for k in range(4)]
    write(tmp_path / "few_shots.json", shots)
    cases = [{"idx": i, "query": f"q{i}", "answer": f"a{i}", "prompt": f"ctx q{i}"} for i in (3, 1, 4)]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    out = LongBenchChatLoader(LongBenchChatParams(path=str(tmp_path / "cases.jsonl"))).run(
        {}, FakeCtx(tmp=tmp_path)
    )
    assert [r["idx"] for r in out] == [3, 1, 4]
    assert [r["few_shots"][0]["answer"] for r in out] == ["ex2-0", "ex0-0", "ex3-0"]
    assert out[0] == {**cases[0], "few_shots": shots[2]}


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="test cases file not found"):
        LongBenchChatLoader(LongBenchChatParams(path=str(tmp_path / "test_cases.json"))).run(
            {}, FakeCtx(tmp=tmp_path)
        )
    write(tmp_path / "test_cases.json", [{"idx": 1, "query": "q", "answer": "a", "prompt": "p"}])
    with pytest.raises(FileNotFoundError, match="few-shot file not found"):
        LongBenchChatLoader(LongBenchChatParams(path=str(tmp_path / "test_cases.json"))).run(
            {}, FakeCtx(tmp=tmp_path)
        )
    write(tmp_path / "few_shots.json", [])
    with pytest.raises(ValueError, match="idx 1 has no few-shot item"):
        LongBenchChatLoader(LongBenchChatParams(path=str(tmp_path / "test_cases.json"))).run(
            {}, FakeCtx(tmp=tmp_path)
        )


def test_real_few_shots_file(tmp_path):
    real = SHARED / "longbench_chat" / "few_shots.json"
    if not real.is_file():
        pytest.skip(f"reference data not found: {real}")
    shots = json.loads(real.read_text(encoding="utf-8"))
    cases = [{"idx": i, "query": f"q{i}", "answer": f"a{i}", "prompt": f"p{i}"} for i in range(1, 51)]
    write(tmp_path / "test_cases.json", cases)
    out = LongBenchChatLoader(
        LongBenchChatParams(path=str(tmp_path / "test_cases.json"), few_shots_path=str(real))
    ).run({}, FakeCtx(tmp=tmp_path))
    assert len(out) == 50
    for r in out:
        expected = shots[r["idx"] - 1]
        assert [e["answer"] for e in r["few_shots"]] == [e["answer"] for e in expected]
        assert [e["score"] for e in r["few_shots"]] == [e["score"] for e in expected]
        assert len(r["few_shots"]) == 3 and all(1 <= float(e["score"]) <= 10 for e in r["few_shots"])


def test_sample_mini_set(tmp_path):
    comp = LongBenchChatLoader(
        LongBenchChatParams(
            path=str(SAMPLES / "longbench_chat_mini.json"),
            few_shots_path=str(SAMPLES / "few_shots_mini.json"),
        )
    )
    out = comp.run({}, FakeCtx(tmp=tmp_path))
    assert [r["idx"] for r in out] == [1, 2, 3, 4, 5]
    for r in out:
        assert len(r["few_shots"]) == 3
        assert all(1 <= e["score"] <= 10 for e in r["few_shots"])
        assert r["query"] in r["prompt"] and len(r["prompt"].split()) > 1500  # a long context, then the query


# ---------------------------------------------------------------- prediction


def test_predict_truncates_and_seeds_each_case(tmp_path):
    llm = ScriptedLLM(lambda m: f"saw {len(m[0]['content'].split())} words")
    ctx = FakeCtx(models={None: llm}, tmp=tmp_path)
    comp = LongBenchChatPredict(LongBenchChatPredictParams(max_input_tokens=6))
    cases = [
        {"idx": 1, "prompt": "one two three four five six seven eight nine ten"},
        {"idx": 2, "prompt": "short prompt"},
    ]
    out = comp.process(cases, ctx)
    assert [m[0]["content"] for m, _ in llm.calls] == ["one two three eight nine ten", "short prompt"]
    assert [s.seed for _, s in llm.calls] == [42, 42]
    assert all(s.temperature == 1.0 and s.max_new_tokens == 1024 for _, s in llm.calls)
    assert out[0] == {**cases[0], "prediction": "saw 6 words", "input_tokens": 10, "truncated": True}
    assert out[1]["truncated"] is False and out[1]["idx"] == 2


def test_predict_limit_from_context_window(tmp_path):
    class Windowed(ScriptedLLM):
        context_length = 1100

    llm = Windowed(lambda m: "ok")
    comp = LongBenchChatPredict(LongBenchChatPredictParams(max_new_tokens=1000, reserve_tokens=90))
    # 1100 - 1000 - 90 = 10 tokens of prompt
    comp.process(
        [{"idx": 1, "prompt": " ".join(str(i) for i in range(30))}], FakeCtx(models={None: llm}, tmp=tmp_path)
    )
    assert llm.calls[0][0][0]["content"] == "0 1 2 3 4 25 26 27 28 29"
