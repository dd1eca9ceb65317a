"""Self-RAG's critique scores of one generated candidate (spec §5.4), and the answer vote of closed tasks.

These are pure functions of what a backend returns for a generation (the generated token strings, their
log-probabilities, the log-probabilities of the reflection tokens at each position and the cumulative
log-probability), re-exported by ``components.decoders.selfrag``.

Scores follow the reference's expected-value form (not the paper's probability of the best token):

* relevance ``P([Relevant]) / (P([Relevant]) + P([Irrelevant]))`` at generated position 0;
* grounding ``(P(Full) + 0.5·P(Partial)) / ΣP(3 IsSup tokens)`` at the first position that generated an
  IsSup token, 0 when none did;
* utility ``Σ u_k·P([Utility:k]) / ΣP(utility)`` with ``u = (−1, −0.5, 0, 0.5, 1)`` for k = 1..5, at the
  first position that generated a utility token, 0 when none did;
* ``seq_score = exp(cumulative_logprob / number of tokens)``.

A reflection token missing from a position's log-probabilities counts as log-probability −100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from components.selfrag_tokens import (
    FULLY,
    GROUNDING_TOKENS,
    IRRELEVANT,
    NO_RETRIEVAL,
    PARTIALLY,
    REFLECTION_TOKENS,
    RELEVANT,
    RETRIEVAL,
    UTILITY_TOKENS,
)

MISSING_LOGPROB = -100.0
UTILITY_WEIGHTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # [Utility:1] .. [Utility:5]
# what ``postprocess`` removes besides the reflection tokens
END_MARKERS = ("</s>", "<|endoftext|>", "\n")


def _prob(logprobs: Mapping[str, float] | None, token: str) -> float:
    value = (logprobs or {}).get(token)
    return math.exp(MISSING_LOGPROB if value is None else float(value))


def _first_position(tokens: Sequence[str], group: Sequence[str]) -> int | None:
    return next((i for i, t in enumerate(tokens) if t in group), None)


def _at(top_logprobs: Sequence[Mapping[str, float] | None], i: int | None) -> Mapping[str, float] | None:
    if i is None or i >= len(top_logprobs):
        return None
    return top_logprobs[i]


def score_candidate(
    tokens: Sequence[str],
    token_logprobs: Sequence[float],
    top_logprobs: Sequence[Mapping[str, float] | None],
    cumulative_logprob: float | None,
) -> dict:
    """``{relevance, grounding, utility, seq_score}`` of one candidate (see the module docstring).

    ``tokens``: the generated token strings; ``token_logprobs``: their log-probabilities (used for the
    sequence score when ``cumulative_logprob`` is None); ``top_logprobs[i]``: reflection token →
    log-probability at position i.

    >>> s = score_candidate(["[Relevant]", "x"], [-0.5, -1.5], [{"[Relevant]": 0.0, "[Irrelevant]": 0.0}, {}], -2.0)
    >>> s["relevance"], s["grounding"], s["utility"], round(s["seq_score"], 4)
    (0.5, 0.0, 0.0, 0.3679)
    """
    first = _at(top_logprobs, 0)
    p_rel, p_irr = _prob(first, RELEVANT), _prob(first, IRRELEVANT)
    relevance = p_rel / (p_rel + p_irr)

    grounding = 0.0
    at = _first_position(tokens, GROUNDING_TOKENS)
    if at is not None:
        probs = {t: _prob(_at(top_logprobs, at), t) for t in GROUNDING_TOKENS}
        total = sum(probs.values())
        grounding = probs[FULLY] / total + 0.5 * probs[PARTIALLY] / total

    utility = 0.0
    at = _first_position(tokens, UTILITY_TOKENS)
    if at is not None:
        probs_u = [_prob(_at(top_logprobs, at), t) for t in UTILITY_TOKENS]
        total = sum(probs_u)
        utility = sum(w * p / total for w, p in zip(UTILITY_WEIGHTS, probs_u))

    cumulative = cumulative_logprob if cumulative_logprob is not None else float(sum(token_logprobs))
    seq_score = math.exp(cumulative / max(len(tokens), 1))
    return {"relevance": relevance, "grounding": grounding, "utility": utility, "seq_score": seq_score}


def final_score(scores: Mapping[str, float], *, w_rel: float, w_sup: float, w_use: float,
                use_seqscore: bool) -> float:
    """``w_rel·relevance + w_sup·grounding + w_use·utility``, plus ``seq_score`` when ``use_seqscore``.

    >>> final_score({"relevance": 0.5, "grounding": 1.0, "utility": -0.5, "seq_score": 0.25},
    ...             w_rel=1.0, w_sup=1.0, w_use=0.5, use_seqscore=True)
    1.5
    """
    total = w_rel * scores["relevance"] + w_sup * scores["grounding"] + w_use * scores["utility"]
    return total + scores["seq_score"] if use_seqscore else total


def retrieval_ratio(logprobs: Mapping[str, float] | None) -> float:
    """``p([Retrieval]) / (p([Retrieval]) + p([No Retrieval]))`` with probabilities (not the raw
    log-probabilities of the reference's short-form script); a missing token counts as log-prob −100.

    >>> round(retrieval_ratio({"[Retrieval]": math.log(0.3), "[No Retrieval]": math.log(0.1)}), 4)
    0.75
    """
    p_ret, p_no = _prob(logprobs, RETRIEVAL), _prob(logprobs, NO_RETRIEVAL)
    return p_ret / (p_ret + p_no)


def postprocess(text: str) -> str:
    """``text`` without any reflection token (``[Continue to Use Evidence]`` included, which the reference
    forgets), ``</s>``, ``<|endoftext|>`` or newline.

    >>> postprocess("[Relevant]Paris[Fully supported][Continue to Use Evidence]\\n[Utility:5]</s>")
    'Paris'
    """
    for token in (*REFLECTION_TOKENS, *END_MARKERS):
        text = text.replace(token, "")
    return text


def aggregate_closed(candidates: Sequence[tuple[str, float]]) -> tuple[list[tuple[str, float]], str | None]:
    """Closed-task vote: ``(answer_sums, best)``. ``answer_sums`` lists each post-processed answer with the
    sum of its candidates' scores, in first-seen order; ``best`` has the highest sum (the first seen on a
    tie; None without candidates).

    >>> aggregate_closed([("A[Utility:5]", 0.5), ("B", 0.75), ("A", 0.5)])
    ([('A', 1.0), ('B', 0.75)], 'A')
    """
    sums: dict[str, float] = {}
    for text, score in candidates:
        answer = postprocess(text)
        sums[answer] = sums.get(answer, 0.0) + float(score)
    best = None
    for answer, total in sums.items():
        if best is None or total > sums[best]:
            best = answer
    return list(sums.items()), best
