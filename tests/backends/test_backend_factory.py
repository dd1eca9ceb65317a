"""``open_llm`` / ``open_embedder``: backend choice, option precedence, cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.resolved import ResolvedModel
from runner.backends import open_embedder, open_llm
from runner.backends.openai_backend import OpenAILLM, settings_for

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_backends_package_loads_nothing_heavy():
    code = ("import sys, runner.backends, runner.backends.base; "
            "print(sorted(m for m in ('torch', 'transformers', 'openai', 'vllm', 'peft', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_transformers_options_override_serving_defaults(tmp_path):
    from runner.backends.transformers_backend import TransformersLLM

    model = ResolvedModel(name="m", source="file://m", path=tmp_path, serving={"batch_size": 2, "dtype": "bf16"})
    llm = open_llm(model, options={"batch_size": 16, "num_threads": 1})
    assert isinstance(llm, TransformersLLM)
    assert (llm.batch_size, llm.dtype, llm.device_name, llm.num_threads) == (16, "bf16", None, 1)
    assert llm.on_result is None


def test_openai_settings_merge_api_serving_and_options():
    model = ResolvedModel(
        name="gpt-4o", source="openai://gpt-4o-2024-05-13", backend="openai",
        api={"base_url": "https://api.openai.com/v1", "api_key_env": "MY_KEY",
             "input_per_mtok": 5.0, "output_per_mtok": 15.0},
        serving={"concurrency": 16, "rpm": 500},
    )
    llm = open_llm(model, options={"concurrency": 2, "budget_usd": 1.5, "timeout_s": 30})
    assert isinstance(llm, OpenAILLM)
    s = llm.settings
    assert s.model_id == "gpt-4o-2024-05-13"
    assert (s.concurrency, s.rpm, s.budget_usd, s.timeout_s) == (2, 500, 1.5, 30)
    assert (s.input_per_mtok, s.output_per_mtok, s.api_key_env) == (5.0, 15.0, "MY_KEY")
    flat = settings_for(ResolvedModel(name="glm", source="openai://glm-4", backend="openai",
                                      api={"model_id": "glm-4-0520", "input_per_mtok": 1.0}))
    assert (flat.model_id, flat.input_per_mtok, flat.output_per_mtok) == ("glm-4-0520", 1.0, 0.0)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown LLM backend 'tgi'.*transformers, openai, vllm"):
        open_llm(ResolvedModel(name="m", source="file://m", backend="tgi"))


def test_open_embedder_reads_batch_size(tmp_path):
    from runner.backends.embed import HFEmbedder

    embedder = open_embedder(ResolvedModel(name="e", source="file://e", kind="embed", backend="embed",
                                           path=tmp_path, serving={"batch_size": 4}))
    assert isinstance(embedder, HFEmbedder) and embedder.batch_size == 4 and embedder.name == "e"


def test_openai_count_tokens_without_and_with_a_tokenizer(tiny_llama):
    from runner.backends.hf_loading import load_tokenizer

    model = ResolvedModel(name="gpt", source="openai://gpt", backend="openai")
    assert open_llm(model).count_tokens("x" * 10) == 3  # ~4 characters a token, rounded up
    with_tok = open_llm(model, tokenizer_path=tiny_llama)
    text = "the quick brown fox"
    assert with_tok.count_tokens(text) == len(load_tokenizer(tiny_llama).encode(text, add_special_tokens=False))
