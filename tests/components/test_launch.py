"""LaunchConfig → `accelerate launch` argv, checked by accelerate's own parser; one real 2-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from components.trainers.launch import LaunchConfig, accelerate_command
from components.trainers.sft import SFT, SFTParams, tokenized_rows, write_job
from tests.components.test_sft_tiny import one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

MODULE = "components.trainers.sft"
REPO_ROOT = Path(__file__).resolve().parents[2]


def parsed(cmd: list[str]):
    """What accelerate itself makes of the argv (all after ``python -m accelerate.commands.launch``)."""
    from accelerate.commands.launch import launch_command_parser

    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(cmd[3:])


def test_single_process():
    cmd = accelerate_command(LaunchConfig(), MODULE, ["--job", "job.json"])
    args = parsed(cmd)
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (1, 1, "no")
    assert not (args.multi_gpu or args.use_fsdp or args.use_deepspeed)
    assert (
        args.module and args.training_script == MODULE and args.training_script_args == ["--job", "job.json"]
    )


def test_data_parallel_processes_with_port_and_extra_args():
    cfg = LaunchConfig(
        num_processes=8,
        num_machines=2,
        mixed_precision="bf16",
        main_process_port=29501,
        extra_args=["--machine_rank", "1", "--main_process_ip", "10.0.0.1"],
    )
    args = parsed(accelerate_command(cfg, MODULE, ["--job", "j.json"]))
    assert args.multi_gpu and not args.use_fsdp
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (8, 2, "bf16")
    assert (args.main_process_port, args.machine_rank, args.main_process_ip) == (29501, 1, "10.0.0.1")
    assert args.training_script_args == ["--job", "j.json"]


def test_fsdp_with_an_accelerate_config_file():
    cfg = LaunchConfig(num_processes=4, strategy="fsdp", config_file=Path("fsdp.yaml"))
    args = parsed(accelerate_command(cfg, MODULE, []))
    assert args.use_fsdp and not args.multi_gpu and not args.use_deepspeed
    assert args.config_file == "fsdp.yaml"
    assert args.num_processes == 4


def test_deepspeed_json_and_yaml_configs():
    args = parsed(
        accelerate_command(
            LaunchConfig(num_processes=8, strategy="deepspeed", config_file=Path("zero3_offload.json")),
            MODULE,
            [],
        )
    )
    assert (
        args.use_deepspeed and args.deepspeed_config_file == "zero3_offload.json" and args.config_file is None
    )
    args = parsed(
        accelerate_command(
            LaunchConfig(num_processes=8, strategy="deepspeed", config_file=Path("ds.yaml")), MODULE, []
        )
    )
    assert args.use_deepspeed and args.config_file == "ds.yaml" and args.deepspeed_config_file is None


def test_invalid_configs_are_refused():
    with pytest.raises(ValidationError):
        LaunchConfig(num_processes=3, num_machines=2)
    with pytest.raises(ValidationError):
        LaunchConfig(num_processes=0)
    with pytest.raises(ValidationError):
        LaunchConfig(strategy="megatron")
    with pytest.raises(ValidationError):
        LaunchConfig(gpus=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_two_accumulated_micro_steps(tmp_path, tiny_folder):  # noqa: F811
    """Data parallelism through `accelerate launch` (gloo on CPU) vs gradient accumulation in one process."""

    def chat(u: str, a: str, i: int) -> dict:
        return {
            "id": f"c{i}",
            "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}],
        }

    records = [
        chat("what is two plus three", "five", 0),
        chat("tell me about the sky", "blue sky", 1),
        chat("hello there", "hi friend", 2),
        chat("what is the sea", "green and blue", 3),
    ]
    common = {
        "lora": None,
        "learning_rate": 0.5,
        "adam_epsilon": 1.0,
        "max_grad_norm": None,
        "max_steps": 2,
        "warmup_ratio": 0,
        "batching": "naive",
        "max_length": 64,
        "seed": 0,
        "lr_scheduler": "constant",
        "per_device_batch_size": 1,
    }
    base = resolved(tiny_folder)

    single = SFTParams(**common, gradient_accumulation_steps=2)
    ctx = FakeCtx(params=single, tmp=tmp_path / "single", models={("source", "base"): base})
    out_s = SFT(single).run({"train": records}, ctx)
    w_s = load_file(str(ctx.artifact_dir / "model" / "model.safetensors"))

    two = SFTParams(**common)  # each of the 2 ranks takes one row per step
    rows, _ = tokenized_rows(records, base, two, ctx.log)
    job = write_job(tmp_path / "job", rows, two, base, seed=0, out_dir=tmp_path / "launched")
    cmd = accelerate_command(
        LaunchConfig(num_processes=2, main_process_port=free_port()), MODULE, ["--job", str(job)]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        cmd, check=False, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out_l = json.loads((tmp_path / "launched" / "history.json").read_text())
    w_l = load_file(str(tmp_path / "launched" / "model" / "model.safetensors"))

    assert [r["sequences"] for r in out_l] == [2, 2]
    assert [r["loss"] for r in out_l] == pytest.approx([r["loss"] for r in out_s], rel=1e-5)
    w0 = load_file(str(tiny_folder / "model.safetensors"))
    moved = max((w_s[k] - w0[k]).abs().max().item() for k in w0)
    assert moved > 1e-4
    for k in w_s:
        torch.testing.assert_close(w_l[k], w_s[k], rtol=0, atol=moved * 1e-4, msg=k)
