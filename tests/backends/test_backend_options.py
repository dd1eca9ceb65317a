"""Backend options: one pydantic model per backend, unknown keys rejected, one declaration of the API
fields, cheap to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.api_spec import ApiSpec
from registry.resolved import ResolvedModel
from runner.backends.options import OPTIONS, OpenAISettings, TransformersOptions, settings_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", sorted(OPTIONS))
def test_every_backend_rejects_unknown_options_and_documents_each_one(backend):
    cls = OPTIONS[backend]
    with pytest.raises(ValidationError, match="concurency"):
        cls.model_validate({"model_id": "m", "concurency": 4})
    assert all(f.description for f in cls.model_fields.values())


def test_the_api_fields_are_declared_once():
    # the openai backend's settings are the zoo's api block plus the client's own knobs
    assert issubclass(OpenAISettings, ApiSpec)
    for name, f in ApiSpec.model_fields.items():
        assert OpenAISettings.model_fields[name].default == f.default
    assert ApiSpec(model_id="m").concurrency == OpenAISettings(model_id="m").concurrency == 16


def test_options_override_the_zoo_entry_and_serving_keeps_only_what_the_backend_takes():
    local = ResolvedModel(name="m", source="file://m", serving={"dtype": "bfloat16", "max_model_len": 4096,
                                                                 "trust_remote_code": True})
    s = settings_for(local, {"batch_size": 3})
    assert s == TransformersOptions(batch_size=3, dtype="bfloat16", trust_remote_code=True)
    vllm = settings_for(local, {"dtype": "half"}, backend="vllm")
    assert (vllm.dtype, vllm.max_model_len, vllm.trust_remote_code, vllm.gpu_memory_utilization) == \
        ("half", 4096, True, None)
    api = ResolvedModel(name="gpt", source="openai://gpt-x", backend="openai",
                        api={"input_per_mtok": 5.0, "output_per_mtok": 15.0, "concurrency": 16},
                        serving={"concurrency": 4})
    s = settings_for(api, {"budget_usd": 2})
    assert (s.model_id, s.concurrency, s.budget_usd, s.input_per_mtok) == ("gpt-x", 4, 2.0, 5.0)


def test_an_unknown_option_or_backend_is_an_error_at_open_time():
    with pytest.raises(ValidationError, match="batch_szie"):
        settings_for(ResolvedModel(name="m", source="file://m"), {"batch_szie": 2})
    with pytest.raises(KeyError):
        settings_for(ResolvedModel(name="m", source="file://m", backend="tgi"))


def test_vllm_engine_arguments_are_the_declared_options():
    from runner.backends.options import VLLMOptions
    from runner.backends.vllm_backend import ENGINE_OPTIONS

    assert ENGINE_OPTIONS == tuple(VLLMOptions.model_fields)
    assert "gpu_memory_utilization" in ENGINE_OPTIONS and "tensor_parallel_size" in ENGINE_OPTIONS


def test_speed_only_options_left_out_of_fingerprints_are_options_of_some_backend():
    from runner.fingerprint import RUNTIME_OPTIONS

    declared = {name for cls in OPTIONS.values() for name in cls.model_fields}
    assert RUNTIME_OPTIONS <= declared


def test_the_options_import_nothing_heavy():
    code = ("import sys, runner.backends.options; "
            "print(sorted(m for m in ('torch', 'transformers', 'openai', 'vllm', 'numpy', 'asyncio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


ARG_UTILS = '''
import torch  # never imported: the names are read from the source


@dataclass
class EngineArgs:
    """Arguments for vLLM engine."""

    model: str = "facebook/opt-125m"
    tokenizer: str | None = None
    tensor_parallel_size: int = 1
    _api_process_count: int = 1
    brand_new_knob: float = 0.5
    NOT_A_FIELD = 3

    def __post_init__(self):
        self.x: int = 1


class Other:
    ignored: int = 0
'''


def test_engine_argument_names_come_from_the_installed_vllm_source(tmp_path, monkeypatch):
    from runner.backends.vllm_engine_args import dataclass_fields, engine_arg_names

    assert dataclass_fields(ARG_UTILS) == ("model", "tokenizer", "tensor_parallel_size", "brand_new_knob")
    (tmp_path / "vllm" / "engine").mkdir(parents=True)
    (tmp_path / "vllm" / "__init__.py").write_text("raise ImportError('vllm is never imported')\n")
    (tmp_path / "vllm" / "engine" / "arg_utils.py").write_text(ARG_UTILS)
    monkeypatch.syspath_prepend(str(tmp_path))
    # the backend sets model and tokenizer itself, from the model folder
    assert engine_arg_names() == ("the installed vLLM", ("tensor_parallel_size", "brand_new_knob"))


def test_without_vllm_the_names_are_the_labelled_snapshot():
    import importlib.util

    from runner.backends import vllm_engine_args as args

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed: its own names are used")
    source, names = args.engine_arg_names()
    assert source == args.SNAPSHOT_SOURCE and "99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b" in source
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "enable_lora",
                 "max_lora_rank", "max_loras", "max_model_len", "gpu_memory_utilization", "speculative_config"):
        assert name in names, name
    assert "model" not in names and "tokenizer" not in names and len(names) == len(set(names))


def test_vllm_options_are_vllms_engine_arguments():
    from runner.backends.options import ENGINE_ARGS, VLLMOptions
    from runner.phases.options import unknown_option

    assert set(VLLMOptions.model_fields) == set(ENGINE_ARGS)
    local = ResolvedModel(name="m", source="file://m", serving={"max_model_len": 4096})
    s = settings_for(local, {"pipeline_parallel_size": 2, "data_parallel_size": 4, "enable_lora": True,
                             "max_lora_rank": 64, "speculative_config": {"method": "ngram"}}, backend="vllm")
    assert (s.pipeline_parallel_size, s.data_parallel_size, s.enable_lora, s.max_lora_rank, s.max_model_len) == \
        (2, 4, True, 64, 4096)
    assert s.speculative_config == {"method": "ngram"}  # an argument not typed here passes as it is
    for bad in ({"tensor_paralel_size": 2}, {"model": "other"}, {"max_lora_rank": 0}):
        with pytest.raises(ValidationError):
            settings_for(local, bad, backend="vllm")
    assert unknown_option("tensor_paralel_size", "vllm", "m").startswith(
        "unknown option 'tensor_paralel_size' for the vllm backend — did you mean 'tensor_parallel_size'")
