"""Fixtures for the zoo tests: a private, empty zoo home per test, and small wheel / GGUF builders."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest


@pytest.fixture
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $RECIPE_ZOO_HOME, and the Hub left online unless a test says otherwise."""
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal but valid pure-Python wheel holding ``files`` (path in wheel -> content)."""
    dist = f"{name}-{version}.dist-info"
    meta = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    everything = {**files, **meta}
    record = "".join(f"{path},,\n" for path in everything) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in everything.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def write_tiny_gguf(path: Path, context_length: int = 512, template: str = "{{ messages[0]['content'] }}"):
    """A 1-layer llama GGUF (float32) with a byte-level gpt2 tokenizer plus the merge 'h i'.

    Returns the tensors written, by GGUF name, so tests can compare the converted weights.
    """
    import gguf
    import numpy as np

    from registry.random_model import byte_alphabet

    rng = np.random.default_rng(0)
    d, heads, kv, ff = 16, 2, 1, 32
    tokens = [*byte_alphabet(), "hi", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(d)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(d // heads)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3] * 3)
    writer.add_token_merges(["h i"])
    writer.add_bos_token_id(vocab - 3)
    writer.add_eos_token_id(vocab - 1)
    writer.add_pad_token_id(vocab - 3)
    writer.add_chat_template(template)
    tensors = {}
    shapes = {
        "token_embd.weight": (vocab, d), "output_norm.weight": (d,), "output.weight": (vocab, d),
        "blk.0.attn_norm.weight": (d,), "blk.0.attn_q.weight": (d, d), "blk.0.attn_k.weight": (kv * d // heads, d),
        "blk.0.attn_v.weight": (kv * d // heads, d), "blk.0.attn_output.weight": (d, d),
        "blk.0.ffn_norm.weight": (d,), "blk.0.ffn_gate.weight": (ff, d), "blk.0.ffn_up.weight": (ff, d),
        "blk.0.ffn_down.weight": (d, ff),
    }  # fmt: skip
    for name, shape in shapes.items():
        tensors[name] = rng.standard_normal(shape).astype(np.float32)
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


@pytest.fixture
def wheel_maker():
    """``make_wheel`` as a fixture (test folders are not packages, so helpers travel as fixtures)."""
    return make_wheel


@pytest.fixture
def gguf_writer():
    """``write_tiny_gguf`` as a fixture."""
    return write_tiny_gguf
