"""A scripted generator for Self-RAG decoding tests: replies are lists of tokens with the reflection
tokens' probabilities at each position, so every score can be computed by hand."""

from __future__ import annotations

import math
from collections.abc import Callable

from runner.backends.base import LLM, ChatResult, Sampling, TokenLogprob, Usage

Step = tuple[str, dict[str, float]]  # a generated token and {reflection token: probability} at its position


def ln(p: float) -> float:
    return math.log(p)


def steps(*items: str | Step) -> list[Step]:
    """Tokens without probabilities are plain text tokens."""
    return [(i, {}) if isinstance(i, str) else i for i in items]


class ReflectionLLM(LLM):
    """``script(conversation, sampling)`` returns the reply as steps; each generated token has
    log-probability −0.5 unless the script says otherwise through ``token_logprob``."""

    backend = "scripted"
    name = "reflection"

    def __init__(self, script: Callable[[list[dict], Sampling], list[Step]], token_logprob: float = -0.5) -> None:
        self.script = script
        self.token_logprob = token_logprob
        self.calls: list[tuple[list[dict], Sampling]] = []

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        out = []
        for conv in conversations:
            self.calls.append((conv, sampling))
            reply = self.script(conv, sampling)[: sampling.max_new_tokens]
            wanted = set(sampling.logprob_tokens or [])
            lps = [TokenLogprob(token=t, logprob=self.token_logprob,
                                tracked={k: ln(v) for k, v in probs.items() if k in wanted and v > 0})
                   for t, probs in reply]
            out.append(ChatResult(text="".join(t for t, _ in reply), logprobs=lps, usage=Usage(),
                                  cumulative_logprob=self.token_logprob * len(lps)))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())
