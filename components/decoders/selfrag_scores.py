"""Self-RAG's critique scores of one generated candidate (spec §5.4), and the answer vote of closed tasks.

These are pure functions of what a backend returns for a generation (the generated token strings, their
log-probabilities, the log-probabilities of the reflection tokens at each position and the cumulative
log-probability), re-exported by ``components.decoders.selfrag``.

Scores follow the reference's expected-value form (not the paper's probability of the best token), computed
in the reference's order of operations with numpy's ``exp`` and ``sum`` (the same floats on one numpy):

* relevance ``P([Relevant]) / (P([Irrelevant]) + P([Relevant]))`` read at generated position 0, whatever
  token was generated there;
* grounding ``P(Full) / S + 0.5·(P(Partial) / S)`` with ``S`` the sum of the three IsSup tokens'
  probabilities, read at the first position whose generated token is an IsSup token, 0 when none is;
* utility ``Σ u_k·(P([Utility:k]) / S)`` with ``u = (−1, −0.5, 0, 0.5, 1)`` for k = 1..5 and ``S`` the sum of
  the five, read at the first position whose generated token is a utility token, 0 when none is;
* ``seq_score = exp(cumulative_logprob / number of tokens)`` (one token counted when there are none).

"Position" is the index of a generated token: the backends only track reflection tokens that are single
tokens of the vocabulary, so a reflection token never spans positions. A reflection token missing from a
position's log-probabilities counts as log-probability −100 (the reference's long-form script uses −100 as
the *probability* of a missing relevance token; that slip is not reproduced).

Where the reference would divide by zero (every probability of a group underflows to 0, e.g. log-probs below
about −745, where it returns NaN), the shares are taken from the log-probabilities shifted by their maximum,
which is the same ratio without the underflow; a group whose log-probabilities are all −inf scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from components.selfrag_tokens import (
    CONTINUE,
    FULLY,
    GROUNDING_TOKENS,
    IRRELEVANT,
    NO_RETRIEVAL,
    NO_SUPPORT,
    PARAGRAPH_CLOSE,
    PARAGRAPH_OPEN,
    PARTIALLY,
    RELEVANT,
    RETRIEVAL,
    UTILITY_TOKENS,
)

MISSING_LOGPROB = -100.0
UTILITY_WEIGHTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # [Utility:1] .. [Utility:5]
# What ``postprocess`` removes, in the reference's order (one ``str.replace`` each, so the order decides
# what a removal that joins two halves of a token leaves): its 14 control tokens, then
# [Continue to Use Evidence] (which the reference leaves in), then the end markers and newlines.
REMOVED_STRINGS = (FULLY, PARTIALLY, NO_SUPPORT, NO_RETRIEVAL, RETRIEVAL, IRRELEVANT, RELEVANT,
                   PARAGRAPH_OPEN, PARAGRAPH_CLOSE, *UTILITY_TOKENS, CONTINUE, "</s>", "\n", "<|endoftext|>")


def _shares(position: Mapping[str, float] | None, group: Sequence[str]) -> list[float] | None:
    """Each token of ``group``: its probability at ``position`` divided by the group's summed probability
    (see the module docstring for missing tokens and underflow); None when every log-prob is −inf."""
    import numpy as np

    found = position or {}
    logps = [float(found[t]) if found.get(t) is not None else MISSING_LOGPROB for t in group]
    probs = [np.exp(lp) for lp in logps]
    total = np.sum(probs)
    if total == 0.0:
        top = max(logps)
        if top == -math.inf:
            return None
        probs = [np.exp(lp - top) for lp in logps]
        total = np.sum(probs)
    return [float(p / total) for p in probs]


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
    log-probability at position i (a position past the end counts as all tokens missing).

    >>> s = score_candidate(["[Relevant]", "x"], [-0.5, -1.5], [{"[Relevant]": 0.0, "[Irrelevant]": 0.0}, {}], -2.0)
    >>> s["relevance"], s["grounding"], s["utility"], round(s["seq_score"], 4)
    (0.5, 0.0, 0.0, 0.3679)
    """
    import numpy as np

    rel = _shares(_at(top_logprobs, 0), (IRRELEVANT, RELEVANT))
    relevance = rel[1] if rel is not None else 0.0

    grounding = 0.0
    at = _first_position(tokens, GROUNDING_TOKENS)
    sup = _shares(_at(top_logprobs, at), (FULLY, PARTIALLY, NO_SUPPORT)) if at is not None else None
    if sup is not None:
        grounding = sup[0] + 0.5 * sup[1]

    utility = 0.0
    at = _first_position(tokens, UTILITY_TOKENS)
    use = _shares(_at(top_logprobs, at), UTILITY_TOKENS) if at is not None else None
    if use is not None:
        utility = float(np.sum([w * p for w, p in zip(UTILITY_WEIGHTS, use)]))

    cumulative = cumulative_logprob if cumulative_logprob is not None else float(sum(token_logprobs))
    seq_score = float(np.exp(cumulative / max(len(tokens), 1)))
    return {"relevance": relevance, "grounding": grounding, "utility": utility, "seq_score": seq_score}


def final_score(scores: Mapping[str, float], *, w_rel: float, w_sup: float, w_use: float,
                use_seqscore: bool) -> float:
    """``w_rel·relevance + w_sup·grounding + w_use·utility``; with ``use_seqscore`` the sequence score is
    added, unweighted, in front (as the reference: ``exp(mean log-prob) + w_rel·rel + …``).

    >>> final_score({"relevance": 0.5, "grounding": 1.0, "utility": -0.5, "seq_score": 0.25},
    ...             w_rel=1.0, w_sup=1.0, w_use=0.5, use_seqscore=True)
    1.5
    """
    rel, sup, use = w_rel * scores["relevance"], w_sup * scores["grounding"], w_use * scores["utility"]
    if use_seqscore:  # summed left to right in the reference's order
        return float(scores["seq_score"]) + rel + sup + use
    return rel + sup + use


def retrieval_ratio(logprobs: Mapping[str, float] | None) -> float:
    """``p([Retrieval]) / (p([Retrieval]) + p([No Retrieval]))`` with probabilities, as the reference's
    long-form script and the paper (its short-form script divides the raw log-probabilities; that is
    ``compat: reference`` of ``decode.selfrag``). A missing token counts as log-prob −100; both at −inf: 0.

    >>> round(retrieval_ratio({"[Retrieval]": math.log(0.3), "[No Retrieval]": math.log(0.1)}), 4)
    0.75
    """
    shares = _shares(logprobs, (RETRIEVAL, NO_RETRIEVAL))
    return shares[0] if shares is not None else 0.0


def postprocess(text: str) -> str:
    """``text`` without the reflection tokens (``[Continue to Use Evidence]`` included, which the reference
    forgets), ``</s>``, newlines and ``<|endoftext|>``: one pass each, in the order of ``REMOVED_STRINGS``
    (the reference's), so a token that only forms once another is cut out stays, as there.

    >>> postprocess("[Relevant]Paris[Fully supported][Continue to Use Evidence]\\n[Utility:5]</s>")
    'Paris'
    """
    for token in REMOVED_STRINGS:
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
