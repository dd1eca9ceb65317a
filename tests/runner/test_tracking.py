"""A judge's metrics go to the tracker run of the model it scored: the nearest tracked trainer upstream."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from registry.tracking import TrackingRun, missing, write_run
from runner.tracking import log_judge_metrics, tracked_models

needs_tensorboard = pytest.mark.skipif(bool(missing(["tensorboard"])), reason="tensorboard is not installed")


def folders(tmp_path, deps):
    return SimpleNamespace(loaded=SimpleNamespace(deps=deps), dir=lambda s: tmp_path / s)


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# sft → dpo → answers → judge; data feeds sft; the judge also reads the data
DEPS = {"data": [], "sft": ["data"], "dpo": ["sft"], "answers": ["dpo"], "judge": ["answers", "data"]}


def test_the_nearest_tracked_trainer_upstream(tmp_path):
    for s in ("sft", "dpo"):
        write_run(tmp_path / s, TrackingRun(report_to=["tensorboard"], run_name=s, run_id=s, step=4))
    f = folders(tmp_path, DEPS)
    assert tracked_models(f, "judge") == ["dpo"]
    assert tracked_models(f, "answers") == ["dpo"]
    assert tracked_models(f, "dpo") == ["sft"]
    assert tracked_models(f, "data") == []


@needs_tensorboard
def test_judge_metrics_land_in_the_models_tensorboard_run_at_its_last_step(tmp_path):
    write_run(tmp_path / "dpo", TrackingRun(report_to=["tensorboard"], run_name="dpo", run_id="x", step=7))
    f = folders(tmp_path, DEPS)
    log_judge_metrics(f, "judge", "judge.needle", {"mean_score": 0.5, "n": 2, "ok": True, "by_depth": {"0": 1.0}})
    got = scalars(tmp_path / "dpo" / "tracking" / "recipe-zoo")
    assert got == {"eval/judge/mean_score": [(7, 0.5)], "eval/judge/n": [(7, 2.0)]}
    # a stage that is not a judge logs nothing
    log_judge_metrics(f, "answers", "generate.chat", {"mean_len": 3.0})
    assert "eval/answers/mean_len" not in scalars(tmp_path / "dpo" / "tracking" / "recipe-zoo")


def test_a_failing_tracker_is_a_warning_not_a_failed_stage(tmp_path, monkeypatch, caplog):
    write_run(tmp_path / "dpo", TrackingRun(report_to=["tensorboard"], run_name="dpo", run_id="x", step=1))

    def broken(run, sdir):
        raise RuntimeError("no tracker here")

    monkeypatch.setattr("runner.tracking.open_trackers", broken)
    with caplog.at_level(logging.WARNING, logger="recipe.tracking"):
        log_judge_metrics(folders(tmp_path, DEPS), "judge", "judge.x", {"score": 1.0})
    assert "stage judge: logging its metrics to the tracker run of dpo failed: RuntimeError: no tracker here" in \
        caplog.text


def test_a_trainers_tracking_folder_is_not_vouched_for_by_its_manifest(tmp_path):
    """Judges add to it after the trainer finished: that must not make the finished stage look damaged."""
    from runner.store import file_sums

    write_run(tmp_path / "sft", TrackingRun(report_to=["tensorboard"], run_name="sft", run_id="x", step=1))
    (tmp_path / "sft" / "records.jsonl").write_text("{}\n")
    assert list(file_sums(tmp_path / "sft")) == ["records.jsonl"]
