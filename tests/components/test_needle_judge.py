"""judge.needle: the recall scorer by hand, the LLM judge, the per-cell table and the heatmap."""

from __future__ import annotations

import pytest

from components.base import Failed
from components.generators.needle_haystack import NEEDLE
from components.judges.needle import NeedleJudge, NeedleJudgeParams, key_facts, recall_share
from tests.fakes import FakeCtx, ScriptedLLM


def test_key_facts_are_content_words():
    assert key_facts("The cat sat on the warm mat.") == ["cat", "sat", "warm", "mat"]
    assert key_facts(NEEDLE) == [
        "enjoyable",
        "thing",
        "san",
        "francisco",
        "eating",
        "sandwich",
        "sitting",
        "dolores",
        "park",
        "sunny",
        "day",
    ]


def test_recall_by_hand():
    facts = ["cat", "sat", "warm", "mat"]
    assert recall_share("A cat was on a mat", facts) == 0.5
    assert recall_share("THE CAT SAT ON THE WARM MAT!", facts) == 1.0
    assert recall_share("Cats sat on mats", facts) == 0.25  # whole words only: only "sat"
    assert recall_share("nothing here", facts) == 0.0
    # phrases must appear in order and next to each other
    assert recall_share("Eat a sandwich in Dolores Park.", ["dolores park", "sandwich"]) == 1.0
    assert recall_share("Dolores is nice; the park is elsewhere.", ["dolores park", "sandwich"]) == 0.0


RECORD = {
    "id": "needle-1000-50",
    "length": 1000,
    "depth": 50,
    "needle": "\nThe cat sat on the warm mat.\n",
    "question": "Where did the cat sit?",
    "prediction": "The cat sat on a mat.",
}


def test_recall_method(tmp_path):
    comp = NeedleJudge(NeedleJudgeParams())
    [out] = comp.process([RECORD], FakeCtx(tmp=tmp_path))
    # facts cat, sat, warm, mat; the answer has 3 of 4 -> 0.75 -> 1 + 9 * 0.75 = 7.75
    assert out["recall"] == 0.75 and out["recall_score"] == 7.75 and out["score"] == 7.75
    assert out["id"] == RECORD["id"] and out["prediction"] == RECORD["prediction"]
    comp = NeedleJudge(NeedleJudgeParams(key_facts=["warm mat"]))
    assert comp.process([RECORD], FakeCtx(tmp=tmp_path))[0]["score"] == 1.0


def test_llm_method(tmp_path):
    llm = ScriptedLLM(
        lambda m: "The response names the cat and the mat but not that it is warm. Rating: [[7]]"
    )
    comp = NeedleJudge(NeedleJudgeParams(method="both"))
    [out] = comp.process([RECORD], FakeCtx(models={"judge": llm}, tmp=tmp_path))
    assert out["score"] == 7.0 and out["llm_score"] == 7.0 and out["recall"] == 0.75
    [(conv, sampling)] = llm.calls
    assert sampling.temperature == 0.0
    assert conv[0] == {"role": "system", "content": comp.params.system_prompt}
    prompt = conv[1]["content"]
    assert "Where did the cat sit?" in prompt and "The cat sat on a mat." in prompt
    assert "\nThe cat sat on the warm mat.\n" in prompt  # the needle, stripped, is the reference answer
    for anchor in ("1:", "3:", "5:", "7:", "10:"):
        assert anchor in prompt


def test_llm_parse_failure_keeps_raw_text(tmp_path):
    llm = ScriptedLLM(lambda m: "It is fine.")
    comp = NeedleJudge(NeedleJudgeParams(method="llm", tries=3))
    [out] = comp.process([RECORD], FakeCtx(models={"judge": llm}, tmp=tmp_path))
    assert isinstance(out, Failed) and out.raw == "It is fine." and len(llm.calls) == 3


@pytest.mark.parametrize(("reply", "intended", "reference"), [
    ("Rating: [[7]]", 7.0, 7.0),
    ("First [[8]], on reflection [[10]].", 10.0, 8.0),  # last vs first
    ("Rating: [[ 8 ]]", 8.0, None),  # the reference takes digits only
    ("Rating: [[8/10]]", 8.0, None),
    ("Rating: [[7.5]]", 7.5, None),
    ("Rating: [[ 9 ]] then [[6]]", 6.0, 6.0),
    ("No rating at all.", None, None),
])
def test_reference_verdict_parsing_under_compat(tmp_path, reply, intended, reference):
    for compat, expected in (("intended", intended), ("reference", reference)):
        llm = ScriptedLLM(lambda m: reply)
        comp = NeedleJudge(NeedleJudgeParams(method="llm", tries=1, compat=compat))
        [out] = comp.process([RECORD], FakeCtx(models={"judge": llm}, tmp=tmp_path))
        if expected is None:
            assert isinstance(out, Failed), compat
        else:
            assert out["score"] == expected, compat


def scored(depth, length, score, recall=0.5):
    return {
        "id": f"{length}-{depth}-{score}",
        "depth": depth,
        "length": length,
        "score": score,
        "recall": recall,
    }


RECORDS = [
    scored(0, 1000, 10),
    scored(0, 1000, 8),
    scored(0, 2000, 6),
    scored(50, 1000, 4),
    scored(50, 2000, 1),
    scored(50, 2000, 2),
]


def test_summary_table_by_hand(tmp_path):
    m = NeedleJudge(NeedleJudgeParams()).summarize(
        RECORDS, FakeCtx(tmp=tmp_path, inputs={"predictions": [{}] * 7})
    )
    assert m["mean_score"] == pytest.approx(31 / 6)
    assert m["n"] == 6 and m["unscored"] == 1
    assert m["by_depth_length"] == {"0": {"1000": 9.0, "2000": 6.0}, "50": {"1000": 4.0, "2000": 1.5}}
    assert m["by_depth"] == {"0": 8.0, "50": pytest.approx(7 / 3)}
    assert m["by_length"] == {"1000": pytest.approx(22 / 3), "2000": 3.0}
    assert m["mean_recall"] == 0.5


def test_report_writes_heatmap_and_table(tmp_path):
    ctx = FakeCtx(tmp=tmp_path)
    comp = NeedleJudge(NeedleJudgeParams())
    md = comp.report(RECORDS, comp.summarize(RECORDS, ctx), ctx)
    png = ctx.artifact_dir / "needle_heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![needle heatmap](needle_heatmap.png)" in md
    assert "| depth % \\ length | 1000 | 2000 |" in md
    assert "| 0 | 9.0 | 6.0 |" in md and "| 50 | 4.0 | 1.5 |" in md
