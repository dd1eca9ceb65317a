"""GATEAU (Si et al., 2024): HMG, the Contextual Awareness Score, ranking and top-k selection (spec §4).

The method's arithmetic, shared by ``score.hmg``, ``score.cam`` and ``select.gateau_rank``:

* ``build_hmg_text`` — the scored text of a chat record (§4.1);
* ``hmg_scores`` — Homologous Models' Guidance: min-max normalised perplexities of the short-window model
  (θ_A) and the long-window model (θ_B), ``d = n_A − n_B``, HMG = softmax(d) over the whole dataset;
* ``contextual_awareness`` — the Contextual Awareness Score of one record. The reference never computes
  it, so this is our documented choice (§4.2): importance = softmax(−log segment PPL) (a segment that
  makes the response easier matters more), attention = the layer-mean segment attention normalised to
  sum 1, CAS = 1 − cos(attention, importance): high when the model's attention misses the segments that
  matter, as the descending sort of the reference's ``rank.py`` requires;
* ``cas_scores`` — CAS normalised over the dataset exactly as HMG is (min-max, then softmax), so both
  terms are on the same ~1/N scale and α weighs them as the paper says;
* ``rank`` — final = α·HMG + (1−α)·CAS, sorted descending with ties in input order.

>>> [round(x, 4) for x in hmg_scores([2.0, 4.0], [3.0, 3.0])]
[0.2689, 0.7311]
>>> rank(["a", "b", "c"], [0.2, 0.6, 0.3], [0.4, 0.1, 0.3], 0.5)[1]
['b', 'a', 'c']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

INPUT_MARK = "### Input:"
INSTRUCTION_MARK = "\n\n ### Instruction: "
RESPONSE_MARK = "\n\n ### Response: "


def first_exchange(messages: Sequence[dict]) -> tuple[str, str]:
    """The first user turn and the assistant turn that answers it (GATEAU's records are single-turn)."""
    for i, m in enumerate(messages):
        if m.get("role") == "user":
            for reply in messages[i + 1:]:
                if reply.get("role") == "assistant":
                    return str(m.get("content") or ""), str(reply.get("content") or "")
            break
    raise ValueError("the record has no user turn followed by an assistant turn")


def split_user_turn(content: str) -> tuple[str, str]:
    """``(instruct, input)``: the last ``\\n\\n``-separated paragraph, and everything before it (the
    separator stays with the input). A turn ending in a blank line has an empty instruction and keeps its
    whole text as input (the reference's ``content[:-len(instruct)]`` empties it)."""
    instruct = content.split("\n\n")[-1]
    return instruct, content[: len(content) - len(instruct)]


def build_hmg_text(messages: Sequence[dict]) -> tuple[str, str, str, int]:
    """``(instruct, input, whole_text, response_char_start)`` of a chat record.

    ``whole_text`` is ``"### Input:" + input + "\\n\\n ### Instruction: " + instruct +
    "\\n\\n ### Response: " + response`` and the response starts exactly at ``response_char_start``
    (its length is known, so no marker search that a marker inside the text could fool).

    >>> build_hmg_text([{"role": "user", "content": "doc\\n\\nQ?"}, {"role": "assistant", "content": "A."}])
    ('Q?', 'doc\\n\\n', '### Input:doc\\n\\n\\n\\n ### Instruction: Q?\\n\\n ### Response: A.', 54)
    """
    user, response = first_exchange(messages)
    instruct, context = split_user_turn(user)
    whole = INPUT_MARK + context + INSTRUCTION_MARK + instruct + RESPONSE_MARK + response
    return instruct, context, whole, len(whole) - len(response)


def _checked(values: Sequence[float], name: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        x = float(v)
        if not math.isfinite(x):
            raise ValueError(f"{name}[{i}] is {v!r}; scores must be finite numbers")
        out.append(x)
    return out


def minmax(values: Sequence[float]) -> list[float]:
    """``(x − min) / (max − min)``; a constant column gives all zeros (the reference divides by zero)."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def softmax(values: Sequence[float]) -> list[float]:
    """Softmax with the maximum subtracted first (same values, no overflow)."""
    if not values:
        return []
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def hmg_scores(ppl_short: Sequence[float], ppl_long: Sequence[float]) -> list[float]:
    """HMG of every record: softmax over the dataset of ``minmax(ppl_short) − minmax(ppl_long)``.

    High when the long-window model finds the response much easier than the short-window one relative to
    the rest of the data: a long-range dependency. Values sum to 1 (on the order of 1/N)."""
    if len(ppl_short) != len(ppl_long):
        raise ValueError(f"{len(ppl_short)} short-model perplexities but {len(ppl_long)} long-model ones")
    n_a = minmax(_checked(ppl_short, "ppl_short"))
    n_b = minmax(_checked(ppl_long, "ppl_long"))
    return softmax([a - b for a, b in zip(n_a, n_b)])


def contextual_awareness(attention: Sequence[float] | Sequence[Sequence[float]],
                         segment_ppl: Sequence[float]) -> float:
    """CAS of one record: ``1 − cos(att, imp)`` (see the module docstring); in [0, 1].

    ``attention``: per segment, or ``[layers][segments]`` (averaged over layers first); ``segment_ppl``:
    the response's perplexity given each segment alone. No segment: 0.0 (nothing to be unaware of)."""
    if attention and isinstance(attention[0], (list, tuple)):
        layers = [list(map(float, row)) for row in attention]  # type: ignore[arg-type]
        att = [sum(col) / len(layers) for col in zip(*layers)]
    else:
        att = [float(a) for a in attention]  # type: ignore[arg-type]
    if len(att) != len(segment_ppl):
        raise ValueError(f"{len(att)} attention segments but {len(segment_ppl)} segment perplexities")
    if not att:
        return 0.0
    ppl = _checked(segment_ppl, "segment_ppl")
    if any(p <= 0 for p in ppl):
        raise ValueError("segment perplexities must be positive")
    imp = softmax([-math.log(p) for p in ppl])
    total = sum(att)
    if total <= 0:
        raise ValueError("segment attention sums to zero")
    att = [a / total for a in att]
    dot = sum(a * b for a, b in zip(att, imp))
    norm = math.sqrt(sum(a * a for a in att)) * math.sqrt(sum(b * b for b in imp))
    return min(1.0, max(0.0, 1.0 - dot / norm))


def cas_scores(cas: Sequence[float]) -> list[float]:
    """CAS normalised over the dataset like HMG: softmax(minmax(cas))."""
    return softmax(minmax(_checked(cas, "cas")))


def rank(ids: Sequence[str], hmg: Sequence[float], cas: Sequence[float], alpha: float) -> tuple[list[float], list[str]]:
    """``(finals, ordered_ids)``: ``finals[i] = α·hmg[i] + (1−α)·cas[i]`` in input order, and the ids
    sorted by final score, highest first, ties kept in input order."""
    if not len(ids) == len(hmg) == len(cas):
        raise ValueError(f"rank needs one hmg and one cas per id: {len(ids)} ids, {len(hmg)} hmg, {len(cas)} cas")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    h, c = _checked(hmg, "hmg"), _checked(cas, "cas")
    finals = [alpha * a + (1 - alpha) * b for a, b in zip(h, c)]
    order = sorted(range(len(finals)), key=lambda i: -finals[i])  # stable: ties keep input order
    return finals, [ids[i] for i in order]


def top_count(n: int, top_k: int | None = None, top_fraction: float | None = None) -> int:
    """How many of ``n`` ranked records to keep: ``top_k`` (at most n), ``round(top_fraction·n)`` (at
    least 1 when n > 0; halves round up), or all when neither is set."""
    if top_k is not None and top_fraction is not None:
        raise ValueError("give top_k or top_fraction, not both")
    if top_k is not None:
        return min(top_k, n)
    if top_fraction is not None:
        return min(n, max(1 if n else 0, math.floor(top_fraction * n + 0.5)))
    return n
