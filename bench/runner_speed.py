"""Runner overheads, measured side by side in one run.

- `recipe --help` and `recipe validate` (all shipped recipes) wall time, in fresh processes;
- the quickstart recipe cold (every stage runs) vs. cached (second run: nothing runs, no model loaded).

    python bench/runner_speed.py                 # quickstart with the tiny random model (seconds)
    python bench/runner_speed.py --profile ""    # the real SmolLM2 quickstart (minutes, cold)

The last line is `name=value` pairs for comparing runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, repeat: int = 1) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times, proc = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return statistics.median(times), proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="tiny", help="quickstart profile ('' = the real SmolLM2)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    recipe = [sys.executable, "-m", "runner.cli"]
    recipes = [str(p) for p in sorted((REPO / "recipes").glob("*.yaml"))]
    help_s, _ = timed(recipe + ["--help"], REPO, args.repeat)
    validate_s, _ = timed(recipe + ["validate", *recipes], REPO, args.repeat)
    print(f"recipe --help:            {help_s:.3f} s (median of {args.repeat})")
    print(f"recipe validate ({len(recipes)} files): {validate_s:.3f} s")
    work = Path(tempfile.mkdtemp(prefix="recipe-bench-"))
    try:
        run = recipe + ["run", str(REPO / "recipes" / "quickstart.yaml"), "--runs-dir", str(work),
                        "--no-progress", "--no-publish"] + (["--profile", args.profile] if args.profile else [])
        cold_s, _ = timed(run, work)
        cached_s, proc = timed(run, work, args.repeat)
        loaded = "Loading weights" in proc.stderr + proc.stdout
        print(f"quickstart cold run:      {cold_s:.2f} s (profile {args.profile or 'default'})")
        print(f"quickstart cached re-run: {cached_s:.3f} s (model loaded: {loaded})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"help_s={help_s:.3f} validate_s={validate_s:.3f} cold_s={cold_s:.2f} cached_s={cached_s:.3f} "
          f"speedup_cached_vs_cold={cold_s / cached_s:.1f} model_loaded_on_cached={int(loaded)}")


if __name__ == "__main__":
    main()
