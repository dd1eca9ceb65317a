"""vLLM's engine arguments: the keyword arguments ``vllm.LLM(**kwargs)`` hands to ``EngineArgs``.

The vllm backend's options are checked against these names (``runner.backends.options.VLLMOptions``).
With vLLM installed, the names are those of the ``EngineArgs`` dataclass in the installed
``vllm/engine/arg_utils.py``, read with ``ast`` (vLLM is not imported: ``recipe validate`` stays instant and
works on a machine without GPUs). Without vLLM, they are the snapshot below.

SNAPSHOT, labelled: the fields of ``EngineArgs`` in vllm-project/vllm ``vllm/engine/arg_utils.py`` at
commit 99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b (the v0.11 series: its guided-decoding arguments are marked
for removal in v0.12.0), in the file's order, private names (``_api_process_count``) left out. To refresh
it, install vLLM and print ``sorted(installed_engine_arg_names())``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

SNAPSHOT_SOURCE = "vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b (v0.11)"

SNAPSHOT = (
    "model", "served_model_name", "tokenizer", "hf_config_path", "runner", "convert", "task",
    "skip_tokenizer_init", "enable_prompt_embeds", "tokenizer_mode", "trust_remote_code",
    "allowed_local_media_path", "allowed_media_domains", "download_dir", "safetensors_load_strategy",
    "load_format", "config_format", "dtype", "kv_cache_dtype", "seed", "max_model_len", "cuda_graph_sizes",
    "cudagraph_capture_sizes", "max_cudagraph_capture_size", "distributed_executor_backend",
    "pipeline_parallel_size", "tensor_parallel_size", "decode_context_parallel_size", "data_parallel_size",
    "data_parallel_rank", "data_parallel_start_rank", "data_parallel_size_local", "data_parallel_address",
    "data_parallel_rpc_port", "data_parallel_hybrid_lb", "data_parallel_backend", "enable_expert_parallel",
    "all2all_backend", "enable_dbo", "dbo_decode_token_threshold", "dbo_prefill_token_threshold",
    "disable_nccl_for_dp_synchronization", "eplb_config", "enable_eplb", "expert_placement_strategy",
    "num_redundant_experts", "eplb_window_size", "eplb_step_interval", "eplb_log_balancedness",
    "max_parallel_loading_workers", "block_size", "enable_prefix_caching", "prefix_caching_hash_algo",
    "disable_sliding_window", "disable_cascade_attn", "swap_space", "cpu_offload_gb", "gpu_memory_utilization",
    "kv_cache_memory_bytes", "max_num_batched_tokens", "max_num_partial_prefills", "max_long_partial_prefills",
    "long_prefill_token_threshold", "max_num_seqs", "max_logprobs", "logprobs_mode", "disable_log_stats",
    "aggregate_engine_logging", "revision", "code_revision", "rope_scaling", "rope_theta", "hf_token",
    "hf_overrides", "tokenizer_revision", "quantization", "enforce_eager", "disable_custom_all_reduce",
    "limit_mm_per_prompt", "enable_mm_embeds", "interleave_mm_strings", "media_io_kwargs",
    "mm_processor_kwargs", "disable_mm_preprocessor_cache", "mm_processor_cache_gb", "mm_processor_cache_type",
    "mm_shm_cache_max_object_size_mb", "mm_encoder_tp_mode", "mm_encoder_attn_backend", "io_processor_plugin",
    "skip_mm_profiling", "video_pruning_rate", "enable_lora", "max_loras", "max_lora_rank", "default_mm_loras",
    "fully_sharded_loras", "max_cpu_loras", "lora_dtype", "lora_extra_vocab_size", "ray_workers_use_nsight",
    "num_gpu_blocks_override", "num_lookahead_slots", "model_loader_extra_config", "ignore_patterns",
    "enable_chunked_prefill", "disable_chunked_mm_input", "disable_hybrid_kv_cache_manager",
    "structured_outputs_config", "reasoning_parser", "guided_decoding_backend",
    "guided_decoding_disable_fallback", "guided_decoding_disable_any_whitespace",
    "guided_decoding_disable_additional_properties", "logits_processor_pattern", "speculative_config",
    "show_hidden_metrics_for_version", "otlp_traces_endpoint", "collect_detailed_traces", "scheduling_policy",
    "scheduler_cls", "external_parameters", "pooler_config", "override_pooler_config", "compilation_config",
    "worker_cls", "worker_extension_cls", "kv_transfer_config", "kv_events_config", "generation_config",
    "enable_sleep_mode", "override_generation_config", "model_impl", "override_attention_dtype",
    "calculate_kv_scales", "mamba_cache_dtype", "mamba_ssm_cache_dtype", "mamba_block_size",
    "additional_config", "use_tqdm_on_load", "pt_load_map_location", "enable_multimodal_encoder_data_parallel",
    "logits_processors", "async_scheduling", "kv_sharing_fast_prefill",
)

# set by the backend itself from the model folder, never by options
SET_BY_BACKEND = ("model", "tokenizer")


def dataclass_fields(source: str, class_name: str = "EngineArgs") -> tuple[str, ...]:
    """The public annotated fields of class ``class_name`` in Python ``source``, in order."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return tuple(s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                         and isinstance(s.target, ast.Name) and not s.target.id.startswith("_"))
    return ()


def installed_engine_arg_names() -> tuple[str, ...] | None:
    """The installed vLLM's ``EngineArgs`` fields (from its source, not imported); None without vLLM."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "engine" / "arg_utils.py"
    try:
        return dataclass_fields(path.read_text(encoding="utf-8")) or None
    except (OSError, SyntaxError):
        return None


def engine_arg_names() -> tuple[str, tuple[str, ...]]:
    """(where the names come from, the engine arguments an option may set)."""
    installed = installed_engine_arg_names()
    source, names = ("the installed vLLM", installed) if installed else (SNAPSHOT_SOURCE, SNAPSHOT)
    return source, tuple(n for n in names if n not in SET_BY_BACKEND)
