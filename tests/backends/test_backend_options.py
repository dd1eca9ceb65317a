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
