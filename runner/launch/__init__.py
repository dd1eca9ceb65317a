"""Running a stage on several processes (trainers under DDP, FSDP or DeepSpeed) through ``accelerate``.

A stage whose ``launch:`` block (``config.LaunchConfig``) asks for more than one process runs in launched
workers instead of the runner's process: the parent writes the stage's inputs to its scratch folder and
starts ``python -m runner.launch.worker RUN_DIR STAGE`` under ``accelerate launch`` (``command``); each
worker rebuilds the stage's context from the run's lockfile and calls the component's ``run``; the main
process writes the records, which the parent reads back. Components do not know how they are launched.

While the workers run, the parent reads their output line by line: a progress line (``PROGRESS`` and
JSON, printed by the main worker on each ``ctx.advance``) moves the stage's progress bar and its periodic
log line, as for a stage run in-process; every other line (the workers' log lines, such as a trainer's
per-step loss, their warnings and tracebacks) goes to the run's log, and what is not a plain info line
also to the console, as the workers' own output did before.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.launch.config import LaunchConfig

WORKER = "runner.launch.worker"
RECORDS = "worker_records.jsonl"  # in the stage's scratch folder
PROGRESS = "@recipe-progress "  # a worker's progress line: this prefix, then {"n": .., "total": ..}
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
          "CRITICAL": logging.CRITICAL}


def progress_line(n: int, total: int | None) -> str:
    """What the main worker prints for ``ctx.advance(n, total)``."""
    return PROGRESS + json.dumps({"n": n, "total": total})


def _console_shows_logs() -> bool:
    """Whether the runner's log already reaches the console (``recipe run -v``)."""
    return any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)


def relay(lines: Any, advance: Callable[[int, int | None], None], stage: str) -> list[str]:
    """Relay the workers' output (see the module docstring); returns its last lines, for an error message."""
    from registry.secrets import redact

    log = logging.getLogger(f"recipe.{stage}.worker")
    echo = not _console_shows_logs()
    tail: list[str] = []
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith(PROGRESS):
            try:
                data = json.loads(line[len(PROGRESS):])
                advance(int(data.get("n", 1)), data.get("total"))
                continue
            except (ValueError, TypeError, AttributeError):
                pass  # not ours after all: an ordinary line
        if not line.strip():
            continue
        level = LEVELS.get(line.split(" ", 1)[0], logging.WARNING)
        log.log(max(level, logging.INFO), "%s", line)
        if echo and level != logging.INFO:
            print(redact(line), file=sys.stderr, flush=True)
        tail = [*tail[-19:], line]
    return tail


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
    # progress lines arrive as they are printed; the workers' own progress bars (weights loading) would
    # arrive as single lines of carriage returns: the stage's bar shows the progress instead
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    with subprocess.Popen(cmd, cwd=Path.cwd(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, encoding="utf-8", errors="replace") as proc:
        tail = relay(proc.stdout, ctx.advance, stage)
        returncode = proc.wait()
    if returncode != 0:
        last = f"; last output: {tail[-1]}" if tail else ""
        raise StageFailure(stage, f"launched workers exited with status {returncode} (see run.log){last}")
    if not out.exists():
        raise StageFailure(stage, "launched workers wrote no records")
    return read_jsonl(out)
