"""The judges' metrics, logged to the tracker run of the model they scored.

A trainer with ``report_to`` leaves ``tracking/run.json`` in its stage folder (``registry.tracking``).
When a judge stage (a component type ``judge.*``) finishes, its numeric metrics go to the run of the
nearest trained stage upstream of it (the model whose answers it scored, not that model's own base),
under ``eval/<judge stage>/<metric>`` at the run's last training step: one TensorBoard folder, one W&B or
Trackio run holds the loss curve and the scores. A tracker that fails here is a warning, never a failed
stage: the metrics are in the judge's ``metrics.json`` anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from registry.tracking import open_trackers, read_run
from runner.cards import numeric_metrics

if TYPE_CHECKING:
    from runner.folders import StageFolders

log = logging.getLogger("recipe.tracking")
JUDGE_PREFIX = "judge."


def _ancestors(deps: dict[str, list[str]], stage: str) -> set[str]:
    seen: set[str] = set()
    todo = list(deps.get(stage, ()))
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += deps.get(s, ())
    return seen


def tracked_models(folders: StageFolders, stage: str) -> list[str]:
    """The nearest stages upstream of ``stage`` whose folder holds a tracker run."""
    deps = folders.loaded.deps
    tracked = {s for s in _ancestors(deps, stage) if read_run(folders.dir(s)) is not None}
    return sorted(a for a in tracked if not any(a in _ancestors(deps, b) for b in tracked if b != a))


def log_judge_metrics(folders: StageFolders, stage: str, component_type: str, metrics: dict[str, Any] | None) -> None:
    """Log a finished judge stage's numeric metrics to the tracker run of the model it scored (if any)."""
    numbers = numeric_metrics(metrics)
    if not component_type.startswith(JUDGE_PREFIX) or not numbers:
        return
    try:
        models = tracked_models(folders, stage)
    except Exception as e:  # e.g. a damaged run.json
        log.warning("stage %s: its metrics were not logged to a tracker: %s: %s", stage, type(e).__name__, e)
        return
    for model_stage in models:
        sdir = folders.dir(model_stage)
        run = read_run(sdir)
        if run is None:
            continue
        try:
            for tracker in open_trackers(run, sdir):
                tracker.log({f"eval/{stage}/{k}": v for k, v in numbers.items()}, step=run.step)
                tracker.finish()
        except Exception as e:  # the metrics are in metrics.json; a tracker's trouble must not fail the stage
            log.warning("stage %s: logging its metrics to the tracker run of %s failed: %s: %s", stage,
                        model_stage, type(e).__name__, e)
            continue
        log.info("stage %s: metrics logged to the tracker run of %s (%s)", stage, model_stage,
                 ", ".join(run.report_to))
