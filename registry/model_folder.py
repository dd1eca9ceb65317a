"""Model folders: opening the Hugging Face folders the zoo pulls and writing/reading the ones trainers make.

Every reader and writer of a model folder goes through here: the trainers (loading the base, saving the
result), the backends (loading for inference), the zoo (facts of a trained model's base) and publish
(the card). A trained folder holds ``recipe_model.json`` (``TRAINED_MODEL_FILE``), read and written only
by ``read_trained`` / ``write_trained`` as a ``TrainedModel``. With ``adapter: true`` the folder is a PEFT
adapter over the model at ``base_path``: loading it loads the base, applies the adapter and merges it
(plain inference speed); the tokenizer comes from the trained folder, since training may have added
tokens. A published adapter names no ``base_path`` (no path of the machine that trained it): its base is
the model its ``base_source`` names, a Hub id, pulled through the zoo. Without an adapter the trained
folder is a full model folder.

torch, transformers and peft are imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry.atomic import atomic_write_json
from registry.resolved import ResolvedModel

TRAINED_MODEL_FILE = "recipe_model.json"

# A folder is taken for a model when it holds one of these (HF model, trained model, adapter, embedder).
MODEL_MARKERS = ("config.json", TRAINED_MODEL_FILE, "adapter_config.json", "modules.json")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")


# ---------------------------------------------------------------------------------------------- metadata

class TrainingSummary(BaseModel):
    """How a trained model was made, as its trainer describes it; ``publish`` renders it in the card."""

    model_config = ConfigDict(extra="ignore")

    component: str = Field(description="the trainer's component type, e.g. train.sft")
    stage: str = Field(description="the recipe stage that trained the model")
    description: str = Field("", description="one sentence on what was trained and how")
    tags: list[str] = Field(default_factory=list, description="Hub tags naming the method")
    steps: int = Field(0, description="optimizer steps run")
    tokens: int = Field(0, description="tokens trained on (inputs, not only targets)")
    first_loss: float | None = None
    final_loss: float | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="the training settings worth showing")


class TrainedModel(BaseModel):
    """The contents of a trained folder's ``recipe_model.json``.

    Unknown keys are ignored, so folders written by a newer version still open.
    """

    model_config = ConfigDict(extra="ignore")

    base: str | None = Field(None, description="zoo name of the model it was trained from")
    base_source: str | None = Field(None, description="source URI of that model")
    base_pin: str | None = Field(None, description="what pins that model (a Hub commit sha, a content hash)")
    base_license: str | None = Field(None, description="the license of that model's weights (its zoo entry's)")
    base_path: Path | None = Field(
        None, description="its local folder; a relative path is relative to this folder; absent in a published "
        "folder, whose adapter's base is found by base_source")
    adapter: bool = Field(False, description="true: a PEFT adapter over the base; false: full weights")
    training: TrainingSummary | None = None


def read_trained(folder: Path | str) -> TrainedModel | None:
    """The metadata of a trained folder (a relative ``base_path`` made absolute), or None for a folder
    without ``recipe_model.json`` (a plain model folder)."""
    folder = Path(folder)
    marker = folder / TRAINED_MODEL_FILE
    if not marker.is_file():
        return None
    info = TrainedModel.model_validate_json(marker.read_text(encoding="utf-8"))
    if info.base_path is not None and not info.base_path.is_absolute():
        info = info.model_copy(update={"base_path": folder / info.base_path})
    return info


def write_trained(folder: Path | str, info: TrainedModel) -> Path:
    """Write ``info`` as the folder's ``recipe_model.json``; returns the file's path."""
    path = Path(folder) / TRAINED_MODEL_FILE
    atomic_write_json(path, info.model_dump(mode="json", exclude_none=True))
    return path


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a model (any of ``MODEL_MARKERS``)."""
    return any((folder / marker).is_file() for marker in MODEL_MARKERS)


def is_adapter(folder: Path | str) -> bool:
    """Whether ``folder`` is a trained adapter folder."""
    info = read_trained(folder)
    return bool(info and info.adapter)


def _adapter_base(folder: Path, info: TrainedModel) -> Path:
    """The local folder of an adapter's base: ``base_path``, or for a published adapter (which holds no
    path of the machine that trained it) the model its ``base_source`` names, through the zoo."""
    if info.base_path is not None:
        return info.base_path
    if info.base_source:
        from registry.zoo import Zoo  # the zoo reads trained folders through this module

        path = Zoo.load().resolve(info.base_source).path
        if path is not None:
            return path
    raise ValueError(f"{folder / TRAINED_MODEL_FILE} marks an adapter but names neither base_path nor a "
                     "base_source with local weights")


def has_tokenizer_files(folder: Path) -> bool:
    return any((folder / n).is_file() for n in TOKENIZER_FILES)


# ---------------------------------------------------------------------------------------------- folders

def model_folder(model: ResolvedModel | Path | str) -> Path:
    """The local folder of a model, with a clear error for models that have none (API models)."""
    if isinstance(model, ResolvedModel):
        if model.path is None:
            raise ValueError(f"model {model.name!r} ({model.source}) has no local folder to load weights from")
        return Path(model.path)
    return Path(model)


def config_folder(model: ResolvedModel | Path | str) -> Path:
    """The folder holding the architecture's ``config.json`` (the base model's, for an adapter)."""
    folder = model_folder(model)
    info = read_trained(folder)
    if info is not None and info.adapter:
        return config_folder(_adapter_base(folder, info))
    return folder


def load_config(model: ResolvedModel | Path | str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(config_folder(model)), **_trust(trust_remote_code))


def load_tokenizer(model: ResolvedModel | Path | str, *, padding_side: str | None = None,
                   trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model folder (a trained folder's own; its base's if it saved none), with a
    pad token set (the eos token when the tokenizer defines no pad token). ``trust_remote_code`` runs the
    folder's own tokenizer code."""
    from transformers import AutoTokenizer

    folder = model_folder(model)
    info = read_trained(folder)
    source = folder
    if info is not None and not has_tokenizer_files(folder) and (info.base_path is not None or info.adapter):
        source = info.base_path or _adapter_base(folder, info)
    tok = AutoTokenizer.from_pretrained(str(source), **_trust(trust_remote_code))
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    if padding_side is not None:
        tok.padding_side = padding_side
    return tok


# ---------------------------------------------------------------------------------------------- weights

def resolve_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: Any = None, device: str = "cpu", *, training: bool = False) -> Any:
    """A torch dtype from a name ("float32", "bf16", "auto", ...) or None: float32 on CPU; bfloat16 on
    GPUs that support it, else float16 for inference and float32 for training (half-precision weights
    without loss scaling do not train)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.startswith("cuda") and torch.cuda.is_available():
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float32 if training else torch.float16
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
    trust_remote_code: bool = False,
) -> Any:
    """A causal LM in eval mode on ``device``: a plain folder as is, an adapter folder merged into its
    base (recursively, so an adapter over a trained model works too). ``trust_remote_code`` runs the
    folder's own model code."""
    device = resolve_device(device)
    lm = load_weights(model, dtype=resolve_dtype(dtype, device), attn_implementation=attn_implementation,
                      trust_remote_code=trust_remote_code)
    lm.to(device)
    lm.eval()
    return lm


def load_weights(model: ResolvedModel | Path | str, *, dtype: Any, attn_implementation: str | None = None,
                 trust_remote_code: bool = False) -> Any:
    """The causal LM of a model folder on the CPU, as ``from_pretrained`` leaves it (an adapter folder
    merged into its base, the base's embeddings grown first when training added tokens). ``dtype``: a
    torch dtype or a name, resolved for the CPU (see ``resolve_dtype`` for a device's default)."""
    from transformers import AutoModelForCausalLM

    folder = model_folder(model)
    torch_dtype = resolve_dtype(dtype)
    info = read_trained(folder)
    if info is None or not info.adapter:
        kwargs: dict[str, Any] = {"dtype": torch_dtype, **_trust(trust_remote_code)}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)

    from peft import PeftModel

    base = load_weights(_adapter_base(folder, info), dtype=torch_dtype, attn_implementation=attn_implementation,
                        trust_remote_code=trust_remote_code)
    if has_tokenizer_files(folder):
        # Training may have added tokens (e.g. reflection tokens); the adapter's saved embeddings
        # then have the larger vocabulary.
        # (Their rows come from the adapter, so how the grown rows start does not matter.)
        vocab = len(load_tokenizer(folder))
        if vocab > base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(vocab, mean_resizing=False)
    return PeftModel.from_pretrained(base, str(folder)).merge_and_unload()


def _trust(trust_remote_code: bool) -> dict[str, Any]:
    """``from_pretrained``'s keyword, only when asked (so plain loads stay as they were)."""
    return {"trust_remote_code": True} if trust_remote_code else {}


def save_model_folder(folder: Path, model: Any, tokenizer: Any, info: TrainedModel,
                      state_dict: dict | None = None) -> None:
    """Write a trained folder: the model's weights (or adapter), the tokenizer and ``info``, no card. The
    folder is assembled under ``<folder>.tmp`` and renamed into place, so it is complete or absent."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    kwargs: dict[str, Any] = {}
    config = getattr(model, "peft_config", {}).get("default")
    if getattr(config, "trainable_token_indices", None):
        # the trained token rows are in the adapter: not the whole grown embedding matrices as well
        kwargs["save_embedding_layers"] = False
    model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True, **kwargs)
    (tmp / "README.md").unlink(missing_ok=True)  # peft's boilerplate card: cards are written by publish
    tokenizer.save_pretrained(str(tmp))
    write_trained(tmp, info)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
