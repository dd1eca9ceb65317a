"""Peak memory of GATEAU's segment attention: response rows only (ours) vs full eager attention, side by side.

CAM needs, per layer, the response tokens' attention to each context segment. With eager attention and
``output_attentions`` every layer's ``[heads, n, n]`` probabilities are built and kept; the registered
segment-rows attention function (``components.scorers.segment_attention``) runs SDPA for the output and
computes only the response rows, ``chunk_rows`` at a time. Both read the same tiny random Llama at 1k, 2k
and 4k tokens with a fixed 256-token response; each measurement runs in a fresh process and reports the
peak memory above what the process held just before the forward pass (on the CPU: the kernel's peak
resident set, reset through ``/proc/self/clear_refs``; on a GPU: ``torch.cuda.max_memory_allocated``).
Linear growth means ~2× per doubling; quadratic ~4×.

    python3 bench/attention_memory.py [--lengths 1024 2048 4096] [--device cpu|cuda] [--threads 1]

The last line is ``name=value`` pairs: ``segment_growth_1k_to_4k=… eager_growth_1k_to_4k=…
eager_over_segment_at_4k=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESPONSE = 256


def make_model(max_len: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_len)
    return LlamaForCausalLM(cfg).float().eval()


def _peak_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss() -> int:
    """Current and peak resident set of this process, in bytes (VmRSS, VmHWM)."""
    status = Path("/proc/self/status").read_text().splitlines()
    values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return values.get("VmRSS", 0), values.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def child(method: str, n: int, device: str, threads: int) -> dict:
    """One measurement: peak bytes of one forward pass of ``method`` over ``n`` tokens."""
    import gc

    import torch

    from components.scorers.segment_attention import SegmentAttention, register

    torch.set_num_threads(threads)
    lm = make_model(max(n, 64)).to(device)
    name = register()
    lm.set_attn_implementation("eager" if method == "eager" else name)
    rows, segments = (n - RESPONSE, n), [(s, s + 128) for s in range(0, n - RESPONSE - 127, 128)]

    def forward(ids):
        with torch.no_grad():
            if method == "eager":
                out = lm(input_ids=ids, output_attentions=True, logits_to_keep=1)
                return [a[0, :, rows[0]:rows[1]].mean(0) for a in out.attentions]  # the rows a reader keeps
            with SegmentAttention(rows, segments) as seg:
                lm(input_ids=ids, logits_to_keep=1)
            return seg.result()

    ids = torch.randint(0, 512, (1, n), generator=torch.Generator().manual_seed(1)).to(device)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        forward(ids)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before, _ = _rss()
        _peak_reset()
        forward(ids)
        _, high = _rss()
        peak = max(0, high - before)
    return {"method": method, "n": n, "peak_bytes": peak}


def measure(method: str, n: int, device: str, threads: int) -> int:
    cmd = [sys.executable, __file__, "--child", method, str(n), "--device", device, "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.device, args.threads)))
        return
    rows = []
    for n in args.lengths:
        seg = measure("segment", n, args.device, args.threads)
        eag = measure("eager", n, args.device, args.threads)
        rows.append((n, seg, eag))
    mib = 1024 * 1024
    print(f"device={args.device}, response={RESPONSE} tokens, 2 layers x 4 heads, peak bytes above the pre-forward level")
    print(f"{'tokens':>7} | {'segment rows (ours)':>20} | {'eager, all layers':>18} | {'eager / ours':>12}")
    for n, seg, eag in rows:
        print(f"{n:>7} | {seg / mib:>16.1f} MiB | {eag / mib:>14.1f} MiB | {eag / max(seg, 1):>12.1f}")
    (n0, s0, e0), (n1, s1, e1) = rows[0], rows[-1]
    tag = f"{round(n0 / 1024)}k_to_{round(n1 / 1024)}k"
    print(f"segment_growth_{tag}={s1 / max(s0, 1):.2f} eager_growth_{tag}={e1 / max(e0, 1):.2f} "
          f"eager_over_segment_at_{round(n1 / 1024)}k={e1 / max(s1, 1):.1f} "
          f"segment_peak_bytes_{n1}={s1} eager_peak_bytes_{n1}={e1}")


if __name__ == "__main__":
    main()
