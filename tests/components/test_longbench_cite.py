"""judge.longbench_cite and load.longbench_cite: metrics against hand-computed values."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from components.base import Failed
from components.judges.longbench_cite import LongBenchCiteJudge, aggregate
from components.loaders.longbench_cite import LongBenchCiteLoader
from runner.backends.base import ChatResult
from tests.fakes import FakeCtx, ScriptedLLM


def tag(text: str, name: str) -> str:
    return re.search(rf"<{name}>\n(.*?)\n</{name}>", text, re.DOTALL).group(1)


def kind(messages: list[dict]) -> str:
    text = messages[-1]["content"]
    if messages[0]["role"] == "system":
        return "correctness"
    if "is backed by the text it cites" in text:
        return "support"
    if "needs a citation" in text:
        return "need"
    return "relevance"


class Judge(ScriptedLLM):
    """Answers each judge question from tables keyed by the statement, sentence or snippet."""

    def __init__(self, support=None, need=None, relevance=None, correctness=None) -> None:
        self.tables = {"support": support or {}, "need": need or {}, "relevance": relevance or {}}
        self.correctness = correctness or (lambda text: "[[3]]")
        super().__init__(self.answer)

    def answer(self, messages: list[dict]) -> str:
        k = kind(messages)
        text = messages[-1]["content"]
        if k == "correctness":
            return self.correctness(text)
        key = {"support": "statement", "need": "sentence", "relevance": "snippet"}[k]
        return self.tables[k][tag(text, key)]

    def kinds(self) -> Counter:
        return Counter(kind(conv) for conv, _ in self.calls)


def cite(text: str, s: int = 0, e: int = 0) -> dict:
    return {"start_sentence_idx": s, "end_sentence_idx": e, "start_char_idx": 0, "end_char_idx": 1, "cite": text}


def prediction(statements: list[dict], idx: int = 0, dataset: str = "hotpotqa", answer=None, **extra) -> dict:
    text = "".join(f"<statement>{s['statement']}<cite>[0-0]</cite></statement>" for s in statements)
    rec = {"idx": idx, "dataset": dataset, "query": "What colour are things?", "prediction": text,
           "statements": statements, **extra}
    if answer is not None:
        rec["answer"] = answer
    return rec


def judge(records: list[dict], llm: ScriptedLLM, tmp_path, seed: int = 0, **params) -> tuple[list, FakeCtx]:
    comp = LongBenchCiteJudge(LongBenchCiteJudge.Params(**params))
    ctx = FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path, seed=seed)
    return comp.process(records, ctx), ctx


THREE = [{"statement": "The sky is blue.", "citation": [cite("Sky blue text.")]},
         {"statement": "Grass is green and wet.", "citation": [cite("Grass green text.", 1, 1),
                                                                cite("Unrelated text.", 4, 4)]},
         {"statement": "In short, nature is colorful.", "citation": []}]
THREE_JUDGE = {
    "support": {"The sky is blue.": "[[Fully supported]] Analysis",
                "Grass is green and wet.": "[[Partially supported]]"},
    "need": {"In short, nature is colorful.": "[[No]]"},
    "relevance": {"Sky blue text.": "[[Relevant]]", "Grass green text.": "[[Relevant]]",
                  "Unrelated text.": "[[Irrelevant]]"}}


def test_recall_precision_f1_of_one_response(tmp_path):
    llm = Judge(**THREE_JUDGE)
    out, _ = judge([prediction(THREE)], llm, tmp_path, correctness=False)
    got = out[0]
    assert got["recall"] == pytest.approx((1 + 0.5 + 1) / 3)  # the uncited sentence needs no citation: 1
    assert got["precision"] == pytest.approx(2 / 3)  # per citation: 1, 1, 0
    assert got["f1"] == pytest.approx(20 / 27)
    assert got["correctness"] is None
    assert llm.kinds() == Counter({"support": 2, "relevance": 3, "need": 1})
    support_prompt = next(c[-1]["content"] for c, _ in llm.calls if "Grass is green" in c[-1]["content"]
                          and kind(c) == "support")
    assert tag(support_prompt, "snippet") == "Grass green text.\n\nUnrelated text."
    assert tag(support_prompt, "question") == "What colour are things?"
    need_prompt = next(c[-1]["content"] for c, _ in llm.calls if kind(c) == "need")
    assert "<cite>" not in tag(need_prompt, "response") and "The sky is blue." in tag(need_prompt, "response")
    _, sampling = llm.calls[0]
    assert (sampling.temperature, sampling.max_new_tokens, sampling.stop) == (0.0, 10, ["Analysis:"])


def test_uncited_statement_that_needs_a_citation_scores_zero(tmp_path):
    llm = Judge(need={"Water boils at 100 C.": "[[Yes]]"})
    out, _ = judge([prediction([{"statement": "Water boils at 100 C.", "citation": []}])], llm, tmp_path,
                   correctness=False)
    assert (out[0]["recall"], out[0]["precision"], out[0]["f1"]) == (0.0, 0.0, 0.0)


def test_f1_is_averaged_per_response_not_recomputed(tmp_path):
    llm = Judge(support={"Unsupported.": "[[No support]]", "Supported.": "[[Fully supported]]"},
                relevance={"snippet a": "[[Relevant]]", "snippet b": "[[Relevant]]"})
    records = [prediction([{"statement": "Unsupported.", "citation": [cite("snippet a")]}], idx=0),
               prediction([{"statement": "Supported.", "citation": [cite("snippet b")]}], idx=1)]
    out, ctx = judge(records, llm, tmp_path, correctness=False)
    assert [(r["precision"], r["recall"], r["f1"]) for r in out] == [(1.0, 0.0, 0.0), (1.0, 1.0, 1.0)]
    row = LongBenchCiteJudge().summarize(out, ctx)["datasets"]["hotpotqa"]
    assert row["f1"] == pytest.approx(0.5)  # F1 of the averages would be 2·1·0.5/1.5 = 0.667
    assert (row["precision"], row["recall"]) == (1.0, 0.5)


def test_only_the_first_forty_statements_are_scored(tmp_path):
    statements = [{"statement": f"Sentence {k}.", "citation": []} for k in range(45)]
    llm = Judge(need={f"Sentence {k}.": "[[Yes]]" if k >= 40 else "[[No]]" for k in range(45)})
    out, _ = judge([prediction(statements)], llm, tmp_path, correctness=False)
    assert out[0]["recall"] == 1.0
    assert out[0]["scored_statements"] == 40 and llm.kinds()["need"] == 40


def test_unparsable_verdicts_are_retried_at_temperature_one(tmp_path):
    seen: Counter = Counter()

    def answer(messages):
        text = messages[-1]["content"]
        seen[text] += 1
        if kind(messages) == "support":
            return "I think so" if seen[text] < 3 else "[[Fully supported]]"
        return "no idea"  # the relevance verdict never parses

    llm = ScriptedLLM(answer)
    out, _ = judge([prediction([{"statement": "A.", "citation": [cite("a")]}])], llm, tmp_path,
                   correctness=False)
    support = [s.temperature for c, s in llm.calls if kind(c) == "support"]
    relevance = [s.temperature for c, s in llm.calls if kind(c) == "relevance"]
    assert support == [0.0, 1.0, 1.0]
    assert relevance == [0.0, 1.0, 1.0, 1.0, 1.0]  # 5 tries in all
    # a verdict that never parsed leaves the response out of the citation scores, counted
    assert (out[0]["recall"], out[0]["precision"], out[0]["f1"]) == (None, None, None)
    assert out[0]["excluded"] is True and out[0]["unparsed_verdicts"] == 1
    # the old behaviour as a param: the verdict scores 0
    out, _ = judge([prediction([{"statement": "A.", "citation": [cite("a")]}])], ScriptedLLM(answer), tmp_path,
                   correctness=False, unparsed_verdicts="zero")
    assert out[0]["recall"] == 1.0 and out[0]["precision"] == 0.0 and out[0]["excluded"] is False
    assert out[0]["unparsed_verdicts"] == 1


def test_labels_are_matched_by_substring_as_the_reference_does(tmp_path):
    statements = [{"statement": "S1.", "citation": [cite("c1")]}, {"statement": "S2.", "citation": [cite("c2")]},
                  {"statement": "S3.", "citation": [cite("c3")]}, {"statement": "U1.", "citation": []},
                  {"statement": "U2.", "citation": []}]
    llm = Judge(support={"S1.": "[[Not fully supported]]", "S2.": "[[mostly PARTIALLY]]", "S3.": "[[Unclear]]"},
                relevance={"c1": "[[Unrelevant]]", "c2": "[[Somewhat relevant]]", "c3": "[[Irrelevant]]"},
                need={"U1.": "[[yes indeed]]", "U2.": "[[Maybe]]"})
    out, _ = judge([prediction(statements)], llm, tmp_path, correctness=False)
    # support 1 ("fully" inside "not fully"), 0.5, 0 (unknown label); uncited: 1 - 1, 1 - 0
    assert [st["support"] for st in out[0]["statements"][:3]] == [1.0, 0.5, 0.0]
    assert out[0]["recall"] == pytest.approx((1 + 0.5 + 0 + 0 + 1) / 5)
    # relevance: only a negative label scores 0
    assert out[0]["precision"] == pytest.approx(1 / 3)


def test_statements_and_snippets_are_stripped_and_a_blank_citation_scores_zero_unasked(tmp_path):
    llm = Judge(support={"Spaced.": "[[Fully supported]]"}, relevance={"snip": "[[Relevant]]", "": "[[Relevant]]"})
    statements = [{"statement": "  Spaced. \n", "citation": [cite(" snip\n")]},
                  {"statement": "Blank cite.", "citation": [cite("  ")]}]
    out, _ = judge([prediction(statements)], llm, tmp_path, correctness=False)
    assert llm.kinds()["support"] == 1  # the statement citing only whitespace is not asked
    assert [st["support"] for st in out[0]["statements"]] == [1.0, 0.0]
    assert out[0]["recall"] == 0.5 and out[0]["precision"] == 1.0


def correctness_of(dataset: str, reply, tmp_path, answer=("Paris",), **extra) -> tuple[dict, ScriptedLLM]:
    llm = Judge(support={"It is Paris.": "[[Fully supported]]"}, relevance={"Paris text.": "[[Relevant]]"},
                correctness=reply)
    rec = prediction([{"statement": "It is Paris.", "citation": [cite("Paris text.")]}], dataset=dataset,
                     answer=list(answer), **extra)
    out, _ = judge([rec], llm, tmp_path)
    return out[0], llm


def test_correctness_scales_per_dataset(tmp_path):
    assert correctness_of("hotpotqa", lambda t: "[[3]] correct", tmp_path)[0]["correctness"] == 1.0
    assert correctness_of("multifieldqa_zh", lambda t: "[[2]]", tmp_path)[0]["correctness"] == 0.5
    assert correctness_of("dureader", lambda t: "[[1]]", tmp_path)[0]["correctness"] == 0.0
    assert correctness_of("gov_report", lambda t: "[[4]]", tmp_path)[0]["correctness"] == 0.75


def test_correctness_takes_the_best_reference(tmp_path):
    got, _ = correctness_of("hotpotqa", lambda t: "[[3]]" if tag(t, "reference") == "City of Paris" else "[[1]]",
                            tmp_path, answer=("Paris", "City of Paris"))
    assert got["correctness"] == 1.0


def test_unparsable_correctness_scores_one_half(tmp_path):
    got, llm = correctness_of("hotpotqa", lambda t: "It looks fine to me.", tmp_path)
    assert got["correctness"] == 0.5
    # greedy re-asks, 5 tries for QA sets and summaries
    assert [s.temperature for c, s in llm.calls if kind(c) == "correctness"] == [0.0] * 5
    got, llm = correctness_of("gov_report", lambda t: "Fine.", tmp_path)
    assert got["correctness"] == 0.5 and [s.temperature for c, s in llm.calls if kind(c) == "correctness"] == [0.0] * 5
    # 2 tries for LongBench-Chat items
    got, llm = correctness_of("longbench-chat", lambda t: "Fine.", tmp_path, few_shot_scores=[])
    assert got["correctness"] == 0.5 and [s.temperature for c, s in llm.calls if kind(c) == "correctness"] == [0.0] * 2
    got, _ = correctness_of("hotpotqa", lambda t: "[[9]]", tmp_path)  # outside 1–3
    assert got["correctness"] == 0.5


def test_longbench_chat_is_judged_few_shot_out_of_ten(tmp_path):
    shots = [{"answer": "Shot one.", "score": 2}, {"answer": "Shot two.", "score": 5},
             {"answer": "Shot three.", "score": 9}]
    got, llm = correctness_of("longbench-chat", lambda t: "[[7]]", tmp_path, few_shot_scores=shots)
    assert got["correctness"] == pytest.approx(0.7)
    conv, sampling = next((c, s) for c, s in llm.calls if kind(c) == "correctness")
    assert conv[0]["role"] == "system" and sampling.stop == ["\n\n"] and sampling.temperature == 0.0
    text = conv[-1]["content"]
    for shot in shots:
        assert f"{shot['answer']}\n\nRating: [[{shot['score']}]]" in text
    assert text.endswith("It is Paris.\n\nRating: ")


def test_longbench_chat_examples_are_shuffled_and_newlines_flattened(tmp_path):
    shots = [{"answer": f"Shot {k}.", "score": k} for k in (1, 2, 3)]
    llm = Judge(correctness=lambda t: "[[5]]")
    records = [prediction([{"statement": "Line one.", "citation": []}], idx=i, dataset="longbench-chat",
                          answer=["ref"], few_shot_scores=shots) for i in range(12)]
    for r in records:
        r["prediction"] = "Line one.\nLine two."
    llm.tables["need"] = {"Line one.": "[[No]]"}
    judge(records, llm, tmp_path)
    prompts = [c[-1]["content"] for c, _ in llm.calls if kind(c) == "correctness"]
    orders = {tuple(re.findall(r"Shot (\d)\.", p)) for p in prompts}
    assert len(orders) > 1 and all(sorted(o) == ["1", "2", "3"] for o in orders)
    assert all("Line one. Line two." in p for p in prompts)


def test_citation_length_is_micro_averaged(tmp_path):
    llm = Judge(support={"A.": "[[Fully supported]]", "B.": "[[Fully supported]]"},
                relevance={"two words": "[[Relevant]]", "now four words here": "[[Relevant]]",
                           "a b c d e f": "[[Relevant]]"})
    records = [prediction([{"statement": "A.", "citation": [cite("two words"), cite("now four words here")]}]),
               prediction([{"statement": "B.", "citation": [cite("a b c d e f")]}], idx=1)]
    out, ctx = judge(records, llm, tmp_path, correctness=False)
    assert [(r["citation_tokens"], r["n_citations"]) for r in out] == [(6, 2), (6, 1)]
    # 12 tokens over 3 citations = 4 (the mean of per-response means would be 4.5)
    assert LongBenchCiteJudge().summarize(out, ctx)["datasets"]["hotpotqa"]["citation_length"] == 4.0


def scored(dataset: str, f1: float) -> dict:
    return {"dataset": dataset, "recall": f1, "precision": f1, "f1": f1, "correctness": f1,
            "citation_tokens": 10, "n_citations": 2}


def test_multifieldqa_pools_en_and_zh_and_the_average_covers_five_groups():
    records = [scored("longbench-chat", 0.2), scored("multifieldqa_en", 0.4), scored("multifieldqa_en", 0.6),
               scored("multifieldqa_zh", 1.0), scored("hotpotqa", 0.5), scored("dureader", 0.3),
               scored("gov_report", 0.1)]
    metrics = aggregate(records)
    rows = metrics["datasets"]
    assert rows["multifieldqa_en"]["f1"] == pytest.approx(0.5)
    assert rows["multifieldqa_zh"]["f1"] == pytest.approx(1.0)
    assert rows["multifieldqa"]["f1"] == pytest.approx(2.0 / 3) and rows["multifieldqa"]["n"] == 3
    assert metrics["avg_groups"] == ["longbench-chat", "multifieldqa", "hotpotqa", "dureader", "gov_report"]
    assert metrics["avg_f1"] == pytest.approx((0.2 + 2.0 / 3 + 0.5 + 0.3 + 0.1) / 5)
    assert metrics["avg_correctness"] == pytest.approx(metrics["avg_f1"])
    assert metrics["avg_citation_length"] == 5.0


def test_backend_error_fails_the_record_and_report_shows_verdicts(tmp_path):
    class Broken(ScriptedLLM):
        def chat(self, conversations, sampling):
            return [ChatResult(error="rate limited") for _ in conversations]

    out, _ = judge([prediction(THREE)], Broken(lambda m: ""), tmp_path, correctness=False)
    assert isinstance(out[0], Failed) and "rate limited" in out[0].error

    out, ctx = judge([prediction(THREE)], Judge(**THREE_JUDGE), tmp_path, correctness=False)
    comp = LongBenchCiteJudge()
    text = comp.report(out, comp.summarize(out, ctx), ctx)
    assert "| hotpotqa | 1 |" in text
    assert "Grass is green and wet. — support: 0.5" in text
    assert "[4-4] relevant: 0 — \"Unrelated text.\"" in text
    assert "In short, nature is colorful. — no citation; needs one: 0" in text


# -- loader ----------------------------------------------------------------------------------------------


def write_bench(tmp_path, records) -> str:
    path = tmp_path / "LongBench-Cite.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return str(path)


def test_loader_reads_and_normalises(tmp_path):
    path = write_bench(tmp_path, [
        {"idx": 0, "dataset": "hotpotqa", "query": "Q0", "answer": ["A0"], "context": "C0", "few_shot_scores": []},
        {"idx": 1, "dataset": "gov_report", "query": "Q1", "answer": "A1", "context": "C1"},
        {"idx": 2, "dataset": "hotpotqa", "query": "Q2", "answer": ["A2", "A2b"], "context": "C2"},
    ])
    comp = LongBenchCiteLoader(LongBenchCiteLoader.Params(path=path))
    got = comp.run({}, FakeCtx(tmp=tmp_path))
    assert got[1] == {"idx": 1, "dataset": "gov_report", "query": "Q1", "answer": ["A1"], "context": "C1",
                      "few_shot_scores": []}
    assert comp.summarize(got, FakeCtx(tmp=tmp_path)) == {"records": 3, "datasets": {"hotpotqa": 2, "gov_report": 1}}
    comp = LongBenchCiteLoader(LongBenchCiteLoader.Params(path=path, datasets=["hotpotqa"], limit=1))
    assert [r["idx"] for r in comp.run({}, FakeCtx(tmp=tmp_path))] == [0]


def test_loader_errors_are_clear(tmp_path):
    comp = LongBenchCiteLoader(LongBenchCiteLoader.Params(path=str(tmp_path / "missing.json")))
    with pytest.raises(FileNotFoundError, match="missing.json.*THUDM/LongCite"):
        comp.run({}, FakeCtx(tmp=tmp_path))
    path = write_bench(tmp_path, [{"idx": 0, "query": "Q"}])
    with pytest.raises(ValueError, match="record 0 lacks answer, context"):
        LongBenchCiteLoader(LongBenchCiteLoader.Params(path=path)).run({}, FakeCtx(tmp=tmp_path))


def test_headline_citation_length_is_one_average_over_all_citations():
    records = [{**scored("hotpotqa", 0.5), "citation_tokens": 10, "n_citations": 1},
               {**scored("gov_report", 0.5), "citation_tokens": 30, "n_citations": 5}]
    metrics = aggregate(records)
    assert metrics["datasets"]["hotpotqa"]["citation_length"] == 10.0
    assert metrics["datasets"]["gov_report"]["citation_length"] == 6.0
    # 40 tokens over 6 citations, not (10 + 6) / 2 = 8
    assert metrics["avg_citation_length"] == pytest.approx(40 / 6)


def test_excluded_responses_leave_the_citation_means_but_are_counted():
    excluded = {"dataset": "hotpotqa", "recall": None, "precision": None, "f1": None, "correctness": 1.0,
                "citation_tokens": 100, "n_citations": 1}
    records = [scored("hotpotqa", 0.2), scored("hotpotqa", 0.6), excluded]
    metrics = aggregate(records)
    row = metrics["datasets"]["hotpotqa"]
    assert (row["n"], row["excluded"]) == (3, 1)
    assert row["f1"] == pytest.approx(0.4) and row["recall"] == pytest.approx(0.4)  # (0.2 + 0.6) / 2, not / 3
    assert row["correctness"] == pytest.approx((0.2 + 0.6 + 1.0) / 3)  # correctness is judged apart
    assert row["citation_length"] == 5.0  # the excluded response's citation is not counted
    assert metrics["excluded"] == 1 and metrics["avg_citation_length"] == 5.0
