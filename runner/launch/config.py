"""A stage's ``launch:`` block: how many processes run it and how they share the model.

Example::

    >>> LaunchConfig(num_processes=8, strategy="deepspeed").num_machines
    1
"""

from __future__ import annotations

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
