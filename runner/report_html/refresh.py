"""``recipe report RUN --refresh``: each finished stage's report data computed again from its records with
the components installed now (a run made before a component had its viewer gets it), written into the
stage folders. Nothing runs and no model loads: ``report_data`` reads records, stats and inputs only."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from components.report_data import REPORT_DATA, section_list
from registry.atomic import atomic_write_json
from registry.jsonio import read_json, read_jsonl
from runner.run_folder import read_lock, run_stages

log = logging.getLogger("recipe.report")


class ReadOnlyContext:
    """What ``report_data`` may use of ``ctx``: the stage's params, folder, stats and inputs."""

    def __init__(self, stage: str, params: Any, stage_dir: Path, inputs: dict[str, list[dict]]) -> None:
        self.stage = stage
        self.params = params
        self.seed = 0
        self.rng = random.Random(0)
        self.artifact_dir = stage_dir
        self.scratch = stage_dir / "scratch"
        self.log = logging.getLogger(f"recipe.{stage}")
        self.inputs = inputs

    def load_stats(self, name: str, default: Any = None) -> Any:
        return read_json(self.artifact_dir / "stats" / f"{name}.json", default)

    def save_stats(self, name: str, data: Any) -> None:
        raise RuntimeError("report data is computed from a finished stage: it keeps no new statistics")

    def model(self, slot: str | None = None) -> Any:
        raise RuntimeError("report data is computed without models")

    embedder = model_source = model

    def advance(self, n: int = 1, total: int | None = None) -> None:
        return None


def refresh_report_data(run_dir: Path) -> list[str]:
    """Recompute every finished stage's ``report_data.json``; returns one line per stage that could not be
    (the stage keeps what it had)."""
    from registry import components as reg

    run_dir = Path(run_dir)
    specs = read_lock(run_dir).get("stages") or {}
    stages = run_stages(run_dir)
    cache: dict[str, list[dict]] = {}

    def records(stage: str) -> list[dict]:
        if stage not in cache:
            cache[stage] = read_jsonl(stages[stage].records, missing_ok=True)
        return cache[stage]

    problems = []
    for name, spec in specs.items():
        stage = stages.get(name)
        manifest = (stage.manifest or {}) if stage else {}
        if stage is None or manifest.get("status") != "done":
            continue
        try:
            cls = reg.get(str(spec.get("type")))
            comp = cls(cls.Params.model_validate(manifest.get("params") or spec.get("params") or {}))
            inputs = {port: records(up) for port, up in (spec.get("inputs") or {}).items() if up in stages}
            ctx = ReadOnlyContext(name, comp.params, stage.dir, inputs)
            data = comp.report_data(records(name), stage.metrics(), ctx)
        except Exception as e:  # noqa: BLE001 - one stage's problem must not cost the others their report
            problems.append(f"{name}: report data not refreshed ({type(e).__name__}: {e})")
            log.warning("report: %s", problems[-1])
            continue
        if data:
            atomic_write_json(stage.dir / REPORT_DATA, section_list(data))
    return problems
