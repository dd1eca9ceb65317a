"""The ``ctx`` a component gets: its models by slot, params, seeded RNG, folders, logger, progress."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.base import Params
from registry.atomic import atomic_write_json
from registry.jsonio import read_json
from runner.callcache import CachedLLM, Meter
from runner.errors import StageFailure
from runner.load import Binding
from runner.models import ModelManager


class StageContext:
    def __init__(self, *, stage: str, params: Params, seed: int, stage_dir: Path, bindings: dict[str, Binding],
                 models: ModelManager, inputs: dict[str, list[dict]], meter: Meter,
                 on_advance: Callable[[int, int | None], None] | None = None, journal: Path | None = None,
                 artifacts: dict[str, Path] | None = None) -> None:
        self.stage = stage
        self.params = params
        self.seed = seed
        self.rng = random.Random(seed)
        self.artifact_dir = stage_dir
        self.scratch = stage_dir / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"recipe.{stage}")
        self.inputs = inputs
        self.meter = meter
        self._bindings = bindings
        self._models = models
        self._journal = journal or stage_dir / "calls.jsonl"
        self._wrapped: dict[str, CachedLLM] = {}
        self._lock = threading.Lock()
        self._on_advance = on_advance
        self._main = next(iter(bindings), None)
        self._artifacts = artifacts or {}  # input port -> the upstream stage's artifact folder

    def _binding(self, slot: str | None) -> Binding:
        slot = slot or self._main
        if slot is None or slot not in self._bindings:
            raise StageFailure(self.stage, f"no model bound to slot {slot!r} "
                               f"(bound: {', '.join(self._bindings) or 'none'})")
        return self._bindings[slot]

    def model(self, slot: str | None = None):
        b = self._binding(slot)
        with self._lock:  # batches running at once share one journal per slot
            if b.slot not in self._wrapped:
                inner = self._models.llm(b)
                identity = f"{b.kind}:{b.ref}:{b.backend}"
                self._wrapped[b.slot] = CachedLLM(inner, self._journal, self.meter, identity)
            return self._wrapped[b.slot]

    def embedder(self, slot: str = "embedder"):
        return self._models.embedder(self._binding(slot))

    def model_source(self, slot: str | None = None):
        return self._models.resolve(self._binding(slot))

    def input_artifact(self, port: str) -> Path:
        if port not in self._artifacts:
            raise StageFailure(self.stage, f"input {port!r} carries no artifact folder "
                               f"(ports with one: {', '.join(self._artifacts) or 'none'})")
        folder = self._artifacts[port]
        if not folder.is_dir():
            raise StageFailure(self.stage, f"the artifact folder {folder} of input {port!r} is missing")
        return folder

    def advance(self, n: int = 1, total: int | None = None) -> None:
        if self._on_advance:
            self._on_advance(n, total)

    def save_stats(self, name: str, data: Any) -> None:
        atomic_write_json(self.stats_path(name), data)

    def load_stats(self, name: str, default: Any = None) -> Any:
        return read_json(self.stats_path(name), default)

    def stats_path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"stats name {name!r}: use a plain file-name stem")
        return self.artifact_dir / "stats" / f"{name}.json"

    def __repr__(self) -> str:
        return f"StageContext({self.stage!r})"

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - clearer error for typos
        raise AttributeError(f"ctx has no {name!r}")
