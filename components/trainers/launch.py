"""How a trainer is started on several processes: a ``LaunchConfig`` mapped onto ``accelerate launch``.

Example::

    >>> launch = LaunchConfig(num_processes=2)
    >>> cmd = accelerate_command(launch, "components.trainers.sft", ["--job", "j.json"])
    >>> cmd[1:3], cmd[cmd.index("--num_processes") + 1], cmd[-3:]
    (['-m', 'accelerate.commands.launch'], '2', ['components.trainers.sft', '--job', 'j.json'])
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LaunchConfig(BaseModel):
    """Processes and sharding strategy for a multi-process (data-parallel) training run.

    ``num_processes`` counts processes over all machines (one per GPU). With ``strategy: none`` and more
    than one process the run is plain data parallelism (DDP; gloo on CPU machines). ``fsdp`` and
    ``deepspeed`` shard parameters, gradients and optimizer state; their details (ZeRO stage, offload,
    wrapping policy) come from ``config_file``: an ``accelerate config`` YAML for either strategy, or, for
    DeepSpeed, a DeepSpeed JSON config (the reference trains with ZeRO-3 and CPU offload) whose
    ``gradient_accumulation_steps`` is 1 or ``auto`` (the trainer accumulates micro-steps itself).
    ``extra_args`` are passed to ``accelerate launch`` as they are, e.g.
    ``["--machine_rank", "1", "--main_process_ip", "10.0.0.1"]`` on the second machine of a two-machine run.
    """

    model_config = ConfigDict(extra="forbid")

    num_processes: int = Field(1, ge=1, description="Processes over all machines (usually one per GPU).")
    num_machines: int = Field(1, ge=1, description="Machines taking part; num_processes must divide evenly.")
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] = Field(
        "no", description="Autocast precision for forward passes; weights stay in the loaded dtype."
    )
    strategy: Literal["none", "fsdp", "deepspeed"] = Field(
        "none", description="none = data parallel only; fsdp / deepspeed = sharded training."
    )
    config_file: Path | None = Field(
        None, description="accelerate config YAML (any strategy) or DeepSpeed JSON (strategy deepspeed)."
    )
    main_process_port: int | None = Field(
        None, ge=1, le=65535, description="Port of the rank-0 rendezvous; None lets accelerate choose."
    )
    extra_args: list[str] = Field(default_factory=list, description="More `accelerate launch` arguments.")

    @model_validator(mode="after")
    def _machines_divide(self) -> LaunchConfig:
        if self.num_processes % self.num_machines:
            raise ValueError(
                f"num_processes ({self.num_processes}) must be a multiple of num_machines "
                f"({self.num_machines})"
            )
        return self


def accelerate_command(launch: LaunchConfig, module: str, args: list[str]) -> list[str]:
    """The argv that runs ``python -m <module> <args>`` under ``accelerate launch`` with ``launch``."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(launch.num_processes),
        "--num_machines",
        str(launch.num_machines),
        "--mixed_precision",
        launch.mixed_precision,
        "--dynamo_backend",
        "no",
    ]
    if launch.strategy == "fsdp":
        cmd.append("--use_fsdp")
    elif launch.strategy == "deepspeed":
        cmd.append("--use_deepspeed")
    elif launch.num_processes > 1:
        cmd.append("--multi_gpu")  # accelerate's name for "spawn through torchrun"; also used on CPU
    if launch.config_file is not None:
        if launch.strategy == "deepspeed" and launch.config_file.suffix == ".json":
            cmd += ["--deepspeed_config_file", str(launch.config_file)]
        else:
            cmd += ["--config_file", str(launch.config_file)]
    if launch.main_process_port is not None:
        cmd += ["--main_process_port", str(launch.main_process_port)]
    cmd += list(launch.extra_args)
    cmd += ["--module", module, *args]
    return cmd
