"""The recipe's ``executor:`` block: where and how ``recipe run --executor slurm --shards N`` runs the shards.

Every field may come from the recipe, a profile or the command line (``executor.partition=gpu``).

Example::

    >>> opts = ExecutorOptions(partition="gpu", gpus_per_node=1, time_min=120)
    >>> params = executor_parameters(opts, "job")
    >>> params["slurm_partition"], params["gpus_per_node"], params["timeout_min"]
    ('gpu', 1, 120)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExecutorOptions(BaseModel):
    """Resources of one shard job (one element of the job array). Slurm-only fields are ignored by the
    local executor."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="Slurm partition (sbatch --partition)")
    account: str | None = Field(None, description="Slurm account to charge (sbatch --account)")
    qos: str | None = Field(None, description="Slurm quality of service (sbatch --qos)")
    constraint: str | None = Field(None, description="Slurm node features (sbatch --constraint)")
    time_min: int = Field(60, ge=1, description="wall-clock limit of one shard job, in minutes")
    gpus_per_node: int = Field(0, ge=0, description="GPUs of one shard job")
    cpus_per_task: int | None = Field(None, ge=1, description="CPU cores of one shard job")
    mem_gb: float | None = Field(None, gt=0, description="memory of one shard job, in GB")
    array_parallelism: int | None = Field(None, ge=1, description="at most this many shard jobs at once "
                                          "(Slurm's %N on the job array)")
    setup: list[str] = Field(default_factory=list, description="shell lines run before each Slurm job, e.g. "
                             "`module load cuda` or `source .venv/bin/activate`")
    slurm_args: dict[str, str | int] = Field(default_factory=dict, description="more #SBATCH options as they "
                                             "are, e.g. {reservation: r1, exclusive: ''}")
    folder: str | None = Field(None, description="where the job scripts and logs go (default: "
                               "runs/<recipe>/executor)")


def executor_parameters(opts: ExecutorOptions, name: str) -> dict[str, Any]:
    """``ExecutorOptions`` → the keyword arguments of submitit's ``AutoExecutor.update_parameters`` (shared
    names, and Slurm-only ones prefixed ``slurm_``, which the local executor ignores)."""
    out: dict[str, Any] = {"name": name, "timeout_min": opts.time_min, "gpus_per_node": opts.gpus_per_node,
                           "nodes": 1, "tasks_per_node": 1}
    if opts.cpus_per_task is not None:
        out["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb is not None:
        out["mem_gb"] = opts.mem_gb
    slurm = {"partition": opts.partition, "account": opts.account, "qos": opts.qos,
             "constraint": opts.constraint, "array_parallelism": opts.array_parallelism}
    out.update({f"slurm_{k}": v for k, v in slurm.items() if v is not None})
    if opts.setup:
        out["slurm_setup"] = list(opts.setup)
    if opts.slurm_args:
        out["slurm_additional_parameters"] = dict(opts.slurm_args)
    return out
