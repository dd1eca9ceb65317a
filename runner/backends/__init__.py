"""LLM and embedding backends behind one interface (``runner.backends.base``).

``open_llm`` picks the backend named by the zoo entry (``transformers``, ``openai`` or ``vllm``);
``open_embedder`` opens a sentence embedder. Nothing heavy is imported here: each backend module imports
torch / transformers / openai / vllm only when a model is opened or first used.

Each backend's options (a model role's ``options`` in the recipe) are a pydantic model in
``runner.backends.options`` (``OPTIONS``): they override the zoo entry's ``serving`` (and, for API
models, ``api``) values, and an option the backend does not take is an error, never ignored.
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
    if model.backend not in LLM_BACKENDS:
        raise ValueError(
            f"model {model.name!r}: unknown LLM backend {model.backend!r}; expected one of {', '.join(LLM_BACKENDS)}"
        )
    from runner.backends.options import settings_for

    settings = settings_for(model, options)  # an option this backend does not take is an error
    if model.backend == "transformers":
        from runner.backends.transformers_backend import TransformersLLM

        return TransformersLLM(
            model,
            batch_size=settings.batch_size,
            dtype=settings.dtype,
            device=settings.device,
            tokenizer_path=tokenizer_path,
            num_threads=settings.num_threads,
            trust_remote_code=settings.trust_remote_code,
        )
    if model.backend == "openai":
        from runner.backends.openai_backend import OpenAILLM

        return OpenAILLM(model, settings, tokenizer_path=tokenizer_path)
    from runner.backends.vllm_backend import VLLMLLM

    return VLLMLLM(model, options)  # the engine reads serving + options itself (``engine_kwargs``)


def open_embedder(model: ResolvedModel, *, options: dict[str, Any] | None = None) -> Embedder:
    """A sentence embedder for a resolved local encoder model (mean pooling + L2 norm by default):
    through sentence-transformers where it is installed and the folder is one of its models, otherwise
    with plain transformers (the same pooling and prompts, read from the folder's files)."""
    from runner.backends import embed_st
    from runner.backends.embed import HFEmbedder
    from runner.backends.hf_loading import model_folder
    from runner.backends.options import settings_for

    settings = settings_for(model, options, backend="embed")
    cls = embed_st.STEmbedder if embed_st.usable(model_folder(model)) else HFEmbedder
    return cls(model, batch_size=settings.batch_size, device=settings.device, max_length=settings.max_length)
