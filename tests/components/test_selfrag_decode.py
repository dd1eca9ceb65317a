"""decode.selfrag: the public scoring functions on hand-computed cases, the retrieval decision, closed-task
voting and the long-form beam search on a scripted generator."""

from __future__ import annotations

import math

import pytest

from components.decoders.selfrag import (
    SelfRAGDecoder,
    SelfRAGParams,
    aggregate_closed,
    final_score,
    postprocess,
    retrieval_ratio,
    score_candidate,
)
from components.decoders.selfrag_beam import rewrite_no_retrieval
from components.decoders.selfrag_generate import Generation
from tests.components.selfrag_fakes import ReflectionLLM, ln, steps
from tests.fakes import FakeCtx

REL, IRR = "[Relevant]", "[Irrelevant]"
FULL, PART, NOSUP = "[Fully supported]", "[Partially supported]", "[No support / Contradictory]"
U = [f"[Utility:{k}]" for k in range(1, 6)]


# ------------------------------------------------------------------------------------------ scores


def test_score_candidate_reads_each_aspect_where_the_reference_does():
    tokens = [REL, "Paris", ".", PART, U[3]]
    top = [
        {REL: ln(0.6), IRR: ln(0.2)},  # relevance 0.6 / 0.8
        {},
        {FULL: ln(0.9)},  # a grounding distribution where no grounding token was generated: ignored
        {FULL: ln(0.2), PART: ln(0.6), NOSUP: ln(0.2)},  # (0.2 + 0.5 * 0.6) / 1.0
        {U[0]: ln(0.1), U[1]: ln(0.1), U[2]: ln(0.2), U[3]: ln(0.4), U[4]: ln(0.2)},
    ]
    s = score_candidate(tokens, [-0.1, -0.2, -0.3, -0.4, -0.5], top, -1.5)
    assert s["relevance"] == pytest.approx(0.75)
    assert s["grounding"] == pytest.approx(0.5)
    # -1*0.1 - 0.5*0.1 + 0*0.2 + 0.5*0.4 + 1*0.2
    assert s["utility"] == pytest.approx(0.25)
    assert s["seq_score"] == pytest.approx(math.exp(-1.5 / 5))
    assert final_score(s, w_rel=1.0, w_sup=1.0, w_use=1.0, use_seqscore=False) == pytest.approx(1.5)
    assert final_score(s, w_rel=1.0, w_sup=1.0, w_use=0.5, use_seqscore=False) == pytest.approx(1.375)
    assert final_score(s, w_rel=2.0, w_sup=0.0, w_use=1.0, use_seqscore=True) == pytest.approx(
        1.5 + 0.25 + math.exp(-0.3))


def test_missing_tokens_count_as_logprob_minus_100_and_absent_aspects_score_zero():
    tokens = ["Yes", FULL, "and", FULL]
    top = [{REL: ln(0.5)}, {FULL: ln(0.3)}, {}, {PART: 0.0}]
    s = score_candidate(tokens, [-1.0] * 4, top, -2.0)
    p_missing = math.exp(-100)
    assert s["relevance"] == pytest.approx(0.5 / (0.5 + p_missing), rel=1e-12)
    # the first generated grounding token's position; the other two tokens are missing there
    assert s["grounding"] == pytest.approx(0.3 / (0.3 + 2 * p_missing), rel=1e-12)
    assert s["utility"] == 0.0  # no utility token generated
    assert s["seq_score"] == pytest.approx(math.exp(-0.5))
    nothing = score_candidate(["x"], [-1.0], [{}], -1.0)
    assert nothing["relevance"] == pytest.approx(0.5) and nothing["grounding"] == 0.0


def test_retrieval_ratio_uses_probabilities_not_log_probabilities():
    lp = {"[Retrieval]": ln(0.1), "[No Retrieval]": ln(0.3)}
    assert retrieval_ratio(lp) == pytest.approx(0.25)
    # the reference's short-form script divides the log-probabilities: 0.657 here, the other way round
    assert lp["[Retrieval]"] / (lp["[Retrieval]"] + lp["[No Retrieval]"]) == pytest.approx(0.6567, abs=1e-4)
    assert retrieval_ratio({"[Retrieval]": ln(0.2)}) == pytest.approx(1.0)
    assert retrieval_ratio({}) == pytest.approx(0.5)


def test_postprocess_removes_every_reflection_token_end_marker_and_newline():
    raw = ("[Retrieval]<paragraph>x</paragraph>[Relevant]Paris\n[Continue to Use Evidence] is big"
           "[Fully supported][No Retrieval][Irrelevant][Partially supported][No support / Contradictory]"
           "[Utility:1][Utility:5]</s><|endoftext|>")
    assert postprocess(raw) == "xParis is big"
    assert postprocess(" true") == " true"  # no stripping beyond the listed tokens


def test_aggregate_closed_sums_per_answer_in_first_seen_order_and_ties_go_to_the_first():
    candidates = [(f"{REL}A{FULL}{U[4]}", 1.25), ("B\n", 1.0), ("A</s>", 0.5), ("B", 0.75), ("C", 1.5)]
    sums, best = aggregate_closed(candidates)
    assert sums == [("A", 1.75), ("B", 1.75), ("C", 1.5)]
    assert best == "A"
    assert aggregate_closed([("x", -1.0), ("y", -0.5)]) == ([("x", -1.0), ("y", -0.5)], "y")


def test_relevance_is_read_at_position_0_and_later_aspect_tokens_are_ignored():
    # position 0 generated plain text: its distribution still gives relevance; the later [Relevant] does not
    tokens = ["Paris", REL, U[0], FULL, U[4], PART]
    top = [{REL: ln(0.2), IRR: ln(0.8)}, {REL: 0.0},
           {U[0]: ln(0.5), U[4]: ln(0.5)},  # first utility position: (-1 * 0.5 + 1 * 0.5) = 0
           {FULL: ln(0.25), PART: ln(0.25), NOSUP: ln(0.5)},  # first grounding position: 0.25 + 0.125
           {U[4]: 0.0}, {PART: 0.0}]
    s = score_candidate(tokens, [-1.0] * 6, top, -3.0)
    assert s["relevance"] == pytest.approx(0.2)
    assert s["grounding"] == pytest.approx(0.375)
    assert s["utility"] == pytest.approx(0.0, abs=1e-15)
    assert s["seq_score"] == pytest.approx(math.exp(-0.5))


def test_scores_without_generated_tokens_and_past_the_last_position():
    empty = score_candidate([], [], [], -2.0)
    # no position 0: both relevance tokens count as missing (equal), one token counted for the mean
    assert empty == {"relevance": 0.5, "grounding": 0.0, "utility": 0.0, "seq_score": pytest.approx(math.exp(-2.0))}
    # the sequence score from the token log-probabilities when no cumulative one is given: exp(-3 / 2)
    assert score_candidate(["a", "b"], [-1.0, -2.0], [{}, {}], None)["seq_score"] == pytest.approx(math.exp(-1.5))
    # a grounding token at a position with no log-probabilities: all three missing, (1 + 0.5) / 3
    assert score_candidate(["x", FULL], [-1.0, -1.0], [{}], -2.0)["grounding"] == pytest.approx(0.5)


def test_final_score_adds_the_sequence_score_unweighted():
    s = {"relevance": 0.5, "grounding": 0.25, "utility": -0.5, "seq_score": 0.125}
    assert final_score(s, w_rel=0.0, w_sup=0.0, w_use=0.0, use_seqscore=True) == 0.125
    assert final_score(s, w_rel=2.0, w_sup=4.0, w_use=1.0, use_seqscore=False) == 1.5  # 1 + 1 - 0.5
    assert final_score(s, w_rel=2.0, w_sup=4.0, w_use=1.0, use_seqscore=True) == 1.625


def test_underflowing_probabilities_keep_their_ratio():
    # exp(-800) is 0.0 in floating point (the reference divides 0 by 0); the shares are those of
    # exp(0) and exp(-1): 1 / (1 + e^-1)
    s = score_candidate([REL], [-1.0], [{REL: -800.0, IRR: -801.0}], -1.0)
    assert s["relevance"] == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-12)
    sup = score_candidate([PART], [-1.0], [{FULL: -900.0, PART: -900.0, NOSUP: -900.0}], -1.0)
    assert sup["grounding"] == pytest.approx(0.5)  # (1 + 0.5) / 3
    assert retrieval_ratio({"[Retrieval]": -1000.0, "[No Retrieval]": -1000.0}) == pytest.approx(0.5)
    # all at -inf: no probability at all, the aspect scores 0 and the ratio is 0 (no retrieval)
    inf = -math.inf
    assert score_candidate([REL], [-1.0], [{REL: inf, IRR: inf}], -1.0)["relevance"] == 0.0
    assert retrieval_ratio({"[Retrieval]": inf, "[No Retrieval]": inf}) == 0.0


def test_postprocess_removes_in_the_reference_order_one_pass_each():
    # [No Retrieval] goes before [Retrieval]: cutting it out joins a [Retrieval], which then goes too
    assert postprocess("[Retr[No Retrieval]ieval]x") == "x"
    # [Irrelevant] goes before [Relevant]: cutting [Relevant] out joins an [Irrelevant], which stays
    assert postprocess("[Irre[Relevant]levant]") == "[Irrelevant]"
    # [Continue to Use Evidence] comes after the other reflection tokens, </s> before and <|endoftext|>
    # after the newline
    assert postprocess("[Continue to Use [Utility:3]Evidence]") == ""
    assert postprocess("</\ns>") == "</s>"
    assert postprocess("<|endof\ntext|>A") == "A"
    # no stripping of spaces, '#' or ':'
    assert postprocess(" #A: ") == " #A: "


# ------------------------------------------------------------------------------------------ short form

PASSAGES = [{"id": "p1", "title": "T1", "text": "alpha", "score": 3.0},
            {"id": "p2", "title": "T2", "text": "beta", "score": 2.0},
            {"id": "p3", "title": "T3", "text": "gamma", "score": 1.0}]


def assistant(conv: list[dict]) -> str:
    return conv[-1]["content"] if conv[-1]["role"] == "assistant" else ""


def short_script(first: dict[str, float], by_passage: dict[str, list]):
    def script(conv, sampling):
        prefix = assistant(conv)
        if not prefix:  # the retrieval decision: one step after the prompt
            assert sampling.max_new_tokens == 1
            return [("[Retrieval]", first)]
        if prefix == "[No Retrieval]":
            return steps("#", "No", " idea", "[Utility:2]")
        for text, reply in by_passage.items():
            if f"<paragraph>{text}" in prefix or f"\n{text}</paragraph>" in prefix:
                return reply
        raise AssertionError(prefix)
    return script


def run_stage(params: SelfRAGParams, llm, records):
    comp = SelfRAGDecoder(params)
    ctx = FakeCtx(params=params, models={"generator": llm})
    return comp, comp.process(records, ctx)


def test_adaptive_threshold_decides_on_the_probability_ratio(tmp_path):
    by_passage = {"alpha": steps((REL, {REL: 0.9, IRR: 0.1}), "Rome", (FULL, {FULL: 1.0})),
                  "beta": steps((REL, {REL: 0.5, IRR: 0.5}), "Oslo", (NOSUP, {NOSUP: 1.0}))}
    llm = ReflectionLLM(short_script({"[Retrieval]": 0.3, "[No Retrieval]": 0.7}, by_passage))
    record = {"id": 1, "question": "capital?", "task_type": "open", "passages": PASSAGES[:2]}
    _, [low] = run_stage(SelfRAGParams(threshold=0.2), llm, [record])
    # ratio 0.3 > 0.2: retrieve; alpha scores 0.9 + 1.0, beta 0.5 + 0: Rome
    assert low["retrieve"] is True and low["retrieval_ratio"] == pytest.approx(0.3)
    assert low["prediction"] == "Rome"
    assert [c["passage_id"] for c in low["candidates"]] == ["p1", "p2"]
    assert low["candidates"][0]["score"] == pytest.approx(1.9) and low["candidates"][1]["score"] == pytest.approx(0.5)
    _, [high] = run_stage(SelfRAGParams(threshold=0.5), llm, [record])
    # 0.3 < 0.5: no retrieval, the continuation of [No Retrieval] without its leading '#'
    assert high["retrieve"] is False and high["prediction"] == "No idea" and high["candidates"] == []
    _, [never] = run_stage(SelfRAGParams(mode="never"), llm, [record])
    assert never["retrieve"] is False and never["retrieval_ratio"] is None
    _, [always] = run_stage(SelfRAGParams(mode="always", ndocs=1), llm, [record])
    assert always["retrieve"] is True and always["prediction"] == "Rome" and len(always["candidates"]) == 1
    prompt, sampling = llm.calls[-1]
    assert prompt[-1]["content"] == "[Retrieval]<paragraph>T1\nalpha</paragraph>"
    assert "[Utility:5]" in sampling.logprob_tokens and "[Retrieval]" in sampling.logprob_tokens


def test_closed_tasks_vote_with_summed_scores():
    by_passage = {
        "alpha": steps((REL, {REL: 0.75, IRR: 0.25}), "A", (PART, {PART: 1.0})),  # 0.75 + 0.5 = 1.25
        "beta": steps((REL, {REL: 0.5, IRR: 0.5}), "B", (FULL, {FULL: 1.0})),  # 0.5 + 1 = 1.5 (best single)
        "gamma": steps((IRR, {REL: 0.5, IRR: 0.5}), "A\n", (NOSUP, {NOSUP: 1.0})),  # 0.5 + 0
    }
    llm = ReflectionLLM(short_script({"[Retrieval]": 0.9, "[No Retrieval]": 0.1}, by_passage))
    record = {"id": 2, "question": "Which?", "choices": ["x", "y"], "task_type": "multiple_choice",
              "passages": PASSAGES}
    _, [out] = run_stage(SelfRAGParams(), llm, [record])
    assert out["answer_sums"] == [["A", pytest.approx(1.75)], ["B", pytest.approx(1.5)]]
    assert out["prediction"] == "A"
    user = llm.calls[0][0][0]["content"]
    assert user.endswith("### Input:\nWhich?\nA: x\nB: y")
    # as an open task the best single candidate wins
    _, [open_out] = run_stage(SelfRAGParams(task_type="open"), llm, [record])
    assert open_out["prediction"] == "B"


def test_the_closed_task_answer_is_post_processed_once():
    # the vote's key is "[Irrelevant]" (formed when [Relevant] is cut out); a second pass would empty it
    by_passage = {"alpha": steps((REL, {REL: 1.0}), "[Irre", (REL, {}), "levant]")}
    llm = ReflectionLLM(short_script({"[Retrieval]": 1.0}, by_passage))
    record = {"question": "q", "task_type": "true_false", "passages": PASSAGES[:1]}
    _, [out] = run_stage(SelfRAGParams(mode="always"), llm, [record])
    assert out["answer_sums"] == [["[Irrelevant]", pytest.approx(1.0)]] and out["prediction"] == "[Irrelevant]"


def test_paper_ctxs_are_read_when_the_passages_field_is_absent():
    by_passage = {"alpha": steps((REL, {REL: 1.0}), "ok")}
    llm = ReflectionLLM(short_script({"[Retrieval]": 1.0}, by_passage))
    record = {"question": "q", "ctxs": [{"title": "T1", "text": "alpha"}]}
    _, [out] = run_stage(SelfRAGParams(mode="always"), llm, [record])
    assert out["prediction"] == "ok" and out["passages_used"][0]["title"] == "T1"


# ------------------------------------------------------------------------------------------ long form


def long_script(conv, sampling):
    """Two passages; depth 1 from the root, depth 2 under each depth-1 segment (see the test)."""
    prefix = assistant(conv)
    if not prefix:
        return [("[Retrieval]", {"[Retrieval]": 0.9, "[No Retrieval]": 0.1})]
    seg_a = "[Relevant]Alpha is first.[Fully supported]"
    seg_b = "[Relevant]Beta is second.[Partially supported]"
    p1, p2 = "<paragraph>T1\nalpha</paragraph>", "<paragraph>T2\nbeta</paragraph>"
    replies = {
        # depth 1: A = 0.9 + 1.0 = 1.9, B = 0.5 + 0.5 = 1.0; both ask for more retrieval
        "[Retrieval]" + p1: steps((REL, {REL: 0.9, IRR: 0.1}), "Alpha is first.", (FULL, {FULL: 1.0}),
                                  ("[Retrieval]", {})),
        "[Retrieval]" + p2: steps((REL, {REL: 0.5, IRR: 0.5}), "Beta is second.",
                                  (PART, {FULL: 0.5, NOSUP: 0.5}), ("[Retrieval]", {})),
        # depth 2 under A: A1 = 0.2 + 0.1 + 0.5 * 1 = 0.8 (path 1.52); A2 = 0.6 + 0.6 = 1.2 (path 2.28)
        seg_a + "[Retrieval]" + p1: steps((REL, {REL: 0.2, IRR: 0.8}), "A one.", (PART, {FULL: 0.1, NOSUP: 0.9}),
                                          (U[4], {U[4]: 1.0})),
        seg_a + "[Retrieval]" + p2: steps((REL, {REL: 0.6, IRR: 0.4}), "A two.", (FULL, {FULL: 0.6, NOSUP: 0.4})),
        # depth 2 under B: B1 = 1 + 1 + 0.5 * 1 = 2.5 (path 2.5); B2 = 0.1 + 0 = 0.1
        seg_b + "[Retrieval]" + p1: steps((REL, {REL: 1.0}), "B one.", (FULL, {FULL: 1.0}), (U[4], {U[4]: 1.0})),
        seg_b + "[Retrieval]" + p2: steps((IRR, {REL: 0.1, IRR: 0.9}), "B two.", (NOSUP, {NOSUP: 1.0})),
    }
    return replies[prefix]


def test_beam_search_picks_the_path_with_the_best_product_of_segment_scores():
    llm = ReflectionLLM(long_script)
    params = SelfRAGParams(form="long", mode="always", max_depth=3, beam_width=2, w_rel=1.0, w_sup=1.0,
                           w_use=0.5, max_new_tokens=50)
    record = {"id": 3, "question": "Tell me.", "passages": PASSAGES[:2]}
    _, [out] = run_stage(params, llm, [record])
    # By hand: depth 1 keeps A (1.9) and B (1.0); depth 2 paths: A1 1.9*0.8 = 1.52, A2 1.9*1.2 = 2.28,
    # B1 1.0*2.5 = 2.5, B2 0.1. B → B1 wins although A was the better first segment. (With the reference's
    # utility term, always 0, B1 would be 2.0 and A → A2 would win.)
    assert out["prediction"] == "Beta is second [1]. B one [2]."
    assert [d["id"] for d in out["docs"]] == ["p2", "p1"]
    scores = {c["text"].split("[Relevant]")[-1].split("[Irrelevant]")[-1][:6]: c["score"] for c in out["candidates"]}
    assert scores["Alpha "] == pytest.approx(1.9) and scores["Beta i"] == pytest.approx(1.0)
    assert scores["A one."] == pytest.approx(1.52) and scores["A two."] == pytest.approx(2.28)
    assert scores["B one."] == pytest.approx(2.5) and scores["B two."] == pytest.approx(0.1)
    # beam width 1 keeps only A at depth 1, so A → A2
    _, [narrow] = run_stage(params.model_copy(update={"beam_width": 1}), llm, [record])
    assert narrow["prediction"] == "Alpha is first [1]. A two [2]."
    # max_depth 2: one level of segments, the best first segment
    _, [short] = run_stage(params.model_copy(update={"max_depth": 2}), llm, [record])
    assert short["prediction"] == "Alpha is first [1]."


def test_no_retrieval_inside_a_segment_becomes_retrieval_when_the_ratio_says_so():
    gen = Generation(
        text="a[No Retrieval]b[No Retrieval]c",
        tokens=["a", "[No Retrieval]", "b", "[No Retrieval]", "c"],
        tracked=[{}, {"[Retrieval]": ln(0.2), "[Continue to Use Evidence]": ln(0.1), "[No Retrieval]": ln(0.7)},
                 {}, {"[Retrieval]": ln(0.05), "[Continue to Use Evidence]": ln(0.05), "[No Retrieval]": ln(0.9)},
                 {}],
    )
    # (0.2 + 0.1) / (0.2 + 0.7) = 0.333 > 0.3; (0.05 + 0.05) / 0.95 = 0.105 < 0.3
    assert rewrite_no_retrieval(gen, 0.3) == "a[Retrieval]b[No Retrieval]c"
    assert rewrite_no_retrieval(gen, 0.5) == gen.text
    # p([Retrieval]) + p([No Retrieval]) underflowing to 0 (the reference checks for it): kept, no error
    tiny = Generation(text="a[No Retrieval]b", tokens=["a", "[No Retrieval]", "b"],
                      tracked=[{}, {"[Retrieval]": -800.0, "[Continue to Use Evidence]": 0.0,
                                    "[No Retrieval]": -800.0}, {}])
    assert rewrite_no_retrieval(tiny, 0.3) == tiny.text


def test_summary_and_report_show_the_retrieval_frequency_and_an_example():
    by_passage = {"alpha": steps((REL, {REL: 0.9, IRR: 0.1}), "Rome", (FULL, {FULL: 1.0}))}
    llm = ReflectionLLM(short_script({"[Retrieval]": 0.3, "[No Retrieval]": 0.7}, by_passage))
    records = [{"id": 1, "question": "capital?", "passages": PASSAGES[:1]},
               {"id": 2, "question": "other?", "passages": []}]  # no passage: answered without retrieval
    comp, out = run_stage(SelfRAGParams(mode="always"), llm, records)
    assert [r["retrieve"] for r in out] == [True, True] and out[1]["candidates"] == []
    metrics = comp.summarize(out, FakeCtx())
    assert metrics["retrieval_frequency"] == 1.0 and metrics["candidates_per_record"] == 0.5
    report = comp.report(out, metrics, FakeCtx())
    assert "retrieval on 100% of 2 records" in report
    assert "| T1 | 0.900 | 1.000 | 0.000 | 0.607 | 1.900 | Rome |" in report


def test_compat_reference_decides_on_log_probabilities_and_scores_long_form_segments_as_the_reference():
    by_passage = {"alpha": steps((REL, {REL: 0.9, IRR: 0.1}), "Rome", (FULL, {FULL: 1.0}))}
    # p([Retrieval]) = 0.1: ln 0.1 / (ln 0.1 + ln 0.3) = 0.657 > 0.5 retrieves under the reference's ratio
    llm = ReflectionLLM(short_script({"[Retrieval]": 0.1, "[No Retrieval]": 0.3}, by_passage))
    record = {"question": "q", "passages": PASSAGES[:1]}
    _, [ours] = run_stage(SelfRAGParams(threshold=0.5), llm, [record])
    _, [ref] = run_stage(SelfRAGParams(threshold=0.5, compat="reference"), llm, [record])
    assert ours["retrieve"] is False and ours["retrieval_ratio"] == pytest.approx(0.25)
    assert ref["retrieve"] is True and ref["retrieval_ratio"] == pytest.approx(0.6567, abs=1e-4)
    # long form, reference: B1 = 1 + 1 + 0 (utility always 0) = 2.0 < A2's path 2.28, so A → A2
    params = SelfRAGParams(form="long", mode="always", max_depth=3, beam_width=2, w_use=1.0, use_seqscore=True,
                           compat="reference")
    _, [long_ref] = run_stage(params, ReflectionLLM(long_script), [{"question": "Tell me.", "passages": PASSAGES[:2]}])
    assert long_ref["prediction"] == "Alpha is first [1]. A two [2]."
