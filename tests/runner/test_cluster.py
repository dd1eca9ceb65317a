"""``recipe run --executor local|slurm --shards N``: map stages as submitit job arrays, then merged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import write

from registry.jsonio import read_jsonl
from runner.cli import main

pytest.importorskip("submitit")

REPO_ROOT = Path(__file__).resolve().parents[2]

RECIPE = """\
recipe: spread
stages:
  nums:
    type: demo_components:Numbers
    params: {{n: 7}}
  tally:
    type: demo_components:Tally
    inputs: {{records: nums}}
    params: {{log_file: {log}}}
  count:
    type: demo_components:CountRuns
    inputs: {{records: tally}}
    params: {{log_file: {count}}}
"""


def stage_dir(root: Path, stage: str) -> Path:
    return root / json.loads((root / "latest.json").read_text())["stages"][stage]


def test_local_executor_processes_every_record_exactly_once_across_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests" / "runner")]))
    monkeypatch.chdir(tmp_path)
    log, count = tmp_path / "tally.log", tmp_path / "count.log"
    recipe = write(tmp_path / "r.yaml", RECIPE.format(log=log, count=count))
    argv = ["run", str(recipe), "--executor", "local", "--shards", "3", "--no-progress", "--runs-dir", "runs"]
    assert main(argv) == 0

    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(i for _, i in lines) == [f"r{i}" for i in range(7)]  # every record, each once
    # 7 records in batches of 2 → batches 0..3; shard 0 takes batches 0 and 3, shards 1 and 2 one each,
    # each in a process of its own, none of them this one
    pids = {p for p, _ in lines}
    assert len(pids) == 3 and str(os.getpid()) not in pids
    root = tmp_path / "runs" / "spread"
    tally = stage_dir(root, "tally")
    wal = {i: [e["items"] for e in read_jsonl(tally / f"wal.shard{i}of3.jsonl")] for i in range(3)}
    assert {i: sorted(x for items in w for x in items) for i, w in wal.items()} == {
        0: ["r0", "r1", "r6"], 1: ["r2", "r3"], 2: ["r4", "r5"]}
    # merged by the final run in this process, which runs the whole stage after it too
    assert [r["id"] for r in read_jsonl(tally / "records.jsonl")] == [f"r{i}" for i in range(7)]
    assert read_jsonl(stage_dir(root, "count") / "records.jsonl") == [{"id": "n", "n": 7}]
    assert count.read_text().split() == [str(os.getpid())]
    assert sorted(p.name for p in (root / "executor").iterdir()) == ["tally"]  # submitit's scripts and logs

    assert main(argv) == 0  # finished: nothing is submitted or processed again
    assert len(log.read_text().splitlines()) == 7 and len(count.read_text().split()) == 1


def test_executor_and_shards_go_together(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write(tmp_path / "r.yaml", RECIPE.format(log=tmp_path / "a", count=tmp_path / "b"))
    assert main(["run", str(recipe), "--executor", "local"]) == 2
    assert main(["run", str(recipe), "--shards", "2"]) == 2
    assert main(["run", str(recipe), "--executor", "local", "--shards", "2", "--stage", "tally",
                 "--shard", "0/2"]) == 2
    assert "--executor and --shards go together" in capsys.readouterr().err


def test_the_executor_block_becomes_sbatch_options(tmp_path, monkeypatch):
    """The recipe's (or the command line's) executor options, as Slurm sees them in the job script."""
    import shutil

    from runner.cluster.options import ExecutorOptions, executor_parameters
    from runner.cluster.submit import make_executor
    from runner.load import load_recipe

    text = RECIPE.format(log=tmp_path / "a", count=tmp_path / "b") + (
        "executor: {partition: gpu, account: proj7, time_min: 90, gpus_per_node: 2, mem_gb: 40,\n"
        "           setup: ['source .venv/bin/activate'], slurm_args: {reservation: r1}}\n")
    loaded = load_recipe(write(tmp_path / "r.yaml", text), overrides=["executor.qos=high"])
    opts = loaded.recipe.executor
    assert isinstance(opts, ExecutorOptions) and opts.qos == "high" and opts.partition == "gpu"

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: "/usr/bin/srun" if cmd == "srun" else
                        real_which(cmd, *a, **k))  # submitit looks for srun to know it is on a cluster
    executor = make_executor("slurm", tmp_path / "ex", executor_parameters(opts, "spread.tally"), "tally")
    script = executor._executor._make_submission_file_text("python -m job", "0")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj7", "#SBATCH --qos=high",
                 "#SBATCH --time=90", "#SBATCH --gpus-per-node=2", "#SBATCH --mem=40GB",
                 "#SBATCH --job-name=spread.tally", "#SBATCH --reservation=r1", "source .venv/bin/activate"):
        assert line in script.splitlines(), line


def test_a_failed_shard_is_named_with_its_log():
    from runner.cluster.job import ShardJob
    from runner.cluster.submit import run_shards
    from runner.errors import StageFailure

    class Paths:
        def __init__(self, i):
            self.stderr = Path(f"/logs/{i}.err")

    class Job:
        def __init__(self, i):
            self.job_id, self.paths, self.i = f"42_{i}", Paths(i), i

        def result(self):
            if self.i == 1:
                raise RuntimeError("Traceback ...\nOSError: disk full")
            return "done"

    class Executor:
        def map_array(self, fn, indices):
            return [Job(i) for i in indices]

    said = []
    job = ShardJob(recipe="r.yaml", profile=None, overrides=(), runs_dir="runs", cwd=".", stage="tally", shards=3)
    with pytest.raises(StageFailure) as err:
        run_shards(Executor(), job, said.append)
    assert str(err.value) == ("stage 'tally': 1 of 3 shard jobs failed: shard 1 (OSError: disk full; "
                              "log: /logs/1.err)")
    assert said == ["tally: submitted 3 shard job(s) (array 42); waiting for them"]
