"""Tokens added to a model for training (``train.sft``'s ``special_tokens``), e.g. Self-RAG's 15 reflection
tokens (spec §5.1).

The tokens join the tokenizer as special tokens, so each is one token wherever it appears and is never
split or normalised. The embedding matrix grows to the tokenizer's size and every new row (input
embeddings, and the output layer's rows when it is not tied to them) starts at the mean of the existing
rows. Under LoRA the rows of the listed tokens are trained through peft's ``trainable_token_indices`` (only
those rows, not the whole matrix) and saved with the adapter; loading the trained folder grows the base's
embeddings to the saved tokenizer's size before the adapter's rows are merged in
(``registry.model_folder.load_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.selfrag_tokens import SPECIAL_TOKEN_PRESETS


def resolve_special_tokens(value: str | Sequence[str] | None) -> list[str]:
    """The token list of a ``special_tokens`` param: a preset name (``selfrag``) or a list of tokens."""
    if value is None:
        return []
    if isinstance(value, str):
        if value not in SPECIAL_TOKEN_PRESETS:
            raise ValueError(f"unknown special_tokens preset {value!r}; presets: {sorted(SPECIAL_TOKEN_PRESETS)} "
                             "(or give a list of tokens)")
        return list(SPECIAL_TOKEN_PRESETS[value])
    return list(dict.fromkeys(value))


def add_special_tokens(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """Add ``tokens`` to ``tokenizer`` as special tokens (those it already has stay as they are); returns
    their ids, in order."""
    if tokens:
        tokenizer.add_special_tokens({"extra_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    return [int(i) for i in ids]


def grow_embeddings(model: Any, vocab_size: int) -> list[int]:
    """Grow ``model``'s embeddings to ``vocab_size`` rows, the new rows set to the mean of the old ones
    (in the output layer too when it has its own weights); returns the new rows' ids."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return []
    out_old = model.get_output_embeddings()
    tied = out_old is None or out_old.weight is model.get_input_embeddings().weight
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        layers = [model.get_input_embeddings()]
        if not tied:
            layers.append(model.get_output_embeddings())
        for layer in layers:
            weight = layer.weight
            weight[old:] = weight[:old].float().mean(dim=0).to(weight.dtype)
            bias = getattr(layer, "bias", None)
            if bias is not None and bias.shape[0] == vocab_size:
                bias[old:] = bias[:old].float().mean().to(bias.dtype)
    return list(range(old, vocab_size))


def trainable_token_indices(model: Any, ids: Sequence[int]) -> dict[str, list[int]]:
    """peft's ``trainable_token_indices`` training the rows ``ids`` of the input embeddings and, when it is
    not tied to them, of the output layer: ``{module name: ids}``."""
    if not ids:
        return {}
    names = {id(m): name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name}
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    out = {names[id(embed)]: list(ids)}
    if head is not None and head.weight is not embed.weight:
        out[names[id(head)]] = list(ids)
    return out
