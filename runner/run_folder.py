"""A finished run as ``publish`` reads it: its stages (``latest.json`` → stage folders), its lockfile, and
which stages feed which (from the lockfile's stages), so a model's card can name its judges and data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from registry.jsonio import read_json
from registry.suggest import suggestion

log = logging.getLogger("runner.publish")


class PublishError(RuntimeError):
    """A run cannot be published as asked (missing stage, bad target, no token, Hub failure)."""


@dataclass
class Artifact:
    """One stage of a finished run, as publish reads it from the run folder."""

    name: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def records(self) -> Path:
        return self.dir / "records.jsonl"

    @property
    def kind(self) -> Literal["dataset", "model"]:
        return "model" if self.model_dir.is_dir() else "dataset"

    @property
    def type(self) -> str:
        return str(self.manifest.get("type", "?"))

    def publishable(self) -> str | None:
        """Why this stage cannot be published, or None."""
        if self.manifest.get("status") != "done":
            return f"stage {self.name!r} is not finished (status {self.manifest.get('status')!r})"
        has_records = self.records.is_file() and self.records.stat().st_size > 0
        if not self.model_dir.is_dir() and not has_records and not (self.dir / "metrics.json").is_file():
            return f"stage {self.name!r} has neither records, metrics nor a model"
        return None

    def metrics(self) -> dict[str, Any] | None:
        return read_json(self.dir / "metrics.json")


def run_stages(run_dir: Path) -> dict[str, Artifact]:
    """Every stage of the run's latest state, by name."""
    latest = run_dir / "latest.json"
    if not latest.is_file():
        raise PublishError(f"{run_dir}: not a run folder (no latest.json)")
    out = {}
    for name, rel in (read_json(latest, {}) or {}).get("stages", {}).items():
        out[name] = Artifact(name=name, dir=run_dir / rel, manifest=read_json(run_dir / rel / "manifest.json", {}))
    return out


def choose(stages: dict[str, Artifact], artifacts: list[str] | None) -> list[Artifact]:
    """The stages to publish: those named (each must be publishable), or every publishable one."""
    if artifacts is None:
        chosen = []
        for s in stages.values():
            why = s.publishable()
            if why:
                log.info("publish: skipping %s: %s", s.name, why)
            else:
                chosen.append(s)
        return chosen
    problems = []
    for a in artifacts:
        if a not in stages:
            problems.append(f"no stage named {a!r} in the run" + suggestion(a, list(stages)))
        elif why := stages[a].publishable():
            problems.append(why)
    if problems:
        raise PublishError("cannot publish: " + "; ".join(problems))
    return [stages[a] for a in artifacts]


def read_lock(run_dir: Path) -> dict[str, Any]:
    """The run's lockfile as data ({} when absent or unreadable)."""
    path = run_dir / "recipe.lock.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError:
        data = None
    return data if isinstance(data, dict) else {}


def recipe_dir(run_dir: Path, lock: dict[str, Any]) -> Path | None:
    """The recipe's folder, from the lockfile's ``lock.recipe_dir`` (relative to the run folder)."""
    rel = (lock.get("lock") or {}).get("recipe_dir")
    return (run_dir / rel).resolve() if isinstance(rel, str) else None


class StageGraph:
    """Which stages feed which, from the lockfile's stages (``inputs`` and models bound to a stage).

    >>> g = StageGraph({"stages": {"data": {}, "sft": {"inputs": {"train": "data"}, "model": "base"},
    ...                             "answers": {"model": "sft"}, "judge": {"inputs": {"p": "answers"}}}})
    >>> sorted(g.ancestors("judge")), g.nearest({"sft", "data"}, "judge")
    (['answers', 'data', 'sft'], {'sft'})
    """

    def __init__(self, lock: dict[str, Any]) -> None:
        stages = lock.get("stages") if isinstance(lock.get("stages"), dict) else {}
        self.up: dict[str, set[str]] = {}
        for name, spec in stages.items():
            spec = spec if isinstance(spec, dict) else {}
            refs = [*(spec.get("inputs") or {}).values(), spec.get("model"), *(spec.get("models") or {}).values()]
            self.up[name] = {r for r in refs if isinstance(r, str) and r in stages}

    def ancestors(self, stage: str) -> set[str]:
        """Every stage ``stage`` depends on, directly or not."""
        seen: set[str] = set()
        todo = list(self.up.get(stage, ()))
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo += self.up.get(s, ())
        return seen

    def nearest(self, among: set[str], stage: str) -> set[str]:
        """The stages of ``among`` that ``stage`` depends on with no other of them in between (for a judge:
        the model it scored, not the model that model was trained from)."""
        found = self.ancestors(stage) & among
        return {a for a in found if not any(a in self.ancestors(b) for b in found if b != a)}
