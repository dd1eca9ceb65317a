"""Full fine-tuning in a half dtype: float32 master weights, forward and backward under autocast."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from components.trainers import loop
from components.trainers.loop import training_precision
from components.trainers.sft import SFT, SFTParams
from tests.components.test_sft_tiny import one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

LR = 1e-4


def test_the_precision_of_each_kind_of_training():
    full = SFTParams(lora=None, dtype="bfloat16")
    assert training_precision(full, "cpu") == (torch.float32, torch.bfloat16)
    assert training_precision(full.model_copy(update={"dtype": "float16"}), "cpu") == (torch.float32, torch.float16)
    assert training_precision(full.model_copy(update={"dtype": "float32"}), "cpu") == (torch.float32, None)
    assert training_precision(full.model_copy(update={"dtype": "auto"}), "cpu") == (torch.float32, None)
    lora = SFTParams(lora={"r": 4}, dtype="bfloat16")  # a frozen base: loaded in bfloat16, no master copy
    assert training_precision(lora, "cpu") == (torch.bfloat16, None)


def test_full_fine_tuning_in_bfloat16_updates_float32_master_weights(tmp_path, tiny_folder, monkeypatch):  # noqa: F811
    """One Adam step moves every weight with a gradient by the learning rate (its first step is
    lr · g/|g|). 1e-4 is below half the bfloat16 spacing of weights of magnitude 2^-5 or more (2^-12 ≈
    2.4e-4), so bfloat16 weights would not move at all; float32 master weights do, and the layers compute
    in bfloat16 under autocast."""
    seen = []
    real_load = loop.load_model

    def load_and_watch(*args, **kwargs):
        model, merge = real_load(*args, **kwargs)
        layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        layer.register_forward_hook(lambda mod, inp, out: seen.append(
            (mod.weight.dtype, out.dtype, torch.is_autocast_enabled("cpu"))))
        return model, merge

    monkeypatch.setattr(loop, "load_model", load_and_watch)
    records = [{"id": f"c{i}", "messages": [{"role": "user", "content": "what is two plus three"},
                                            {"role": "assistant", "content": "five , yes"}]} for i in range(2)]
    p = SFTParams(lora=None, dtype="bfloat16", learning_rate=LR, adam_epsilon=1e-12, max_grad_norm=None,
                  max_steps=1, warmup_ratio=0, lr_scheduler="constant", max_length=64, batching="naive")
    ctx = FakeCtx(params=p, tmp=tmp_path, models={("source", "base"): resolved(tiny_folder)})
    SFT(p).run({"train": records}, ctx)

    assert seen and set(seen) == {(torch.float32, torch.bfloat16, True)}
    before = load_file(str(tiny_folder / "model.safetensors"))
    after = load_file(str(ctx.artifact_dir / "model" / "model.safetensors"))
    name = next(k for k in before if k.endswith("mlp.up_proj.weight"))
    w0, w1 = before[name].float(), after[name]
    assert w1.dtype == torch.float32  # the master weights are what is saved
    delta = w1 - w0
    moved = delta != 0
    assert moved.float().mean() > 0.5
    assert delta[moved].abs().sub(LR).abs().max() < LR * 1e-2  # each moved by the learning rate
    big = moved & (w0.abs() >= 2**-5)
    assert big.sum() > 0
    # bfloat16 weights (the same weights rounded) plus these updates round back to themselves: they
    # would not have moved
    b0 = w0[big].to(torch.bfloat16)
    assert torch.equal((b0.float() + delta[big]).to(torch.bfloat16), b0)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_float16_runs_under_autocast_with_loss_scaling_and_float32_without(tmp_path, tiny_folder, dtype,  # noqa: F811
                                                                           monkeypatch):
    seen = []
    monkeypatch.setattr(torch.nn.Linear, "forward", (lambda real: lambda self, x: (
        seen.append(torch.is_autocast_enabled("cpu")), real(self, x))[1])(torch.nn.Linear.forward))
    records = [{"id": "c0", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    p = SFTParams(lora=None, dtype=dtype, max_steps=2, warmup_ratio=0, max_length=32, batching="naive",
                  learning_rate=1e-3)
    ctx = FakeCtx(params=p, tmp=tmp_path, models={("source", "base"): resolved(tiny_folder)})
    out = SFT(p).run({"train": records}, ctx)
    assert seen and set(seen) == {dtype == "float16"}
    assert all(0 < r["loss"] < 20 for r in out)  # finite: the scaled float16 gradients were unscaled
    before = load_file(str(tiny_folder / "model.safetensors"))
    after = load_file(str(ctx.artifact_dir / "model" / "model.safetensors"))
    assert all(after[k].dtype == torch.float32 for k in after)
    # the first float16 step may be skipped while the loss scale finds its level; two steps move weights
    assert any(not torch.equal(after[k], before[k].float()) for k in before)
