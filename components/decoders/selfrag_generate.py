"""What ``decode.selfrag`` asks of the generator: prompts in Self-RAG's format, greedy continuations with
the reflection tokens' log-probabilities, and the retrieval ratio after the prompt.

A continuation is a conversation whose last message is the assistant's partial answer (e.g.
``[Retrieval]<paragraph>…</paragraph>``): local backends continue it (``runner.backends.base``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.selfrag_tokens import (
    NO_RETRIEVAL,
    RETRIEVAL,
    SCORED_TOKENS,
    passage_block,
    user_content,
)
from runner.backends.base import LLM, Sampling

CLOSED_TYPES = ("multiple_choice", "true_false")
# our own wording of the closed-task instructions (spec §5.4 describes the reference's)
MC_INSTRUCTION = "Choose the correct answer to the question from the options {labels}; reply with its letter."
TF_INSTRUCTION = "Decide whether the following statement is true or false; reply with true or false."
LETTERS = "ABCDEFGHIJ"


@dataclass
class Generation:
    """One greedy continuation: its text (reflection tokens kept), generated tokens, their log-probs, the
    reflection tokens' log-probs at each position and the cumulative log-prob; ``error`` when it failed."""

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    tracked: list[dict[str, float]] = field(default_factory=list)
    cumulative_logprob: float | None = None
    error: str | None = None


def passages_of(record: dict, field_name: str, ndocs: int) -> list[dict]:
    """The record's first ``ndocs`` passages as ``{id, title, text, score}``: from ``field_name``
    (``[{id, title, text, score}]`` from ``retrieve``), else the paper task files' ``ctxs``."""
    raw = record.get(field_name)
    if raw is None:
        raw = record.get("ctxs") or []
    out = []
    for i, p in enumerate(raw[:ndocs]):
        if isinstance(p, str):
            p = {"text": p}
        out.append({"id": p.get("id", i), "title": p.get("title", "") or "", "text": p.get("text", "") or "",
                    "score": p.get("score")})
    return out


def choice_lines(choices: Any) -> list[tuple[str, str]]:
    """``(label, text)`` of a multiple-choice record's options: a list of texts (lettered A, B, …), a
    ``{label: text}`` dict, ARC's ``{"label": [...], "text": [...]}`` or a list of ``{label, text}``."""
    if isinstance(choices, dict) and isinstance(choices.get("text"), list):
        labels = choices.get("label") or list(LETTERS[: len(choices["text"])])
        return [(str(lab), str(t)) for lab, t in zip(labels, choices["text"])]
    if isinstance(choices, dict):
        return [(str(k), str(v)) for k, v in choices.items()]
    out = []
    for i, c in enumerate(choices or []):
        if isinstance(c, dict):
            out.append((str(c.get("label", LETTERS[i])), str(c.get("text", ""))))
        else:
            out.append((LETTERS[i], str(c)))
    return out


def task_prompt(record: dict, task_type: str, question_field: str) -> str:
    """The user turn for a record: its own ``instruction`` (+ ``input``) when it has one; else the bare
    question (open tasks), the question and lettered options (multiple choice) or the statement
    (true/false) under our instruction."""
    if record.get("instruction"):
        return user_content(record["instruction"], record.get("input"))
    question = str(record.get(question_field, ""))
    if task_type == "multiple_choice":
        options = choice_lines(record.get("choices"))
        labels = ", ".join(lab for lab, _ in options)
        body = question + "".join(f"\n{lab}: {text}" for lab, text in options)
        return user_content(MC_INSTRUCTION.format(labels=labels), body)
    if task_type == "true_false":
        return user_content(TF_INSTRUCTION, question)
    return question


def conversation(user: str, assistant_prefix: str | None = None) -> list[dict]:
    msgs = [{"role": "user", "content": user}]
    if assistant_prefix:
        msgs.append({"role": "assistant", "content": assistant_prefix})
    return msgs


def retrieval_prefix(passage: dict) -> str:
    return RETRIEVAL + passage_block(passage["title"], passage["text"])


def continue_all(llm: LLM, convs: list[list[dict]], max_new_tokens: int) -> list[Generation]:
    """Greedy continuations of ``convs`` with the reflection tokens' log-probabilities."""
    if not convs:
        return []
    sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens, logprob_tokens=list(SCORED_TOKENS))
    out = []
    for res in llm.chat(convs, sampling):
        if res.error is not None:
            out.append(Generation(error=res.error))
            continue
        lps = res.logprobs or []
        out.append(Generation(
            text=res.text, tokens=[t.token for t in lps], token_logprobs=[t.logprob for t in lps],
            tracked=[dict(t.tracked) for t in lps], cumulative_logprob=res.cumulative_logprob,
        ))
    return out


def first_token_logprobs(llm: LLM, users: list[str]) -> list[dict[str, float] | str]:
    """For each prompt, the log-probabilities of ``[Retrieval]`` and ``[No Retrieval]`` as the first
    generated token (one decoding step), or the error text."""
    if not users:
        return []
    sampling = Sampling(temperature=0.0, max_new_tokens=1, logprob_tokens=[RETRIEVAL, NO_RETRIEVAL])
    out: list[dict[str, float] | str] = []
    for res in llm.chat([conversation(u) for u in users], sampling):
        if res.error is not None:
            out.append(res.error)
        else:
            out.append(dict(res.logprobs[0].tracked) if res.logprobs else {})
    return out
