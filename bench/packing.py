"""Naive vs sorted vs packed batching (LongAlign) on a tiny model, side by side.

Rows with a long-tailed (seeded lognormal) length distribution are trained for one epoch with each
strategy — forward, weighted loss, backward, optimizer step — using the trainer's own plan, collation,
attention inputs and loss. Each batch holds a comparable token budget: naive and sorted feed ``--batch``
rows padded to the longest of them (as ``--batch`` data-parallel ranks with one row each wait for the
longest); packed feeds ``--pack-batch`` packs of at most ``--pack-tokens`` tokens (the reference uses one
pack per device). Printed per strategy: padding share (padding tokens / all tokens in the model's input
tensors) and training tokens per second (real tokens only, steady state). ``packed`` keeps sequences
apart with varlen attention (a per-sequence SDPA loop, the CPU stand-in for flash_attn_varlen_func),
``packed_mask`` with the block-diagonal mask. One torch thread by default, so that the ratios hold on a
busy shared machine.

    python3 bench/packing.py [--rows 192] [--batch 8] [--pack-tokens 1024] [--pack-batch 1] [--threads 1]

The last line is ``name=value`` pairs, e.g. ``padding_share_naive=0.63 padding_share_sorted=0.12
padding_share_packed=0.0 ... speedup_packed_vs_naive=2.9``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.trainers.batching import collate, plan_epoch, step_rows
from components.trainers.loss import row_weights, weighted_loss
from components.trainers.packed_attention import model_inputs, register_varlen_attention


def make_rows(n: int, seed: int, vocab: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Rows of lognormal length (median ~110 tokens, long tail, capped); the second half of each is target."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = max(16, min(max_len, int(rng.lognormvariate(math.log(110), 0.9))))
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        cut = length // 2
        rows.append((ids, [-100] * cut + ids[cut:]))
    return rows


def make_model(vocab: int, max_len: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_len,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(cfg).float().train()


def run(strategy: str, rows, args, vocab: int, attention: str = "mask") -> dict[str, float]:
    import torch

    model = make_model(vocab, args.pack_tokens)
    if attention == "varlen":
        model.set_attn_implementation(register_varlen_attention())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lengths = [len(ids) for ids, _ in rows]
    targets = {i: sum(1 for lab in labels[1:] if lab != -100) for i, (_, labels) in enumerate(rows)}
    packed = strategy == "packed"
    plan = plan_epoch(
        lengths,
        strategy,
        seed=args.seed,
        per_device_batch_size=args.pack_batch if packed else args.batch,
        max_pack_tokens=args.pack_tokens,
    )
    real = padded = 0
    elapsed = 0.0
    for n, step in enumerate(plan.steps):
        weights = row_weights(step_rows(step), targets, 1, True)
        batch = collate(rows, step[0][0], weights, packed=packed, pad_id=0)
        start = time.perf_counter()
        logits = model(**model_inputs(batch, attention, "cpu"), use_cache=False).logits
        weighted_loss(logits, batch.labels, batch.weights).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if n >= 2:  # the first steps warm up allocators and kernels
            elapsed += time.perf_counter() - start
            real += batch.real_tokens
            padded += batch.padded_tokens
    n_units = sum(len(rank) for s in plan.steps for m in s for rank in m)
    return {
        "padding_share": padded / (real + padded),
        "tokens_per_s": real / elapsed,
        "steps": len(plan.steps),
        "skipped": len(plan.skipped_too_long),
        "pack_fill": sum(lengths) / (n_units * args.pack_tokens) if packed else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=192)
    ap.add_argument("--batch", type=int, default=8, help="rows per batch for naive and sorted")
    ap.add_argument("--pack-tokens", type=int, default=1024, help="max tokens per pack (also the row cap)")
    ap.add_argument("--pack-batch", type=int, default=1, help="packs per batch (reference: 1 per device)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads; 1 keeps the ratios steady on a shared machine"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    vocab = 512
    rows = make_rows(args.rows, args.seed, vocab, args.pack_tokens)
    lengths = sorted(len(ids) for ids, _ in rows)
    print(
        f"{len(rows)} rows, {sum(lengths)} tokens, length median {lengths[len(lengths) // 2]}, "
        f"p90 {lengths[int(0.9 * len(lengths))]}, max {lengths[-1]}"
    )
    results = {s: run(s, rows, args, vocab) for s in ("naive", "sorted")}
    results["packed"] = run("packed", rows, args, vocab, attention="varlen")
    results["packed_mask"] = run("packed", rows, args, vocab, attention="mask")
    print(f"{'strategy':<12} {'steps':>5} {'padding share':>14} {'tokens/s':>10} {'pack fill':>10}")
    for s, r in results.items():
        share, speed, fill = r["padding_share"], r["tokens_per_s"], r["pack_fill"]
        print(f"{s:<12} {r['steps']:>5} {share:>14.3f} {speed:>10.0f} {fill:>10.3f}")
    print(
        "packed: varlen attention (per-sequence SDPA, the CPU stand-in for flash_attn_varlen_func); "
        "packed_mask: block-diagonal mask. Packs are not padded to --pack-tokens; 'pack fill' is the share "
        "of that capacity in use."
    )
    base = results["naive"]["tokens_per_s"]
    print(
        " ".join(
            [f"padding_share_{s}={r['padding_share']:.4f}" for s, r in results.items()]
            + [f"tokens_per_s_{s}={r['tokens_per_s']:.0f}" for s, r in results.items()]
            + [
                f"speedup_sorted_vs_naive={results['sorted']['tokens_per_s'] / base:.2f}",
                f"speedup_packed_vs_naive={results['packed']['tokens_per_s'] / base:.2f}",
            ]
        )
    )


if __name__ == "__main__":
    main()
