"""Records streaming through stages: a load → filter → export recipe at two sizes, against a plain loop.

For each size (records of about 1 KB: an id, a score, a text), two fresh processes, side by side:

- ``recipe run`` of ``load.jsonl`` → ``select.filter`` (``score >= 5``: half the records) → ``export.jsonl``;
- a plain Python loop doing the same: read each line (``json.loads``), keep it when its score is >= 5,
  write it (``json.dumps``).

Printed per size: peak RSS of the whole process (``os.wait4``), wall time, and the records written (the
two must agree). Peak memory should not grow with the records; the recipe's time is compared to the
loop's.

    python bench/stream.py [--sizes 100000 400000] [--record-bytes 1000]

The last line is ``name=value`` pairs: ``peak_ratio`` (largest size's peak RSS over the smallest's) and
``time_vs_loop`` (the recipe's wall time over the loop's at the largest size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RECIPE = """\
recipe: stream
seed: 0
stages:
  load: {{type: load.jsonl, params: {{path: {src}}}}}
  keep:
    type: select.filter
    inputs: {{records: load}}
    params: {{where: [{{field: score, op: ge, value: 5}}]}}
  export:
    type: export.jsonl
    inputs: {{records: keep}}
    params: {{path: {out}}}
"""

LOOP = """\
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in src:
        if line.strip():
            r = json.loads(line)
            if r.get("score") is not None and r["score"] >= 5:
                out.write(json.dumps(r, ensure_ascii=False) + "\\n")
"""


def make_data(path: Path, n: int, record_bytes: int) -> None:
    """``n`` records of about ``record_bytes`` bytes each, written a chunk at a time."""
    words = "the of and to in is was for on that with by as at from long context model data".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(record_bytes // 4))[: record_bytes - 60]
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            f.write("".join(json.dumps({"id": f"r{i}", "score": i % 10, "text": f"{i} {text}"}) + "\n"
                            for i in range(start, min(n, start + 10_000))))


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_size(work: Path, n: int, record_bytes: int) -> dict:
    d = work / str(n)
    d.mkdir()
    src = d / "input.jsonl"
    make_data(src, n, record_bytes)
    recipe = d / "stream.yaml"
    recipe.write_text(RECIPE.format(src=src, out=d / "export.jsonl"))
    loop = d / "loop.py"
    loop.write_text(LOOP)
    loop_s, loop_mb = measure([sys.executable, str(loop), str(src), str(d / "loop.jsonl")], d)
    run_s, run_mb = measure([sys.executable, "-m", "runner.cli", "run", str(recipe), "--runs-dir", str(d / "runs"),
                             "--no-progress", "--no-publish"], d)
    out = {"n": n, "input_mb": src.stat().st_size / 2**20, "recipe_s": run_s, "recipe_mb": run_mb, "loop_s": loop_s,
           "loop_mb": loop_mb, "recipe_out": lines(d / "export.jsonl"), "loop_out": lines(d / "loop.jsonl")}
    shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000])
    ap.add_argument("--record-bytes", type=int, default=1000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recipe-stream-"))
    rows = []
    try:
        print(f"{'records':>9} {'input MB':>9} | {'recipe s':>9} {'peak MB':>8} | {'loop s':>7} {'peak MB':>8} |"
              f" {'time ×':>6} | {'written':>9}")
        for n in a.sizes:
            r = run_size(work, n, a.record_bytes)
            rows.append(r)
            print(f"{r['n']:>9} {r['input_mb']:>9.0f} | {r['recipe_s']:>9.2f} {r['recipe_mb']:>8.0f} |"
                  f" {r['loop_s']:>7.2f} {r['loop_mb']:>8.0f} | {r['recipe_s'] / r['loop_s']:>6.2f} |"
                  f" {r['recipe_out']:>9}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, large = rows[0], rows[-1]
    same = all(r["recipe_out"] == r["loop_out"] for r in rows)
    print(f"peak_ratio={large['recipe_mb'] / small['recipe_mb']:.2f} "
          f"time_vs_loop={large['recipe_s'] / large['loop_s']:.2f} "
          f"peak_mb_{large['n']}={large['recipe_mb']:.0f} same_records={same}")


if __name__ == "__main__":
    main()
