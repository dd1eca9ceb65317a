"""The trainer's output: the trained model folder (adapter or full weights, tokenizer, metadata).

The folder is written through ``registry.model_folder``, so the backends, the zoo and ``publish`` read it
with the same code; its metadata carries a ``TrainingSummary`` from which ``publish`` writes the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.model_folder import TrainedModel, TrainingSummary, read_trained, save_model_folder

if TYPE_CHECKING:
    from components.trainers.sft import SFTParams
    from registry.resolved import ResolvedModel


def save_model(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    model_dir: Path,
    base: ResolvedModel,
    *,
    lora: bool,
    merge: bool,
    summary: TrainingSummary,
) -> None:
    """Write the adapter (or full weights), tokenizer and metadata to ``model_dir``. ``lora``: the model is
    a peft model; ``merge``: merge its adapter and save full weights. Every rank calls it (gathering the
    weights is a collective call under FSDP / DeepSpeed); the main process writes."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return
    model = accelerator.unwrap_model(model)
    adapter = lora and not merge
    if merge:
        model, state_dict = model.merge_and_unload(), None
    base_info = read_trained(base.path) if base.path else None  # a base trained by an earlier stage
    info = TrainedModel(
        base=base.name,
        base_source=base.source,
        base_pin=base.pin,
        base_license=base.license or (base_info.base_license if base_info else None),
        base_path=base.path,
        adapter=adapter,
        training=summary,
    )
    save_model_folder(model_dir, model, tokenizer, info, state_dict=state_dict)
    accelerator.wait_for_everyone()


def training_summary(p: SFTParams, history: list[dict], stage: str) -> TrainingSummary:
    """What the model card says about the run: the method, its size and loss, the settings that matter."""
    from components.trainers.sft import SFT  # the component module imports this one

    settings: dict[str, Any] = {
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
    if p.special_tokens:
        settings["special_tokens"] = p.special_tokens
    if p.mask_spans:
        settings["mask_spans"] = [list(pair) for pair in p.mask_spans]
        settings["compat"] = p.compat
    weighting = " and per-sequence loss weighting" if p.loss_weighting else ""
    return TrainingSummary(
        component=SFT.type,
        stage=stage,
        description=(
            f"Supervised fine-tune on assistant tokens only, with LongAlign-style {p.batching} batching"
            f"{weighting}."
        ),
        tags=["sft", "longalign"],
        steps=len(history),
        tokens=sum(h["tokens"] for h in history),
        first_loss=history[0]["loss"] if history else None,
        final_loss=history[-1]["loss"] if history else None,
        settings=settings,
    )
