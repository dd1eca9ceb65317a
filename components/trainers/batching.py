"""LongAlign's three batching strategies as plain index plans.

A plan says, for every optimizer step, which rows each data-parallel rank feeds to the model in each
gradient-accumulation micro-step. It is pure Python and deterministic in ``(lengths, options, seed)``,
so every rank builds the same plan, and a resumed run finds its place from the step number alone.

Vocabulary:

* a *unit* is what becomes one row of a model input tensor: one training row (``naive``/``sorted``) or
  several rows packed end to end (``packed``);
* a *micro-step* hands each of the ``world_size`` ranks a list of units (its per-device batch); a rank may
  get an empty list at the very end of an epoch (the trainer then feeds a zero-weight filler row so that
  gradient synchronisation still happens on every rank);
* a *step* is ``gradient_accumulation_steps`` micro-steps followed by one optimizer update.

Strategies:

* ``naive`` — rows shuffled with the seed; each rank gets ``per_device_batch_size`` rows per micro-step,
  padded to the longest of them.
* ``sorted`` — rows sorted by their true length (ties by position), cut into groups of ``group_size``
  consecutive rows, group order shuffled with the seed, one group per micro-step split evenly over the
  ranks. The reference drops the last incomplete group; here it is kept as one smaller group (its rows are
  the longest ones) and shuffled with the others, so no row is lost. The reference computes lengths with
  ``argmin(input_ids) - 1``, which is wrong for full-length rows; true lengths are used here.
* ``packed`` — rows packed greedily in input order into packs of at most ``max_pack_tokens`` tokens: a
  row longer than that is skipped (and counted), a row that does not fit closes the current pack and opens
  a new one. The last, partly filled pack is kept; ``drop_last_pack=True`` drops it as the reference
  does. Pack order is shuffled with the seed; each rank gets ``per_device_batch_size`` packs per
  micro-step.

Example::

    >>> packs = pack_rows([3, 4, 9, 2, 5], max_tokens=8)
    >>> packs.packs, packs.skipped
    ([[0, 1], [3, 4]], [2])
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported only where tensors are built
    import torch

Strategy = Literal["naive", "sorted", "packed"]
Unit = tuple[int, ...]  # row indices concatenated into one model input row
MicroStep = list[list[Unit]]  # per rank: the units of its batch
Step = list[MicroStep]  # gradient-accumulation micro-steps of one optimizer step


@dataclass
class PackResult:
    """Greedy packing of rows: the packs (row indices in order), rows too long to pack, a dropped pack."""

    packs: list[list[int]]
    skipped: list[int] = field(default_factory=list)  # rows longer than the pack size
    dropped: list[int] = field(default_factory=list)  # rows of the last pack when drop_last is set


@dataclass
class EpochPlan:
    """The optimizer steps of one epoch and what was left out of it (and why)."""

    steps: list[Step]
    skipped_too_long: list[int] = field(default_factory=list)
    dropped_last_pack: list[int] = field(default_factory=list)
    remainder_group: int = 0  # sorted: size of the smaller last group (0 when the rows divide evenly)


def pack_rows(lengths: Sequence[int], max_tokens: int, drop_last: bool = False) -> PackResult:
    """Greedy, in-order packing into packs of at most ``max_tokens`` tokens (LongAlign ``sort_and_group``)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    packs: list[list[int]] = []
    skipped: list[int] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(lengths):
        if n > max_tokens:
            skipped.append(i)
            continue
        if used + n > max_tokens:  # close the pack; the row opens the next one
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    dropped: list[int] = []
    if current:
        if drop_last:
            dropped = current
        else:
            packs.append(current)
    return PackResult(packs=packs, skipped=skipped, dropped=dropped)


def pack_boundaries(lengths: Sequence[int]) -> list[int]:
    """cu_seqlens of one pack: ``[0, e1, e2, ..., total]`` — the cumulative ends of its rows."""
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


def sorted_groups(lengths: Sequence[int], group_size: int, seed: int) -> tuple[list[list[int]], int]:
    """Rows sorted by length, cut into groups of ``group_size``, group order shuffled with ``seed``.

    Returns the groups and the size of the smaller last group (0 if none). That group holds the longest
    rows; it is kept and shuffled like the others.
    """
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups = [order[i : i + group_size] for i in range(0, len(order), group_size)]
    remainder = len(order) % group_size
    random.Random(seed).shuffle(groups)
    return groups, remainder


def split_even(units: Sequence[Unit], parts: int) -> list[list[Unit]]:
    """Cut ``units`` into ``parts`` contiguous chunks; sizes differ by at most one, earlier ones bigger."""
    base, extra = divmod(len(units), parts)
    out, start = [], 0
    for r in range(parts):
        size = base + (1 if r < extra else 0)
        out.append(list(units[start : start + size]))
        start += size
    return out


def plan_epoch(
    lengths: Sequence[int],
    strategy: Strategy,
    *,
    seed: int,
    world_size: int = 1,
    per_device_batch_size: int = 1,
    gradient_accumulation_steps: int = 1,
    group_size: int | None = None,
    max_pack_tokens: int | None = None,
    drop_last_pack: bool = False,
) -> EpochPlan:
    """The steps of one epoch over rows of the given token lengths (see the module docstring)."""
    if world_size < 1 or per_device_batch_size < 1 or gradient_accumulation_steps < 1:
        raise ValueError("world_size, per_device_batch_size and gradient_accumulation_steps must be >= 1")
    per_micro = world_size * per_device_batch_size
    plan = EpochPlan(steps=[])
    if strategy == "naive":
        order = list(range(len(lengths)))
        random.Random(seed).shuffle(order)
        micro_units = _chunks([(i,) for i in order], per_micro)
    elif strategy == "sorted":
        groups, plan.remainder_group = sorted_groups(lengths, group_size or per_micro, seed)
        micro_units = [[(i,) for i in g] for g in groups]
    elif strategy == "packed":
        if max_pack_tokens is None:
            raise ValueError("packed batching needs max_pack_tokens")
        packed = pack_rows(lengths, max_pack_tokens, drop_last_pack)
        plan.skipped_too_long, plan.dropped_last_pack = packed.skipped, packed.dropped
        units = [tuple(p) for p in packed.packs]
        random.Random(seed).shuffle(units)
        micro_units = _chunks(units, per_micro)
    else:
        raise ValueError(f"unknown batching strategy {strategy!r}")
    micro = [split_even(u, world_size) for u in micro_units]
    plan.steps = _chunks(micro, gradient_accumulation_steps)
    return plan


def step_rows(step: Step) -> list[int]:
    """Every row index used in one step, over all ranks and micro-steps (M = its length)."""
    return [i for micro in step for rank in micro for unit in rank for i in unit]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class Batch:
    """One rank's micro-batch as tensors (built by ``collate``).

    ``boundaries[b]`` is row b's cu_seqlens ``[0, e1, ..., e_m]`` over its real tokens, followed by the
    padded length when the row is padded (the padding forms a segment of its own, as in the reference).
    """

    input_ids: torch.Tensor  # long [B, L]
    labels: torch.Tensor  # long [B, L], -100 where no loss
    weights: torch.Tensor  # float32 [B, L], the loss weight of each label
    position_ids: torch.Tensor  # long [B, L]
    boundaries: list[list[int]]
    real_tokens: int
    padded_tokens: int
    packed: bool


def collate(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]],
    units: Sequence[Unit],
    row_weight: dict[int, float],
    *,
    packed: bool,
    pad_id: int,
    reset_position_ids: bool = False,
) -> Batch:
    """Concatenate each unit's rows, pad the units to the longest one and build the label weights.

    ``rows[i]`` is ``(input_ids, labels)``; ``row_weight[i]`` the loss weight of each target token of row
    i. The label of the first token of every row is set to -100: it is never predicted from its own
    sequence (in a pack it would be predicted from the previous row's last token). Position ids restart
    per row when ``reset_position_ids`` is set, otherwise run 0..L-1 across the pack (the reference).
    An empty ``units`` gives a one-token filler row with weight 0 (keeps data-parallel ranks in step).
    """
    import torch

    seqs: list[tuple[list[int], list[int], list[float], list[int], list[int]]] = []
    for unit in units:
        ids: list[int] = []
        labels: list[int] = []
        weights: list[float] = []
        positions: list[int] = []
        for i in unit:
            r_ids, r_labels = rows[i]
            n = len(r_ids)
            w = row_weight.get(i, 0.0)
            start = len(ids)
            ids.extend(r_ids)
            labels.append(-100)
            labels.extend(r_labels[1:n])
            weights.extend(0.0 if lab == -100 else w for lab in labels[start:])
            positions.extend(range(n) if reset_position_ids else range(start, start + n))
        seqs.append((ids, labels, weights, positions, pack_boundaries([len(rows[i][0]) for i in unit])))
    if not seqs:
        seqs.append(([pad_id], [-100], [0.0], [0], [0, 1]))
    width = max(len(s[0]) for s in seqs)
    out_ids, out_labels, out_weights, out_pos, bounds = [], [], [], [], []
    real = 0
    for ids, labels, weights, positions, b in seqs:
        pad = width - len(ids)
        real += len(ids)
        nxt = positions[-1] + 1 if positions else 0
        out_ids.append(ids + [pad_id] * pad)
        out_labels.append(labels + [-100] * pad)
        out_weights.append(weights + [0.0] * pad)
        out_pos.append(positions + list(range(nxt, nxt + pad)))
        bounds.append(b + [width] if pad else b)
    if not units:
        real = 0
    return Batch(
        input_ids=torch.tensor(out_ids, dtype=torch.long),
        labels=torch.tensor(out_labels, dtype=torch.long),
        weights=torch.tensor(out_weights, dtype=torch.float32),
        position_ids=torch.tensor(out_pos, dtype=torch.long),
        boundaries=bounds,
        real_tokens=real,
        padded_tokens=len(seqs) * width - real if units else 0,
        packed=packed,
    )
