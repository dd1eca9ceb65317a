"""One launched process of a stage: ``python -m runner.launch.worker RUN_DIR STAGE`` (see ``runner.launch``).

Every rank rebuilds the recipe from the run's lockfile, reads the stage's inputs that the parent left in
the scratch folder, and runs the component with a context like the runner's own; only the main process
(rank 0) writes the records and the side statistics, and prints the progress lines and info log lines
that the parent relays (``runner.launch.relay``); the other ranks log warnings and errors only.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging() -> None:
    """Log lines on stdout as ``LEVEL name: message``, which the parent reads (and masks) line by line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str]) -> int:
    from registry.jsonio import read_jsonl, write_jsonl
    from runner.callcache import Meter
    from runner.context import StageContext
    from runner.execute import Runner
    from runner.launch import RECORDS, input_file, progress_line
    from runner.load import load_recipe

    setup_logging()
    run_root, stage = Path(argv[0]), argv[1]
    loaded = load_recipe(run_root / "recipe.lock.yaml")
    runner = Runner(loaded, run_root.parent, show_progress=False)
    comp = loaded.components[stage]
    sdir = runner.stage_dir(stage)
    scratch = sdir / "scratch"
    inputs = {port: read_jsonl(input_file(scratch, port)) for port in loaded.recipe.stages[stage].inputs}

    class WorkerContext(StageContext):
        """The stage's context in one launched process: only the main process keeps side statistics and
        reports progress (to the parent, on stdout)."""

        def save_stats(self, name: str, data: Any) -> None:
            if is_main_process():
                super().save_stats(name, data)

        def advance(self, n: int = 1, total: int | None = None) -> None:
            if is_main_process():
                print(progress_line(n, total), flush=True)

    ctx = WorkerContext(stage=stage, params=comp.params, seed=runner.stage_seed(stage), stage_dir=sdir,
                        bindings=loaded.bindings.get(stage, {}), models=runner.models, inputs=inputs, meter=Meter())
    ok = False
    try:
        records = comp.run(inputs, ctx)
        if is_main_process():
            write_jsonl(scratch / RECORDS, list(records or []))
        ok = True
    finally:
        close_process_group(wait_for_others=ok)
    return 0


def close_process_group(*, wait_for_others: bool) -> None:
    """Tear the process group down on every rank before the process exits.

    Left to the interpreter's exit, ProcessGroupGloo's destructor can hang when another rank has already
    gone; so every rank that finished meets the others at a barrier, then destroys the group explicitly.
    A rank that failed skips the barrier (the others may be inside a collective that will never complete;
    the launcher stops them) and only destroys its own group."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if wait_for_others:
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
