"""Experiment tracking through accelerate's trackers: TensorBoard, Weights & Biases and Trackio.

A trainer whose ``report_to`` names trackers logs its per-step numbers into its stage folder's
``tracking/`` (TensorBoard's event files; the ``dir`` of a Weights & Biases run) and writes
``tracking/run.json`` (``TrackingRun``): the trackers, the project, the run's name and id, and the last
step logged. A stage run again after a kill continues the same run (same id). The runner reads the file to
log the metrics of the judges that scored the trained model into the same run (``runner.tracking``).

Trainers and the runner both use this module, so they agree on where a run lives and how it is resumed.
accelerate and the trackers' packages are imported inside the functions.

Example::

    >>> run = TrackingRun(report_to=["tensorboard"], project="recipe-zoo", run_name="sft", run_id="abc")
    >>> sorted(init_kwargs(run, Path("/runs/x/stages/sft/fp")))
    ['trackio', 'wandb']
"""

from __future__ import annotations

import uuid
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from registry.atomic import atomic_write_json
from registry.jsonio import read_json

Tracker = Literal["tensorboard", "wandb", "trackio"]
TRACKING_DIR = "tracking"  # in the stage folder
RUN_FILE = "run.json"  # in TRACKING_DIR
DEFAULT_PROJECT = "recipe-zoo"
# the package each tracker needs (TensorBoard's writer also comes with tensorboardX)
PACKAGES: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",),
                                        "trackio": ("trackio",)}


class TrackingRun(BaseModel):
    """The tracker run of one trained stage (``tracking/run.json``)."""

    report_to: list[Tracker]
    project: str = Field(DEFAULT_PROJECT, description="the W&B / Trackio project; TensorBoard's run folder")
    run_name: str = Field(description="the run's display name: the stage's name")
    run_id: str = Field(description="the W&B run id, kept so a resumed stage and its judges log to the same run")
    step: int = Field(0, description="the last optimizer step logged")


def tracking_dir(stage_dir: Path) -> Path:
    return Path(stage_dir) / TRACKING_DIR


def read_run(stage_dir: Path) -> TrackingRun | None:
    """The stage's tracker run, or None for a stage that tracked nothing."""
    data = read_json(tracking_dir(stage_dir) / RUN_FILE)
    return TrackingRun.model_validate(data) if isinstance(data, dict) else None


def write_run(stage_dir: Path, run: TrackingRun) -> None:
    atomic_write_json(tracking_dir(stage_dir) / RUN_FILE, run.model_dump(mode="json"))


def start_run(stage_dir: Path, report_to: list[str], project: str | None, run_name: str) -> TrackingRun:
    """The run a trainer logs to: the stage folder's earlier one (a resumed stage) or a new one."""
    earlier = read_run(stage_dir)
    run_id = earlier.run_id if earlier is not None else uuid.uuid4().hex[:12]
    return TrackingRun(report_to=list(report_to), project=project or DEFAULT_PROJECT, run_name=run_name,  # type: ignore[arg-type]
                       run_id=run_id, step=earlier.step if earlier is not None else 0)


def missing(report_to: list[str]) -> list[str]:
    """The trackers of ``report_to`` whose package is not installed."""
    return [t for t in report_to if not any(find_spec(p) for p in PACKAGES.get(t, (t,)))]


def require(report_to: list[str]) -> None:
    """Raise a clear error when a tracker's package is missing."""
    absent = missing(report_to)
    if absent:
        raise RuntimeError(f"report_to {absent} needs {', '.join(PACKAGES[t][0] for t in absent)}: "
                           "pip install 'recipe-zoo[tracking]'")


def init_kwargs(run: TrackingRun, stage_dir: Path) -> dict[str, dict[str, Any]]:
    """accelerate's ``init_kwargs`` per tracker: the run's name, and its id for W&B, so that the run is
    resumed rather than started anew (``resume="allow"``); W&B's files go to the stage's tracking folder."""
    return {
        "wandb": {"name": run.run_name, "id": run.run_id, "resume": "allow", "dir": str(tracking_dir(stage_dir))},
        "trackio": {"name": run.run_name, "resume": "allow"},
    }


def make_trackers(run: TrackingRun, stage_dir: Path) -> list[Any]:
    """The run's accelerate trackers, not started: a trainer hands them to ``Accelerator(log_with=...)``,
    whose ``init_trackers`` starts them on the main process."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    kwargs = init_kwargs(run, stage_dir)
    out = []
    for name in run.report_to:
        cls = LOGGER_TYPE_TO_CLASS[name]
        if cls.requires_logging_directory:  # TensorBoard: <stage>/tracking/<project>/
            out.append(cls(run.project, str(tracking_dir(stage_dir)), **kwargs.get(name, {})))
        else:
            out.append(cls(run.project, **kwargs.get(name, {})))
    return out


def open_trackers(run: TrackingRun, stage_dir: Path) -> list[Any]:
    """The run's trackers, started: for logging outside a training loop (the metrics of a judge)."""
    trackers = make_trackers(run, stage_dir)
    for t in trackers:
        t.start()
    return trackers


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested settings dict as trackers take hyperparameters: one level, scalar values (lists as text,
    None as "none")."""
    out: dict[str, bool | int | float | str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, f"{key}."))
        elif isinstance(v, bool | int | float | str):
            out[key] = v
        else:
            out[key] = "none" if v is None else str(v)
    return out
