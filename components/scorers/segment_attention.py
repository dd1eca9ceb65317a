"""Segment attention of chosen query rows, computed through transformers' attention-function interface.

GATEAU's Contextual Awareness Measurement needs, for every layer, how much the response tokens attend to
each segment of the context: the attention probabilities of the response rows, averaged over heads and
over each segment's keys, then over the response rows. Asking a model for ``output_attentions`` builds
the full ``[heads, n, n]`` matrix of every layer (at 32k tokens, tens of GiB per layer). Here an attention
function registered with ``transformers.AttentionInterface`` computes each layer's real output with SDPA
(memory-efficient kernels) and, beside it, only the requested rows' probabilities, ``chunk_rows`` rows at
a time: peak memory grows linearly with the sequence, ``heads × chunk_rows × n`` floats per chunk.

Use::

    lm = load_causal_lm(folder, attn_implementation=register())    # or lm.set_attn_implementation(...)
    with SegmentAttention(rows=(r0, r1), segments=[(s0, e0), ...]) as seg:
        lm(input_ids=ids, logits_to_keep=1)
    seg.result()   # [layers][segments]

Outside a ``SegmentAttention`` block the function is plain SDPA. The mask is the one SDPA would get (the
SDPA mask function is registered under the same name); when the model passes none, attention is causal.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

ATTENTION_NAME = "recipe_segment_rows"

_ACTIVE: ContextVar[SegmentAttention | None] = ContextVar("segment_attention", default=None)


def register() -> str:
    """Register the attention function (and SDPA's mask function) under ``ATTENTION_NAME``; returns the
    name, to pass as ``attn_implementation``. Idempotent."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, segment_rows_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


def segment_rows_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                           dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """The attention function: SDPA's output, plus the active collector's rows when one is open."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                    **kwargs)
    collector = _ACTIVE.get()
    if collector is not None:
        collector.collect(getattr(module, "layer_idx", None), query, key, attention_mask, scaling)
    return out, None


class SegmentAttention:
    """Collects, per layer, the mean over query rows ``rows`` of the head-averaged attention mass per key
    segment divided by the segment's length (the mean probability of its keys).

    ``rows``: ``(start, end)`` query positions; ``segments``: ``(start, end)`` key spans; ``chunk_rows``:
    rows computed at once (memory ``heads × chunk_rows × n`` floats). Batch rows are averaged separately:
    ``result()`` gives ``[layers][segments]`` for batch row 0, ``result(b)`` for row ``b``.
    """

    def __init__(self, rows: tuple[int, int], segments: list[tuple[int, int]], chunk_rows: int = 64) -> None:
        if rows[1] <= rows[0]:
            raise ValueError(f"empty query rows {rows}")
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        self.rows = rows
        self.segments = list(segments)
        self.chunk_rows = chunk_rows
        self.layers: dict[int, Any] = {}  # layer index -> [batch, segments] float32
        self._order: list[int] = []
        self._token: Any = None

    def __enter__(self) -> SegmentAttention:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)

    def collect(self, layer: int | None, query: Any, key: Any, mask: Any, scaling: float | None) -> None:
        import torch

        batch, heads, n_q, dim = query.shape
        kv_heads, n_k = key.shape[1], key.shape[2]
        groups = heads // kv_heads  # grouped-query attention: query head h reads key head h // groups
        if self.rows[1] > n_q:
            raise ValueError(f"query rows {self.rows} beyond the sequence ({n_q} tokens)")
        keys_t = key.float().transpose(-1, -2)[:, :, None]  # [b, kv, 1, d, n_k], not repeated per group
        scale = scaling if scaling is not None else dim ** -0.5
        starts = torch.tensor([s for s, _ in self.segments], device=query.device)
        ends = torch.tensor([e for _, e in self.segments], device=query.device)
        lengths = (ends - starts).float()
        offset = n_k - n_q  # keys before the first query (none without a cache)
        total = torch.zeros(batch, len(self.segments), dtype=torch.float32, device=query.device)
        for c0 in range(self.rows[0], self.rows[1], self.chunk_rows):
            c1 = min(c0 + self.chunk_rows, self.rows[1])
            q = query[:, :, c0:c1].float().reshape(batch, kv_heads, groups, c1 - c0, dim)
            scores = torch.matmul(q, keys_t).reshape(batch, heads, c1 - c0, n_k) * scale
            scores = _masked(scores, mask, c0, c1, offset)
            probs = torch.softmax(scores, dim=-1).mean(dim=1)  # heads averaged: [b, C, n_k]
            cum = torch.nn.functional.pad(probs.cumsum(dim=-1), (1, 0))
            seg = (cum[..., ends] - cum[..., starts]) / lengths  # mean over each segment's keys
            total += seg.sum(dim=1)
        index = layer if layer is not None else len(self._order)
        if index not in self.layers:
            self._order.append(index)
        self.layers[index] = total / (self.rows[1] - self.rows[0])

    def result(self, batch_row: int = 0) -> list[list[float]]:
        """``[layers][segments]`` in layer order."""
        return [self.layers[i][batch_row].tolist() for i in sorted(self._order)]


def _masked(scores: Any, mask: Any, c0: int, c1: int, offset: int) -> Any:
    """``scores`` of query rows ``c0:c1`` with the attention mask applied (causal when there is none)."""
    import torch

    if mask is None:
        rows = torch.arange(c0, c1, device=scores.device)[:, None] + offset
        cols = torch.arange(scores.shape[-1], device=scores.device)[None, :]
        return scores.masked_fill(cols > rows, float("-inf"))
    part = mask[..., c0:c1, :]
    if part.dtype == torch.bool:
        return scores.masked_fill(~part, float("-inf"))
    return scores + part.float()
