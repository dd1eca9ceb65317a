"""One ``recipe run``: lockfile, log, stages, report, publish — around the Runner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.atomic import atomic_write_text
from registry.secrets import redact
from runner.execute import Runner
from runner.load import LoadedRecipe
from runner.lock import build_lock, dump_lock
from runner.map_stage import ShardDone
from runner.report import build_report

log = logging.getLogger("recipe.run")


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
               jobs: int | None = None) -> str:
    runner = Runner(loaded, runs_dir, console=console, show_progress=progress, retry_failed=retry_failed,
                    shard=shard, jobs=jobs)
    folders = runner.folders
    root = folders.root
    if setup_logging:
        setup_logging(root)
    log.info("run %s from %s%s", loaded.name, loaded.path, f" (profile {loaded.profile})" if loaded.profile else "")
    atomic_write_text(root / "recipe.yaml", redact(Path(loaded.path).read_text(encoding="utf-8")))
    atomic_write_text(root / "recipe.lock.yaml", dump_lock(build_lock(folders, runner.models.pins())))
    order = with_dependencies(loaded, stages) if stages else None
    error = None
    try:
        runner.run(order)
    except ShardDone as e:
        return f"[bold green]shard {shard[0]}/{shard[1]} done[/]: {e}"
    except BaseException as e:
        error = str(e) or type(e).__name__
        raise
    finally:
        atomic_write_text(root / "recipe.lock.yaml", dump_lock(build_lock(folders, runner.models.pins())))
        atomic_write_text(root / "report.md", build_report(folders, runner.results, error))
        runner.models.close()
    published = []
    pub = loaded.recipe.publish
    if publish and pub is not None and order is None:
        from runner.publish import publish_run

        published = publish_run(root, pub.to, artifacts=pub.artifacts, private=pub.private,
                                recipe_name=loaded.name)
    ran = [s for s, r in runner.results.items() if r.status == "ran"]
    cached = [s for s, r in runner.results.items() if r.status == "cached"]
    lines = [f"[bold green]done[/] {loaded.name}: {len(ran)} stage(s) ran, {len(cached)} cached",
             f"report: {root / 'report.md'}"]
    lines += [f"published: {p}" for p in published]
    return "\n".join(lines)
