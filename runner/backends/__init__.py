"""LLM and embedding backends behind one interface (``runner.backends.base``).

``open_llm`` picks the backend named by the zoo entry (``transformers``, ``openai`` or ``vllm``);
``open_embedder`` opens a sentence embedder. Nothing heavy is imported here: each backend module imports
torch / transformers / openai / vllm only when a model is opened or first used.

Options (a stage's ``options`` in the recipe) override the zoo entry's ``serving`` (and, for API models,
``api``) values:

- transformers: ``batch_size``, ``dtype``, ``device``, ``num_threads``
- openai: ``concurrency``, ``rpm``, ``tpm``, ``timeout_s``, ``max_retries``, ``budget_usd``, prices, ...
  (see ``openai_backend.OpenAISettings``)
- vllm: ``tensor_parallel_size``, ``max_model_len``, ``dtype``, ``gpu_memory_utilization``,
  ``enable_prefix_caching``, ... (see ``vllm_backend.engine_kwargs``)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.resolved import ResolvedModel
    from runner.backends.base import LLM, Embedder

LLM_BACKENDS = ("transformers", "openai", "vllm")


def open_llm(model: ResolvedModel, *, options: dict[str, Any] | None = None,
             tokenizer_path: Path | None = None) -> LLM:
    """The LLM for a resolved model. ``tokenizer_path``: a local folder whose tokenizer the backend uses
    (for API models, to count tokens; the zoo entry's ``tokenizer``)."""
    options = dict(options or {})
    if model.backend == "transformers":
        from runner.backends.transformers_backend import TransformersLLM

        settings = {**model.serving, **options}
        return TransformersLLM(
            model,
            batch_size=int(settings.get("batch_size", 8)),
            dtype=settings.get("dtype"),
            device=settings.get("device"),
            tokenizer_path=tokenizer_path,
            num_threads=settings.get("num_threads"),
        )
    if model.backend == "openai":
        from runner.backends.openai_backend import OpenAILLM, settings_for

        return OpenAILLM(model, settings_for(model, options), tokenizer_path=tokenizer_path)
    if model.backend == "vllm":
        from runner.backends.vllm_backend import VLLMLLM

        return VLLMLLM(model, options)
    raise ValueError(
        f"model {model.name!r}: unknown LLM backend {model.backend!r}; expected one of {', '.join(LLM_BACKENDS)}"
    )


def open_embedder(model: ResolvedModel, *, options: dict[str, Any] | None = None) -> Embedder:
    """A sentence embedder for a resolved local encoder model (mean pooling + L2 norm by default)."""
    from runner.backends.embed import HFEmbedder

    settings = {**model.serving, **(options or {})}
    return HFEmbedder(
        model,
        batch_size=int(settings.get("batch_size", 32)),
        device=settings.get("device"),
        max_length=settings.get("max_length"),
    )
