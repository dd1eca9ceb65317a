"""``random://family?...``: tiny randomly initialised models built locally, for tests.

The weights depend only on the query (family, sizes, seed) and the installed torch/transformers: the
same URI gives the same tensors, so the pin is the hash of the canonical query. ``tokenizer=bytes``
builds a byte-level tokenizer with the ``tokenizers`` library — 256 byte tokens, then the special tokens
``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` and ``<|pad|>``, and a ChatML chat template — so
nothing is downloaded at all. ``tokenizer=<zoo name>`` copies that model's tokenizer instead (it is
pulled first when needed), and the vocabulary follows it.

>>> tok = byte_tokenizer()
>>> tok("hé")["input_ids"]  # one token per UTF-8 byte
[104, 195, 169]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.cache import PullRecord, build_entry
from registry.sources import PullContext, RandomSource, SourceError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")

# ChatML: each turn is <|im_start|>role\ncontent<|im_end|>\n; a generation prompt opens the assistant turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer: ids 0-255 are the bytes, then the special tokens, ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in enumerate(byte_alphabet())}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=1 << 30,
    )


def byte_alphabet() -> list[str]:
    """The character the byte-level pre-tokenizer uses for each byte 0-255 (GPT-2's table): printable
    Latin-1 bytes stand for themselves, the others take code points from 256 upwards in order."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _tokenizer(src: RandomSource, ctx: PullContext) -> PreTrainedTokenizerBase:
    name = str(src.params["tokenizer"])
    if name == "bytes":
        return byte_tokenizer()
    if ctx.tokenizer_path is None:
        raise SourceError(f"{src.uri}: tokenizer '{name}' needs the zoo to resolve it")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ctx.tokenizer_path(name))


def _config(src: RandomSource, vocab: int, tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import AutoConfig

    p = src.params
    common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": p["hidden_size"],
        "num_hidden_layers": p["layers"],
        "num_attention_heads": p["heads"],
        "intermediate_size": p["intermediate"],
        "max_position_embeddings": p["max_len"],
        "pad_token_id": tokenizer.pad_token_id,
    }
    if src.family != "bert":
        common |= {
            "num_key_value_heads": p["kv_heads"],
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "tie_word_embeddings": False,
        }
    return AutoConfig.for_model(src.family, **common)


def build_random_model(src: RandomSource, out_dir: Path, ctx: PullContext) -> dict[str, Any]:
    """Write a randomly initialised model and its tokenizer into ``out_dir``; return a summary."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    tokenizer = _tokenizer(src, ctx)
    vocab = int(src.params["vocab"]) or len(tokenizer)
    if vocab < len(tokenizer):
        raise SourceError(f"{src.uri}: vocab={vocab} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = _config(src, vocab, tokenizer)
    torch.manual_seed(int(src.params["seed"]))
    factory = AutoModel if src.family == "bert" else AutoModelForCausalLM
    model = factory.from_config(config, dtype=torch.float32)
    if src.family != "bert":
        known = tokenizer.get_vocab()
        ends = [
            known[t]
            for t in dict.fromkeys((tokenizer.eos_token, "<|im_end|>", "<|endoftext|>"))
            if t in known
        ]
        model.generation_config.eos_token_id = ends or None
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "family": src.family,
        "vocab_size": vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def pull_random(src: RandomSource, ctx: PullContext) -> PullRecord:
    def build(folder: Path) -> tuple[str, dict[str, Any]]:
        ctx.progress(f"building {src.canonical} locally")
        return src.static_pin(), build_random_model(src, folder, ctx)

    return build_entry(src.canonical, build)
