"""Asking a critic model for labels: one conversation per (aspect, item), the reply held to the aspect's
label set while decoding when the stage is constrained (``components.formats``), parsed back to a label.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from components.formats import Constrained, constrained
from components.judges.asking import ask_until_parsed
from components.selfrag.critic_prompts import conversation, parse_label
from components.selfrag.labels import ASPECT_LABELS
from runner.backends.base import LLM, Format, Sampling


class CriticAskParams(Constrained):
    """How the critic is asked (shared by the critic-data and generator-data stages)."""

    max_new_tokens: int = Field(24, ge=1, description="reply length cap (the longest label is ~12 tokens)")
    temperature: float = Field(0.0, ge=0.0, description="critic temperature (0: greedy)")
    tries: int = Field(2, ge=1, description="asks per question while the reply holds no label")
    retry_temperature: float | None = Field(
        0.7, ge=0.0, description="temperature of the re-asks (a greedy re-ask repeats itself); null: `temperature`")


def label_sampling(labels: Sequence[str], p: CriticAskParams, enforce: bool) -> Sampling:
    """The sampling of one question: the label set as a regex format when ``enforce``."""
    fmt = Format.choice(list(labels)) if enforce else None
    return Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens, format=fmt)


def ask_labels(llm: LLM, questions: Sequence[tuple[str, dict, tuple[str, ...] | None]], p: CriticAskParams,
               *, few_shot: bool) -> list[str | None]:
    """The label of each ``(aspect, item, labels)`` question (``labels`` narrows the aspect's set, e.g. the
    multi-sentence question without ``[Continue to Use Evidence]`` when there is no passage in use; None:
    the whole set); None where no reply parsed."""
    if not questions:
        return []
    enforce = constrained(llm, p.constrained)
    convs, samplings, parsers = [], [], []
    for aspect, item, labels in questions:
        allowed = tuple(labels) if labels is not None else ASPECT_LABELS[aspect]
        convs.append(conversation(aspect, item, few_shot=few_shot))
        samplings.append(label_sampling(allowed, p, enforce))
        parsers.append(_parser(aspect, allowed))
    verdicts = ask_until_parsed(llm, convs, samplings, parsers, tries=p.tries,
                               retry_temperature=p.retry_temperature)
    return [v.value for v in verdicts]


def _parser(aspect: str, allowed: tuple[str, ...]):
    def parse(reply: str) -> str | None:
        label = parse_label(aspect, reply)
        return label if label in allowed else None

    return parse
