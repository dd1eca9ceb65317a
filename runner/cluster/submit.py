"""Submitting the shards of map stages as submitit job arrays, waiting for them, merging (see ``runner.cluster``)."""


from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.cluster.job import ShardJob
from runner.cluster.options import ExecutorOptions, executor_parameters
from runner.errors import StageFailure
from runner.load import LoadedRecipe

EXECUTORS = ("slurm", "local")


def make_executor(kind: str, folder: Path, params: dict[str, Any], stage: str):
    """A submitit executor of ``kind`` writing its scripts and logs under ``folder``, for ``stage``."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=kind)
    except RuntimeError as e:  # no `srun` on this machine
        raise StageFailure(stage, f"cannot submit to {kind}: {e} (`--executor local` runs the shards "
                           "on this machine)") from e
    executor.update_parameters(**params)
    return executor


def run_shards(executor: Any, job: ShardJob, say: Callable[[str], None]) -> None:
    """Submit ``job``'s shards as one job array and wait for all of them; a failed shard is a StageFailure
    naming it and its log (finished shards keep their work: running again submits only what is left)."""
    jobs = executor.map_array(job, list(range(job.shards)))
    array_id = str(jobs[0].job_id).split("_")[0]
    say(f"{job.stage}: submitted {job.shards} shard job(s) (array {array_id}); waiting for them")
    failed = []
    for index, submitted in enumerate(jobs):
        try:
            submitted.result()
        except Exception as e:  # noqa: BLE001 - every shard is waited for, then the failures are reported
            why = _last_error(str(e)) or type(e).__name__
            failed.append(f"shard {index} ({why}; log: {submitted.paths.stderr})")
    if failed:
        raise StageFailure(job.stage, f"{len(failed)} of {job.shards} shard jobs failed: " + "; ".join(failed))
    say(f"{job.stage}: all {job.shards} shard job(s) finished")


def _last_error(text: str) -> str | None:
    """The last ``SomeError: message`` line of a job's traceback (submitit appends its log paths after it)."""
    lines = [line for line in text.splitlines() if re.match(r"[A-Za-z_][\w.]*: ", line)]
    return lines[-1] if lines else None


def run_with_executor(loaded: LoadedRecipe, runs_dir: Path, *, kind: str, shards: int, profile: str | None,
                      overrides: list[str], stages: list[str] | None = None, say: Callable[[str], None] = print,
                      load_options: dict | None = None, **run_kwargs: Any):
    """Run the recipe with every unfinished map stage split into ``shards`` jobs of executor ``kind``
    (``slurm`` or ``local``); returns the final run's ``RunOutcome`` (``run_kwargs`` go to it)."""
    from runner.folders import StageFolders
    from runner.session import run_recipe, with_dependencies

    runs_dir = runs_dir.resolve()
    order = with_dependencies(loaded, stages) if stages else loaded.order
    opts = loaded.recipe.executor or ExecutorOptions()
    folder = Path(opts.folder) if opts.folder else runs_dir / loaded.name / "executor"
    quiet = {k: v for k, v in run_kwargs.items() if k != "publish"}
    for stage in [s for s in order if loaded.components[s].shape == "map"]:
        upstream = loaded.deps[stage]
        if upstream:
            outcome = run_recipe(loaded, runs_dir, stages=list(upstream), publish=False, **quiet)
            if outcome.exit_code:
                return outcome  # failed records beyond their limit upstream: the shards would run on partial data
        if StageFolders.open(loaded, runs_dir).is_done(stage):
            continue
        executor = make_executor(kind, folder / stage, executor_parameters(opts, f"{loaded.name}.{stage}"),
                                 stage)
        job = ShardJob(recipe=str(Path(loaded.path).resolve()), profile=profile, overrides=tuple(overrides),
                       runs_dir=str(runs_dir), cwd=os.getcwd(), stage=stage, shards=shards,
                       load_options=dict(load_options or {}))
        run_shards(executor, job, say)
    return run_recipe(loaded, runs_dir, stages=stages, **run_kwargs)
