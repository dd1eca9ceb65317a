"""The vllm backend's mappings (checked without vllm) and, on a CUDA machine with vllm, a real run."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from registry.model_folder import TRAINED_MODEL_FILE
from registry.resolved import ResolvedModel
from runner.backends.base import Sampling, TokenLogprob
from runner.backends.vllm_backend import (
    chat_result,
    engine_kwargs,
    merged_folder,
    sampling_kwargs,
    score_result,
    score_sampling_kwargs,
)


def lp(value: float, text: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, rank=1, decoded_token=text)


def test_greedy_and_sampled_settings_map_to_sampling_params():
    assert sampling_kwargs(Sampling(max_new_tokens=32, top_p=0.5)) == {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 32, "stop": [],
        "include_stop_str_in_output": False,
    }
    assert sampling_kwargs(Sampling(temperature=0.8, top_p=0.95, max_new_tokens=5, stop=["\n\n"], seed=11,
                                    logprobs=5)) == {
        "n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 5, "stop": ["\n\n"],
        "include_stop_str_in_output": False, "seed": 11, "logprobs": 5,
    }
    assert score_sampling_kwargs() == {"n": 1, "temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0}


def test_serving_entry_and_options_map_to_engine_arguments(tmp_path):
    model = ResolvedModel(name="glm", source="hf://THUDM/glm-4-9b", backend="vllm", path=tmp_path,
                          context_length=131072,
                          serving={"tensor_parallel_size": 4, "dtype": "bfloat16", "max_model_len": 65536,
                                   "max_logprobs": 32016})
    assert engine_kwargs(model, {"gpu_memory_utilization": 0.8, "enable_prefix_caching": False}) == {
        "model": str(tmp_path), "tokenizer": str(tmp_path), "tensor_parallel_size": 4, "dtype": "bfloat16",
        "gpu_memory_utilization": 0.8, "enable_prefix_caching": False, "max_model_len": 65536,
        "max_logprobs": 32016,
    }
    plain = ResolvedModel(name="m", source="file://m", backend="vllm", path=tmp_path, context_length=4096)
    assert engine_kwargs(plain, model_path=tmp_path / "merged") == {
        "model": str(tmp_path / "merged"), "tokenizer": str(tmp_path / "merged"), "tensor_parallel_size": 1,
        "dtype": "auto", "gpu_memory_utilization": 0.9, "enable_prefix_caching": True, "max_model_len": 4096,
    }


def test_request_output_becomes_a_chat_result():
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3, 4],
        outputs=[SimpleNamespace(
            text="yes", token_ids=[7, 9], finish_reason="stop",
            logprobs=[{7: lp(-0.1, "ye"), 8: lp(-2.5, "no")}, {9: lp(-0.3, "s"), 3: lp(-0.2, "!"), 5: lp(-4.0, "?")}],
        )],
    )
    result = chat_result(output, Sampling(logprobs=2), decode=lambda tid: f"<{tid}>")
    assert result.text == "yes" and result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 2)
    assert result.logprobs == [
        TokenLogprob(token="ye", logprob=-0.1, top={"ye": -0.1, "no": -2.5}),
        # The sampled token need not be among the top-k; the top-k are the best two by logprob.
        TokenLogprob(token="s", logprob=-0.3, top={"!": -0.2, "s": -0.3}),
    ]
    no_lp = chat_result(output, Sampling(), decode=str)
    assert no_lp.logprobs is None


def test_prompt_logprobs_become_a_score_result():
    output = SimpleNamespace(prompt_token_ids=[5, 6, 7],
                             prompt_logprobs=[None, {6: lp(-1.25), 2: lp(-0.5)}, {7: lp(-3.0)}])
    result = score_result(output, convert=lambda ids: [f"t{i}" for i in ids])
    assert result.token_ids == [5, 6, 7]
    assert result.tokens == ["t5", "t6", "t7"]
    assert result.logprobs == [None, -1.25, -3.0]


def test_adapter_folder_is_merged_once_for_the_engine(tiny_llama, tmp_path):
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model

    from runner.backends.hf_loading import load_causal_lm, load_tokenizer

    assert merged_folder(tiny_llama) == tiny_llama  # a plain folder is used as is
    trained = tmp_path / "sft"
    torch.manual_seed(3)
    peft_model = get_peft_model(load_causal_lm(tiny_llama, device="cpu"),
                                LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(trained)
    load_tokenizer(tiny_llama).save_pretrained(trained)
    (trained / TRAINED_MODEL_FILE).write_text(json.dumps({"base_path": str(tiny_llama), "adapter": True}))

    folder = merged_folder(trained)
    assert folder == trained / "merged" and (folder / "config.json").is_file()
    assert (folder / "tokenizer.json").is_file()
    ids = torch.tensor([[1, 50, 60, 70]])
    with torch.no_grad():
        expected = peft_model.eval()(ids).logits
        got = load_causal_lm(folder, device="cpu")(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert merged_folder(trained) == folder and (folder / "config.json").stat().st_mtime_ns == stamp


def _cuda_and_vllm() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_and_vllm(), reason="needs a CUDA GPU and vllm installed")
def test_vllm_engine_matches_transformers_greedy(tiny_llama, tmp_path):
    from runner.backends import open_llm

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    conv = [[{"role": "user", "content": "the quick brown fox"}]]
    sampling = Sampling(max_new_tokens=8)
    hf = open_llm(ResolvedModel(name="t", source="file://t", path=folder), options={"dtype": "float32"})
    fast = open_llm(ResolvedModel(name="t", source="file://t", backend="vllm", path=folder),
                    options={"dtype": "float32", "gpu_memory_utilization": 0.3, "enforce_eager": True})
    assert [r.text for r in fast.chat(conv, sampling)] == [r.text for r in hf.chat(conv, sampling)]
    scored_fast = fast.score(["the quick brown fox"])[0]
    scored_hf = hf.score(["the quick brown fox"])[0]
    assert scored_fast.token_ids == scored_hf.token_ids
    assert scored_fast.logprobs[1:] == pytest.approx(scored_hf.logprobs[1:], abs=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_and_vllm(), reason="needs a CUDA GPU and vllm installed")
def test_vllm_enforces_a_format_through_its_structured_outputs(tiny_llama, tmp_path):
    import re

    from runner.backends import open_llm
    from runner.backends.base import Format

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    fast = open_llm(ResolvedModel(name="t", source="file://t", backend="vllm", path=folder),
                    options={"dtype": "float32", "gpu_memory_utilization": 0.3, "enforce_eager": True})
    fmt = Format.regex(r"[a-z ]{0,10}\[\[(10|[1-9])\]\]")
    convs = [[{"role": "user", "content": "the quick brown fox"}], [{"role": "user", "content": "a"}]]
    replies = fast.chat(convs, Sampling(temperature=1.0, seed=1, max_new_tokens=30, format=fmt))
    assert all(re.fullmatch(fmt.spec, r.text) for r in replies), [r.text for r in replies]


def test_any_engine_argument_passes_through_to_the_engine(tmp_path):
    model = ResolvedModel(name="m", source="file://m", backend="vllm", path=tmp_path, context_length=8192,
                          serving={"tensor_parallel_size": 2, "batch_size": 4})  # batch_size: not vLLM's
    options = {"pipeline_parallel_size": 2, "data_parallel_size": 2, "enable_lora": True, "max_lora_rank": 64,
               "max_model_len": 4096, "gpu_memory_utilization": 0.7, "speculative_config": {"method": "ngram"}}
    assert engine_kwargs(model, options) == {
        "model": str(tmp_path), "tokenizer": str(tmp_path), "tensor_parallel_size": 2, "dtype": "auto",
        "gpu_memory_utilization": 0.7, "enable_prefix_caching": True, "max_model_len": 4096,
        "pipeline_parallel_size": 2, "data_parallel_size": 2, "enable_lora": True, "max_lora_rank": 64,
        "speculative_config": {"method": "ngram"},
    }
