"""Self-RAG long-form decoding (spec §5.5): a segment-level beam search over retrieved passages.

The root asks for retrieval. At each depth every beam node whose segment asks for retrieval
(``[Retrieval]`` in it) is continued once per passage, from the prompt, the text of the path so far and
``[Retrieval]<paragraph>{title}\\n{text}</paragraph>``. A child's segment is its text up to its first
``[Retrieval]``; its score is its segment score (relevance, support and utility weighted by the stage's
params, plus the sequence score when asked) times its parent's score, a product along the path. The
``beam_width`` best children (first generated on a tie) form the next level. Depths run from 1 to
``max_depth − 1`` (the root is depth 0), as the reference's ``--max_depth``; the search stops early when no
node asks for retrieval. The answer is the best node of the deepest level reached, with its ancestors'
segments, each post-processed and given one citation ``[k]`` (k: 1-based position of its passage in the
record's ``docs``).

Inside a segment each generated ``[No Retrieval]`` becomes ``[Retrieval]`` (so the node is expanded) when
``(p([Retrieval]) + p([Continue to Use Evidence])) / (p([Retrieval]) + p([No Retrieval])) > threshold`` at
that position.

Differences from the reference, which are bugs there: it ignores the weights and the sequence-score flag
given on its command line (hard-coded ``w = (1, 1, 0.5)``), its utility term is always 0 (its loop reads the
support tokens), and it appends one extra ``[No Retrieval]`` after the last piece of a rewritten segment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from components.decoders.selfrag_generate import Generation, continue_all, conversation, retrieval_prefix
from components.decoders.selfrag_scores import MISSING_LOGPROB, postprocess, score_candidate
from components.selfrag_tokens import CONTINUE, NO_RETRIEVAL, RETRIEVAL
from runner.backends.base import LLM


@dataclass
class Node:
    """One segment of the tree; ``context`` is the assistant text its children continue from."""

    id: int
    parent: int | None
    depth: int
    segment: str  # text up to the first [Retrieval] (the root: empty)
    pred: str  # the whole generated text, [No Retrieval] rewritten where retrieval is wanted
    context: str
    passage: dict | None = None
    scores: dict = field(default_factory=dict)
    segment_score: float | None = None
    score: float | None = None


def _p(tracked: dict[str, float], token: str) -> float:
    return math.exp(tracked.get(token, MISSING_LOGPROB))


def rewrite_no_retrieval(gen: Generation, threshold: float) -> str:
    """``gen.text`` with each ``[No Retrieval]`` turned into ``[Retrieval]`` where the tokens' probabilities
    at its position favour retrieval (see the module docstring)."""
    pieces = gen.text.split(NO_RETRIEVAL)
    if len(pieces) == 1:
        return gen.text
    positions = [i for i, t in enumerate(gen.tokens) if t == NO_RETRIEVAL]
    out = pieces[0]
    for k, piece in enumerate(pieces[1:]):
        token = NO_RETRIEVAL
        if k < len(positions) and positions[k] < len(gen.tracked):
            tr = gen.tracked[positions[k]]
            ret, cont, no = _p(tr, RETRIEVAL), _p(tr, CONTINUE), _p(tr, NO_RETRIEVAL)
            # both probabilities underflowing to 0: keep [No Retrieval], as the reference does
            if ret + no > 0.0 and (ret + cont) / (ret + no) > threshold:
                token = RETRIEVAL
        out += token + piece
    return out


def beam_search(
    llm: LLM,
    user: str,
    passages: list[dict],
    *,
    score: Callable[[dict], float],
    max_depth: int,
    beam_width: int,
    threshold: float,
    max_new_tokens: int,
) -> tuple[list[Node], list[Node]]:
    """``(best path without the root, every node generated)``; ``score`` turns a segment's
    ``score_candidate`` dict into its segment score. A failed generation raises ``RuntimeError``."""
    root = Node(id=0, parent=None, depth=0, segment="", pred=RETRIEVAL, context="")
    nodes = [root]
    level = [root]
    for depth in range(1, max_depth):
        parents = [n for n in level if RETRIEVAL in n.pred]
        if not parents or not passages:
            break
        convs = [conversation(user, n.context + retrieval_prefix(p)) for n in parents for p in passages]
        gens = continue_all(llm, convs, max_new_tokens)
        children = []
        for j, gen in enumerate(gens):
            if gen.error is not None:
                raise RuntimeError(f"generation failed: {gen.error}")
            parent, passage = parents[j // len(passages)], passages[j % len(passages)]
            pred = rewrite_no_retrieval(gen, threshold)
            segment = pred.split(RETRIEVAL, 1)[0]
            scores = score_candidate(gen.tokens, gen.token_logprobs, gen.tracked, gen.cumulative_logprob)
            seg_score = score(scores)
            children.append(Node(
                id=len(nodes) + len(children), parent=parent.id, depth=depth, segment=segment, pred=pred,
                context=parent.context + segment, passage=passage, scores=scores, segment_score=seg_score,
                score=seg_score if parent.score is None else seg_score * parent.score,
            ))
        nodes += children
        level = sorted(children, key=lambda n: -(n.score or 0.0))[:beam_width]  # stable: first on a tie
    if not level or level[0] is root:
        return [], nodes
    by_id = {n.id: n for n in nodes}
    path, node = [], level[0]
    while node.parent is not None:
        path.append(node)
        node = by_id[node.parent]
    return path[::-1], nodes


def cite(segment: str, k: int) -> str:
    """``segment`` with the citation ``[k]`` before its final punctuation (or at its end)."""
    text = segment.rstrip()
    if text and text[-1] in ".!?":
        return f"{text[:-1]} [{k}]{text[-1]}"
    return f"{text} [{k}]"


def cited_answer(path: list[Node]) -> tuple[str, list[dict]]:
    """The answer (post-processed segments, one citation each, joined by spaces) and the cited passages."""
    parts, docs = [], []
    for node in path:
        text = postprocess(node.segment).strip()
        if not text:
            continue
        docs.append(node.passage)
        parts.append(cite(text, len(docs)))
    return " ".join(parts), docs
