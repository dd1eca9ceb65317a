"""Self-RAG generator outputs from critic verdicts: which passage a sentence keeps, and the output text
with reflection tokens (spec §5.3). Pure functions of the verdicts and a seeded ``random.Random``, so the
rules are tested with hand-written verdicts.

Passage choice for a sentence that retrieves, over its candidate passages in retrieval order
(``choose_passage``):

1. the first passage rated ``[Relevant]`` and ``[Fully supported]``;
2. else the first ``[Relevant]`` + ``[Partially supported]`` passage, with probability ``partial_prob``
   (0.7);
3. else the first ``[Relevant]`` + ``[No support / Contradictory]`` passage, with probability
   ``no_support_prob`` (0.25);
4. else a passage drawn at random among those rated ``[Irrelevant]``;
5. else (every passage relevant and both draws declined) no passage: the sentence is written as
   ``[No Retrieval]{sentence}`` (the spec leaves this case open).

A coin is drawn for rule 2 or 3 only when such a passage exists.

Segments (``segment_text``), concatenated without separators, then ``[Utility:k]``:

* a kept passage: ``[Retrieval]<paragraph>{title}\\n{text}</paragraph>[Relevant]{sentence}{IsSup}``, or
  ``…[Irrelevant]{sentence}`` (no IsSup after an irrelevant passage);
* ``[Continue to Use Evidence]{sentence}`` when the critic keeps the passage in use;
* ``[No Retrieval]{sentence}``; an item whose first decision is ``[No Retrieval]`` is one segment,
  ``[No Retrieval]{whole output}``.

Record rules (``keep_record``, ``final_utility``, ``map_verdict_answer``): outputs ``SUPPORTS`` /
``REFUTES`` become ``true`` / ``false``; ``[Utility:1]`` on a true/false item becomes ``[Utility:5]``;
an output with no ``[Retrieval]`` is kept with probability ``no_retrieval_keep`` (0.4); an output starting
with ``[Continue to Use Evidence]`` is dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from components.selfrag_tokens import (
    CONTINUE,
    FULLY,
    IRRELEVANT,
    NO_RETRIEVAL,
    NO_SUPPORT,
    PARTIALLY,
    RELEVANT,
    RETRIEVAL,
    UTILITY,
    passage_block,
    user_content,
)
from components.text import split_sentences


@dataclass(frozen=True)
class Choice:
    """The passage a sentence keeps: its index among the candidates, its IsRel label and its IsSup label
    (None after an irrelevant passage)."""

    index: int
    relevance: str
    support: str | None


@dataclass(frozen=True)
class Segment:
    """One sentence of the output and how it is written: ``kind`` is ``passage`` (with ``passage`` and
    ``choice``), ``continue`` or ``none``."""

    sentence: str
    kind: str
    passage: dict | None = None
    choice: Choice | None = None


def choose_passage(relevance: list[str], support: list[str | None], rng: random.Random, *,
                   partial_prob: float = 0.7, no_support_prob: float = 0.25) -> Choice | None:
    """The passage kept for a sentence, by the rules of the module docstring. ``relevance[i]`` and
    ``support[i]`` are the critic's labels for candidate i (``support[i]`` is None when not asked, as for
    an irrelevant passage)."""
    if len(relevance) != len(support):
        raise ValueError(f"{len(relevance)} relevance labels for {len(support)} support labels")

    def first(label: str) -> int | None:
        return next((i for i, (r, s) in enumerate(zip(relevance, support)) if r == RELEVANT and s == label),
                    None)

    full = first(FULLY)
    if full is not None:
        return Choice(full, RELEVANT, FULLY)
    for label, prob in ((PARTIALLY, partial_prob), (NO_SUPPORT, no_support_prob)):
        i = first(label)
        if i is not None and rng.random() < prob:
            return Choice(i, RELEVANT, label)
    irrelevant = [i for i, r in enumerate(relevance) if r == IRRELEVANT]
    if irrelevant:
        return Choice(rng.choice(irrelevant), IRRELEVANT, None)
    return None


def pair_instruction(pair: dict) -> str:
    """The task as the critic and the generator see it: the instruction, and its input when it has one."""
    return user_content(str(pair["instruction"]), str(pair.get("input") or "").strip() or None)


def output_sentences(output: str) -> list[str]:
    """The output's sentences (the whole output when it has none)."""
    return [s["content"] for s in split_sentences(output)] or [output]


def passage_text(passage: dict) -> str:
    """``{title}\\n{text}`` (just the text when the passage has no title)."""
    title = str(passage.get("title") or "").strip()
    return f"{title}\n{passage['text']}" if title else str(passage["text"])


def paragraph(passage: dict) -> str:
    """A passage as the generator sees it, and as ``decode.selfrag`` shows it:
    ``<paragraph>{title}\\n{text}</paragraph>``."""
    return passage_block(str(passage.get("title") or ""), str(passage["text"]))


def segment_text(segment: Segment) -> str:
    """One segment with its reflection tokens."""
    if segment.kind == "none":
        return f"{NO_RETRIEVAL}{segment.sentence}"
    if segment.kind == "continue":
        return f"{CONTINUE}{segment.sentence}"
    if segment.kind != "passage" or segment.passage is None or segment.choice is None:
        raise ValueError(f"bad segment {segment!r}")
    text = f"{RETRIEVAL}{paragraph(segment.passage)}{segment.choice.relevance}{segment.sentence}"
    return text + (segment.choice.support or "")


def output_text(segments: list[Segment], utility: str) -> str:
    """The generator's target output: the segments, then the utility token."""
    if utility not in UTILITY:
        raise ValueError(f"not a utility token: {utility!r}")
    return "".join(segment_text(s) for s in segments) + utility


def map_verdict_answer(output: str) -> str:
    """``SUPPORTS`` → ``true`` and ``REFUTES`` → ``false`` (fact-verification answers); other outputs as
    they are."""
    return {"SUPPORTS": "true", "REFUTES": "false"}.get(output.strip(), output)


def is_true_false(output: str) -> bool:
    """Whether an output is a bare true/false answer."""
    return output.strip().lower() in ("true", "false")


def final_utility(utility: str, output: str) -> str:
    """``[Utility:1]`` becomes ``[Utility:5]`` on a true/false item (a one-word verdict is not a useless
    answer); any other rating is kept."""
    return UTILITY[4] if utility == UTILITY[0] and is_true_false(output) else utility


def keep_record(text: str, rng: random.Random, *, no_retrieval_keep: float = 0.4) -> bool:
    """Whether an assembled output enters the training data: not when it starts with
    ``[Continue to Use Evidence]``; with probability ``no_retrieval_keep`` when it never retrieves."""
    if text.startswith(CONTINUE):
        return False
    if RETRIEVAL not in text:
        return rng.random() < no_retrieval_keep
    return True
