"""Supervised fine-tuning with LongAlign's batching and loss weighting.

The component (``train.sft``) takes chat records (tokenized here with ``data.tokenize``'s code) or
already-tokenized ``{input_ids, labels}`` records, trains the ``base`` model with transformers (+ peft
for LoRA) under ``accelerate`` and writes ``artifact_dir/model``: the adapter or full weights, the
tokenizer, a model card and ``recipe_model.json``. The same ``train()`` runs in-process on one device or
as every rank of ``accelerate launch`` (the runner launches a stage that has a ``launch:`` block, see
``components.trainers.launch``); ranks share the work of each step and only rank 0 writes files.
Outside the runner, ``write_job`` + ``python -m components.trainers.sft --job job.json`` trains by hand.

Checkpoints (weights or adapter, optimizer, scheduler, RNG states, step and loss history) go to
``scratch/checkpoints`` every ``save_steps`` optimizer steps; running the stage again after a kill resumes
from the newest one and reaches the same weights as an uninterrupted run (the batch plan is a pure
function of the data, the params and the seed, so the step number is the data position).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
from array import array
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from components.base import Context, Fields, ModelSlot, Params, WholeComponent
from components.trainers.batching import EpochPlan, Step, collate, plan_epoch, step_rows
from components.trainers.tokenize import IGNORE_INDEX, TokenizeStats, load_tokenizer, tokenize_records
from components.trainers.tokenize import STATS_FILE as TOKENIZE_STATS
from registry.resolved import TRAINED_MODEL_FILE, ResolvedModel

CHECKPOINTS = "checkpoints"
STATS_FILE = "train_stats.json"
log = logging.getLogger(__name__)


class LoraParams(BaseModel):
    """LoRA adapter settings (peft)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="Rank of the low-rank update.")
    alpha: int = Field(32, ge=1, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' for every linear layer but the head.",
    )


class SFTParams(Params):
    lora: LoraParams | None = Field(
        None,
        description="LoRA adapter settings; null trains all weights (the reference does full fine-tuning).",
    )
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (reference: 2e-5).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warm-up (reference: cosine)."
    )
    warmup_ratio: float = Field(
        0.03, ge=0, le=1, description="Share of the steps spent warming up (reference: 0.03)."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay on matrices (not on biases/norms)."
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1 (reference: 0.9).")
    adam_beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2 (reference: 0.95).")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; null: no clipping."
    )
    epochs: int = Field(
        2, ge=1, description="Passes over the data (reference: 2); ignored when max_steps is set."
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run; overrides epochs (the data repeats as needed)."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-steps per optimizer step (reference: 1 for packed, 12 for sorted/naive)."
    )
    per_device_batch_size: int = Field(
        1, ge=1, description="Rows (or packs, when packed) per device per micro-step."
    )
    seed: int | None = Field(
        None, description="Seed of the data order and initialisation; null: the run's seed."
    )
    max_length: int = Field(8192, ge=2, description="Rows are cut on the right to this many tokens.")
    chat_template: str | None = Field(
        None, description="Jinja chat template for tokenizing chat records instead of the model's own."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; auto = bfloat16 on a GPU that supports it, else float32."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory."
    )
    batching: Literal["naive", "sorted", "packed"] = Field(
        "packed",
        description="naive: shuffled batches; sorted: length-sorted groups; packed: sequences packed "
        "into rows of max_pack_tokens with attention kept inside each sequence "
        "(see components.trainers.batching).",
    )
    loss_weighting: bool = Field(
        True,
        description="Mean over sequences of each sequence's mean token loss (paper Eq. 2); false: mean over "
        "all target tokens of the optimizer step.",
    )
    group_size: int | None = Field(
        None,
        ge=1,
        description="sorted: rows per group (one group per micro-step, split over the ranks); null = "
        "world size x per_device_batch_size (the reference: number of GPUs, batch 1).",
    )
    max_pack_tokens: int | None = Field(None, ge=2, description="packed: tokens per pack; null = max_length.")
    drop_last_pack: bool = Field(
        False,
        description="packed: drop the last, partly filled pack as the reference does (default: keep it).",
    )
    reset_position_ids: bool = Field(
        False,
        description="packed: restart position ids for each sequence; false = the reference (0..L-1 "
        "across the pack).",
    )
    attention: Literal["auto", "mask", "varlen"] = Field(
        "auto",
        description="How packed sequences are kept apart: mask = block-diagonal mask through SDPA; "
        "varlen = cu_seqlens through flash_attn_varlen_func (or a per-sequence loop without flash-attn); "
        "auto = varlen when flash-attn and a GPU are available, else mask.",
    )
    save_steps: int = Field(
        200, ge=1, description="Checkpoint every this many optimizer steps (reference: 200)."
    )
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept in the stage's scratch folder.")


class SFT(WholeComponent):
    """Supervised fine-tuning on assistant tokens with LongAlign's batching.

    ``batching`` picks naive, sorted or packed batching; ``loss_weighting`` makes the loss the mean over
    sequences of per-sequence mean token losses (paper Eq. 2), exact under gradient accumulation and data
    parallelism. Where the reference code deviates from the method, the method is the default:
    sorted batching uses true row lengths and keeps the incomplete last group; packing keeps the last
    partial pack (``drop_last_pack: true`` gives the reference); the reference's warm-up hack (first 32
    packs cut to 32k tokens with doubled weights) is not reproduced. Positions are not reset inside a
    pack, as in the reference (``reset_position_ids: true`` restarts them). The reference keeps only a
    multiple of the GPU count of packs; here a rank left without data in the last micro-step of an epoch
    runs a zero-weight filler row instead, so no data is lost.

    Gradient accumulation is done by the trainer (gradients synchronised on the last micro-step only), so
    the weights of one optimizer step can be normalised over all its sequences; the loss is not divided by
    the number of micro-steps.

    Records out: the loss curve, one ``{step, loss, lr, epoch, sequences, tokens, target_tokens}`` per
    optimizer step.
    """

    type: ClassVar[str] = "train.sft"
    Params: ClassVar[type[Params]] = SFTParams
    inputs: ClassVar[dict[str, Fields]] = {"train": Fields()}
    outputs: ClassVar[Fields | None] = Fields(
        "step", "loss", "lr", "epoch", "sequences", "tokens", "target_tokens"
    )
    models: ClassVar[dict[str, ModelSlot]] = {
        "base": ModelSlot(kind="weights", doc="the model to fine-tune (a model folder or a trained adapter)"),
    }
    produces_model: ClassVar[bool] = True

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: SFTParams = self.params  # type: ignore[assignment]
        base = ctx.model_source("base")
        records = [r for port in inputs.values() for r in port]
        if not records:
            raise ValueError("no training records: the upstream stage produced none "
                             "(see its metrics and failures.jsonl in the report)")
        rows, tok_stats = tokenized_rows(records, base, p, ctx.log)
        if tok_stats is not None and _is_rank_zero():
            _atomic_write(ctx.artifact_dir / TOKENIZE_STATS, json.dumps(asdict(tok_stats), indent=1))
        seed = p.seed if p.seed is not None else ctx.seed
        return train(rows, p, base, seed, ctx.scratch, ctx.artifact_dir / "model", ctx.advance, ctx.stage)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": len(records)}
        if records:
            losses = [r["loss"] for r in records]
            out.update(
                final_loss=losses[-1],
                first_loss=losses[0],
                mean_loss=sum(losses) / len(losses),
                tokens_trained=sum(r["tokens"] for r in records),
                target_tokens=sum(r["target_tokens"] for r in records),
                sequences=sum(r["sequences"] for r in records),
            )
        stats = ctx.artifact_dir / STATS_FILE
        if stats.is_file():
            out.update(json.loads(stats.read_text()))
        tok_stats = ctx.artifact_dir / TOKENIZE_STATS
        if tok_stats.is_file():
            out.update({f"tokenize_{k}": v for k, v in json.loads(tok_stats.read_text()).items()})
        return out

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not records or not metrics:
            return None
        summary = (
            f"SFT: {metrics['steps']} steps, loss {metrics['first_loss']:.4f} → {metrics['final_loss']:.4f}, "
            f"{metrics['tokens_trained']} tokens ({metrics['target_tokens']} trained on)."
        )
        lines = [summary]
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5, 3))
            ax.plot([r["step"] for r in records], [r["loss"] for r in records])
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            fig.tight_layout()
            fig.savefig(ctx.artifact_dir / "loss.png", dpi=100)
            plt.close(fig)
            lines.append("\n![loss curve](loss.png)")
        except ImportError:
            pass
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- data


def tokenized_rows(
    records: list[dict], base: ResolvedModel, p: SFTParams, logger: logging.Logger
) -> tuple[list[dict], TokenizeStats | None]:
    """Records as ``{id, input_ids, labels}``: chat records are tokenized, tokenized ones passed through.

    A tokenized record without ``labels`` is trained on every token. The stats are None without chat records.
    """
    chat = [r for r in records if "input_ids" not in r]
    done = [{**r, "labels": r.get("labels", r["input_ids"])} for r in records if "input_ids" in r]
    stats = None
    if chat:
        rows, stats = tokenize_records(chat, load_tokenizer(base, p.chat_template), p.max_length)
        logger.info(
            "train.sft: tokenized %d of %d chat records (%d without target, %d invalid)",
            stats.rows_out,
            stats.rows_in,
            stats.dropped_no_target,
            stats.invalid,
        )
        done += rows
    return done, stats


def prepare_rows(
    rows: list[dict], max_length: int
) -> tuple[list[tuple[list[int], list[int]]], list[int], int]:
    """Rows cut to ``max_length``, their target counts, and how many rows were dropped for having none.

    The first label of a row never counts: nothing in the row predicts it.
    """
    pairs, targets, dropped = [], [], 0
    for r in rows:
        ids, labels = list(r["input_ids"][:max_length]), list(r["labels"][:max_length])
        if len(ids) != len(labels):
            raise ValueError(f"record {r.get('id', '?')}: input_ids and labels differ in length")
        n = sum(1 for lab in labels[1:] if lab != IGNORE_INDEX)
        if n == 0:
            dropped += 1
            continue
        pairs.append((ids, labels))
        targets.append(n)
    return pairs, targets, dropped


def plan_steps(
    lengths: list[int], p: SFTParams, seed: int, world_size: int
) -> tuple[list[Step], list[int], EpochPlan]:
    """All optimizer steps of the run (epochs concatenated, epoch e shuffled with seed + e), each step's
    epoch, and the first epoch's plan (for its counts)."""
    steps: list[Step] = []
    epochs: list[int] = []
    first: EpochPlan | None = None
    e = 0
    while True:
        plan = plan_epoch(
            lengths,
            p.batching,
            seed=seed + e,
            world_size=world_size,
            per_device_batch_size=p.per_device_batch_size,
            gradient_accumulation_steps=p.gradient_accumulation_steps,
            group_size=p.group_size,
            max_pack_tokens=p.max_pack_tokens or p.max_length,
            drop_last_pack=p.drop_last_pack,
        )
        first = first or plan
        steps += plan.steps
        epochs += [e] * len(plan.steps)
        e += 1
        if not plan.steps:
            break
        if p.max_steps is None and e >= p.epochs:
            break
        if p.max_steps is not None and len(steps) >= p.max_steps:
            break
    if p.max_steps is not None:
        steps, epochs = steps[: p.max_steps], epochs[: p.max_steps]
    return steps, epochs, first


# --------------------------------------------------------------------------------------------- model


def load_model(base: ResolvedModel, p: SFTParams, attn_implementation: str):
    """The model to train (a LoRA-wrapped one when ``p.lora``) and whether the result must be merged.

    A base that is itself a trained adapter (``recipe_model.json`` with ``adapter: true``) is merged into
    its own base first; a new adapter on top of it is merged again at the end (saved as full weights).
    """
    from transformers import AutoModelForCausalLM

    path = Path(str(base.path))
    dtype = _dtype(p.dtype)
    meta = _trained_meta(path)
    if meta and meta.get("adapter"):
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(
            meta["base_path"], dtype=dtype, attn_implementation=attn_implementation
        )
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        merge_at_end = p.lora is not None
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, attn_implementation=attn_implementation
        )
        merge_at_end = False
    model.config.use_cache = False
    if p.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the newer name in transformers 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if p.lora is not None:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=p.lora.r,
            lora_alpha=p.lora.alpha,
            lora_dropout=p.lora.dropout,
            target_modules=p.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, cfg)
    return model, merge_at_end


def _dtype(name: str):
    import torch

    if name == "auto":
        return (
            torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        )
    return getattr(torch, name)


def _trained_meta(path: Path) -> dict | None:
    f = path / TRAINED_MODEL_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def _attention_mode(p: SFTParams) -> tuple[str, str]:
    """(mode for ``model_inputs``, attn_implementation for transformers)."""
    from components.trainers.packed_attention import flash_attn_available, register_varlen_attention

    mode = p.attention
    if mode == "auto":
        mode = "varlen" if flash_attn_available() else "mask"
    if mode == "varlen":
        return mode, register_varlen_attention()
    return mode, "sdpa"


def _optimizer(model, p: SFTParams):
    import torch

    decay = [w for w in model.parameters() if w.requires_grad and w.ndim >= 2]
    rest = [w for w in model.parameters() if w.requires_grad and w.ndim < 2]
    groups = [{"params": decay, "weight_decay": p.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=p.learning_rate,
        betas=(p.adam_beta1, p.adam_beta2),
        eps=p.adam_epsilon,
    )


# --------------------------------------------------------------------------------------------- training


def train(
    rows: list[dict],
    p: SFTParams,
    base: ResolvedModel,
    seed: int,
    scratch: Path,
    model_dir: Path,
    advance: Callable[..., None],
    stage: str = "sft",
) -> list[dict]:
    """Train on tokenized rows and write ``model_dir``; returns the loss curve (see ``SFT``).

    Runs as one process, or as one rank of ``accelerate launch``: every rank builds the same plan and feeds
    its own share of each micro-step.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from transformers import get_scheduler

    from components.trainers.loss import row_weights, weighted_loss
    from components.trainers.packed_attention import model_inputs

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    pairs, targets, no_target = prepare_rows(rows, p.max_length)
    if not pairs:
        raise ValueError("train.sft: no row has a target token to train on")
    steps, step_epoch, first = plan_steps([len(ids) for ids, _ in pairs], p, seed, world)
    if not steps:
        raise ValueError("train.sft: the batching plan is empty (every row longer than max_pack_tokens?)")
    total = len(steps)
    fingerprint = _plan_fingerprint(pairs, p, seed, world)

    mode, attn_impl = _attention_mode(p)
    set_seed(seed)
    tokenizer = _tokenizer(base, p)
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
    model, merge_at_end = load_model(base, p, attn_impl)
    optimizer = _optimizer(model, p)
    scheduler = get_scheduler(
        p.lr_scheduler,
        optimizer,
        num_warmup_steps=math.ceil(p.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, not per process
    trainable = {n for n, w in model.named_parameters() if w.requires_grad}
    if p.lora is not None:  # checkpoints hold the adapter only; the frozen base is re-read from its folder

        def keep_trainable(models: list, weights: list[dict], output_dir: str) -> None:
            weights[:] = [{k: v for k, v in w.items() if k in trainable} for w in weights]

        accelerator.register_save_state_pre_hook(keep_trainable)

    ckpt_root = scratch / CHECKPOINTS
    history: list[dict] = []
    start = 0
    last = latest_checkpoint(ckpt_root)
    if last is not None:
        path, state = last
        if state["fingerprint"] != fingerprint:
            raise RuntimeError(
                f"train.sft: checkpoint {path} was made for other data, params or world size; "
                "delete it to start over"
            )
        sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        # an adapter checkpoint holds only the adapter; FSDP / DeepSpeed load their own sharded layout
        accelerator.load_state(str(path), **({} if sharded else {"strict": p.lora is None}))
        start, history = state["step"], state["history"]
        log.info("train.sft: resuming after step %d from %s", start, path)
        advance(start, total)

    if accelerator.is_main_process:
        _write_stats(model_dir.parent / STATS_FILE, len(rows), no_target, first, world, total)
    model.train()
    device = accelerator.device
    target_counts = dict(enumerate(targets))
    for s in range(start, total):
        step = steps[s]
        rows_in_step = step_rows(step)
        weights = row_weights(rows_in_step, target_counts, world, p.loss_weighting)
        lr = scheduler.get_last_lr()[0]
        loss_sum = torch.zeros((), device=device)
        for j, micro in enumerate(step):
            batch = collate(
                pairs,
                micro[rank],
                weights,
                packed=p.batching == "packed",
                pad_id=pad_id,
                reset_position_ids=p.reset_position_ids,
            )
            sync = j == len(step) - 1
            # the trainer accumulates itself: gradients are synchronised (and DeepSpeed steps) on the last one
            accelerator.gradient_state._set_sync_gradients(sync)
            with nullcontext() if sync else accelerator.no_sync(model):
                logits = model(**model_inputs(batch, mode, device), use_cache=False).logits
                loss = weighted_loss(logits, batch.labels.to(device), batch.weights)
                accelerator.backward(loss)
            loss_sum += loss.detach()
        if p.max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), p.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = accelerator.reduce(loss_sum, "sum").item() / world
        history.append(
            {
                "step": s + 1,
                "loss": loss_value,
                "lr": lr,
                "epoch": step_epoch[s],
                "sequences": len(rows_in_step),
                "tokens": sum(len(pairs[i][0]) for i in rows_in_step),
                "target_tokens": sum(targets[i] for i in rows_in_step),
            }
        )
        if (s + 1) % p.save_steps == 0 and s + 1 < total:
            save_checkpoint(
                accelerator,
                ckpt_root,
                s + 1,
                {"step": s + 1, "history": history, "fingerprint": fingerprint},
                p.save_total_limit,
            )
        advance(1, total)

    save_model(accelerator, model, tokenizer, model_dir, base, p, merge_at_end, history, stage)
    return history


def _tokenizer(base: ResolvedModel, p: SFTParams):
    """The base model's tokenizer (saved with the trained model), with the chat template in use."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base.path))
    if p.chat_template or base.chat_template:
        tok.chat_template = p.chat_template or base.chat_template
    return tok


def _plan_fingerprint(pairs: list, p: SFTParams, seed: int, world: int) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [p.model_dump(mode="json", exclude={"save_steps", "save_total_limit"}), seed, world]
        ).encode()
    )
    for ids, labels in pairs:
        h.update(array("q", ids).tobytes() + b"|" + array("q", labels).tobytes() + b";")
    return h.hexdigest()[:16]


def _write_stats(path: Path, rows_in: int, no_target: int, plan: EpochPlan, world: int, total: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        path,
        json.dumps(
            {
                "rows": rows_in,
                "rows_without_target": no_target,
                "world_size": world,
                "planned_steps": total,
                "skipped_too_long": len(plan.skipped_too_long),
                "dropped_last_pack_rows": len(plan.dropped_last_pack),
                "sorted_remainder_group": plan.remainder_group,
            },
            indent=1,
        ),
    )


# --------------------------------------------------------------------------------------------- checkpoints


def latest_checkpoint(root: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint folder under ``root`` and its trainer state."""
    if not root.is_dir():
        return None
    done = [
        d
        for d in root.iterdir()
        if d.is_dir()
        and d.name.startswith("step-")
        and not d.name.endswith(".tmp")
        and (d / "trainer_state.json").is_file()
    ]
    if not done:
        return None
    newest = max(done, key=lambda d: int(d.name.split("-")[1]))
    return newest, json.loads((newest / "trainer_state.json").read_text())


def save_checkpoint(accelerator, root: Path, step: int, state: dict, keep: int) -> None:
    """Save the training state into ``root/step-N`` (written as ``.tmp`` first, renamed when complete)."""
    tmp, final = root / f"step-{step:08d}.tmp", root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        old = sorted(
            (
                d
                for d in root.iterdir()
                if d.is_dir() and d.name.startswith("step-") and not d.name.endswith(".tmp")
            ),
            key=lambda d: int(d.name.split("-")[1]),
        )
        for d in old[:-keep]:
            shutil.rmtree(d, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_model(
    accelerator,
    model,
    tokenizer,
    model_dir: Path,
    base: ResolvedModel,
    p: SFTParams,
    merge: bool,
    history: list[dict],
    stage: str,
) -> None:
    """Write the adapter (or full weights), tokenizer, card and ``recipe_model.json`` to ``model_dir``."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # a collective call under FSDP / DeepSpeed
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return
    model = accelerator.unwrap_model(model)
    adapter = p.lora is not None and not merge
    if merge:
        model, state_dict = model.merge_and_unload(), None
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "README.md").write_text(model_card(base, p, history, stage, adapter))
    (tmp / TRAINED_MODEL_FILE).write_text(
        json.dumps(
            {"base": base.name, "base_source": base.source, "base_path": str(base.path), "adapter": adapter},
            indent=1,
        )
    )
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    accelerator.wait_for_everyone()


def model_card(base: ResolvedModel, p: SFTParams, history: list[dict], stage: str, adapter: bool) -> str:
    """A short Hugging Face model card for the trained model."""
    kind = "LoRA adapter" if adapter else "full weights"
    first, last = history[0]["loss"], history[-1]["loss"]
    tokens = sum(h["tokens"] for h in history)
    settings = {
        "batching": p.batching,
        "loss_weighting": p.loss_weighting,
        "learning_rate": p.learning_rate,
        "lr_scheduler": p.lr_scheduler,
        "epochs": p.epochs,
        "max_steps": p.max_steps,
        "per_device_batch_size": p.per_device_batch_size,
        "gradient_accumulation_steps": p.gradient_accumulation_steps,
        "max_length": p.max_length,
    }
    if p.lora is not None:
        settings["lora"] = p.lora.model_dump()
    rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
    load = (
        "from peft import AutoPeftModelForCausalLM\n"
        'model = AutoPeftModelForCausalLM.from_pretrained("<this folder>")'
        if adapter
        else "from transformers import AutoModelForCausalLM\n"
        'model = AutoModelForCausalLM.from_pretrained("<this folder>")'
    )
    return (
        f"---\nbase_model: {base.name}\nlibrary_name: {'peft' if adapter else 'transformers'}\n"
        f"tags: [recipe-zoo, sft, longalign]\n---\n\n"
        f"# {stage}: supervised fine-tune of {base.name}\n\n"
        f"{kind.capitalize()} trained by the Recipe Zoo `train.sft` stage `{stage}` "
        "on assistant tokens only, "
        f"with LongAlign-style {p.batching} batching"
        f"{' and per-sequence loss weighting' if p.loss_weighting else ''}.\n\n"
        f"Base model: `{base.name}` (`{base.source}`).\n\n"
        f"Training: {len(history)} optimizer steps, {tokens} tokens, loss {first:.4f} → {last:.4f}.\n\n"
        f"| setting | value |\n| --- | --- |\n{rows}\n\n## Use\n\n```python\n{load}\n```\n"
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- by hand


def write_job(
    path: Path, rows: list[dict], p: SFTParams, base: ResolvedModel, seed: int, out_dir: Path
) -> Path:
    """Write a self-contained training job (``path``: a folder) for ``main``; returns its ``job.json``.

    ``out_dir`` receives ``model/``, ``scratch/`` (checkpoints) and ``history.json`` (the loss curve).
    """
    path.mkdir(parents=True, exist_ok=True)
    with (path / "rows.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps({"input_ids": r["input_ids"], "labels": r["labels"]}) + "\n")
    job = {
        "params": p.model_dump(mode="json"),
        "base": base.model_dump(mode="json"),
        "seed": seed,
        "rows": str(path / "rows.jsonl"),
        "out": str(out_dir),
    }
    (path / "job.json").write_text(json.dumps(job))
    return path / "job.json"


def main(argv: list[str] | None = None) -> None:
    """Train a job written by ``write_job``, outside the runner, on one process or as every rank of
    ``accelerate launch -m components.trainers.sft --job job.json`` (see ``launch.accelerate_command``)."""
    parser = argparse.ArgumentParser(description="Run a train.sft job (see write_job).")
    parser.add_argument("--job", required=True, type=Path, help="job.json written by write_job")
    job = json.loads(parser.parse_args(argv).job.read_text())
    rows = [json.loads(line) for line in Path(job["rows"]).read_text().splitlines() if line]
    out = Path(job["out"])
    history = train(
        rows,
        SFTParams.model_validate(job["params"]),
        ResolvedModel.model_validate(job["base"]),
        job["seed"],
        out / "scratch",
        out / "model",
        lambda n=1, total=None: None,
        "sft",
    )
    if _is_rank_zero():
        _atomic_write(out / "history.json", json.dumps(history))


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


if __name__ == "__main__":
    main(sys.argv[1:])
