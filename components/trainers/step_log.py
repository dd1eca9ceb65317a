"""What a trainer reports per optimizer step: loss, learning rate, gradient norm and tokens per second.

Every ``logging_steps`` steps (and the first and last) one line goes to the stage's log (``run.log``; a
launched stage's workers stream it to the runner). With ``report_to`` the same numbers go, every step, to
experiment trackers through accelerate (``Accelerator(log_with=...)``, ``init_trackers``, ``log``), into
the stage folder's ``tracking/`` (``registry.tracking``), with the trainer's settings as the run's
hyperparameters. The settings here change how a run is watched, never what it computes, so they are left
out of the stage's fingerprint (``fingerprint: false``): turning tracking on does not retrain a model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from components.base import Params
from registry.tracking import Tracker, flat_config, make_trackers, require, start_run, write_run

NOT_FINGERPRINTED = {"fingerprint": False}


class TrackingParams(Params):
    """The step-reporting settings every trainer takes."""

    report_to: list[Tracker] = Field(
        default_factory=list, json_schema_extra=NOT_FINGERPRINTED,
        description="Experiment trackers for loss, learning rate, gradient norm and tokens/s per step: "
        "tensorboard, wandb, trackio (pip install 'recipe-zoo[tracking]'); logs go to the stage folder's "
        "tracking/. The judges of the trained model log their metrics to the same run.")
    tracking_project: str | None = Field(
        None, json_schema_extra=NOT_FINGERPRINTED,
        description="The W&B / Trackio project (TensorBoard: the run's folder name); null: recipe-zoo.")
    logging_steps: int = Field(
        10, ge=1, json_schema_extra=NOT_FINGERPRINTED,
        description="A progress line in the stage's log every this many optimizer steps (and the first and last).")


class StepLog:
    """Reports the optimizer steps of one training run (see the module docstring)."""

    def __init__(self, p: TrackingParams, stage: str, stage_dir: Path, logger: logging.Logger | None) -> None:
        self.p = p
        self.stage = stage
        self.stage_dir = Path(stage_dir)
        self.log = logger or logging.getLogger(f"recipe.{stage}")
        self.run = None
        if p.report_to:
            require(list(p.report_to))
            self.run = start_run(self.stage_dir, list(p.report_to), p.tracking_project, stage)
        self._last = time.monotonic()

    def accelerator_kwargs(self) -> dict[str, Any]:
        """What ``Accelerator(...)`` needs for the trackers (nothing without ``report_to``)."""
        return {"log_with": make_trackers(self.run, self.stage_dir)} if self.run is not None else {}

    @property
    def wants_grad_norm(self) -> bool:
        return self.run is not None

    def start(self, accelerator: Any, config: dict[str, Any]) -> None:
        """Start the trackers (on the main process) with the trainer's settings as hyperparameters."""
        if self.run is not None:
            accelerator.init_trackers(self.run.project, config=flat_config(config))
            if accelerator.is_main_process:
                write_run(self.stage_dir, self.run)
        self._last = time.monotonic()

    def step(self, accelerator: Any, step: int, total: int, *, loss: float, lr: float, grad_norm: float | None,
             tokens: int) -> None:
        """Report optimizer step ``step`` (1-based) of ``total``."""
        now = time.monotonic()
        seconds, self._last = max(now - self._last, 1e-9), now
        values = {"train/loss": loss, "train/learning_rate": lr, "train/tokens_per_second": tokens / seconds}
        if grad_norm is not None:
            values["train/grad_norm"] = grad_norm
        if self.run is not None:
            accelerator.log(values, step=step)
            self.run.step = step
        if accelerator.is_main_process and (step == 1 or step % self.p.logging_steps == 0 or step == total):
            norm = f", grad norm {grad_norm:.4g}" if grad_norm is not None else ""
            self.log.info("%s: step %d/%d, loss %.4f, lr %.3g%s, %.0f tokens/s", self.stage, step, total, loss, lr,
                          norm, tokens / seconds)

    def finish(self, accelerator: Any) -> None:
        """Close the trackers; the run file keeps the last step, where the judges' metrics go."""
        if self.run is not None:
            if accelerator.is_main_process:
                write_run(self.stage_dir, self.run)
            accelerator.end_training()
