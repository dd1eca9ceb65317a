"""Multi-process stages (trainers under FSDP/DeepSpeed): the stage runs in `accelerate launch` workers.

The parent writes the stage's inputs to its scratch folder and launches ``python -m runner.worker``
processes through accelerate; each worker rebuilds the recipe from the run's lockfile and runs the
component; the main process writes the records the parent then reads back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import StageFailure
from runner.schema import StageSpec
from runner.store import read_jsonl, write_jsonl


def run_launched(spec: StageSpec, stage: str, ctx: Any, *, run_root: Path,
                 say: Callable[[str], None]) -> list[dict]:
    from components.trainers.launch import LaunchConfig, accelerate_command

    launch = LaunchConfig.model_validate(spec.launch)
    for port, records in ctx.inputs.items():
        write_jsonl(ctx.scratch / f"input.{port}.jsonl", records)
    out = ctx.scratch / "worker_records.jsonl"
    out.unlink(missing_ok=True)
    args = [str(run_root), stage]
    cmd = accelerate_command(launch, "runner.worker", args)
    say(f"{stage}: launching {launch.num_processes} processes: {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=Path.cwd())
    if proc.returncode != 0:
        raise StageFailure(stage, f"launched workers exited with status {proc.returncode} (see run.log)")
    if not out.exists():
        raise StageFailure(stage, "launched workers wrote no records")
    return read_jsonl(out)
