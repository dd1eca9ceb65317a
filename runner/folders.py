"""Where each stage of one recipe's run lives: its fingerprint, its folder, manifest and records.

``StageFolders`` is what the planner, the report, the lockfile and the stage lifecycle read a run through;
it loads no model and runs nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from runner.fingerprint import stage_fingerprints, stage_seed
from runner.load import LoadedRecipe
from runner.paths import resolve_one
from runner.store import RunStore

if TYPE_CHECKING:
    from registry.records import Records
    from registry.zoo import Zoo


def recipe_zoo(loaded: LoadedRecipe) -> Zoo:
    """The zoo the recipe names (its ``zoo:`` files, relative to the recipe)."""
    from registry.zoo import Zoo

    return Zoo.load([Path(resolve_one(z, loaded.base_dir)) for z in loaded.recipe.zoo])


class StageFolders:
    """``runs/<recipe>/stages/<stage>/<fingerprint>/`` for every stage of a loaded recipe.

    Fingerprints are computed once and kept until ``forget`` (a stage re-run in place changes the
    fingerprints downstream of it). Records are never kept in memory: each reader reads the stage's file.
    Stages running side by side share one ``StageFolders``: its caches are kept under a lock.
    """

    def __init__(self, loaded: LoadedRecipe, store: RunStore, zoo: Zoo) -> None:
        self.loaded = loaded
        self.store = store
        self.zoo = zoo
        self._fps: dict[str, str] | None = None
        self._lock = threading.RLock()

    @classmethod
    def open(cls, loaded: LoadedRecipe, runs_dir: Path) -> StageFolders:
        return cls(loaded, RunStore(Path(runs_dir) / loaded.name), recipe_zoo(loaded))

    @property
    def root(self) -> Path:
        return self.store.root

    def fingerprints(self) -> dict[str, str]:
        with self._lock:
            if self._fps is None:
                self._fps = stage_fingerprints(self.loaded, self.zoo, self.store.revision)
            return self._fps

    def fingerprint(self, stage: str) -> str:
        return self.fingerprints()[stage]

    def seed(self, stage: str) -> int:
        return stage_seed(self.loaded.recipe.seed, stage)

    def dir(self, stage: str) -> Path:
        return self.store.stage_dir(stage, self.fingerprint(stage))

    def manifest(self, stage: str) -> dict:
        return self.store.manifest(stage, self.fingerprint(stage)) or {}

    def is_done(self, stage: str) -> bool:
        return self.store.is_done(stage, self.fingerprint(stage))

    def record_file(self, stage: str) -> Records:
        """A stage's records, read lazily from its folder (``registry.records.Records``)."""
        return self.store.record_file(stage, self.fingerprint(stage))

    def records(self, stage: str) -> list[dict]:
        """A stage's records, all read at once (for consumers that need a list)."""
        return list(self.record_file(stage))

    def forget(self, stage: str) -> None:
        """``stage`` was re-run in place: recompute the fingerprints."""
        with self._lock:
            self._fps = None

    def set_latest(self) -> None:
        """Point ``latest.json`` at every stage's current folder."""
        with self._lock:
            self.store.set_latest({s: str(self.dir(s).relative_to(self.root)) for s in self.loaded.order})
