"""One run of ``train.dpo`` on TRL's ``DPOTrainer``: the trainer, its checkpoints and the trained model.

TRL computes the loss (``loss_type`` with ``loss_weights``, e.g. sigmoid DPO plus an SFT term on the
chosen reply), batches and steps; this module feeds it pairs already tokenized by
``components.trainers.dpo_data`` (middle-cut contexts) with their reference log-probabilities, so TRL
neither re-tokenizes nor loads or runs a reference model (``precompute_ref_log_probs`` with the columns
already there). Checkpoints are the transformers ``Trainer``'s, in ``scratch/checkpoints``; running the
stage again after a kill resumes from the newest complete one (model, optimizer, scheduler, RNG and data
position), and a checkpoint made for other data or settings is an error. The model is loaded with
``train.sft``'s code (LoRA through peft, or all weights) and written with ``components.trainers.model_out``.

Built on TRL 1.x: the two hooks overridden below (``_prepare_dataset``, ``_precompute_ref_logps``) are
private methods of ``DPOTrainer``; ``tests/components/test_dpo.py`` fails if they change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.trainers.checkpoints import CHECKPOINTS
from components.trainers.dpo_data import PairRow

if TYPE_CHECKING:
    from components.trainers.dpo import DPOParams
    from registry.resolved import ResolvedModel

log = logging.getLogger(__name__)
PLAN_FILE = "plan.json"  # in the checkpoints folder: the fingerprint its checkpoints were made for
STATE_FILE = "trainer_state.json"  # the transformers Trainer writes it last into a checkpoint


@dataclass
class DPOResult:
    history: list[dict]
    stats: dict[str, Any] = field(default_factory=dict)


def _trainer_class() -> type:
    from trl import DPOTrainer

    class StoredRefDPOTrainer(DPOTrainer):
        """A DPOTrainer over pre-tokenized pairs that carry their reference log-probabilities."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
            return dataset  # prompt_ids / chosen_ids / rejected_ids are there already

        def _precompute_ref_logps(self, dataset, name, batch_size):  # noqa: ANN001
            if "ref_chosen_logps" not in dataset.column_names:
                raise ValueError(f"the {name} pairs carry no reference log-probabilities")
            return dataset

    return StoredRefDPOTrainer


def run_fingerprint(rows: list[PairRow], ref: list[tuple[float, float]], p: DPOParams, seed: int, world: int) -> str:
    """A hash of everything the weights depend on (not the checkpoint settings)."""
    h = hashlib.sha256(json.dumps([p.model_dump(mode="json", exclude={"save_steps", "save_total_limit"}),
                                   seed, world]).encode())
    for row, logps in zip(rows, ref, strict=True):
        h.update(json.dumps([row.feature(), logps]).encode())
    return h.hexdigest()[:16]


def build_trainer(rows: list[PairRow], ref: list[tuple[float, float]], p: DPOParams, base: ResolvedModel,
                  seed: int, output_dir: Path, callbacks: list | None = None) -> tuple[Any, Any, bool]:
    """(trainer, tokenizer, whether the model must be merged when saved) for the pairs."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig

    from components.trainers.loop import load_model, lora_config
    from components.trainers.tokenize import load_tokenizer
    from registry.model_folder import is_adapter, model_folder, resolve_dtype

    tokenizer = load_tokenizer(base, p.chat_template)
    data = Dataset.from_list([{**row.feature(), "ref_chosen_logps": c, "ref_rejected_logps": r}
                              for row, (c, r) in zip(rows, ref, strict=True)])
    cuda = torch.cuda.is_available()
    dtype = resolve_dtype(p.dtype, "cuda" if cuda else "cpu", training=True)
    # TRL wraps the model in the adapter itself: a peft model handed to it would get a copy of its adapter
    # as the reference, which the stored log-probabilities make useless
    model, _ = load_model(base, p.model_copy(update={"lora": None, "gradient_checkpointing": False}), "sdpa")
    merge = p.lora is not None and is_adapter(model_folder(base))
    config = DPOConfig(
        output_dir=str(output_dir),
        beta=p.beta,
        loss_type=list(p.loss_type),
        loss_weights=list(p.loss_weights) if p.loss_weights is not None else None,
        label_smoothing=p.label_smoothing,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=p.warmup_ratio if p.warmup_ratio < 1 else 0.999,  # below 1: a share of the steps
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm if p.max_grad_norm is not None else 0.0,
        num_train_epochs=p.epochs,
        max_steps=p.max_steps if p.max_steps is not None else -1,
        per_device_train_batch_size=p.per_device_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        max_length=None,  # the pairs fit already (middle-cut contexts)
        precompute_ref_log_probs=True,
        disable_dropout=True,
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=p.save_steps,
        save_total_limit=p.save_total_limit,
        logging_steps=1,
        logging_first_step=True,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and dtype == torch.bfloat16,
        fp16=False,
        gradient_checkpointing=p.gradient_checkpointing,
        dataloader_num_workers=0,
    )
    trainer = _trainer_class()(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                               callbacks=callbacks or [], peft_config=lora_config(p.lora) if p.lora else None)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for noisy in (PrinterCallback, ProgressCallback):  # progress and losses go through the runner
        trainer.remove_callback(noisy)
    return trainer, tokenizer, merge


def _complete(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def resume_point(root: Path, fingerprint: str) -> str | None:
    """The newest complete checkpoint under ``root`` made for ``fingerprint`` (None: start afresh);
    incomplete ones (a kill mid-save) are removed, one made for another fingerprint is an error."""
    if not root.is_dir():
        return None
    plan = root / PLAN_FILE
    steps = sorted((d for d in root.glob("checkpoint-*") if d.name.split("-")[-1].isdigit()),
                   key=lambda d: int(d.name.split("-")[-1]))
    made_for = json.loads(plan.read_text()).get("fingerprint") if plan.is_file() else None
    if steps and made_for != fingerprint:
        raise RuntimeError(f"train.dpo: the checkpoints in {root} were made for other pairs or settings; "
                           "delete them to start over")
    for d in [d for d in steps if not _complete(d)]:
        shutil.rmtree(d, ignore_errors=True)
    done = [d for d in steps if _complete(d)]
    return str(done[-1]) if done else None


def train_dpo(rows: list[PairRow], ref: list[tuple[float, float]], p: DPOParams, base: ResolvedModel, seed: int,
              scratch: Path, model_dir: Path, advance: Callable[..., None], stage: str = "dpo",
              callbacks: list | None = None) -> DPOResult:
    """Train on tokenized pairs with their reference log-probabilities; write the model to ``model_dir``."""
    from transformers import TrainerCallback

    from components.trainers.model_out import save_model

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            advance(1, state.max_steps)

    root = scratch / CHECKPOINTS
    trainer, tokenizer, merge = build_trainer(rows, ref, p, base, seed, root, [Progress(), *(callbacks or [])])
    fingerprint = run_fingerprint(rows, ref, p, seed, trainer.accelerator.num_processes)
    start = resume_point(root, fingerprint)
    if trainer.accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        (root / PLAN_FILE).write_text(json.dumps({"fingerprint": fingerprint}))
    if start is not None:
        log.info("train.dpo: resuming from %s", start)
    trainer.train(resume_from_checkpoint=start)
    history = step_history(trainer.state.log_history)
    save_model(trainer.accelerator, trainer.model, tokenizer, model_dir, base, lora=p.lora is not None, merge=merge,
               summary=training_summary(p, history, rows, stage))
    return DPOResult(history=history, stats={"pairs": len(rows), "steps": trainer.state.global_step,
                                             "world_size": trainer.accelerator.num_processes})


HISTORY_KEYS = {"loss": "loss", "learning_rate": "lr", "epoch": "epoch", "rewards/chosen": "reward_chosen",
                "rewards/rejected": "reward_rejected", "rewards/accuracies": "reward_accuracy",
                "rewards/margins": "reward_margin", "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected"}


def step_history(log_history: list[dict]) -> list[dict]:
    """One record per optimizer step from the Trainer's log (``logging_steps=1``)."""
    out = []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            out.append({"step": entry["step"], **{ours: entry[k] for k, ours in HISTORY_KEYS.items() if k in entry}})
    return out


def training_summary(p: DPOParams, history: list[dict], rows: list[PairRow], stage: str) -> Any:
    from components.trainers.dpo import DPO
    from registry.model_folder import TrainingSummary

    settings: dict[str, Any] = {"beta": p.beta, "loss_type": list(p.loss_type), "loss_weights": p.loss_weights,
                                "learning_rate": p.learning_rate, "epochs": p.epochs, "max_steps": p.max_steps,
                                "per_device_batch_size": p.per_device_batch_size,
                                "gradient_accumulation_steps": p.gradient_accumulation_steps,
                                "max_length": p.max_length}
    if p.lora is not None:
        settings["lora"] = p.lora.model_dump()
    tokens = sum(len(r.prompt_ids) * 2 + len(r.chosen_ids) + len(r.rejected_ids) for r in rows)
    return TrainingSummary(
        component=DPO.type, stage=stage,
        description=f"Direct preference optimisation ({' + '.join(p.loss_type)}, beta {p.beta}) on "
                    f"{len(rows)} preference pairs, against stored reference log-probabilities.",
        tags=["dpo", "trl"], steps=len(history), tokens=tokens,
        first_loss=history[0]["loss"] if history else None, final_loss=history[-1]["loss"] if history else None,
        settings=settings,
    )
