"""Runs a loaded recipe's stages in dependency order: each one reused from its finished folder or run,
independent ones side by side.

The pieces: ``runner.fingerprint`` (what a stage depends on), ``runner.folders`` (where each stage lives),
``runner.schedule`` (which stages run now), ``runner.stage`` (one stage's lifecycle), ``runner.map_stage``
and ``runner.whole_stage`` (the two kinds of stage body).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runner.folders import StageFolders
from runner.load import LoadedRecipe
from runner.map_stage import ShardDone
from runner.models import ModelManager
from runner.progress import Progress, current_stage
from runner.results import StageResult
from runner.schedule import StageScheduler
from runner.stage import RunSettings

__all__ = ["Runner", "ShardDone", "StageResult"]

log = logging.getLogger("recipe.run")


class Runner:
    """One run of a loaded recipe into ``runs_dir/<recipe>/``; ``results`` holds each stage's result."""

    def __init__(self, loaded: LoadedRecipe, runs_dir: Path, *, console: Any = None, show_progress: bool = True,
                 retry_failed: bool = False, shard: tuple[int, int] | None = None, jobs: int | None = None) -> None:
        self.loaded = loaded
        self.jobs = jobs  # stages at once (None: no cap; see runner.schedule)
        self.console = console
        self.show_progress = show_progress
        self.settings = RunSettings(retry_failed=retry_failed, shard=shard)
        self.folders = StageFolders.open(loaded, runs_dir)
        locked = (loaded.recipe.lock or {}).get("models", {})
        self.models = ModelManager(self.folders.zoo, self.trained_model_dir, locked=locked, progress=self.say)
        self.results: dict[str, StageResult] = {}
        self.held: set[str] = set()  # stages whose failed records are beyond their limit, and those after them

    def say(self, msg: str) -> None:
        """A line for the log and, dimmed, for the console (model downloads, launches), naming the stage
        that says it."""
        stage = current_stage()
        msg = f"{stage}: {msg}" if stage else msg
        log.info(msg)
        if self.console is not None:
            self.console.print(f"[dim]{msg}[/dim]")

    def trained_model_dir(self, stage: str) -> Path:
        return self.folders.dir(stage) / "model"

    # a launched worker (runner.worker) rebuilds the run and asks these of it
    def stage_dir(self, stage: str) -> Path:
        return self.folders.dir(stage)

    def stage_seed(self, stage: str) -> int:
        return self.folders.seed(stage)

    def run(self, stages: list[str] | None = None) -> dict[str, StageResult]:
        """Run ``stages`` (all by default; callers add their dependencies) in dependency order, those
        whose inputs are ready side by side (``runner.schedule``)."""
        folders = self.folders
        order = self.loaded.order if stages is None else [s for s in self.loaded.order if s in set(stages)]
        folders.set_latest()
        with Progress(self.console, enabled=self.show_progress) as progress:
            scheduler = StageScheduler(self.loaded, folders, self.models, self.settings, progress, self.results,
                                       held=self.held, jobs=self.jobs, say=self.say)
            try:
                scheduler.run(order)
            finally:  # stages finish in any order; results read in the recipe's
                ordered = {s: self.results[s] for s in self.loaded.order if s in self.results}
                self.results.clear()
                self.results.update(ordered)
        return self.results
