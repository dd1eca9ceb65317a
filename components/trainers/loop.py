"""The hand-written training loop of ``train.sft``, with its model and optimizer.

The loop is written out (not a transformers ``Trainer``) because LongAlign's loss weighting is the method:
each optimizer step's loss is normalised over all the sequences of the step, across its micro-steps and
ranks (``components.trainers.loss``), so the trainer accumulates gradients itself and synchronises them on
the last micro-step only.

``train()`` runs as one process or as every rank of ``accelerate launch``: every rank builds the same plan
and feeds its own share of each micro-step; only the main process writes files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.trainers.batching import collate, step_rows
from components.trainers.checkpoints import CHECKPOINTS, resume, save_checkpoint, save_only_trainable
from components.trainers.model_out import save_model, training_summary
from components.trainers.plan import make_plan
from components.trainers.special_tokens import (
    add_special_tokens,
    grow_embeddings,
    resolve_special_tokens,
    trainable_token_indices,
)
from components.trainers.step_log import StepLog

if TYPE_CHECKING:
    from components.trainers.sft import SFTParams
    from registry.resolved import ResolvedModel


@dataclass
class TrainResult:
    """The loss curve (one record per optimizer step) and the plan's counts."""

    history: list[dict]
    stats: dict[str, Any] = field(default_factory=dict)


def train(
    rows: list[dict],
    p: SFTParams,
    base: ResolvedModel,
    seed: int,
    scratch: Path,
    model_dir: Path,
    advance: Callable[..., None],
    stage: str = "sft",
    step_log: StepLog | None = None,
) -> TrainResult:
    """Train on tokenized rows, checkpointing under ``scratch`` and writing the model to ``model_dir``;
    each optimizer step is reported through ``step_log`` (default: to the stage's log only, see
    ``components.trainers.step_log``)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from components.trainers.loss import step_weights
    from components.trainers.packed_attention import model_inputs

    step_log = step_log or StepLog(p, stage, model_dir.parent, None)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **step_log.accelerator_kwargs())
    weights_dtype, compute_dtype = training_precision(p, accelerator.device.type)
    # our own autocast, not accelerate's mixed_precision: that one is process-wide state, shared with
    # every later trainer of the run; float16 needs loss scaling, bfloat16 does not
    autocast = (lambda: torch.autocast(accelerator.device.type, dtype=compute_dtype)) if compute_dtype \
        else nullcontext
    scaler = torch.amp.GradScaler(accelerator.device.type) if compute_dtype == torch.float16 else None
    world, rank = accelerator.num_processes, accelerator.process_index
    plan = make_plan(rows, p, seed, world)
    pairs, targets, steps = plan.pairs, plan.targets, plan.steps
    total = len(steps)

    mode, attn_impl = attention_mode(p)
    set_seed(seed)
    tokenizer = load_train_tokenizer(base, p)
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
    model, merge_at_end = load_model(base, p, attn_impl, dtype=weights_dtype)
    optimizer = make_optimizer(model, p)
    scheduler = get_scheduler(
        p.lr_scheduler,
        optimizer,
        num_warmup_steps=math.ceil(p.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, not per process
    if p.lora is not None:
        save_only_trainable(accelerator, model)

    ckpt_root = scratch / CHECKPOINTS
    start, history = resume(accelerator, ckpt_root, plan.fingerprint, adapter_only=p.lora is not None)
    if start:
        advance(start, total)

    step_log.start(accelerator, p.model_dump(mode="json"))
    model.train()
    device = accelerator.device
    target_counts = dict(enumerate(targets))
    for s in range(start, total):
        step = steps[s]
        rows_in_step = step_rows(step)
        weights = step_weights(step, target_counts, world, p.loss_weighting, p.batching == "packed")
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
                with autocast():
                    loss = forward_loss(model, model_inputs(batch, mode, device), batch.labels.to(device),
                                        batch.weights, p.loss_chunk_size)
                accelerator.backward(scaler.scale(loss) if scaler else loss)
            loss_sum += loss.detach()
        grad_norm = None
        if scaler:
            scaler.unscale_(optimizer)
        if p.max_grad_norm is not None or step_log.wants_grad_norm:
            # the norm before clipping; with no clipping asked for, a bound of inf scales by exactly 1
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), p.max_grad_norm or math.inf)
        if scaler:  # skips the step when the scaled gradients overflowed, then adjusts the scale
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = accelerator.reduce(loss_sum, "sum").item() / world
        history.append(
            {
                "step": s + 1,
                "loss": loss_value,
                "lr": lr,
                "epoch": plan.step_epoch[s],
                "sequences": len(rows_in_step),
                "tokens": sum(len(pairs[i][0]) for i in rows_in_step),
                "target_tokens": sum(targets[i] for i in rows_in_step),
            }
        )
        step_log.step(accelerator, s + 1, total, loss=loss_value, lr=lr, grad_norm=_number(grad_norm),
                      tokens=history[-1]["tokens"])
        if (s + 1) % p.save_steps == 0 and s + 1 < total:
            save_checkpoint(
                accelerator,
                ckpt_root,
                s + 1,
                {"step": s + 1, "history": history, "fingerprint": plan.fingerprint},
                p.save_total_limit,
            )
        advance(1, total)

    save_model(accelerator, model, tokenizer, model_dir, base, lora=p.lora is not None, merge=merge_at_end,
               summary=training_summary(p, history, stage))
    step_log.finish(accelerator)
    return TrainResult(history=history, stats=plan.stats)


def _number(value: Any) -> float | None:
    """A float from a tensor or number (None stays None: DeepSpeed clips inside its own step)."""
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


def forward_loss(model: Any, inputs: dict[str, Any], labels: Any, weights: Any, chunk_size: int | None) -> Any:
    """The weighted loss of one micro-batch.

    A micro-batch with more than ``chunk_size`` predicting positions over all its rows (rows × (length-1):
    the logits are that many vocabulary-wide vectors) takes the chunked path: the model runs with
    ``logits_to_keep=1`` (no full logits) and the output layer + cross-entropy go chunk by chunk, each
    chunk ``chunk_size // rows`` positions of every row (``loss.chunked_weighted_loss``). Models whose
    logits are not just the output layer of the last hidden state (logit soft-capping or scaling) or that
    cannot skip logits take the plain path.
    """
    from components.trainers.loss import chunked_weighted_loss, weighted_loss

    rows, length = labels.shape
    if chunk_size is None or rows * (length - 1) <= chunk_size or not _can_chunk(model):
        return weighted_loss(model(**inputs, use_cache=False).logits, labels, weights)
    out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    head = _unwrap(model).get_output_embeddings()
    return chunked_weighted_loss(out.hidden_states[-1], head, labels, weights, max(1, chunk_size // rows))


def _unwrap(model: Any) -> Any:
    """The transformers model under DDP/accelerate and peft wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _can_chunk(model: Any) -> bool:
    import inspect

    base = _unwrap(model)
    cfg = base.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return False
    return "logits_to_keep" in inspect.signature(base.forward).parameters and base.get_output_embeddings() is not None


# --------------------------------------------------------------------------------------------- model


def load_train_tokenizer(base: ResolvedModel, p: SFTParams) -> Any:
    """The base model's tokenizer (saved with the trained model), with the chat template in use."""
    from registry.model_folder import load_tokenizer

    tok = load_tokenizer(base)
    if p.chat_template or base.chat_template:
        tok.chat_template = p.chat_template or base.chat_template
    add_special_tokens(tok, resolve_special_tokens(getattr(p, "special_tokens", None)))
    return tok


def training_precision(p: SFTParams, device: str) -> tuple[Any, Any]:
    """(dtype the weights load in, autocast dtype or None) for ``p.dtype`` on ``device``.

    Full fine-tuning in bfloat16 or float16 keeps float32 master weights (loaded in float32, updated by
    the optimizer in float32) and computes the forward and backward passes under autocast in the half
    dtype (with loss scaling for float16), as mixed-precision training does: an update smaller than a
    half-precision weight's rounding step is not lost, and the trained weights are saved in float32.
    LoRA trains float32 adapters (peft's default) on a frozen base, which stays in the half dtype."""
    import torch

    from registry.model_folder import resolve_dtype

    dtype = resolve_dtype(p.dtype, device, training=True)
    if p.lora is not None or dtype == torch.float32:
        return dtype, None
    return torch.float32, dtype


def load_model(base: ResolvedModel, p: SFTParams, attn_implementation: str,
               dtype: Any = None) -> tuple[Any, bool]:
    """The model to train (a LoRA-wrapped one when ``p.lora``) and whether the result must be merged.
    ``p``: any params with ``lora``, ``dtype`` and ``gradient_checkpointing`` (``train.dpo`` uses it too);
    ``special_tokens`` (``train.sft``) grows the embeddings and trains those tokens' rows under LoRA;
    ``dtype`` (default: ``p.dtype`` resolved for training) is the dtype the weights load in.

    A base that is itself a trained adapter is merged into its own base first (see
    ``registry.model_folder.load_weights``); a new adapter on top of it is merged again at the end (saved
    as full weights).
    """
    import torch

    from registry.model_folder import is_adapter, load_weights, model_folder, resolve_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = dtype or resolve_dtype(p.dtype, device, training=True)
    model = load_weights(base, dtype=dtype, attn_implementation=attn_implementation)
    merge_at_end = p.lora is not None and is_adapter(model_folder(base))
    model.config.use_cache = False
    token_ids: list[int] = []
    added = resolve_special_tokens(getattr(p, "special_tokens", None))
    if added:
        tok = load_train_tokenizer(base, p)
        grow_embeddings(model, len(tok))
        token_ids = tok.convert_tokens_to_ids(added)
    if p.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the newer name in transformers 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if p.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(p.lora, trainable_token_indices(model, token_ids)))
    return model, merge_at_end


def lora_config(lora: Any, token_rows: dict[str, list[int]] | None = None) -> Any:
    """peft's ``LoraConfig`` for our ``LoraParams``; ``token_rows``: embedding rows trained as well
    (``{module name: token ids}``, peft's ``trainable_token_indices``)."""
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM",
                      trainable_token_indices=token_rows or None)


def attention_mode(p: SFTParams) -> tuple[str, str]:
    """(mode for ``model_inputs``, attn_implementation for transformers)."""
    from components.trainers.packed_attention import flash_attn_available, register_varlen_attention

    mode = p.attention
    if mode == "auto":
        mode = "varlen" if flash_attn_available() else "mask"
    if mode == "varlen":
        return mode, register_varlen_attention()
    return mode, "sdpa"


def make_optimizer(model: Any, p: SFTParams) -> Any:
    """AdamW with weight decay on matrices only (not on biases and norms)."""
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
