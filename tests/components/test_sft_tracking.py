"""train.sft's step reporting: a TensorBoard event file with the loss curve (and learning rate, gradient norm,
tokens/s) in the stage folder with ``report_to: [tensorboard]``; tracking leaves the trained weights alone."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from components.trainers.sft import SFT, SFTParams
from registry.tracking import missing
from tests.components.test_sft_tiny import one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

RECORDS = [
    {"id": f"c{i}", "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
    for i, (u, a) in enumerate([("what is two plus three", "five"), ("tell me about the sky", "blue"),
                                ("hello there", "hi friend")])
]
COMMON = dict(lora={"r": 4, "alpha": 8, "dropout": 0.0}, learning_rate=1e-2, max_steps=3, batching="naive",
              max_length=64, seed=1, max_grad_norm=None, warmup_ratio=0, lr_scheduler="linear")


def train(tmp, folder, **params):
    p = SFTParams(**COMMON, **params)
    ctx = FakeCtx(params=p, tmp=tmp, models={("source", "base"): resolved(folder)})
    return ctx, SFT(p).run({"train": RECORDS}, ctx)


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(bool(missing(["tensorboard"])), reason="tensorboard is not installed (recipe-zoo[tracking])")
def test_tensorboard_gets_the_loss_curve_and_the_weights_do_not_change(tmp_path, tiny_folder, caplog):  # noqa: F811
    plain_ctx, plain = train(tmp_path / "plain", tiny_folder)
    with caplog.at_level(logging.INFO, logger="test"):
        ctx, out = train(tmp_path / "tracked", tiny_folder, report_to=["tensorboard"], logging_steps=2)

    logdir = ctx.artifact_dir / "tracking" / "recipe-zoo"
    assert list(logdir.glob("events.out.tfevents.*")), "no TensorBoard event file"
    got = scalars(logdir)
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3]
    assert [v for _, v in got["train/loss"]] == pytest.approx([r["loss"] for r in out], rel=1e-6)
    assert [v for _, v in got["train/learning_rate"]] == pytest.approx([r["lr"] for r in out], rel=1e-6)
    # linear decay from 1e-2 over 3 steps, no warm-up: 1e-2, 1e-2 * 2/3, 1e-2 * 1/3
    assert [v for _, v in got["train/learning_rate"]] == pytest.approx([1e-2, 2e-2 / 3, 1e-2 / 3], rel=1e-6)
    assert len(got["train/grad_norm"]) == 3 and all(v > 0 for _, v in got["train/grad_norm"])
    assert len(got["train/tokens_per_second"]) == 3 and all(v > 0 for _, v in got["train/tokens_per_second"])
    run = json.loads((ctx.artifact_dir / "tracking" / "run.json").read_text())
    assert {k: run[k] for k in ("report_to", "project", "run_name", "step")} == {
        "report_to": ["tensorboard"], "project": "recipe-zoo", "run_name": "test", "step": 3}

    # the progress lines in the stage's log: the first step, every 2nd, the last
    lines = [r.getMessage() for r in caplog.records if ": step " in r.getMessage()]
    assert [line.split(",")[0] for line in lines] == ["test: step 1/3", "test: step 2/3", "test: step 3/3"]
    assert "grad norm" in lines[0] and "tokens/s" in lines[0]

    # measuring the gradient norm without clipping (a bound of inf) leaves every weight as it was
    assert out == plain
    a = load_file(str(plain_ctx.artifact_dir / "model" / "adapter_model.safetensors"))
    b = load_file(str(ctx.artifact_dir / "model" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not missing(["wandb"]), reason="wandb is installed")
def test_a_tracker_whose_package_is_missing_fails_with_the_install_hint(tmp_path, tiny_folder):  # noqa: F811
    with pytest.raises(RuntimeError, match=r"report_to \['wandb'\] needs wandb: pip install 'recipe-zoo\[tracking\]'"):
        train(tmp_path, tiny_folder, report_to=["wandb"])
