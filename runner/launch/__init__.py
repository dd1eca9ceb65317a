"""Running a stage on several processes (trainers under DDP, FSDP or DeepSpeed) through ``accelerate``.

A stage whose ``launch:`` block (``config.LaunchConfig``) asks for more than one process runs in launched
workers instead of the runner's process: the parent writes the stage's inputs to its scratch folder and
starts ``python -m runner.launch.worker RUN_DIR STAGE`` under ``accelerate launch`` (``command``); each
worker rebuilds the stage's context from the run's lockfile and calls the component's ``run``; the main
process writes the records, which the parent reads back. Components do not know how they are launched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.launch.config import LaunchConfig

WORKER = "runner.launch.worker"
RECORDS = "worker_records.jsonl"  # in the stage's scratch folder


def input_file(scratch: Path, port: str) -> Path:
    """Where the parent leaves a stage's input port for the workers."""
    return scratch / f"input.{port}.jsonl"


def run_launched(launch: LaunchConfig, stage: str, ctx: Any, *, run_root: Path,
                 say: Callable[[str], None]) -> list[dict]:
    """Run ``stage`` in launched workers and return its records (raises StageFailure when they fail).

    The workers rebuild the stage from the lockfile in ``run_root``; ``say`` tells the user the command."""
    from registry.jsonio import read_jsonl, write_jsonl
    from runner.errors import StageFailure
    from runner.launch.command import accelerate_command

    for port, records in ctx.inputs.items():
        write_jsonl(input_file(ctx.scratch, port), records)
    out = ctx.scratch / RECORDS
    out.unlink(missing_ok=True)
    cmd = accelerate_command(launch, WORKER, [str(run_root), stage])
    say(f"{stage}: launching {launch.num_processes} processes: {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=Path.cwd())
    if proc.returncode != 0:
        raise StageFailure(stage, f"launched workers exited with status {proc.returncode} (see run.log)")
    if not out.exists():
        raise StageFailure(stage, "launched workers wrote no records")
    return read_jsonl(out)
