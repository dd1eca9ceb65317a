"""Whole stages: the component gets all its inputs at once (``run``), in this process or in launched ones.

A component that ``streams`` gets each input as a lazily read ``Records`` and may return any iterable
(a generator): the stage's records are then written as they come, never all held in memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from components.base import Component, is_streaming
from runner.callcache import set_scope
from runner.context import StageContext
from runner.results import StageOutput
from runner.schema import StageSpec


def run_whole(comp: Component, stage: str, spec: StageSpec, ctx: StageContext, inputs: dict[str, list[dict]], *,
              run_root: Path, say: Callable[[str], None]) -> StageOutput:
    """Run a whole stage; one with ``launch: {num_processes: >1}`` runs in ``accelerate launch`` workers,
    which rebuild the recipe from the lockfile in ``run_root``."""
    set_scope(f"whole:{stage}")
    if spec.launch is not None and spec.launch.num_processes > 1:
        from runner.launch import run_launched

        records = run_launched(spec.launch, stage, ctx, run_root=run_root, say=say)
    else:
        records = comp.run(inputs, ctx)
    n_in = sum(len(v) for v in inputs.values())
    if is_streaming(comp):  # any iterable, written as it comes; "out" is counted then
        return StageOutput(records if records is not None else [], [], {"in": n_in, "failed": 0})
    records = list(records or [])
    return StageOutput(records, [], {"in": n_in, "out": len(records), "failed": 0})
