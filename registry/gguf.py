"""Turn a GGUF file into a plain Hugging Face model folder (safetensors + tokenizer), once.

transformers reads GGUF directly (``from_pretrained(..., gguf_file=...)``, dequantising on load), but
that takes tens of seconds and leaves a model it refuses to save. Converting once at pull time to a
float32 safetensors folder makes every later load an ordinary, fast ``from_pretrained(folder)``. The
GGUF's chat template and context length travel into the folder (tokenizer config, model config) and
are returned so the pull record shows what came out of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Architecture, context length, chat template and name from the GGUF header (no tensors read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    return {
        "architecture": arch,
        "name": value("general.name"),
        "license": value("general.license"),
        "context_length": value(f"{arch}.context_length"),
        "chat_template": value("tokenizer.chat_template"),
    }


def convert_gguf(gguf_file: Path, out_dir: Path, dtype: str = "float32") -> dict[str, Any]:
    """Write ``out_dir`` as a safetensors model folder converted from ``gguf_file``; return its metadata."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = read_gguf_metadata(gguf_file)
    torch_dtype = getattr(torch, dtype)
    folder, name = gguf_file.parent, gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch_dtype)
    # The weights are already dequantised, but the model still carries the GGUF quantizer, which
    # save_pretrained rejects: copy them into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    meta["dtype"] = dtype
    return meta
