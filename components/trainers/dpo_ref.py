"""``dpo.ref_logps``: the reference model's log-probabilities of every preference pair, kept as a stage.

DPO compares the policy's log-probability of each reply with the reference model's. The reference is
frozen, so its numbers depend only on the reference model, the pairs and how they are tokenized
(``max_length``, the chat template): this stage computes them once and its records carry them, so the
runner's cache keeps them. Re-running ``train.dpo`` with another ``beta``, loss weights or learning rate
reuses them; TRL alone would keep them only in memory. ``train.dpo`` checks with ``ref_tokens`` that it
tokenized every pair the same way (same tokenizer, template and ``max_length``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Fields, ModelSlot, Params, WholeComponent
from components.trainers.dpo_data import PairRow, stats_dict, tokenize_pairs, tokens_digest

PAIR_FIELDS = Fields("prompt", "chosen", "rejected")
TOKENIZE_STATS = "pairs"


def reply_logps(model: Any, rows: list[PairRow], chunk_size: int | None = 1024,
                advance: Callable[[int], None] | None = None) -> list[tuple[float, float]]:
    """``(log p(chosen | prompt), log p(rejected | prompt))`` under ``model`` for each row: the sum of the
    reply tokens' log-probabilities (the quantity DPO's loss compares), in float32.

    One sequence per forward pass, through ``train.sft``'s loss code: sequences longer than ``chunk_size``
    get their output layer applied ``chunk_size`` positions at a time, so the logits of a long context never
    exist whole.
    """
    import torch

    from components.trainers.loop import forward_loss
    from components.trainers.tokenize import IGNORE_INDEX

    device = next(model.parameters()).device
    out: list[tuple[float, float]] = []
    for row in rows:
        sums = []
        for reply in (row.chosen_ids, row.rejected_ids):
            ids = torch.tensor([row.prompt_ids + reply], device=device)
            labels = ids.clone()
            labels[0, : len(row.prompt_ids)] = IGNORE_INDEX
            with torch.no_grad():
                nll = forward_loss(model, {"input_ids": ids}, labels, (labels != IGNORE_INDEX).float(), chunk_size)
            sums.append(-float(nll))
        out.append((sums[0], sums[1]))
        if advance is not None:
            advance(1)
    return out


class RefLogpsParams(Params):
    max_length: int = Field(2048, ge=2, description=(
        "tokens of prompt + reply; longer contexts are cut in the middle (components.trainers.dpo_data). "
        "Must equal train.dpo's max_length"))
    chat_template: str | None = Field(None, description="Jinja chat template instead of the model's own")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weight dtype; auto = bfloat16 on a GPU that supports it, else float32")
    loss_chunk_size: int | None = Field(1024, ge=1, description=(
        "sequences longer than this get their output layer applied this many positions at a time (the full "
        "logits of a long context never exist); null: always the full logits"))


class RefLogps(WholeComponent):
    """Computes the reference model's log-probabilities of the chosen and rejected reply of every pair.

    Output: each pair that fits ``max_length`` (see ``components.trainers.dpo_data``), with
    ``ref_chosen_logps`` and ``ref_rejected_logps`` (summed reply-token log-probabilities) and
    ``ref_tokens`` (a digest of the tokens scored). ``train.dpo`` uses them instead of a reference model.
    """

    type = "dpo.ref_logps"
    inputs: ClassVar[dict[str, Fields]] = {"pairs": PAIR_FIELDS}
    passthrough = "pairs"
    outputs = Fields("ref_chosen_logps", "ref_rejected_logps", "ref_tokens")
    models: ClassVar[dict[str, ModelSlot]] = {
        "ref": ModelSlot("weights", doc="the reference model (usually the policy before DPO)"),
    }
    Params = RefLogpsParams

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        from components.trainers.tokenize import load_tokenizer
        from registry.model_folder import load_causal_lm

        p: RefLogpsParams = self.params  # type: ignore[assignment]
        source = ctx.model_source("ref")
        records = inputs["pairs"]
        rows, kept, stats = tokenize_pairs(records, load_tokenizer(source, p.chat_template), p.max_length)
        ctx.save_stats(TOKENIZE_STATS, stats_dict(stats))
        model = load_causal_lm(source, dtype=p.dtype)
        logps = reply_logps(model, rows, p.loss_chunk_size, lambda n: ctx.advance(n, len(rows)))
        return [{**records[i], "ref_chosen_logps": c, "ref_rejected_logps": r, "ref_tokens": tokens_digest(row)}
                for i, row, (c, r) in zip(kept, rows, logps, strict=True)]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        n = len(records)
        return {**(ctx.load_stats(TOKENIZE_STATS) or {}),
                "mean_ref_chosen_logps": sum(r["ref_chosen_logps"] for r in records) / n if n else None,
                "mean_ref_rejected_logps": sum(r["ref_rejected_logps"] for r in records) / n if n else None}
