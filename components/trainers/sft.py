"""Supervised fine-tuning with LongAlign's batching and loss weighting: the ``train.sft`` component.

The component takes chat records (tokenized here with ``data.tokenize``'s code) or already-tokenized
``{input_ids, labels}`` records, trains the ``base`` model with transformers (+ peft for LoRA) under
``accelerate`` and writes ``artifact_dir/model``: the adapter or full weights, the tokenizer and the
model's metadata (``registry.model_folder``; ``publish`` turns it into a card). How the run is laid out:

* ``components.trainers.plan`` — which rows train and the optimizer steps (a pure function of the data,
  the params, the seed and the world size);
* ``components.trainers.loop`` — the training loop, its model and optimizer;
* ``components.trainers.checkpoints`` — checkpoints in ``scratch/checkpoints`` every ``save_steps``
  optimizer steps; running the stage again after a kill resumes from the newest one and reaches the same
  weights as an uninterrupted run (the step number is the data position);
* ``components.trainers.model_out`` — the trained model folder.

The same loop runs in-process on one device or as every rank of a multi-process launch (the runner's
business: a stage with a ``launch:`` block); ranks share the work of each step.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.base import Context, Fields, ModelSlot, Params, WholeComponent
from components.report_data import step_curves
from components.trainers.loop import train
from components.trainers.special_tokens import add_special_tokens, resolve_special_tokens
from components.trainers.step_log import StepLog, TrackingParams
from components.trainers.tokenize import STATS_NAME as TOKENIZE_STATS_NAME
from components.trainers.tokenize import MaskSpans, TokenizeStats, load_tokenizer, tokenize_records
from registry.allocator import low_fragmentation
from registry.resolved import ResolvedModel

TRAIN_STATS = "train"  # name of the training statistics in the stats channel


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


class SFTParams(TrackingParams):
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
        "auto", description="Training dtype; auto = bfloat16 on a GPU that supports it, else float32. Full "
        "fine-tuning in bfloat16/float16 keeps float32 master weights and computes under autocast; LoRA "
        "loads the frozen base in this dtype."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory."
    )
    loss_chunk_size: int | None = Field(
        256, ge=1, description="Micro-batches with more than this many positions (rows x length) get their "
        "output layer and loss computed this many positions at a time, so the full logits and their float32 "
        "copy never exist (peak memory flat in the vocabulary x length); null: always the full logits. "
        "256 positions of a 49k vocabulary: 50 MB of logits per chunk, 300 MB less peak than 1024 at "
        "4 x 1024 tokens, at the same step time on the CPU.")
    batching: Literal["naive", "sorted", "packed"] = Field(
        "packed",
        description="naive: shuffled batches; sorted: length-sorted groups; packed: sequences packed "
        "into rows of max_pack_tokens with attention kept inside each sequence "
        "(see components.trainers.batching).",
    )
    loss_weighting: bool = Field(
        True,
        description="Mean over sequences of each sequence's mean token loss (paper Eq. 2); false: packed "
        "batching takes each pack's mean token loss averaged over the step's packs and processes (paper Eq. 3, "
        "as the reference), naive and sorted the mean over all target tokens of the optimizer step.",
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
    special_tokens: list[str] | str | None = Field(
        None, description="Tokens added to the tokenizer as single special tokens, or a preset name ('selfrag': "
        "the 15 Self-RAG reflection tokens); new embedding rows start at the mean of the existing rows and, "
        "under LoRA, the rows of these tokens are trained (components.trainers.special_tokens).")
    mask_spans: list[tuple[str, str]] = Field(
        default_factory=list, description="(open, close) marker pairs, e.g. [['<paragraph>', '</paragraph>']]: "
        "the text strictly between each opening marker and the next closing one carries no loss, each span "
        "on its own; markers and the text between spans are trained (chat records only; see "
        "components.trainers.span_mask).")
    compat: Literal["default", "reference"] = Field(
        "default", description="reference: mask_spans masks from the first opening to the last closing marker, "
        "the text between passages included (the Self-RAG reference's masking).")

    @field_validator("mask_spans")
    @classmethod
    def _markers_not_empty(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if any(not a or not b for a, b in value):
            raise ValueError("mask_spans markers must not be empty")
        return value

    @field_validator("special_tokens")
    @classmethod
    def _known_preset(cls, value: list[str] | str | None) -> list[str] | str | None:
        resolve_special_tokens(value)  # an unknown preset name is an error here, before anything runs
        return value


class SFT(WholeComponent):
    """Supervised fine-tuning on assistant tokens with LongAlign's batching.

    ``batching`` picks naive, sorted or packed batching; ``loss_weighting`` makes the loss the mean over
    sequences of per-sequence mean token losses (paper Eq. 2), exact under gradient accumulation and data
    parallelism; packing without it takes each pack's mean token loss averaged over packs and processes
    (paper Eq. 3, as the reference computes; ``components.trainers.loss``). Where the reference code deviates from the method, the method is the default:
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
        if tok_stats is not None:
            ctx.save_stats(TOKENIZE_STATS_NAME, asdict(tok_stats))
        seed = p.seed if p.seed is not None else ctx.seed
        with low_fragmentation(ctx.log):  # CPU peak memory: see registry.allocator
            result = train(rows, p, base, seed, ctx.scratch, ctx.artifact_dir / "model", ctx.advance, ctx.stage,
                           StepLog(p, ctx.stage, ctx.artifact_dir, ctx.log))
        ctx.save_stats(TRAIN_STATS, result.stats)
        return result.history

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
        out.update(ctx.load_stats(TRAIN_STATS) or {})
        out.update({f"tokenize_{k}": v for k, v in (ctx.load_stats(TOKENIZE_STATS_NAME) or {}).items()})
        return out

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """Loss and learning rate per optimizer step."""
        return step_curves(records, {"loss": "loss", "lr": "learning rate"}, "SFT")

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
        tok = load_tokenizer(base, p.chat_template)
        add_special_tokens(tok, resolve_special_tokens(p.special_tokens))
        mask = MaskSpans(tuple((a, b) for a, b in p.mask_spans), whole=p.compat == "reference") \
            if p.mask_spans else None
        rows, stats = tokenize_records(chat, tok, p.max_length, mask=mask)
        logger.info(
            "train.sft: tokenized %d of %d chat records (%d without target, %d invalid)",
            stats.rows_out,
            stats.rows_in,
            stats.dropped_no_target,
            stats.invalid,
        )
        done += rows
    return done, stats
