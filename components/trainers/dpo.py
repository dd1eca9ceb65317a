"""``train.dpo``: direct preference optimisation of a policy on preference pairs, on TRL's ``DPOTrainer``.

LongReward (spec §3.4) trains the SFT model with DPO on best-vs-worst pairs, with an extra SFT term on the
chosen replies. How the run is laid out:

* ``components.trainers.dpo_data`` — pairs → token ids, long contexts cut in the middle to ``max_length``;
* ``components.trainers.dpo_ref`` — the reference log-probabilities (the ``dpo.ref_logps`` stage, or here
  when the pairs do not carry them);
* ``components.trainers.dpo_run`` — the TRL trainer, its checkpoints and resume, the trained model folder.

Like ``train.sft``, the stage runs in-process or under ``accelerate launch`` (a ``launch:`` block on the
stage, the runner's business); its model is usable by name downstream (``model: <stage>``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from components.base import Context, Fields, ModelSlot, Params, WholeComponent
from components.report_data import step_curves
from components.trainers.dpo_data import stats_dict, tokenize_pairs, tokens_digest
from components.trainers.dpo_ref import PAIR_FIELDS, TOKENIZE_STATS
from components.trainers.sft import LoraParams
from registry.allocator import low_fragmentation

TRAIN_STATS = "train"

LossType = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                   "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class DPOParams(Params):
    beta: float = Field(0.1, gt=0, description=(
        "strength of the pull towards the reference: the DPO loss is -log sigmoid(beta x (chosen log-ratio - "
        "rejected log-ratio)); LongReward (paper) ~0.15"))
    loss_type: list[LossType] = Field(["sigmoid"], min_length=1, description=(
        "TRL's loss terms, added up with loss_weights: sigmoid = DPO; sft = the chosen reply's mean token "
        "negative log-likelihood (LongReward's extra SFT term: [sigmoid, sft])"))
    loss_weights: list[float] | None = Field(None, description=(
        "one weight per loss_type entry (null: all 1.0), e.g. [1.0, 0.1] for DPO plus a 0.1 SFT term"))
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="robust / exo_pair losses: label noise")
    lora: LoraParams | None = Field(None, description="LoRA adapter settings; null trains all weights")
    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate (LongReward (paper) ~1e-6)")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "linear", description="learning-rate schedule after warm-up")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm to this; null: no clipping")
    epochs: int = Field(1, ge=1, description="passes over the pairs; ignored when max_steps is set")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps to run; overrides epochs")
    per_device_batch_size: int = Field(1, ge=1, description="pairs per device per micro-step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-steps per optimizer step")
    max_length: int = Field(2048, ge=2, description=(
        "tokens of prompt + reply; longer contexts are cut in the middle so the question and the replies "
        "survive (must equal the dpo.ref_logps stage's)"))
    chat_template: str | None = Field(None, description="Jinja chat template instead of the model's own")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weight dtype; auto = bfloat16 on a GPU that supports it, else float32")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    loss_chunk_size: int | None = Field(1024, ge=1, description=(
        "when the pairs carry no reference log-probabilities: as dpo.ref_logps's loss_chunk_size"))
    seed: int | None = Field(None, description="seed of the data order and initialisation; null: the run's seed")
    save_steps: int = Field(200, ge=1, description="checkpoint every this many optimizer steps")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept in the stage's scratch folder")

    @model_validator(mode="after")
    def _weights_match(self) -> DPOParams:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} entries for "
                             f"{len(self.loss_type)} loss_type entries")
        return self


class DPO(WholeComponent):
    """DPO (TRL's ``DPOTrainer``) of the ``policy`` on ``{prompt, chosen, rejected}`` pairs.

    ``beta``, the loss terms (``loss_type`` with ``loss_weights``; ``[sigmoid, sft]`` adds LongReward's SFT
    term on the chosen replies), LoRA (``lora``) or all weights. Pairs longer than ``max_length`` have their
    ``context`` cut in the middle. The reference log-probabilities come from the pairs when they carry them
    (the ``dpo.ref_logps`` stage: computed once, reused when only ``beta``, the loss or the optimizer
    settings change; their tokens are checked against this stage's), else from the policy's starting
    weights, computed here before training. Checkpoints every ``save_steps``; a killed run resumes
    exactly. Records out: one per optimizer step ``{step, loss, lr, epoch, reward_chosen,
    reward_rejected, reward_accuracy, reward_margin, logps_chosen, logps_rejected}``.
    """

    type: ClassVar[str] = "train.dpo"
    Params: ClassVar[type[Params]] = DPOParams
    inputs: ClassVar[dict[str, Fields]] = {"pairs": PAIR_FIELDS}
    outputs: ClassVar[Fields | None] = Fields("step", "loss")
    models: ClassVar[dict[str, ModelSlot]] = {
        "policy": ModelSlot(kind="weights", doc="the model to train (the SFT model; a model folder or adapter)"),
    }
    produces_model: ClassVar[bool] = True

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        from components.trainers.dpo_run import train_dpo

        p: DPOParams = self.params  # type: ignore[assignment]
        policy = ctx.model_source("policy")
        records = inputs["pairs"]
        if not records:
            raise ValueError("no preference pairs: the upstream stage produced none (see its metrics)")
        rows, kept, stats = tokenize_pairs(records, _tokenizer(policy, p), p.max_length)
        if not rows:
            raise ValueError(f"no pair fits max_length {p.max_length}")
        ctx.save_stats(TOKENIZE_STATS, stats_dict(stats))
        ref = stored_ref_logps([records[i] for i in kept], rows)
        if ref is None:
            ctx.log.info("train.dpo: the pairs carry no reference log-probabilities; computing them")
            ref = _policy_ref_logps(policy, p, rows)
        seed = p.seed if p.seed is not None else ctx.seed
        with low_fragmentation(ctx.log):  # CPU peak memory: see registry.allocator
            result = train_dpo(rows, ref, p, policy, seed, ctx.scratch, ctx.artifact_dir / "model", ctx.advance,
                               ctx.stage)
        ctx.save_stats(TRAIN_STATS, result.stats)
        return result.history

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": len(records)}
        if records:
            out.update(first_loss=records[0]["loss"], final_loss=records[-1]["loss"],
                       final_reward_accuracy=records[-1].get("reward_accuracy"),
                       final_reward_margin=records[-1].get("reward_margin"))
        out.update(ctx.load_stats(TRAIN_STATS) or {})
        out.update({f"tokenize_{k}": v for k, v in (ctx.load_stats(TOKENIZE_STATS) or {}).items()})
        return out

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """Loss, learning rate and the reward margin per optimizer step."""
        return step_curves(records, {"loss": "loss", "lr": "learning rate", "reward_margin": "reward margin"},
                           "DPO")

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not records or not metrics:
            return None
        p: DPOParams = self.params  # type: ignore[assignment]
        margin = metrics.get("final_reward_margin")
        return (f"DPO ({' + '.join(p.loss_type)}, beta {p.beta}): {metrics['steps']} steps on "
                f"{metrics.get('pairs', '?')} pairs, loss {metrics['first_loss']:.4f} → {metrics['final_loss']:.4f}"
                + (f", final reward margin {margin:.4f}" if margin is not None else "") + "; "
                f"{metrics.get('tokenize_contexts_cut', 0)} contexts cut in the middle to fit max_length "
                f"{p.max_length}.")


def _tokenizer(policy: Any, p: DPOParams) -> Any:
    from components.trainers.tokenize import load_tokenizer

    return load_tokenizer(policy, p.chat_template)


def stored_ref_logps(records: list[dict], rows: list) -> list[tuple[float, float]] | None:
    """The pairs' own reference log-probabilities (None when they carry none); an error when they were
    computed for other tokens than this stage's (another tokenizer, template or ``max_length``)."""
    if not all("ref_chosen_logps" in r and "ref_rejected_logps" in r for r in records):
        if any("ref_chosen_logps" in r for r in records):
            raise ValueError("some pairs carry reference log-probabilities and some do not")
        return None
    for r, row in zip(records, rows, strict=True):
        if r.get("ref_tokens") is not None and r["ref_tokens"] != tokens_digest(row):
            raise ValueError(f"pair {row.id}: its reference log-probabilities were computed for other tokens "
                             "(give dpo.ref_logps the same max_length, chat_template and tokenizer as train.dpo)")
    return [(float(r["ref_chosen_logps"]), float(r["ref_rejected_logps"])) for r in records]


def _policy_ref_logps(policy: Any, p: DPOParams, rows: list) -> list[tuple[float, float]]:
    from components.trainers.dpo_ref import reply_logps
    from registry.model_folder import load_causal_lm

    model = load_causal_lm(policy, dtype=p.dtype)
    try:
        return reply_logps(model, rows, p.loss_chunk_size)
    finally:
        del model
