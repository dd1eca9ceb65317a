"""The SFT loss: per-token cross-entropy times a per-token weight, summed (paper Eq. 2).

The weights decide what the sum means. For one optimizer step with ``M`` sequences over all ranks and
accumulation micro-steps, ``N_i`` target tokens in sequence i, ``T = sum N_i`` and ``K`` data-parallel ranks:

* loss weighting on: every target token of sequence i weighs ``K / (N_i * M)``. Data parallelism averages
  gradients over the K ranks and accumulation adds micro-steps up, so the step optimises
  ``(1/M) * sum_i mean_{t in i} loss_t`` — the mean over sequences of each sequence's mean token loss.
* loss weighting off, packed batching: every target token of pack u weighs ``K / (T_u * P)``, with
  ``T_u`` the target tokens of the pack and ``P`` the packs of the step (all ranks and micro-steps): the
  step optimises ``(1/P) * sum_u mean_{t in u} loss_t``, each pack's token mean averaged over packs and
  processes. This is the paper's Eq. 3 and what the reference computes (a token-mean loss per pack,
  averaged by data parallelism), so the packing-without-weighting ablation is reproduced; it is not a
  bug. Long sequences in short packs weigh more than in one token mean over the step.
* loss weighting off, naive or sorted batching: every target token weighs ``K / T`` — the token mean
  over the whole step, the same whatever the split into ranks and micro-steps.

The reference also cuts its first 32 packs to 32k tokens and doubles their weights as a memory warm-up;
that changes the objective and is not reproduced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from components.trainers.batching import Step, step_rows

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100


def row_weights(
    rows: Iterable[int], n_targets: Mapping[int, int], world_size: int, weighting: bool
) -> dict[int, float]:
    """Per-token loss weight of each row of one optimizer step (see the module docstring).

    ``rows`` are the row indices of the whole step (all ranks, all micro-steps); ``n_targets[i]`` is the
    number of target tokens of row i. Rows without targets weigh 0.
    """
    rows = list(rows)
    if weighting:
        m = sum(1 for i in rows if n_targets[i] > 0)
        return {i: world_size / (n_targets[i] * m) if n_targets[i] else 0.0 for i in rows}
    total = sum(n_targets[i] for i in rows)
    return {i: world_size / total if total else 0.0 for i in rows}


def pack_weights(units: Iterable[Sequence[int]], n_targets: Mapping[int, int], world_size: int) -> dict[int, float]:
    """Per-token loss weight of each row for packing without loss weighting (paper Eq. 3).

    ``units`` are the packs of the whole step (all ranks, all micro-steps), each a sequence of row indices.
    A row of pack u weighs ``world_size / (T_u * P)``: ``T_u`` the pack's target tokens, ``P`` the packs
    that have any. Packs without targets weigh 0 and are not counted.
    """
    totals = [(tuple(u), sum(n_targets[i] for i in u)) for u in units]
    packs = sum(1 for _, t in totals if t > 0)
    return {i: world_size / (t * packs) if t else 0.0 for u, t in totals for i in u}


def step_weights(step: Step, n_targets: Mapping[int, int], world_size: int, weighting: bool,
                 packed: bool) -> dict[int, float]:
    """Per-token loss weight of each row of one optimizer step: ``row_weights`` (loss weighting, or the
    step's token mean) or, for packing without loss weighting, ``pack_weights``."""
    if packed and not weighting:
        return pack_weights((unit for micro in step for rank in micro for unit in rank), n_targets, world_size)
    return row_weights(step_rows(step), n_targets, world_size, weighting)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting ``labels[:, t+1]`` from ``logits[:, t]``, in float32; 0 where ignored.

    Shape ``[B, L-1]``.
    """
    import torch.nn.functional as F

    shifted = logits[:, :-1, :].float()
    target = labels[:, 1:]
    return F.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        target.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(target.shape)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t CE(logits_t, labels_{t+1}) * weights_{t+1}`` — a sum, not a mean (the weights normalise)."""
    return (token_losses(logits, labels) * weights[:, 1:].to(logits.device)).sum()


def chunked_weighted_loss(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor,
                          weights: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``weighted_loss`` from the final hidden states, ``chunk_size`` positions at a time.

    The output layer and the float32 cross-entropy run per chunk under activation checkpointing, so
    neither the full ``[B, L, V]`` logits nor their float32 copy ever exist: at 32k positions and a 150k
    vocabulary that copy alone is about 20 GB. The value and the gradients equal ``weighted_loss``'s.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    # position t predicts labels[t + 1]; the last position predicts nothing
    h = hidden[:, :-1, :]
    target = labels[:, 1:].to(hidden.device)
    w = weights[:, 1:].to(hidden.device)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[1], chunk_size):
        sl = slice(start, start + chunk_size)
        total = total + checkpoint(_chunk_loss, h[:, sl, :], head, target[:, sl], w[:, sl], use_reentrant=False)
    return total


def _chunk_loss(h: torch.Tensor, head: torch.nn.Module, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    logits = head(h).float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none")
    return (ce.view(target.shape) * w).sum()
