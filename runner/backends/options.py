"""The options each backend takes, one pydantic model per backend (unknown options are errors).

A recipe sets them on a model role (``models: {judge: {name: …, options: {…}}}``); they override the zoo
entry's ``serving`` values (and, for API models, its ``api`` block). ``recipe validate`` checks a role's
options against the model of the backend that will serve it, so a misspelled option is reported before
anything runs instead of being ignored. Only pydantic and the standard library are imported here:
validation stays instant. The vllm backend takes any of vLLM's own engine arguments (``vllm_engine_args``).

>>> settings_for(ResolvedModel(name="m", source="random://llama"), {"batch_size": 2}).batch_size
2
>>> sorted(OPTIONS)
['embed', 'openai', 'transformers', 'vllm']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from registry.api_spec import ApiSpec
from registry.resolved import ResolvedModel
from runner.backends.vllm_engine_args import engine_arg_names


class BackendOptions(BaseModel):
    """Base of every backend's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TransformersOptions(BackendOptions):
    """In-process Hugging Face transformers (CPU or GPU)."""

    batch_size: int = Field(8, ge=1, description="conversations (or texts to score) per forward batch")
    dtype: str | None = Field(
        None, description="weights dtype (float32, bfloat16, float16, auto); default float32 on a CPU, "
        "bfloat16 or float16 on a GPU"
    )
    device: str | None = Field(None, description="cpu, cuda, cuda:1, mps; default: a GPU when there is one")
    num_threads: int | None = Field(
        None, ge=1, description="torch's CPU threads, set when the model loads (process-wide; on a small "
        "shared machine 1 is often many times faster than torch's default)"
    )
    trust_remote_code: bool = Field(
        False, description="run the model repository's own code (its tokenizer, model class and helpers such as "
        "LongCite's query_longcite); only for repositories you trust"
    )


class VLLMDeclaredOptions(BackendOptions):
    """The vLLM engine arguments the recipes use, typed and with the defaults the backend gives them; every
    other engine argument is accepted as it is (``VLLMOptions``)."""

    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs the model is split over (default 1)")
    pipeline_parallel_size: int | None = Field(None, ge=1, description="pipeline stages the layers are split "
                                               "into (GPUs = tensor × pipeline parallel size)")
    data_parallel_size: int | None = Field(None, ge=1, description="engine replicas answering requests side "
                                           "by side")
    max_model_len: int | None = Field(None, ge=1, description="longest sequence; default the zoo's context length")
    dtype: str | None = Field(None, description="weights dtype; default auto (the model's own)")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="share of GPU memory the engine may take (default 0.9)"
    )
    enable_prefix_caching: bool | None = Field(
        None, description="reuse the KV cache of shared prompt prefixes (default on: recipe prompts share "
        "long documents)"
    )
    enable_lora: bool | None = Field(None, description="serve LoRA adapters on top of the base model")
    max_lora_rank: int | None = Field(None, ge=1, description="largest LoRA rank served (vLLM's default 16)")
    max_loras: int | None = Field(None, ge=1, description="LoRA adapters in one batch")
    max_logprobs: int | None = Field(None, ge=0, description="most logprobs a request may ask for")
    seed: int | None = Field(None, description="the engine's random seed")
    max_num_seqs: int | None = Field(None, ge=1, description="sequences batched at once")
    enforce_eager: bool | None = Field(None, description="no CUDA graphs (less memory, slower)")
    quantization: str | None = Field(None, description="vLLM quantization method (awq, gptq, fp8, ...)")
    swap_space: float | None = Field(None, ge=0, description="CPU swap space per GPU, GiB")
    trust_remote_code: bool | None = Field(None, description="run the model repository's own code")

    @model_validator(mode="after")
    def _engine_arguments(self) -> VLLMDeclaredOptions:
        gone = sorted(n for n in self.model_fields_set if n not in ENGINE_ARGS)
        if gone:
            raise ValueError(f"not an engine argument of {ENGINE_ARGS_SOURCE}: {', '.join(gone)}")
        return self


# where the engine's argument names come from (the installed vLLM, else a labelled snapshot), and the names
ENGINE_ARGS_SOURCE, ENGINE_ARGS = engine_arg_names()

VLLMOptions = create_model(
    "VLLMOptions",
    __base__=VLLMDeclaredOptions,
    __doc__="In-process vLLM engine on GPUs: any of vLLM's engine arguments (``EngineArgs``), passed to "
    "``vllm.LLM`` as they are; None leaves vLLM's own default (or the one noted).",
    **{name: (Any, Field(None, description=f"vLLM engine argument `{name}`, passed as it is"))
       for name in ENGINE_ARGS if name not in VLLMDeclaredOptions.model_fields},
)


class EmbedOptions(BackendOptions):
    """Sentence embeddings with a transformers encoder."""

    batch_size: int = Field(32, ge=1, description="texts per forward batch")
    device: str | None = Field(None, description="cpu, cuda, mps; default: a GPU when there is one")
    max_length: int | None = Field(
        None, ge=1, description="longest text in tokens; default the sentence-transformers config's, "
        "else the tokenizer's (at most 512)"
    )


class OpenAISettings(ApiSpec, BackendOptions):
    """Connection, limits and prices of an OpenAI-compatible model (the zoo's ``api`` fields) plus the
    client's own settings. Built from the zoo entry's ``api`` and ``serving``, then the recipe's options."""

    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(5, ge=0, description="retries after the first attempt")
    backoff_s: float = Field(1.0, ge=0, description="first backoff delay; doubles per retry, with jitter")
    backoff_max_s: float = Field(60.0, ge=0, description="longest backoff delay")
    max_retry_after_s: float = Field(300.0, ge=0, description="longest Retry-After the backend will wait")
    budget_usd: float | None = Field(None, ge=0, description="stop sending once this instance spent this much")
    max_tokens_field: str = Field(
        "max_tokens", description="request field for the output cap (some APIs want max_completion_tokens)"
    )
    structured_outputs: list[Literal["regex", "json_schema", "grammar"]] = Field(
        default_factory=list, description="the output format kinds the endpoint enforces while decoding: "
        "json_schema as `response_format` (OpenAI, vLLM, recipe serve), regex and grammar (Lark) as vLLM's "
        "extra fields (vLLM, recipe serve). A stage with `constrained: true` on this model must only need "
        "these kinds; none declared means no stage can be constrained on it"
    )
    structured_outputs_fields: Literal["structured_outputs", "guided"] = Field(
        "structured_outputs", description="how regex and grammar formats are sent: `structured_outputs` "
        "({\"regex\": …}, vLLM 0.10.2 and later, recipe serve) or `guided` (guided_regex / guided_grammar, "
        "older vLLM, recipe serve)"
    )


# backend name (a zoo entry's ``serving.backend`` or a role's ``backend:``) -> its options
OPTIONS: dict[str, type[BackendOptions]] = {
    "transformers": TransformersOptions,
    "openai": OpenAISettings,
    "vllm": VLLMOptions,
    "embed": EmbedOptions,
}


def settings_for(model: ResolvedModel, options: Mapping[str, Any] | None = None,
                 backend: str | None = None) -> Any:
    """The settings ``backend`` (default: the model's) runs ``model`` with: the zoo entry's ``api`` and
    ``serving`` values that this backend takes (``serving`` is shared by every backend that may serve
    the model), then ``options`` (later win). An option the backend does not take raises pydantic's
    ValidationError; an unknown backend raises KeyError. An API model's id defaults to what follows
    ``openai://`` in its source."""
    cls = OPTIONS[backend or model.backend]
    merged = {k: v for part in (model.api, model.serving) for k, v in part.items() if k in cls.model_fields}
    merged.update(options or {})
    if "model_id" in cls.model_fields and not merged.get("model_id"):
        source = model.source
        merged["model_id"] = source.split("://", 1)[1] if source.startswith("openai://") else model.name
    return cls.model_validate(merged)
