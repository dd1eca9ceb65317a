"""``score.hmg``: the response perplexity under GATEAU's two homologous models (spec §4.1)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from components.base import Context, Failed, Fields, MapComponent, ModelSlot, Out, Params
from components.scorers.lm import LoadOptions, ModelCache, encode_response, perplexity, response_nll
from components.selectors.gateau import build_hmg_text


class HMGParams(Params):
    short_window: int = Field(
        4096, ge=2,
        description="Tokens θ_A (the short model) reads: the text is cut on the left to this many (the paper: "
        "Llama-2-7b-hf's 4096).",
    )
    long_window: int = Field(
        64000, ge=2, description="Tokens θ_B (the long model) reads, cut on the left (the paper: 64000).",
    )
    short_rope_factor: float | None = Field(
        None, gt=1.0,
        description="Extend θ_A with dynamic-NTK RoPE scaling by this factor beyond `short_rope_window` (the "
        "paper's extended-window variant; then raise short_window too). Null: θ_A as it is.",
    )
    short_rope_window: int | None = Field(
        None, ge=2,
        description="The window the dynamic-NTK scaling starts from; default: θ_A's max_position_embeddings.",
    )
    load: LoadOptions = Field(default_factory=LoadOptions, description="dtype and device of both models.")
    attn_implementation: str | None = Field(
        None, description="transformers attention implementation (e.g. flash_attention_2 on GPUs); default: sdpa.",
    )

    @model_validator(mode="after")
    def _rope(self) -> HMGParams:
        if self.short_rope_window is not None and self.short_rope_factor is None:
            raise ValueError("short_rope_window needs short_rope_factor")
        return self


class HMGScore(MapComponent):
    """Scores each chat record's response under the short-window model θ_A and the long-window model θ_B.

    GATEAU's Homologous Models' Guidance compares two models of one family that differ in context window
    (the paper: Llama-2-7b-hf at 4k and LongAlign-7B-64k-base at 64k). The text is ``build_hmg_text``'s
    ``"### Input:" + input + "\\n\\n ### Instruction: " + instruct + "\\n\\n ### Response: " + response``;
    each model reads it left-truncated to its own window, and the response tokens are located on that
    truncated sequence (the reference locates them before truncating and scores the wrong tokens). The
    score is PPL = exp(mean cross-entropy over the response tokens). With ``short_rope_factor`` θ_A gets
    dynamic-NTK RoPE scaling (the paper's window extension). Both slots may name the same model: it is
    loaded once, and θ_A then differs only by its window.

    Adds ``ppl_short``, ``ppl_long`` and the tokens each read (``tokens_short``/``tokens_long``, and their
    response tokens). A record whose response has no token inside a window fails with the reason.
    """

    type: ClassVar[str] = "score.hmg"
    Params: ClassVar[type[Params]] = HMGParams
    inputs: ClassVar[dict[str, Fields]] = {"records": Fields("id", "messages")}
    passthrough: ClassVar[str | None] = "records"
    outputs: ClassVar[Fields | None] = Fields(
        "ppl_short", "ppl_long", "tokens_short", "tokens_long", "response_tokens_short", "response_tokens_long"
    )
    models: ClassVar[dict[str, ModelSlot]] = {
        "short": ModelSlot("weights", doc="θ_A, the short-window model (Llama-2-7b-hf in the paper)"),
        "long": ModelSlot("weights", doc="θ_B, the long-window model (LongAlign-7B-64k-base in the paper)"),
    }
    batch_size: ClassVar[int] = 4

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._cache = ModelCache()

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: HMGParams = self.params  # type: ignore[assignment]
        short_src, long_src = ctx.model_source("short"), ctx.model_source("long")
        out: list[Out] = []
        for record in batch:
            try:
                _, _, text, start = build_hmg_text(record["messages"])
            except ValueError as exc:
                out.append(Failed(str(exc), retry=False))
                continue
            with self._cache.lock:
                short = self._score(short_src, text, start, p.short_window, p.short_rope_factor, p.short_rope_window)
                long = self._score(long_src, text, start, p.long_window, None, None)
            problem = next((f"{name}: {s}" for name, s in (("short", short), ("long", long)) if isinstance(s, str)),
                           None)
            if problem:
                out.append(Failed(problem, retry=False))
                continue
            assert not isinstance(short, str) and not isinstance(long, str)
            out.append({**record, "ppl_short": short[0], "ppl_long": long[0], "tokens_short": short[1],
                        "tokens_long": long[1], "response_tokens_short": short[2],
                        "response_tokens_long": long[2]})
        return out

    def _score(self, source: Any, text: str, start: int, window: int, rope_factor: float | None,
               rope_window: int | None) -> tuple[float, int, int] | str:
        p: HMGParams = self.params  # type: ignore[assignment]
        tok = self._cache.tokenizer(source)
        enc = encode_response(tok, text, start, window)
        scored = len(enc.ids) - max(enc.first_response, 1)
        if scored < 1:
            return f"no response token to score within the {window}-token window"
        lm = self._cache.model(source, p.load, p.attn_implementation, rope_factor, rope_window)
        ((nll, count),) = response_nll(lm, [enc.ids], enc.first_response)
        return perplexity(nll, count), len(enc.ids), count

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        self._cache.clear()  # every record is done: the weights are not needed any more
        if not records:
            return {"n": 0}
        short = [r["ppl_short"] for r in records]
        long = [r["ppl_long"] for r in records]
        return {
            "n": len(records),
            "mean_ppl_short": sum(short) / len(short),
            "mean_ppl_long": sum(long) / len(long),
            "short_above_long": sum(1 for a, b in zip(short, long) if a > b),
            "mean_tokens_long": sum(r["tokens_long"] for r in records) / len(records),
        }
