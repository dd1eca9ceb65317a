"""Peak memory and time of the chunked SFT loss against the full-logits loss, side by side.

Each variant runs in its own process: final hidden states ``[1, L, H]`` and an output layer ``H x V``
(a large vocabulary), the weighted cross-entropy of ``components.trainers.loss`` forward and backward.
``full`` builds the ``[L, V]`` logits and their float32 cross-entropy at once (``weighted_loss``);
``chunked`` runs the output layer and the loss ``--chunk`` positions at a time under activation
checkpointing (``chunked_weighted_loss``). Printed per variant: peak RSS above the process's baseline
(inputs already allocated), seconds, the loss, and whether loss and gradients match.

    python3 bench/loss_memory.py [--length 4096] [--vocab 128000] [--hidden 256] [--chunk 512]

The last line is ``name=value`` pairs, ending with ``peak_ratio_full_vs_chunked=…``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_variant(variant: str, length: int, vocab: int, hidden: int, chunk: int) -> dict:
    import torch

    from components.trainers.loss import chunked_weighted_loss, weighted_loss

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, length, hidden, generator=g).requires_grad_()
    head = torch.nn.Linear(hidden, vocab, bias=False)
    torch.nn.init.normal_(head.weight, std=0.02, generator=g)
    labels = torch.randint(0, vocab, (1, length), generator=g)
    labels[0, : length // 8] = -100  # a prompt without targets
    weights = torch.where(labels == -100, 0.0, 1.0 / int((labels != -100).sum()))
    base = _rss_mb()
    start = time.perf_counter()
    if variant == "full":
        loss = weighted_loss(head(h), labels, weights)
    else:
        loss = chunked_weighted_loss(h, head, labels, weights, chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    grads = torch.cat([h.grad.flatten(), head.weight.grad.flatten()])
    return {"peak_mb": _rss_mb() - base, "seconds": seconds, "loss": loss.item(),
            "grad_sum": grads.double().abs().sum().item(), "grad_head": head.weight.grad[:4, :4].tolist(),
            "grad_h": h.grad[0, -3:, :4].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=128000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.length, a.vocab, a.hidden, a.chunk)))
        return
    out = {}
    for variant in ("full", "chunked"):
        cmd = [sys.executable, __file__, "--variant", variant, "--length", str(a.length), "--vocab", str(a.vocab),
               "--hidden", str(a.hidden), "--chunk", str(a.chunk)]
        out[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    full, chunked = out["full"], out["chunked"]
    import math

    same_loss = math.isclose(full["loss"], chunked["loss"], rel_tol=1e-5, abs_tol=1e-6)
    same_grads = math.isclose(full["grad_sum"], chunked["grad_sum"], rel_tol=1e-4) and all(
        math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-8)
        for key in ("grad_head", "grad_h") for rx, ry in zip(full[key], chunked[key]) for x, y in zip(rx, ry))
    print(f"L={a.length} V={a.vocab} H={a.hidden} chunk={a.chunk} (float32 logits would be "
          f"{a.length * a.vocab * 4 / 2**20:.0f} MiB)")
    print(f"{'variant':10s} {'peak MiB':>10s} {'seconds':>8s} {'loss':>12s}")
    for name, r in out.items():
        print(f"{name:10s} {r['peak_mb']:10.0f} {r['seconds']:8.2f} {r['loss']:12.6f}")
    ratio = full["peak_mb"] / max(chunked["peak_mb"], 1.0)
    print(f"peak_full_mb={full['peak_mb']:.0f} peak_chunked_mb={chunked['peak_mb']:.0f} "
          f"time_ratio_chunked_vs_full={chunked['seconds'] / full['seconds']:.2f} same_loss={same_loss} "
          f"same_grads={same_grads} peak_ratio_full_vs_chunked={ratio:.1f}")


if __name__ == "__main__":
    main()
