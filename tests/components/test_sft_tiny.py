"""A tiny Llama model and a word-level chat tokenizer, built locally for the SFT tests.

The tokenizer splits on whitespace and punctuation, so the token sequence of a rendered conversation can
be written down by hand. Its chat template renders::

    <s><|user|> hello there <|end|> <|assistant|> hi friend <|end|>
"""

from __future__ import annotations

from pathlib import Path

import pytest

SPECIAL = ["<pad>", "<s>", "</s>", "[UNK]", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS = [
    "what",
    "is",
    "two",
    "plus",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "and",
    "hello",
    "there",
    "hi",
    "friend",
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "red",
    "blue",
    "green",
    "sky",
    "sea",
    "yes",
    "no",
    "please",
    "tell",
    "me",
    "about",
    "it",
    "one",
    ".",
    ",",
    "?",
    "!",
]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(template: str | None = TEMPLATE):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="[UNK]",
        additional_special_tokens=SPECIAL[4:],
    )
    if template is not None:
        fast.chat_template = template
    return fast


def make_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg).float().eval()


def make_model_folder(path: Path, seed: int = 0) -> Path:
    """A model folder (config, safetensors, tokenizer with chat template) like a zoo snapshot."""
    tok = make_tokenizer()
    make_model(len(tok), seed).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def resolved(path: Path):
    from registry.resolved import ResolvedModel

    return ResolvedModel(name="tiny-llama", source="random://llama?hidden_size=32", kind="base", path=path)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy shared machine spinning threads cost a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def test_tiny_template_renders_the_documented_text():
    tok = make_tokenizer()
    msgs = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi friend"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<s><|user|> hello there <|end|> <|assistant|> hi friend <|end|> "
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "<s>",
        "<|user|>",
        "hello",
        "there",
        "<|end|>",
        "<|assistant|>",
        "hi",
        "friend",
        "<|end|>",
    ]
