"""A ``LaunchConfig`` mapped onto the ``accelerate launch`` command line.

Example::

    >>> launch = LaunchConfig(num_processes=2)
    >>> cmd = accelerate_command(launch, "runner.launch.worker", ["runs/demo", "sft"])
    >>> cmd[1:3], cmd[cmd.index("--num_processes") + 1], cmd[-3:]
    (['-m', 'accelerate.commands.launch'], '2', ['runner.launch.worker', 'runs/demo', 'sft'])
"""

from __future__ import annotations

import sys

from runner.launch.config import LaunchConfig


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
