"""LaunchConfig → `accelerate launch` argv, checked by accelerate's own parser; the typed `launch:` block of a
recipe; one real 2-process run of a train.sft stage launched by the runner."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from components.trainers.sft import SFT, SFTParams
from runner.errors import RecipeError
from runner.launch.command import accelerate_command
from runner.launch.config import LaunchConfig
from runner.load import load_recipe
from runner.session import run_recipe
from runner.store import read_jsonl
from tests.components.test_sft_tiny import one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

MODULE = "runner.launch.worker"
REPO_ROOT = Path(__file__).resolve().parents[2]


def parsed(cmd: list[str]):
    """What accelerate itself makes of the argv (all after ``python -m accelerate.commands.launch``)."""
    from accelerate.commands.launch import launch_command_parser

    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(cmd[3:])


def test_single_process():
    cmd = accelerate_command(LaunchConfig(), MODULE, ["runs/demo", "sft"])
    args = parsed(cmd)
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (1, 1, "no")
    assert not (args.multi_gpu or args.use_fsdp or args.use_deepspeed)
    assert (
        args.module and args.training_script == MODULE and args.training_script_args == ["runs/demo", "sft"]
    )


def test_data_parallel_processes_with_port_and_extra_args():
    cfg = LaunchConfig(
        num_processes=8,
        num_machines=2,
        mixed_precision="bf16",
        main_process_port=29501,
        extra_args=["--machine_rank", "1", "--main_process_ip", "10.0.0.1"],
    )
    args = parsed(accelerate_command(cfg, MODULE, ["runs/demo", "sft"]))
    assert args.multi_gpu and not args.use_fsdp
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (8, 2, "bf16")
    assert (args.main_process_port, args.machine_rank, args.main_process_ip) == (29501, 1, "10.0.0.1")
    assert args.training_script_args == ["runs/demo", "sft"]


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


def write_recipe(folder: Path, launch: str, *, model: str = "tiny-random-llama", params: str = "{}",
                 records: list[dict] | None = None) -> Path:
    """A two-stage recipe (load.jsonl → train.sft) with the sft stage's ``launch:`` on line 9."""
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records or []))
    path = folder / "launched.yaml"
    path.write_text(
        "recipe: launched\n"
        "stages:\n"
        "  data: {type: load.jsonl, params: {path: train.jsonl}}\n"
        "  sft:\n"
        "    type: train.sft\n"
        "    inputs: {train: data}\n"
        f"    model: {model}\n"
        f"    params: {params}\n"
        f"    launch: {launch}\n"
    )
    return path


def test_the_launch_block_is_typed_in_the_recipe(tmp_path):
    loaded = load_recipe(write_recipe(tmp_path, "{num_processes: 4, strategy: fsdp}"))
    launch = loaded.recipe.stages["sft"].launch
    assert isinstance(launch, LaunchConfig)
    assert (launch.num_processes, launch.strategy, launch.num_machines) == (4, "fsdp", 1)
    assert loaded.recipe.stages["data"].launch is None


def test_a_bad_launch_block_is_a_recipe_problem_with_its_position(tmp_path):
    path = write_recipe(tmp_path, "{num_procs: 2}")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert "launched.yaml:9:14: stages.sft.launch.num_procs: unknown key 'num_procs'" in text
    assert "did you mean 'num_processes'" in text

    with pytest.raises(RecipeError, match="multiple of num_machines"):
        load_recipe(write_recipe(tmp_path, "{num_processes: 3, num_machines: 2}"))


def test_worker_output_is_relayed_progress_to_the_bar_lines_to_the_log(caplog, capsys):
    from runner.launch import progress_line, relay

    advanced = []
    lines = [progress_line(1, 3) + "\n", "INFO recipe.sft: sft: step 1/3, loss 2.5\n", "\n",
             "@recipe-progress not json\n", progress_line(2, 3) + "\n",
             "WARNING transformers: something odd\n", "Traceback (most recent call last):\n"]
    with caplog.at_level(logging.INFO, logger="recipe.sft.worker"):
        tail = relay(iter(lines), lambda n, total: advanced.append((n, total)), "sft")
    assert advanced == [(1, 3), (2, 3)]
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("recipe.sft.worker", "INFO", "INFO recipe.sft: sft: step 1/3, loss 2.5"),
        ("recipe.sft.worker", "WARNING", "@recipe-progress not json"),
        ("recipe.sft.worker", "WARNING", "WARNING transformers: something odd"),
        ("recipe.sft.worker", "WARNING", "Traceback (most recent call last):"),
    ]
    assert tail[-1] == "Traceback (most recent call last):"
    # what is not an info line reaches the console too, as the workers' own output did
    err = capsys.readouterr().err
    assert "WARNING transformers: something odd" in err and "step 1/3" not in err


def test_two_processes_equal_one_process_with_two_accumulated_micro_steps(tmp_path, tiny_folder,  # noqa: F811
                                                                         monkeypatch, caplog):
    """Data parallelism through `accelerate launch` (gloo on CPU) vs gradient accumulation in one process;
    the launched stage reports its steps to the parent (progress and log lines) and to TensorBoard."""

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

    # the same run as a recipe stage that the runner launches on 2 processes, each taking one row per step
    path = write_recipe(
        tmp_path,
        f"{{num_processes: 2, main_process_port: {free_port()}}}",
        model=f"file://{tiny_folder}",
        params=json.dumps({**common, "report_to": ["tensorboard"], "logging_steps": 1}),
        records=records,
    )
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "zoo"))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the workers import this checkout
    monkeypatch.chdir(REPO_ROOT)
    with caplog.at_level(logging.INFO):
        run_recipe(load_recipe(path), tmp_path / "runs", progress=False, publish=False)
    root = tmp_path / "runs" / "launched"
    sdir = root / json.loads((root / "latest.json").read_text())["stages"]["sft"]
    # per-step lines relayed from the main worker, and its progress reaching the stage's progress
    steps = [r.getMessage() for r in caplog.records if r.name == "recipe.sft.worker" and ": step " in r.getMessage()]
    assert [m.split(": ", 2)[-1].split(",")[0] for m in steps] == ["step 1/2", "step 2/2"]
    assert any(r.name == "recipe.progress" and r.getMessage().startswith("sft: 2/2") for r in caplog.records)
    assert list((sdir / "tracking" / "recipe-zoo").glob("events.out.tfevents.*"))
    out_l = read_jsonl(sdir / "records.jsonl")
    w_l = load_file(str(sdir / "model" / "model.safetensors"))

    assert [r["sequences"] for r in out_l] == [2, 2]
    assert [r["loss"] for r in out_l] == pytest.approx([r["loss"] for r in out_s], rel=1e-5)
    w0 = load_file(str(tiny_folder / "model.safetensors"))
    moved = max((w_s[k] - w0[k]).abs().max().item() for k in w0)
    assert moved > 1e-4
    for k in w_s:
        torch.testing.assert_close(w_l[k], w_s[k], rtol=0, atol=moved * 1e-4, msg=k)


@pytest.mark.parametrize("finished", [True, False])
def test_a_worker_destroys_its_process_group_before_it_exits(tmp_path, finished):
    """Left to the interpreter's exit, a gloo group can hang in its destructor: the worker destroys it,
    after a barrier when it finished, without one when it failed (another rank may never reach it)."""
    import torch.distributed as dist

    from runner.launch.worker import close_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group(wait_for_others=finished)
    assert not dist.is_initialized()
    close_process_group(wait_for_others=finished)  # nothing to close: no error
