"""Format-constrained decoding for the in-process transformers backend, through llguidance.

llguidance (the engine behind vLLM's ``guidance`` structured-output backend) turns a ``Format`` (regex,
JSON schema or Lark grammar) into a matcher that says, token by token, which tokens may come next. A
``Guide`` belongs to one model: it builds the llguidance tokenizer once (about a second) and compiles each
format once, keeping the compiled matchers by the format's key (the least recently used are dropped past
``CACHE_SIZE``, since some formats are made per record). Each generated row gets its own copy.

``FormatProcessor`` is a transformers logits processor. Before every decoding step it feeds each row's
matcher the token that row produced last, then sets the scores of the tokens the format does not allow
next to -inf. End-of-sequence is allowed only once the format is complete, and it is the only choice
once nothing may follow. Rows that have finished (end-of-sequence or a stop string) are left alone, so
left-padded batches whose rows end at different steps work as usual. It runs before temperature and
top-p, so sampling only ever draws among allowed tokens.

llguidance and torch are imported when a format is first used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from runner.backends.base import Format

CACHE_SIZE = 256


def grammar_text(fmt: Format) -> str:
    """The llguidance grammar of a format (not yet checked: compiling it reports errors)."""
    from llguidance import LLMatcher

    if fmt.kind == "regex":
        return LLMatcher.grammar_from_regex(fmt.spec)
    if fmt.kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(fmt.spec)
    return LLMatcher.grammar_from_lark(fmt.spec)


def ll_tokenizer(hf_tokenizer: Any, eos_ids: Sequence[int], vocab_size: int | None = None) -> Any:
    """An llguidance tokenizer for a fast Hugging Face tokenizer; ``eos_ids`` end a reply."""
    from copy import copy

    import llguidance

    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"constrained decoding needs a fast tokenizer; {type(hf_tokenizer).__name__} is not one")
    backend = copy(backend)
    backend.no_padding()
    backend.no_truncation()
    eos = sorted(eos_ids) or None
    return llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=eos)


class Guide:
    """One model's format compiler: its llguidance tokenizer and compiled formats."""

    def __init__(self, hf_tokenizer: Any, eos_ids: Sequence[int], vocab_size: int | None = None) -> None:
        self.tokenizer = ll_tokenizer(hf_tokenizer, eos_ids, vocab_size)
        self._compiled: OrderedDict[str, Any] = OrderedDict()

    def compiled(self, fmt: Format) -> Any:
        """The compiled matcher of ``fmt`` (shared: copy it before use). ValueError for a bad format."""
        from llguidance import LLMatcher

        matcher = self._compiled.get(fmt.key)
        if matcher is not None:
            self._compiled.move_to_end(fmt.key)
            return matcher
        try:
            grammar = grammar_text(fmt)
        except ValueError as exc:  # e.g. a JSON schema that is not valid JSON
            raise ValueError(f"invalid {fmt.kind} format: {exc}") from exc
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"invalid {fmt.kind} format: {matcher.get_error()}")
        self._compiled[fmt.key] = matcher
        if len(self._compiled) > CACHE_SIZE:
            self._compiled.popitem(last=False)
        return matcher

    def processor(self, fmt: Format, rows: int, prompt_len: int, finished: list[int | None]) -> FormatProcessor:
        """A logits processor enforcing ``fmt`` on each of ``rows`` rows generated after ``prompt_len``
        prompt positions; ``finished[i]`` is set (by the stopping criterion) once row i has ended."""
        proto = self.compiled(fmt)
        return FormatProcessor([proto.deep_copy() for _ in range(rows)], self.tokenizer.vocab_size,
                               prompt_len, finished)


class FormatProcessor:
    """Masks, per row, the tokens its format does not allow next (a transformers logits processor)."""

    def __init__(self, matchers: list[Any], vocab_size: int, prompt_len: int,
                 finished: list[int | None]) -> None:
        import numpy as np

        self.matchers = matchers
        self.vocab_size = vocab_size
        self.prompt_len = prompt_len
        self.finished = finished
        self.bitmask = np.full((len(matchers), (vocab_size + 31) // 32), -1, dtype=np.int32)
        self.broken: list[str | None] = [None] * len(matchers)  # why a row's matcher gave up, if it did

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        step = input_ids.shape[1] - self.prompt_len
        active = []
        for row, matcher in enumerate(self.matchers):
            if self.finished[row] is not None or self.broken[row] is not None:
                continue
            if step > 0 and not matcher.consume_token(int(input_ids[row, -1])):
                self.broken[row] = matcher.get_error() or "the token was not allowed"
                continue
            active.append(row)
        if not active:
            return scores
        for row in active:
            m = self.bitmask[row]
            self.matchers[row].unsafe_compute_mask_ptr(m.ctypes.data, m.nbytes)
        bits = np.unpackbits(self.bitmask[active].view(np.uint8), axis=1, bitorder="little")
        width = min(scores.shape[1], self.vocab_size)
        blocked = torch.from_numpy(bits[:, :width] == 0).to(scores.device)
        index = torch.tensor(active, device=scores.device)
        rows = scores.index_select(0, index)
        rows[:, :width].masked_fill_(blocked, float("-inf"))
        if scores.shape[1] > width:  # logits past the tokenizer's vocabulary are never allowed
            rows[:, width:] = float("-inf")
        scores.index_copy_(0, index, rows)
        return scores
