"""The plan of one training run: which rows train, all its optimizer steps, and its fingerprint.

The plan is a pure function of the rows, the params, the seed and the world size, so every rank builds
the same one and a resumed run finds its place from the step number alone; the fingerprint tells a
checkpoint made for other data or settings from one this run can continue.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.trainers.batching import EpochPlan, Step, plan_epoch
from components.trainers.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    from components.trainers.sft import SFTParams

Pair = tuple[list[int], list[int]]  # (input_ids, labels) of one row


@dataclass
class RunPlan:
    """Rows kept for training, their target counts, the optimizer steps and the counts worth reporting."""

    pairs: list[Pair]
    targets: list[int]  # target tokens per kept row
    steps: list[Step]
    step_epoch: list[int]  # the epoch of each step
    fingerprint: str
    stats: dict[str, Any]


def make_plan(rows: list[dict], p: SFTParams, seed: int, world_size: int) -> RunPlan:
    """The run's plan for tokenized ``rows``; raises ValueError when nothing can be trained."""
    pairs, targets, no_target = prepare_rows(rows, p.max_length)
    if not pairs:
        raise ValueError("train.sft: no row has a target token to train on")
    steps, step_epoch, first = plan_steps([len(ids) for ids, _ in pairs], p, seed, world_size)
    if not steps:
        raise ValueError("train.sft: the batching plan is empty (every row longer than max_pack_tokens?)")
    return RunPlan(
        pairs=pairs,
        targets=targets,
        steps=steps,
        step_epoch=step_epoch,
        fingerprint=plan_fingerprint(pairs, p, seed, world_size),
        stats=plan_stats(len(rows), no_target, first, world_size, len(steps)),
    )


def prepare_rows(rows: list[dict], max_length: int) -> tuple[list[Pair], list[int], int]:
    """Rows cut to ``max_length``, their target counts, and how many rows were dropped for having none.

    The first label of a row never counts: nothing in the row predicts it.
    """
    pairs, targets, dropped = [], [], 0
    for r in rows:
        ids, labels = list(r["input_ids"][:max_length]), list(r["labels"][:max_length])
        if len(ids) != len(labels):
            raise ValueError(f"record {r.get('id', '?')}: input_ids and labels differ in length")
        n = sum(1 for lab in labels[1:] if lab != IGNORE_INDEX)
        if n == 0:
            dropped += 1
            continue
        pairs.append((ids, labels))
        targets.append(n)
    return pairs, targets, dropped


def plan_steps(
    lengths: list[int], p: SFTParams, seed: int, world_size: int
) -> tuple[list[Step], list[int], EpochPlan]:
    """All optimizer steps of the run (epochs concatenated, epoch e shuffled with seed + e), each step's
    epoch, and the first epoch's plan (for its counts)."""
    steps: list[Step] = []
    epochs: list[int] = []
    first: EpochPlan | None = None
    e = 0
    while True:
        plan = plan_epoch(
            lengths,
            p.batching,
            seed=seed + e,
            world_size=world_size,
            per_device_batch_size=p.per_device_batch_size,
            gradient_accumulation_steps=p.gradient_accumulation_steps,
            group_size=p.group_size,
            max_pack_tokens=p.max_pack_tokens or p.max_length,
            drop_last_pack=p.drop_last_pack,
        )
        first = first or plan
        steps += plan.steps
        epochs += [e] * len(plan.steps)
        e += 1
        if not plan.steps:
            break
        if p.max_steps is None and e >= p.epochs:
            break
        if p.max_steps is not None and len(steps) >= p.max_steps:
            break
    if p.max_steps is not None:
        steps, epochs = steps[: p.max_steps], epochs[: p.max_steps]
    return steps, epochs, first


def plan_fingerprint(pairs: list[Pair], p: SFTParams, seed: int, world: int) -> str:
    """A hash of everything the plan and the weights depend on (not the checkpoint settings)."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [p.model_dump(mode="json", exclude={"save_steps", "save_total_limit"}), seed, world]
        ).encode()
    )
    for ids, labels in pairs:
        h.update(array("q", ids).tobytes() + b"|" + array("q", labels).tobytes() + b";")
    return h.hexdigest()[:16]


def plan_stats(rows_in: int, no_target: int, plan: EpochPlan, world: int, total: int) -> dict[str, Any]:
    """The counts ``summarize`` reports: rows in, rows left out and why, the size of the run."""
    return {
        "rows": rows_in,
        "rows_without_target": no_target,
        "world_size": world,
        "planned_steps": total,
        "skipped_too_long": len(plan.skipped_too_long),
        "dropped_last_pack_rows": len(plan.dropped_last_pack),
        "sorted_remainder_group": plan.remainder_group,
    }
