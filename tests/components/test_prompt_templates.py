"""The shipped prompts filled from hand-made records: the exact text each component sends.

Every prompt is a ``components.templates`` template (``{field}``, ``{{ }}`` for literal braces). Values
holding braces or newlines go in verbatim. The long instruction heads are checked by their first line and
the absence of placeholders; everything from the first filled field on is compared whole.
"""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from components.decoders.longcite import LONGCITE_INSTRUCTION, longcite_user_prompt
from components.generators.cof.chunk_citation import chunk_prompt
from components.generators.cof.sentence_citation import sentence_prompt
from components.generators.needle_haystack import NeedleHaystack, NeedleParams
from components.judges.longbench_chat import LongBenchChatJudge, LongBenchChatJudgeParams
from components.judges.longbench_cite import LongBenchCiteJudge
from components.judges.needle import NeedleJudge, NeedleJudgeParams


def split_at(text: str, marker: str) -> tuple[str, str]:
    """``(head, rest)`` at the first ``marker``; the head must be plain instruction text."""
    at = text.index(marker)
    head = text[:at]
    assert "{" not in head and "}" not in head and "<<" not in head
    return head, text[at:]


def test_longcite_user_prompt():
    got = longcite_user_prompt("<C0>A {x}. <C1>B.", "Why {not}?")
    assert got == LONGCITE_INSTRUCTION + "\n\n[Document Start]\n<C0>A {x}. <C1>B.\n[Document End]\n\nWhy {not}?"
    assert LONGCITE_INSTRUCTION.endswith("write that sentence as \"<statement>{S}<cite>[{s1}-{e1}][{s2}-{e2}]"
                                         "...</cite></statement>\", where each [{s}-{e}] gives the number "
                                         "of the first and of the last document sentence of a passage that "
                                         "supports S. Write your answer in the same language as the question.")


def test_chunk_citation_prompt_keeps_its_literal_braces():
    got = chunk_prompt([{"content": "alpha {a}"}, {"content": "beta"}], "Q {q}?", "A\nB.")
    assert got.startswith("You will see numbered snippets from a document, a question, and an answer")
    assert ("mark up each of its sentences as <statement>{sentence}<cite>[i][j]...</cite></statement>, "
            "where") in got
    assert "gets an empty citation: <statement>{sentence}<cite></cite></statement>.\n\nExample:" in got
    _, rest = split_at(got.split("Now the task:")[1], "\n\n[Snippets]")
    assert rest == ("\n\n[Snippets]\nSnippet [1]\nalpha {a}\n\nSnippet [2]\nbeta\n\n[Question]\nQ {q}?\n\n"
                    "[Answer]\nA\nB.\n\n[Answer with Citations]\n")


def test_sentence_citation_prompt():
    got = sentence_prompt("<C0>One {1}.\n\n<C1>Two.", "Q?", "S {s}.")
    assert got.startswith("You will see passages from a document whose sentences are numbered <C0>, <C1>")
    assert got.endswith("No relevant information\n\nNow the task:\n[Passages]\n<C0>One {1}.\n\n<C1>Two.\n"
                        "[Question]\nQ?\n[Statement]\nS {s}.\n[Supporting sentences]\n")


def test_longbench_cite_citation_prompts():
    judge = LongBenchCiteJudge(LongBenchCiteJudge.Params())
    record = {"query": "Who {built} it?",
              "prediction": "<statement>Anna built it.<cite>[0-1]</cite></statement> Thanks.",
              "statements": [{"statement": "Anna built it.", "citation": [{"cite": "Anna {A.}"}, {"cite": "1921."}]},
                             {"statement": "Thanks.", "citation": []}]}
    _, asks = judge._citation_asks(record)
    support, relevance1, _, need = [a.conversation[0]["content"] for a in asks]
    head, rest = split_at(support, "<question>")
    assert head.startswith("You are checking whether a statement from an AI assistant's answer is backed")
    assert rest == ("<question>\nWho {built} it?\n</question>\n\n<statement>\nAnna built it.\n</statement>\n\n"
                    "<snippet>\nAnna {A.}\n\n1921.\n</snippet>\n")
    head, rest = split_at(relevance1, "<question>")
    assert head.startswith("You are checking whether a snippet cited by an AI assistant")
    assert rest == ("<question>\nWho {built} it?\n</question>\n\n<statement>\nAnna built it.\n</statement>\n\n"
                    "<snippet>\nAnna {A.}\n</snippet>\n")
    head, rest = split_at(need, "<question>")
    assert head.startswith("You are checking whether a sentence of an AI assistant's answer needs a citation.")
    assert rest == ("<question>\nWho {built} it?\n</question>\n\n<response>\nAnna built it. Thanks.\n"
                    "</response>\n\n<sentence>\nThanks.\n</sentence>\n")


def test_longbench_cite_correctness_prompts():
    judge = LongBenchCiteJudge(LongBenchCiteJudge.Params())
    qa = {"query": "Q?", "prediction": "<statement>P {p}.<cite></cite></statement>", "statements": [],
          "answer": ["R1", "R2"], "dataset": "hotpotqa"}
    (first, second), tries = judge._correctness_asks(qa, random.Random(0))
    assert tries == 5
    assert first.conversation[0] == {"role": "system",
                                     "content": "You are an expert at judging the quality of written answers."}
    head, rest = split_at(first.conversation[1]["content"], "<question>")
    assert head.startswith("Compare an AI assistant's answer to a question with the reference answer")
    assert rest == ("<question>\nQ?\n</question>\n\n<reference>\nR1\n</reference>\n\n<response>\nP {p}.\n"
                    "</response>\n")
    assert second.conversation[1]["content"].endswith("<reference>\nR2\n</reference>\n\n<response>\nP {p}.\n"
                                                      "</response>\n")
    chat = {**qa, "dataset": "longbench-chat", "answer": "R", "prediction": "line one\nline two",
            "few_shot_scores": [{"answer": "shot {a}", "score": 7}, {"answer": "shot b", "score": 2.5}]}
    (ask,), tries = judge._correctness_asks(chat, random.Random(0))
    assert tries == 2
    rng = random.Random(0)
    shots = [0, 1]
    rng.shuffle(shots)
    shown = {0: ("shot {a}", "7"), 1: ("shot b", "2.5")}
    examples = "\n\n".join(f"[Example answer {n}]\n{shown[k][0]}\n\nRating: [[{shown[k][1]}]]"
                           for n, k in enumerate(shots, start=1))
    head, rest = split_at(ask.conversation[1]["content"], "Q?")
    assert head.startswith("[Instructions]\nRate how good an AI assistant's answer")
    assert head.endswith("[Question]\n")
    assert rest == f"Q?\n\n[Reference answer]\nR\n\n{examples}\n\n[Answer to rate]\nline one line two\n\nRating: "


def test_needle_judge_prompt():
    judge = NeedleJudge(NeedleJudgeParams(method="llm"))
    got = judge._judge_prompt({"question": "Where {is} it?", "needle": "\n It is here. \n",
                               "prediction": "Here {x}."})
    head, rest = split_at(got, "[Question]")
    assert head.startswith("[Instruction]\nAct as an impartial judge of how accurately")
    assert head.endswith("example \"Rating: [[5]]\".\n\n")
    assert rest == "[Question]\nWhere {is} it?\n\n[Reference answer]\nIt is here.\n\n[Assistant's response]\nHere {x}."


def test_longbench_chat_judge_prompt():
    judge = LongBenchChatJudge(LongBenchChatJudgeParams())

    class Ctx:
        seed = 0

    record = {"idx": 1, "query": "Q {q}?", "answer": "Ref.", "prediction": "Line 1\nLine {2}",
              "few_shots": [{"answer": "A {a}", "score": 8.0}, {"answer": "B", "score": 7.5}]}
    system, user = judge.build_messages(record, Ctx())
    assert system == {"role": "system", "content": "You are a fair and careful evaluator of written answers."}
    head, rest = split_at(user["content"], "Q {q}?")
    assert head.startswith("[Task]\nGrade how well an AI assistant answered a user's question.")
    assert head.endswith("written in double square brackets, for example [[6]].\n\n[Question]\n")
    assert rest == ("Q {q}?\n\n[Reference answer]\nRef.\n\n[Example answer 1]\nA {a}\nRating: [[8]]\n\n"
                    "[Example answer 2]\nB\nRating: [[7.5]]\n\n[Answer to grade]\nLine 1 Line {2}\n\nRating: ")


def test_needle_haystack_user_turn():
    params = NeedleParams(user_template="Doc:\n{context}\nQ: {question} {{literal}}", question="Q {x}?",
                          question_suffix=" Short.", system_prompt="Sys.", join_system=False)
    record = NeedleHaystack(params)._record(100, 50.0, "ctx {c}", 0, 5, 10)
    assert record["messages"] == [{"role": "system", "content": "Sys."},
                                  {"role": "user", "content": "Doc:\nctx {c}\nQ: Q {x}? Short. {literal}"}]


def test_needle_haystack_user_template_names_only_its_two_fields():
    with pytest.raises(ValidationError, match="must contain {question}"):
        NeedleParams(user_template="{context}")
    with pytest.raises(ValidationError, match="only use {context} and {question}, not {extra}"):
        NeedleParams(user_template="{context} {question} {extra}")
