"""Attention confined to each sequence of a pack.

The reference calls ``flash_attn_varlen_func`` with the pack's cu_seqlens. Two ways are offered:

* ``mask`` — a block-diagonal causal 4-D boolean mask handed to the model's SDPA attention. Works on any
  device; memory grows with the square of the pack length.
* ``varlen`` — an attention function registered with transformers that reads ``cu_seqlens`` /
  ``max_seqlen`` from the forward kwargs and calls ``flash_attn_varlen_func`` when flash-attn is
  installed (CUDA), else an equivalent loop over the sequences with SDPA.

Position ids are a separate choice (``packed_position_ids``): the reference lets them run 0..L-1 across a
pack; ``reset=True`` restarts them per sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from components.trainers.batching import Batch

VARLEN_ATTENTION = "recipe_varlen"


def flash_attn_available() -> bool:
    """flash-attn importable and a CUDA device present."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def segment_ids(boundaries: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """``[B, L]`` ids: tokens of the same sequence (between two boundaries) share an id."""
    import torch

    out = torch.full((len(boundaries), length), -1, dtype=torch.long)
    for b, bounds in enumerate(boundaries):
        for k in range(len(bounds) - 1):
            out[b, bounds[k] : bounds[k + 1]] = k
    return out


def block_causal_mask(boundaries: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """``[B, 1, L, L]`` boolean mask, True where query i may attend key j: same sequence and j <= i."""
    import torch

    seg = segment_ids(boundaries, length)
    same = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return (same & causal)[:, None, :, :]


def packed_position_ids(boundaries: Sequence[Sequence[int]], length: int, reset: bool) -> torch.Tensor:
    """Position ids of packed rows: restarting at each boundary (``reset``) or 0..L-1 across the row."""
    import torch

    if not reset:
        return torch.arange(length).expand(len(boundaries), length).clone()
    out = torch.zeros(len(boundaries), length, dtype=torch.long)
    for b, bounds in enumerate(boundaries):
        for k in range(len(bounds) - 1):
            out[b, bounds[k] : bounds[k + 1]] = torch.arange(bounds[k + 1] - bounds[k])
    return out


def flat_cu_seqlens(boundaries: Sequence[Sequence[int]], length: int) -> tuple[list[int], int]:
    """All rows' boundaries as one cu_seqlens over the flattened ``[B*L]`` tokens, and the longest segment."""
    flat = [0]
    longest = 0
    for b, bounds in enumerate(boundaries):
        full = list(bounds) if bounds[-1] == length else [*bounds, length]
        for k in range(1, len(full)):
            flat.append(b * length + full[k])
            longest = max(longest, full[k] - full[k - 1])
    return flat, longest


def model_inputs(batch: Batch, attention: str, device: Any) -> dict[str, Any]:
    """Keyword arguments for the model's forward for ``batch`` under ``attention`` (``mask`` or ``varlen``).

    Unpacked batches under ``mask`` use the ordinary 2-D padding mask.
    """
    import torch

    length = batch.input_ids.shape[1]
    kw: dict[str, Any] = {
        "input_ids": batch.input_ids.to(device),
        "position_ids": batch.position_ids.to(device),
    }
    if attention == "varlen":
        flat, longest = flat_cu_seqlens(batch.boundaries, length)
        kw["cu_seqlens"] = torch.tensor(flat, dtype=torch.int32, device=device)
        kw["max_seqlen"] = longest
    elif batch.packed:
        kw["attention_mask"] = block_causal_mask(batch.boundaries, length).to(device)
    else:
        real = torch.zeros(batch.input_ids.shape, dtype=torch.long)
        for b, bounds in enumerate(batch.boundaries):
            real[b, : bounds[1]] = 1
        kw["attention_mask"] = real.to(device)
    return kw


def segment_loop_varlen(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = True,
):
    """``flash_attn_varlen_func`` semantics in plain torch: causal SDPA over each segment separately.

    ``q``: ``[total, heads, dim]``; ``k``/``v``: ``[total, kv_heads, dim]`` (grouped-query heads repeated).
    """
    import torch
    import torch.nn.functional as F

    rep = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    bounds = cu_seqlens_q.tolist()
    for s, e in pairwise(bounds):
        if e == s:
            continue
        qs = q[s:e].transpose(0, 1)
        ks = k[s:e].repeat_interleave(rep, dim=1).transpose(0, 1)
        vs = v[s:e].repeat_interleave(rep, dim=1).transpose(0, 1)
        o = F.scaled_dot_product_attention(
            qs, ks, vs, dropout_p=dropout_p, is_causal=causal, scale=softmax_scale
        )
        out[s:e] = o.transpose(0, 1)
    return out


def register_varlen_attention(varlen_fn: Callable | None = None) -> str:
    """Register the ``varlen`` attention with transformers; returns the name to pass as attn_implementation.

    ``varlen_fn`` defaults to ``flash_attn_varlen_func`` when flash-attn is usable, else
    ``segment_loop_varlen``.
    """
    from transformers import AttentionInterface

    if varlen_fn is None:
        if flash_attn_available():
            from flash_attn import flash_attn_varlen_func as varlen_fn
        else:
            varlen_fn = segment_loop_varlen

    def varlen_attention(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout: float = 0.0,
        scaling: float | None = None,
        cu_seqlens=None,
        max_seqlen=None,
        **kwargs,
    ):
        # transformers hands [B, heads, L, dim]; varlen kernels take the tokens flattened to [B*L, heads, dim]
        if cu_seqlens is None:
            raise ValueError("varlen attention needs cu_seqlens and max_seqlen in the forward call")
        b, h, length, d = query.shape
        q = query.transpose(1, 2).reshape(b * length, h, d)
        k = key.transpose(1, 2).reshape(b * length, key.shape[1], d)
        v = value.transpose(1, 2).reshape(b * length, value.shape[1], d)
        out = varlen_fn(
            q,
            k,
            v,
            cu_seqlens,
            cu_seqlens,
            max_seqlen,
            max_seqlen,
            dropout_p=dropout,
            softmax_scale=scaling,
            causal=True,
        )
        return out.reshape(b, length, h, d), None

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    return VARLEN_ATTENTION
