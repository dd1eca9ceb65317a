"""Predict answers to long prompts with middle truncation (LongBench-Chat decoding)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out, Params
from components.text import count_tokens, truncate_middle
from runner.backends.base import Sampling


class LongBenchChatPredictParams(Params):
    max_input_tokens: int | None = Field(
        None,
        ge=2,
        description="Middle-truncate prompts longer than this many tokens (the reference uses 64000). "
        "Default: the model's context window minus `max_new_tokens` and `reserve_tokens` when the backend "
        "knows it, else 64000.",
    )
    reserve_tokens: int = Field(
        64, ge=0, description="Tokens left free for the chat template when `max_input_tokens` is derived."
    )
    max_new_tokens: int = Field(1024, ge=1, description="Answer length cap (reference: 1024).")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature (reference: 1.0).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    seed: int = Field(
        42, description="Seed sent with every case (the reference re-seeds with 42 before each case)."
    )
    prompt_field: str = Field("prompt", description="Record field holding the long prompt (context + query).")
    prediction_field: str = Field("prediction", description="Record field the answer is written to.")


class LongBenchChatPredict(MapComponent):
    """Answers each LongBench-Chat prompt with the stage's model and stores it as `prediction`.

    Follows the reference decoding: the prompt is middle-truncated to `max_input_tokens`
    tokens of the model's tokenizer (whitespace words when the backend has none), sent as one user turn,
    decoded with temperature 1.0 and up to 1024 new tokens, and every case uses the same seed (42), as
    `seed_everything(42)` per case does. The chat template is the backend's. The reference wraps each model
    family by hand. The raw answer is stored; the judge turns newlines into spaces.
    """

    type: ClassVar[str] = "generate.longbench_chat"
    Params: ClassVar[type[Params]] = LongBenchChatPredictParams
    inputs: ClassVar[dict[str, Fields]] = {"cases": Fields("prompt")}
    passthrough: ClassVar[str | None] = "cases"
    models: ClassVar[dict[str, ModelSlot]] = {"model": ModelSlot("chat", doc="the model being evaluated")}
    batch_size: ClassVar[int] = 4

    def output_fields(self) -> Fields | None:
        return Fields(self.params.prediction_field, "input_tokens", "truncated")  # type: ignore[attr-defined]

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: LongBenchChatPredictParams = self.params  # type: ignore[assignment]
        llm = ctx.model()
        tok = llm.tokenizer()  # None: whitespace words stand in for tokens
        limit = self._input_limit(llm)
        prompts = []
        for r in batch:
            text = str(r[p.prompt_field])
            n_tokens = count_tokens(text, tok)
            cut = n_tokens > limit
            prompts.append((truncate_middle(text, tok, limit) if cut else text, n_tokens, cut))
        sampling = Sampling(
            temperature=p.temperature, top_p=p.top_p, max_new_tokens=p.max_new_tokens, seed=p.seed
        )
        results = llm.chat([[{"role": "user", "content": text}] for text, _, _ in prompts], sampling)
        out: list[Out] = []
        for record, (_, n_tokens, cut), res in zip(batch, prompts, results, strict=True):
            if res.error:
                out.append(Failed(error=f"model call failed: {res.error}"))
            else:
                out.append(
                    {**record, p.prediction_field: res.text, "input_tokens": n_tokens, "truncated": cut}
                )
        return out

    def _input_limit(self, llm: Any) -> int:
        p: LongBenchChatPredictParams = self.params  # type: ignore[assignment]
        if p.max_input_tokens is not None:
            return p.max_input_tokens
        window = getattr(llm, "context_length", None)
        if window:
            return max(2, window - p.max_new_tokens - p.reserve_tokens)
        return 64000

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("cases")
        if n is None:
            return Estimate()
        return Estimate(records_out=n, llm_calls=n, completion_tokens=n * self.params.max_new_tokens)  # type: ignore[attr-defined]
