"""Loading plain model folders and the trained folders recipes write (adapter over a base, full model), and
the chat rendering of the backends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from registry.model_folder import (
    TrainedModel,
    load_causal_lm,
    load_config,
    load_tokenizer,
    read_trained,
    resolve_dtype,
    write_trained,
)
from registry.resolved import ResolvedModel
from runner.backends.hf_loading import render_chat

IDS = [[1, 40, 41, 42, 43, 44, 45, 46]]


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def make_adapter(base: Path, out: Path, *, new_tokens: list[str] | None = None):
    """A LoRA adapter with non-zero weights saved the way a trainer saves it; returns the live
    (unmerged) PEFT model for comparison."""
    from peft import LoraConfig, get_peft_model

    tok = load_tokenizer(base)
    model = load_causal_lm(base, device="cpu")
    modules_to_save = None
    if new_tokens:
        tok.add_special_tokens({"additional_special_tokens": new_tokens})
        model.resize_token_embeddings(len(tok))
        modules_to_save = ["embed_tokens", "lm_head"]
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        modules_to_save=modules_to_save)
    peft_model = get_peft_model(model, config)
    peft_model.eval()
    peft_model.save_pretrained(out)
    tok.chat_template = "TRAINED:" + (tok.chat_template or "")
    tok.save_pretrained(out)
    write_trained(out, TrainedModel(base="tiny", base_source="file://tiny", base_path=base, adapter=True))
    return peft_model


def test_plain_folder_loads_with_pad_token_and_config(tiny_llama):
    model = load_causal_lm(ResolvedModel(name="tiny", source="file://x", path=tiny_llama), device="cpu")
    tok = load_tokenizer(tiny_llama, padding_side="left")
    assert model.config.vocab_size == len(tok)
    assert tok.pad_token == "<pad>" and tok.padding_side == "left"
    assert load_config(tiny_llama).max_position_embeddings == 256
    assert not model.training


def test_adapter_folder_is_merged_into_its_base(tiny_llama, tmp_path):
    trained = tmp_path / "sft" / "model"
    peft_model = make_adapter(tiny_llama, trained)
    merged = load_causal_lm(ResolvedModel(name="sft", source="file://sft", path=trained), device="cpu")
    base = load_causal_lm(tiny_llama, device="cpu")
    assert torch.allclose(logits(merged), logits(peft_model), atol=1e-4)
    assert not torch.allclose(logits(merged), logits(base), atol=1e-3)  # the adapter changes the model
    assert "lora" not in " ".join(n for n, _ in merged.named_parameters())  # merged, plain layers
    assert load_tokenizer(trained).chat_template.startswith("TRAINED:")  # tokenizer of the trained folder
    assert load_config(trained).hidden_size == 32  # the architecture comes from the base


def test_adapter_with_added_tokens_resizes_the_base(tiny_llama, tmp_path):
    trained = tmp_path / "selfrag"
    peft_model = make_adapter(tiny_llama, trained, new_tokens=["[Retrieval]", "[No Retrieval]"])
    merged = load_causal_lm(trained, device="cpu")
    vocab = len(load_tokenizer(trained))
    assert vocab == len(load_tokenizer(tiny_llama)) + 2
    assert merged.get_input_embeddings().weight.shape[0] == vocab
    ids = [[1, 40, vocab - 1, vocab - 2, 41]]
    assert torch.allclose(logits(merged, ids), logits(peft_model, ids), atol=1e-4)


def test_full_trained_folder_and_relative_base_path(tiny_llama, tmp_path):
    full = tmp_path / "full"
    shutil.copytree(tiny_llama, full)
    write_trained(full, TrainedModel(base="tiny", base_path=Path("../elsewhere"), adapter=False))
    assert torch.allclose(logits(load_causal_lm(full, device="cpu")), logits(load_causal_lm(tiny_llama, device="cpu")))

    # An adapter whose base_path is relative to its own folder.
    base_copy = tmp_path / "runs" / "base"
    shutil.copytree(tiny_llama, base_copy)
    trained = tmp_path / "runs" / "sft"
    peft_model = make_adapter(base_copy, trained)
    info = read_trained(trained)
    write_trained(trained, info.model_copy(update={"base_path": Path("../base")}))
    assert torch.allclose(logits(load_causal_lm(trained, device="cpu")), logits(peft_model), atol=1e-4)


def test_model_without_folder_and_bad_dtype_are_clear_errors():
    with pytest.raises(ValueError, match="gpt-x.*no local folder"):
        load_causal_lm(ResolvedModel(name="gpt-x", source="openai://gpt-x", backend="openai"))
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16


def test_render_chat_falls_back_to_a_plain_layout(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    tok.chat_template = None
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert render_chat(tok, conv) == "system: S\n\nuser: U\n\nassistant: "
    assert render_chat(tok, conv, "{{ messages[-1]['content'] }}!") == "U!"
