"""What the weight-based scorers share: loading a model once, locating the response tokens, perplexity.

Models are opened through ``registry.model_folder`` (the one model-folder module), kept per component
instance and keyed by folder and settings, so two slots bound to the same model load it once. The runner
calls a component's ``summarize`` once its records are all done, so the scorers release their models
there: the weights do not stay in memory (or on the GPU) while later stages train.

Response tokens are located on the token sequence the model actually reads: a token belongs to the
response when its character span ends after the response's first character (a leading-space token such
as ``" The"`` counts), and truncation is applied after locating them, so a left-truncated sequence still
scores exactly its response tokens. Tokenizers without character offsets fall back to counting the tokens
of the text before the response.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LoadOptions(BaseModel):
    """How a scorer opens its model(s)."""

    model_config = ConfigDict(extra="forbid")

    dtype: str = Field("auto", description="Weight dtype: auto (float32 on CPU, bfloat16/float16 on GPU), "
                       "float32, bfloat16 or float16.")
    device: str | None = Field(None, description="Torch device; default: cuda when available, else cpu.")


@dataclass(frozen=True)
class Encoded:
    """A tokenized text: ``ids`` and the index of its first response token (``len(ids)`` if none)."""

    ids: list[int]
    first_response: int

    @property
    def response_tokens(self) -> int:
        return len(self.ids) - self.first_response


class ModelCache:
    """Loaded models of one component, one per (folder, settings)."""

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}
        self._tokenizers: dict[str, Any] = {}
        self.lock = threading.RLock()

    def model(self, source: Any, options: LoadOptions, attn_implementation: str | None = None,
              rope_factor: float | None = None, rope_window: int | None = None) -> Any:
        from registry.model_folder import load_causal_lm, model_folder

        key = (str(model_folder(source)), options.dtype, options.device, attn_implementation, rope_factor,
               rope_window)
        with self.lock:
            if key not in self._models:
                lm = load_causal_lm(source, dtype=options.dtype, device=options.device,
                                    attn_implementation=attn_implementation)
                if rope_factor is not None:
                    extend_rope_dynamic(lm, rope_factor, rope_window)
                self._models[key] = lm
            return self._models[key]

    def clear(self) -> None:
        """Drop the loaded models (and free GPU memory), e.g. once a stage is over."""
        import gc
        import sys

        with self.lock:
            self._models.clear()
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def tokenizer(self, source: Any) -> Any:
        from registry.model_folder import load_tokenizer, model_folder

        key = str(model_folder(source))
        with self.lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = load_tokenizer(source)
            return self._tokenizers[key]


def extend_rope_dynamic(lm: Any, factor: float, window: int | None = None) -> None:
    """Give ``lm`` dynamic-NTK RoPE scaling: positions beyond ``window`` (default: the model's
    ``max_position_embeddings``) stretch the rotary base by ``factor``, the same for every position of
    one forward pass (so a sequence is read consistently). Works for models with a ``rotary_emb`` module
    built from the config (Llama, Mistral, Qwen and most decoder-only models in transformers)."""
    import copy

    inner = getattr(lm, "model", lm)
    rotary = getattr(inner, "rotary_emb", None)
    if rotary is None:
        raise ValueError(f"{type(lm).__name__} has no rotary_emb module: dynamic-NTK scaling is not supported")
    config = copy.deepcopy(lm.config)
    if window is not None:
        config.max_position_embeddings = window
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update(rope_type="dynamic", factor=float(factor))
    config.rope_parameters = params
    device = next(lm.parameters()).device
    inner.rotary_emb = type(rotary)(config=config).to(device)


def prefix_special_ids(tok: Any) -> list[int]:
    """The special tokens the tokenizer puts before a text (a BOS token, or nothing)."""
    with_special = tok("", add_special_tokens=True)["input_ids"]
    return list(with_special)


def encode_response(tok: Any, text: str, response_start: int, window: int) -> Encoded:
    """``text`` tokenized (prefix specials kept), left-truncated to ``window`` tokens, with its response
    (from character ``response_start``) located on the truncated sequence."""
    if window < 2:
        raise ValueError("window must be at least 2 tokens")
    prefix = prefix_special_ids(tok)
    if getattr(tok, "is_fast", False):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        first = next((i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > response_start), len(ids))
    else:
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        first = len(tok(text[:response_start], add_special_tokens=False)["input_ids"])
    keep = window - len(prefix)
    if keep < 1:
        raise ValueError(f"window {window} leaves no room after {len(prefix)} special tokens")
    dropped = max(0, len(ids) - keep)
    ids = ids[dropped:]
    first = max(first - dropped, 0)
    return Encoded(ids=prefix + ids, first_response=first + len(prefix))


def response_nll(lm: Any, rows: list[list[int]], first: int) -> list[tuple[float, int]]:
    """Summed negative log-likelihood and count of the tokens from position ``first`` on (the first token
    of a sequence is never scored), for equal-length ``rows`` in one forward pass."""
    import torch

    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError("response_nll needs rows of equal length")
    first = max(first, 1)
    if first >= n:
        return [(0.0, 0) for _ in rows]
    device = next(lm.parameters()).device
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    keep = n - first + 1
    with torch.no_grad():
        try:
            logits = lm(input_ids=input_ids, logits_to_keep=keep, use_cache=False).logits
        except TypeError:  # a model without logits_to_keep
            logits = lm(input_ids=input_ids, use_cache=False).logits
        logits = logits[:, -keep:-1].float()
        targets = input_ids[:, first:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view(len(rows), -1)
    count = n - first
    return [(float(row.sum()), count) for row in nll]


def perplexity(nll_sum: float, count: int) -> float:
    """exp(mean negative log-likelihood); NaN when nothing was scored."""
    return math.exp(nll_sum / count) if count else float("nan")
