"""Runs a loaded recipe's stages in dependency order: each one reused from its finished folder or run.

The pieces: ``runner.fingerprint`` (what a stage depends on), ``runner.folders`` (where each stage lives),
``runner.stage`` (one stage's lifecycle), ``runner.map_stage`` and ``runner.whole_stage`` (the two kinds
of stage body).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runner.errors import StageFailure
from runner.failures import within_limit
from runner.folders import StageFolders
from runner.load import LoadedRecipe
from runner.map_stage import ShardDone
from runner.models import ModelManager
from runner.progress import Progress
from runner.results import StageResult
from runner.stage import RunSettings, StageRun, decide

__all__ = ["Runner", "ShardDone", "StageResult"]

log = logging.getLogger("recipe.run")


class Runner:
    """One run of a loaded recipe into ``runs_dir/<recipe>/``; ``results`` holds each stage's result."""

    def __init__(self, loaded: LoadedRecipe, runs_dir: Path, *, console: Any = None, show_progress: bool = True,
                 retry_failed: bool = False, shard: tuple[int, int] | None = None) -> None:
        self.loaded = loaded
        self.console = console
        self.show_progress = show_progress
        self.settings = RunSettings(retry_failed=retry_failed, shard=shard)
        self.folders = StageFolders.open(loaded, runs_dir)
        locked = (loaded.recipe.lock or {}).get("models", {})
        self.models = ModelManager(self.folders.zoo, self.trained_model_dir, locked=locked, progress=self.say)
        self.results: dict[str, StageResult] = {}
        self.held: set[str] = set()  # stages whose failed records are beyond their limit, and those after them

    def say(self, msg: str) -> None:
        """A line for the log and, dimmed, for the console (model downloads, launches)."""
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
        """Run ``stages`` (all by default; callers add their dependencies) in dependency order."""
        folders = self.folders
        order = self.loaded.order if stages is None else [s for s in self.loaded.order if s in set(stages)]
        folders.set_latest()
        recipe = self.loaded.recipe
        with Progress(self.console, enabled=self.show_progress) as progress:
            for s in order:
                # a stage that ended with more failed records than it allows feeds no later stage: they
                # would be paid for on partial data, then again once its failed records are redone
                short = [u for u in self.loaded.deps[s] if u in self.held]
                if short:
                    self.held.add(s)
                    self.results[s] = StageResult(s, folders.fingerprint(s), "waiting", folders.dir(s),
                                                  error=f"waits for {', '.join(short)}")
                    continue
                decision = decide(folders, s, self.settings.retry_failed, recipe.failure_limit(s))
                if self.settings.shard and s != order[-1] and decision.cached is None:
                    # shards run side by side: none of them may run (or redo records of) an upstream stage
                    raise StageFailure(s, "--shard runs one map stage whose inputs are finished: run the "
                                       "upstream stages first (without --shard)")
                if self.settings.shard and decision.in_place:
                    raise StageFailure(s, "it finished with failed records; a run without --shard tries them again")
                if decision.note:
                    log.warning(decision.note)
                    self.say(decision.note)
                if decision.cached is not None:
                    self.results[s] = decision.cached
                    log.info("stage %s: cached (%s)", s, decision.cached.fingerprint[:12])
                else:
                    stage = StageRun(s, self.loaded, folders, self.models, self.settings,
                                     revision=decision.revision, say=self.say)
                    self.results[s] = stage.run(progress)
                    if decision.in_place:  # its records changed in place: downstream fingerprints change
                        folders.forget(s)
                        folders.set_latest()
                if not within_limit(self.results[s].counts, recipe.failure_limit(s)):
                    self.held.add(s)
        return self.results
