"""Decoding arguments, the stopping tracker and the reply's tokens of the transformers backend's
``generate`` calls."""

from __future__ import annotations

from typing import Any

from runner.backends.base import Sampling, TokenLogprob


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


def tracked_ids(tok: Any, tokens: list[str]) -> dict[str, int]:
    """The vocabulary id of each ``Sampling.logprob_tokens`` entry; ``ValueError`` for a token that is not
    one token of the vocabulary (e.g. reflection tokens asked of a model not trained with them)."""
    vocab = tok.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise ValueError(f"logprob_tokens {missing} are not single tokens of this model's vocabulary "
                         "(a model trained with them, e.g. train.sft special_tokens, has them)")
    return {t: int(vocab[t]) for t in tokens}


def reply_text(tok: Any, kept: list[int], wanted: dict[str, int] | None) -> str:
    """The reply's text without special tokens, but keeping the tracked ones (``wanted``) even when the
    tokenizer marks them special."""
    if not wanted:
        return tok.decode(kept, skip_special_tokens=True)
    keep = set(wanted.values())
    special = set(tok.all_special_ids)
    return tok.decode([t for t in kept if t not in special or t in keep], skip_special_tokens=False)


def token_logprobs(tok: Any, logits: Any, row: int, kept: list[int], top: int | None,
                   wanted: dict[str, int] | None = None) -> list[TokenLogprob]:
    """Per generated token of batch row ``row``: its logprob, the ``top`` best and the ``wanted`` tokens'
    (from ``generate``'s raw ``logits``, one tensor of shape (rows, vocab) per step)."""
    import torch

    out = []
    for step, token_id in enumerate(kept):
        lp = torch.log_softmax(logits[step][row].float(), dim=-1)
        best: dict[str, float] = {}
        if top:
            values, indices = torch.topk(lp, k=min(top, lp.shape[-1]))
            for v, j in zip(values.tolist(), indices.tolist()):
                best.setdefault(tok.decode([j]), v)
        tracked = {t: float(lp[i]) for t, i in wanted.items() if i < lp.shape[-1]} if wanted else {}
        out.append(TokenLogprob(token=tok.decode([token_id]), logprob=float(lp[token_id]), top=best,
                                tracked=tracked))
    return out
