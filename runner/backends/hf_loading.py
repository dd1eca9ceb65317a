"""Chat prompts for local Hugging Face models, and the model-folder loading the backends use.

Opening model folders (plain, trained, adapters), tokenizers and dtypes lives in
``registry.model_folder``; it is re-exported here for the backends. This module adds what only
inference needs: rendering a conversation into the prompt the model continues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.model_folder import (
    config_folder,
    load_causal_lm,
    load_config,
    load_tokenizer,
    model_folder,
    read_trained,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "PLAIN_CHAT_TEMPLATE", "chat_prompt_ids", "config_folder", "load_causal_lm", "load_config", "load_tokenizer",
    "model_folder", "render_chat", "resolve_device", "resolve_dtype", "trained_info",
]

# Used when a tokenizer has no chat template and the zoo entry gives none (base models).
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def trained_info(folder: Path) -> dict[str, Any] | None:
    """A trained folder's metadata as a plain dict (see ``registry.model_folder.read_trained``)."""
    info = read_trained(folder)
    return None if info is None else info.model_dump()


def render_chat(tokenizer: Any, conversation: list[dict], chat_template: str | None = None) -> str:
    """A conversation as prompt text ending with the assistant's turn opening: ``chat_template`` when
    given, else the tokenizer's own template, else a plain ``role: content`` layout. A conversation whose
    last message is the assistant's ends with that message's text instead (the reply continues it)."""
    template = chat_template or getattr(tokenizer, "chat_template", None) or PLAIN_CHAT_TEMPLATE
    if conversation and conversation[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(
            conversation, chat_template=template, tokenize=False, add_generation_prompt=False,
            continue_final_message=True,
        )
    return tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=True
    )


def chat_prompt_ids(tokenizer: Any, conversation: list[dict], chat_template: str | None = None) -> list[int]:
    """Token ids of a conversation rendered for generation with the entry's template (or the
    tokenizer's own). Chat templates write their own BOS; the plain fallback for base models does not."""
    template = chat_template or getattr(tokenizer, "chat_template", None)
    text = render_chat(tokenizer, conversation, template)
    return tokenizer(text, add_special_tokens=template is None or template == PLAIN_CHAT_TEMPLATE)["input_ids"]
