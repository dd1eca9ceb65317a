"""Opening Hugging Face model folders: plain ones and the trained folders recipes write.

A trained folder holds ``recipe_model.json`` (``registry.resolved.TRAINED_MODEL_FILE``). With
``"adapter": true`` it is a PEFT adapter over the model at ``base_path``: the base is loaded, the adapter
applied and merged (plain inference speed), and the tokenizer comes from the trained folder, since
training may have added tokens. Without an adapter the trained folder is a full model folder.

torch, transformers and peft are imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.resolved import TRAINED_MODEL_FILE, ResolvedModel

# Used when a tokenizer has no chat template and the zoo entry gives none (base models).
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def model_folder(model: ResolvedModel | Path | str) -> Path:
    """The local folder of a model, with a clear error for models that have none (API models)."""
    if isinstance(model, ResolvedModel):
        if model.path is None:
            raise ValueError(f"model {model.name!r} ({model.source}) has no local folder to load weights from")
        return Path(model.path)
    return Path(model)


def trained_info(folder: Path) -> dict[str, Any] | None:
    """The contents of a trained folder's ``recipe_model.json``, or None for a plain model folder.
    A relative ``base_path`` is taken relative to the trained folder."""
    marker = folder / TRAINED_MODEL_FILE
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    if info.get("base_path"):
        base = Path(info["base_path"])
        info["base_path"] = base if base.is_absolute() else (folder / base)
    return info


def _is_adapter(info: dict[str, Any] | None) -> bool:
    return bool(info and info.get("adapter"))


def config_folder(model: ResolvedModel | Path | str) -> Path:
    """The folder holding the architecture's ``config.json`` (the base model's, for an adapter)."""
    folder = model_folder(model)
    info = trained_info(folder)
    if _is_adapter(info):
        if not info.get("base_path"):
            raise ValueError(f"{folder / TRAINED_MODEL_FILE} marks an adapter but names no base_path")
        return config_folder(Path(info["base_path"]))
    return folder


def load_config(model: ResolvedModel | Path | str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(config_folder(model)))


def load_tokenizer(model: ResolvedModel | Path | str, *, padding_side: str | None = None) -> Any:
    """The tokenizer of a model folder (a trained folder's own; its base's if it saved none), with a
    pad token set (the eos token when the tokenizer defines no pad token)."""
    from transformers import AutoTokenizer

    folder = model_folder(model)
    info = trained_info(folder)
    source = folder
    if info is not None and not _has_tokenizer_files(folder) and info.get("base_path"):
        source = Path(info["base_path"])
    tok = AutoTokenizer.from_pretrained(str(source))
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    if padding_side is not None:
        tok.padding_side = padding_side
    return tok


def _has_tokenizer_files(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")
    return any((folder / n).is_file() for n in names)


def resolve_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: Any = None, device: str = "cpu") -> Any:
    """A torch dtype from a name ("float32", "bf16", "auto", ...) or None: float32 on CPU; bfloat16 on
    GPUs that support it, else float16."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.startswith("cuda") and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
        "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
        "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(names)} or 'auto'")
    return names[dtype]


def load_causal_lm(
    model: ResolvedModel | Path | str,
    *,
    dtype: Any = None,
    device: str | None = None,
    attn_implementation: str | None = None,
) -> Any:
    """A causal LM in eval mode on ``device``: a plain folder as is, an adapter folder merged into its
    base (recursively, so an adapter over a trained model works too)."""
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    lm = _load_on_cpu(model_folder(model), torch_dtype, attn_implementation)
    lm.to(device)
    lm.eval()
    return lm


def _load_on_cpu(folder: Path, torch_dtype: Any, attn_implementation: str | None) -> Any:
    from transformers import AutoModelForCausalLM

    info = trained_info(folder)
    if not _is_adapter(info):
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)

    from peft import PeftModel

    if not info.get("base_path"):
        raise ValueError(f"{folder / TRAINED_MODEL_FILE} marks an adapter but names no base_path")
    base = _load_on_cpu(Path(info["base_path"]), torch_dtype, attn_implementation)
    if _has_tokenizer_files(folder):
        # Training may have added tokens (e.g. reflection tokens); the adapter's saved embeddings
        # then have the larger vocabulary.
        vocab = len(load_tokenizer(folder))
        if vocab > base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(vocab)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    return merged


def render_chat(tokenizer: Any, conversation: list[dict], chat_template: str | None = None) -> str:
    """A conversation as prompt text ending with the assistant's turn opening: ``chat_template`` when
    given, else the tokenizer's own template, else a plain ``role: content`` layout."""
    template = chat_template or getattr(tokenizer, "chat_template", None) or PLAIN_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=True
    )


def chat_prompt_ids(tokenizer: Any, conversation: list[dict], chat_template: str | None = None) -> list[int]:
    """Token ids of a conversation rendered for generation with the entry's template (or the
    tokenizer's own). Chat templates write their own BOS; the plain fallback for base models does not."""
    template = chat_template or getattr(tokenizer, "chat_template", None)
    text = render_chat(tokenizer, conversation, template)
    return tokenizer(text, add_special_tokens=template is None or template == PLAIN_CHAT_TEMPLATE)["input_ids"]
