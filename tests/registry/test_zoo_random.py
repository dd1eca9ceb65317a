"""random:// models: the byte tokenizer, determinism from the seed, pin stability, borrowed tokenizers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from registry.random_model import byte_tokenizer
from registry.sources import parse_source
from registry.zoo import Zoo

TINY = "random://llama?hidden_size=32&layers=1&heads=4&kv_heads=2&intermediate=64&max_len=128"


def test_byte_tokenizer_is_one_token_per_byte_plus_specials() -> None:
    tok = byte_tokenizer()
    assert len(tok) == 256 + 4
    assert tok("hé")["input_ids"] == [ord("h"), 0xC3, 0xA9]  # é is C3 A9 in UTF-8
    assert tok("<|im_start|>a<|im_end|>")["input_ids"] == [257, ord("a"), 258]
    assert (tok.eos_token_id, tok.pad_token_id) == (258, 259)
    text = "naïve ✓ tabs\tand\nnewlines"
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "a"))
    first = Zoo.load().resolve(TINY + "&seed=7")
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "b"))
    again = Zoo.load().resolve(TINY + "&seed=7")
    other = Zoo.load().resolve(TINY + "&seed=8")
    assert first.path != again.path  # two separate builds
    a, b, c = _weights(first.path), _weights(again.path), _weights(other.path)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    config = (first.path / "config.json").read_text()
    assert '"hidden_size": 32' in config and '"num_key_value_heads": 2' in config
    assert '"vocab_size": 260' in config and '"max_position_embeddings": 128' in config


def test_pin_is_the_hash_of_the_canonical_query_and_stays_put(zoo_home: Path) -> None:
    canonical = (
        "random://llama?heads=4&hidden_size=32&intermediate=64&kv_heads=2&layers=1&max_len=128"
        "&seed=0&tokenizer=bytes&vocab=0"
    )
    expected = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    zoo = Zoo.load()
    assert zoo.pin(TINY) == expected  # known before the pull
    resolved = zoo.resolve(TINY)
    assert resolved.pin == expected
    # Defaults spelt out, or parameters reordered: the same model, the same pin and folder.
    same = "random://llama?seed=0&tokenizer=bytes&max_len=128&intermediate=64&kv_heads=2&heads=4&layers=1&hidden_size=32"
    assert parse_source(same).canonical == canonical
    assert zoo.is_pulled(same)
    assert zoo.resolve(same).path == resolved.path
    assert zoo.resolve(TINY).pin == expected and zoo.pin(TINY) == expected


def test_tiny_model_generates_with_its_chat_template(zoo_home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = Zoo.load().resolve("tiny-random-llama")
    assert (resolved.backend, resolved.kind, resolved.context_length) == ("transformers", "chat", 2048)
    tok = AutoTokenizer.from_pretrained(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    # <|im_start|> u s e r \n h i <|im_end|> \n <|im_start|> a s s i s t a n t \n
    assert ids.shape == (1, 1 + 4 + 1 + 2 + 1 + 1 + 1 + 9 + 1)
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 260)
    assert model.generation_config.eos_token_id == [258, 256]


def test_tokenizer_from_another_zoo_model(zoo_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tok-src"
    tok = byte_tokenizer()
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(source)
    (source / "config.json").write_text("{}")
    extra = tmp_path / "zoo.yaml"
    extra.write_text(f"models:\n  tok-src:\n    source: file://{source}\n")
    resolved = Zoo.load([extra]).resolve(TINY + "&tokenizer=tok-src")
    config = (resolved.path / "config.json").read_text()
    assert '"vocab_size": 261' in config
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(resolved.path)("<extra>")["input_ids"] == [260]


def test_bert_family_is_an_embedder(zoo_home: Path) -> None:
    resolved = Zoo.load().resolve("tiny-random-bert")
    assert (resolved.kind, resolved.backend) == ("embed", "embed")
    assert '"model_type": "bert"' in (resolved.path / "config.json").read_text()


def test_model_folder_deleted_by_hand_is_pulled_again(zoo_home: Path) -> None:
    import shutil

    zoo = Zoo.load()
    first = zoo.resolve(TINY)
    shutil.rmtree(first.path)
    assert not zoo.is_pulled(TINY)
    again = zoo.resolve(TINY)
    assert again.path == first.path and (again.path / "model.safetensors").is_file()
    assert again.pin == first.pin
