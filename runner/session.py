"""One ``recipe run``: the run folder's lock, lockfile, log, stages, failures summary, report, publish —
around the Runner."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.atomic import atomic_write_text
from registry.secrets import redact
from runner.execute import Runner
from runner.failures import StageFailures, stage_failures
from runner.load import LoadedRecipe
from runner.lock import build_lock, dump_lock
from runner.map_stage import ShardDone
from runner.report import build_report
from runner.report_html import LAST_RUN, REPORT_FILE, build_html
from runner.run_lock import RunFolderLock

log = logging.getLogger("recipe.run")

EXIT_FAILED_RECORDS = 3  # the run finished, but a stage has more failed records than it allows


@dataclass
class RunOutcome:
    """How a run ended: ``text``, its first line for the console (rich markup), ``details`` (plain lines:
    the failures summary, where the report is, what was published), and the exit status (0, or 3 when a
    stage's failed records are beyond its limit)."""

    text: str
    details: list[str] = field(default_factory=list)
    failures: list[StageFailures] = field(default_factory=list)
    exit_code: int = 0

    def __str__(self) -> str:
        return "\n".join([self.text, *self.details])


def with_dependencies(loaded: LoadedRecipe, stages: list[str]) -> list[str]:
    want: set[str] = set()
    todo = list(stages)
    while todo:
        s = todo.pop()
        if s in want:
            continue
        if s not in loaded.deps:
            from registry.suggest import suggestion
            from runner.errors import StageFailure

            raise StageFailure(s, "no such stage" + suggestion(s, loaded.order))
        want.add(s)
        todo.extend(loaded.deps[s])
    return [s for s in loaded.order if s in want]


def run_recipe(loaded: LoadedRecipe, runs_dir: Path, *, console: Any = None, progress: bool = True,
               retry_failed: bool = False, publish: bool = True, stages: list[str] | None = None,
               setup_logging: Callable[[Path], None] | None = None, shard: tuple[int, int] | None = None,
               wait: bool = False, jobs: int | None = None) -> RunOutcome:
    """Run ``loaded`` into ``runs_dir/<recipe>/``, holding the folder's lock (``wait``: wait for a run
    that holds it instead of raising ``RunFolderBusy``); ``jobs``: at most that many stages at once
    (``runner.schedule``)."""
    runner = Runner(loaded, runs_dir, console=console, show_progress=progress, retry_failed=retry_failed,
                    shard=shard, jobs=jobs)
    with RunFolderLock(runner.folders.root, shard=shard, stage=stages[0] if shard and stages else None,
                       wait=wait, say=runner.say):
        return _run(runner, loaded, publish=publish, stages=stages, setup_logging=setup_logging, shard=shard)


def _write(path: Path, text: Callable[[], str]) -> None:
    """Write a run-level file after the stages; a failure here (a full disk) must not hide the run's own
    outcome, so it is logged instead."""
    try:
        atomic_write_text(path, text())
    except Exception as e:  # noqa: BLE001 - reported, never raised over the run's outcome
        log.warning("could not write %s: %s", path, e)


def _run(runner: Runner, loaded: LoadedRecipe, *, publish: bool, stages: list[str] | None,
         setup_logging: Callable[[Path], None] | None, shard: tuple[int, int] | None) -> RunOutcome:
    folders = runner.folders
    root = folders.root
    if setup_logging:
        setup_logging(root)
    log.info("run %s from %s%s", loaded.name, loaded.path, f" (profile {loaded.profile})" if loaded.profile else "")
    atomic_write_text(root / "recipe.yaml", redact(Path(loaded.path).read_text(encoding="utf-8")))
    atomic_write_text(root / "recipe.lock.yaml", dump_lock(build_lock(folders, runner.models.pins())))
    order = with_dependencies(loaded, stages) if stages else None
    error = None
    failures: list[StageFailures] = []
    try:
        runner.run(order)
    except ShardDone as e:
        return RunOutcome(f"[bold green]shard {shard[0]}/{shard[1]} done[/]: {e}")
    except BaseException as e:
        error = str(e) or type(e).__name__
        raise
    finally:
        failures = [f for s, r in runner.results.items()
                    if (f := stage_failures(s, r.counts, loaded.recipe.failure_limit(s), r.dir)) is not None]
        _write(root / "recipe.lock.yaml", lambda: dump_lock(build_lock(folders, runner.models.pins())))
        _write(root / "report.md", lambda: build_report(folders, runner.results, error, failures))
        statuses = {s: r.status for s, r in runner.results.items()}
        _write(root / LAST_RUN, lambda: json.dumps({"statuses": statuses, "error": error,
                                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        _write(root / REPORT_FILE, lambda: build_html(root, statuses, error))
        runner.models.close()
    over = [f for f in failures if f.over]
    details = [line for f in failures for line in f.lines()]
    waiting = [s for s, r in runner.results.items() if r.status == "waiting"]
    if waiting:
        details.append(f"not run, waiting for the failed records above: {', '.join(waiting)}")
    for line in details:
        log.warning("%s", line)
    published = []
    pub = loaded.recipe.publish
    if publish and pub is not None and order is None and not over:
        from runner.publish import publish_run

        published = publish_run(root, pub.to, artifacts=pub.artifacts, private=pub.private,
                                recipe_name=loaded.name)
    ran = [s for s, r in runner.results.items() if r.status == "ran"]
    cached = [s for s, r in runner.results.items() if r.status == "cached"]
    counted = f"{len(ran)} stage(s) ran, {len(cached)} cached"
    if over:
        head = (f"[bold yellow]finished with failed records[/] {loaded.name}: {counted}; "
                f"{len(over)} stage(s) over their max_failed")
        details.append("Run the same command again to try the failed records again (records that succeeded "
                       "are kept and not paid again), or raise the stage's max_failed to accept them."
                       + (" Nothing was published." if publish and pub is not None and order is None else ""))
    else:
        head = f"[bold green]done[/] {loaded.name}: {counted}"
    details += [f"report: {root / REPORT_FILE} (and report.md)"] + [f"published: {p}" for p in published]
    return RunOutcome(head, [redact(d) for d in details], failures, EXIT_FAILED_RECORDS if over else 0)
