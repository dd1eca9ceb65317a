"""Decoding arguments and the stopping tracker of the transformers backend's ``generate`` calls."""

from __future__ import annotations

from typing import Any

from runner.backends.base import Sampling


def generation_kwargs(sampling: Sampling) -> dict[str, Any]:
    """The decoding arguments of ``generate`` for our sampling settings (stopping and padding aside).

    ``temperature == 0`` decodes greedily, once per prompt even when ``n > 1`` (the replies would all be
    the same); sampling uses ``temperature`` and ``top_p`` with no top-k, and ``n`` replies per prompt.
    """
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": sampling.temperature > 0,
        "repetition_penalty": 1.0,
        "num_return_sequences": 1,
    }
    if sampling.temperature > 0:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                      num_return_sequences=sampling.n)
    return kwargs


class _FinishTracker:
    """A stopping criterion that records, per sequence, how many tokens it had generated when it ended
    (an end-of-sequence token or a stop string) and stops sequences whose text contains a stop string."""

    def __init__(self, tok: Any, prompt_len: int, stops: list[str], eos: set[int], n: int) -> None:
        self.tok = tok
        self.prompt_len = prompt_len
        self.stops = [s for s in stops if s]
        self.eos = eos
        self.finished_at: list[int | None] = [None] * n
        # Any token decodes to at least one character, so this many trailing tokens hold any stop string.
        self.tail = max((len(s) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        gen = input_ids[:, self.prompt_len:]
        step = gen.shape[1]
        for i in range(gen.shape[0]):
            if self.finished_at[i] is not None or step == 0:
                continue
            if int(gen[i, -1]) in self.eos:
                self.finished_at[i] = step
            elif self.stops:
                tail = self.tok.decode(gen[i, -self.tail:].tolist(), skip_special_tokens=True)
                if any(s in tail for s in self.stops):
                    self.finished_at[i] = step
        return torch.tensor([f is not None for f in self.finished_at], device=input_ids.device)
