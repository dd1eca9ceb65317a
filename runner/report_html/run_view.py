"""A run folder read for ``report.html``: its stages (graph, status, counts, timings, usage, failures,
metrics, report data) and the lockfile's key facts. Reads only the run folder, so ``recipe report RUN``
works on any run, also one copied from another machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from components.report_data import REPORT_DATA, Section, read_sections
from registry.jsonio import read_json, read_jsonl
from runner.run_folder import read_lock

log = logging.getLogger("recipe.report")

LAST_RUN = "last_run.json"  # how each stage ended in the latest `recipe run` (ran, cached, failed, ...)
SHOWN_FAILURES = 20  # failed records shown per stage (all of them stay in failures.jsonl)
KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "vllm", "datasets", "recipe-zoo")


@dataclass
class StageView:
    name: str
    type: str
    inputs: list[str]
    status: str  # ran, cached, failed, waiting, not run, ...
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    failures: list[dict] = field(default_factory=list)
    failed_total: int = 0
    metrics: dict[str, Any] | None = None
    sections: list[Section] = field(default_factory=list)
    markdown: str | None = None
    problem: str | None = None  # a stage file that could not be read

    @property
    def tokens(self) -> int:
        return int(self.usage.get("prompt_tokens", 0) or 0) + int(self.usage.get("completion_tokens", 0) or 0)

    @property
    def cost(self) -> float:
        return float(self.usage.get("cost_usd", 0) or 0)


@dataclass
class RunView:
    name: str
    description: str
    profile: str | None
    stages: list[StageView]
    facts: list[tuple[str, str]]  # the lockfile's key facts, in order
    error: str | None = None
    written: str = ""

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.stages)


def lock_facts(lock: dict[str, Any]) -> list[tuple[str, str]]:
    """What a reader checks first in the lockfile: recipe and profile, seed, models and their sources,
    python, platform, torch build and the versions of the packages that change what a stage computes."""
    meta = lock.get("lock") or {}
    facts = [("recipe file", str(meta.get("recipe_file", "?"))), ("profile", str(meta.get("profile") or "none")),
             ("seed", str(lock.get("seed", "?")))]
    roles = lock.get("models") or {}
    sources = meta.get("models") or {}
    for role, m in roles.items():
        name = m.get("name") if isinstance(m, dict) else m
        src = (sources.get(name) or {}) if isinstance(name, str) else {}
        pin = f" @ {src['pin']}" if src.get("pin") else ""
        facts.append((f"model: {role}", f"{name} ({src.get('source', '?')}{pin})"))
    facts += [("python", str(meta.get("python", "?"))), ("platform", str(meta.get("platform", "?")))]
    torch = meta.get("torch") or {}
    if torch:
        facts.append(("torch build", f"{torch.get('version')} ({torch.get('build')})"))
    packages = {k.lower(): v for k, v in (meta.get("packages") or {}).items()}
    shown = [f"{p} {packages[p]}" for p in KEY_PACKAGES if p in packages]
    if shown:
        facts.append(("packages", ", ".join(shown) + f" ({len(packages)} in all, in recipe.lock.yaml)"))
    return facts


def _failures(sdir: Path) -> tuple[list[dict], int, str | None]:
    path = sdir / "failures.jsonl"
    if not path.is_file():
        return [], 0, None
    try:
        rows = read_jsonl(path, missing_ok=True)
    except ValueError as e:  # a damaged ledger is named, never a traceback
        return [], 0, f"failures.jsonl cannot be read: {e}"
    return rows[:SHOWN_FAILURES], len(rows), None


def _sections(sdir: Path, name: str) -> tuple[list[Section], str | None]:
    data = read_json(sdir / REPORT_DATA)
    if not data:
        return [], None
    try:
        return read_sections(data), None
    except ValidationError as e:
        log.warning("report: stage %s: %s does not have the report data shape: %s", name, REPORT_DATA, e)
        return [], f"{REPORT_DATA} does not have the report data shape ({e.error_count()} problems)"


def read_run(run_dir: Path, statuses: dict[str, str] | None = None, error: str | None = None) -> RunView:
    """The run in ``run_dir``; ``statuses``: how each stage ended in this run (default: ``last_run.json``)."""
    run_dir = Path(run_dir)
    lock = read_lock(run_dir)
    last = read_json(run_dir / LAST_RUN, {}) or {}
    statuses = statuses if statuses is not None else dict(last.get("statuses") or {})
    error = error if error is not None else last.get("error")
    latest = (read_json(run_dir / "latest.json", {}) or {}).get("stages", {})
    specs = lock.get("stages") or {}
    order = list(specs) + [s for s in latest if s not in specs]
    stages = []
    for name in order:
        spec = specs.get(name) or {}
        sdir = run_dir / latest[name] if name in latest else None
        m = (read_json(sdir / "manifest.json", {}) or {}) if sdir else {}
        status = statuses.get(name) or ("done" if m.get("status") == "done" else m.get("status", "not run"))
        view = StageView(name=name, type=str(spec.get("type") or m.get("type") or "?"),
                         inputs=list((spec.get("inputs") or {}).values()), status=status,
                         counts=m.get("counts") or {}, seconds=m.get("seconds"), usage=m.get("usage") or {},
                         model=spec.get("model") if isinstance(spec.get("model"), str) else None)
        if sdir is not None and sdir.is_dir():
            view.failures, view.failed_total, view.problem = _failures(sdir)
            view.metrics = read_json(sdir / "metrics.json")
            view.sections, problem = _sections(sdir, name)
            view.problem = view.problem or problem
            md = sdir / "report_section.md"
            view.markdown = md.read_text(encoding="utf-8") if md.is_file() else None
        stages.append(view)
    return RunView(name=str(lock.get("recipe") or run_dir.name), description=str(lock.get("description") or ""),
                   profile=(lock.get("lock") or {}).get("profile"), stages=stages, facts=lock_facts(lock),
                   error=error, written=str(last.get("finished") or ""))
