"""The vllm backend: in-process vLLM on GPUs (continuous batching, tensor parallelism).

vllm is an optional extra, imported only when the engine starts. The mapping from our settings to
vLLM's is kept in pure functions (``sampling_kwargs``, ``engine_kwargs``, ``chat_result``,
``score_result``, ``structured_output_kwargs``, ``format_param``) so it is checked without vllm installed.

A ``sampling.format`` goes to vLLM's own structured outputs: ``SamplingParams(structured_outputs=
StructuredOutputsParams(...))`` on recent vLLM, ``SamplingParams(guided_decoding=GuidedDecodingParams(...))``
on older ones (whichever the installed version has, looked up when a request is made).

Prompts are rendered and tokenized exactly as in the transformers backend (same chat template, same
special-token rule) and sent as token ids, so both backends see the same prompt. A trained adapter folder
is merged into a full model folder once (``<folder>/merged``), which also covers adapters whose training
added tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.model_folder import load_config, load_tokenizer, model_folder
from registry.resolved import ResolvedModel
from runner.backends.base import LLM, ChatResult, Choice, Format, Sampling, ScoreResult, TokenLogprob, Usage
from runner.backends.generation import tracked_ids
from runner.backends.hf_loading import chat_prompt_ids, trained_info
from runner.backends.options import VLLMOptions

# the engine arguments a zoo entry's ``serving`` or a recipe's options may set (declared in ``VLLMOptions``)
ENGINE_OPTIONS = tuple(VLLMOptions.model_fields)


def sampling_kwargs(sampling: Sampling, vocab_size: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for our sampling settings.

    ``logprob_tokens`` asks vLLM for the logprobs of the whole vocabulary (``vocab_size`` entries; the
    engine's ``max_logprobs`` must allow it, as the Self-RAG zoo entries set) from which ``chat_result``
    keeps the tracked tokens, and keeps special tokens in the text (the tracked ones may be special), with no
    spaces added around them."""
    greedy = sampling.temperature == 0
    kwargs: dict[str, Any] = {
        "n": sampling.n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "stop": list(sampling.stop),
        "include_stop_str_in_output": False,
    }
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    if sampling.logprobs is not None:
        kwargs["logprobs"] = sampling.logprobs
    if sampling.logprob_tokens:
        if vocab_size is None:
            raise ValueError("logprob_tokens needs the vocabulary size")
        kwargs["logprobs"] = max(vocab_size, sampling.logprobs or 0)
        kwargs["skip_special_tokens"] = False
        kwargs["spaces_between_special_tokens"] = False  # the text is the tokens' text, nothing added
    return kwargs


def structured_output_kwargs(fmt: Format) -> dict[str, Any]:
    """Keyword arguments of vLLM's structured-output params for a format (the same names in
    ``StructuredOutputsParams`` and the older ``GuidedDecodingParams``)."""
    if fmt.kind == "regex":
        return {"regex": fmt.spec}
    if fmt.kind == "json_schema":
        return {"json": fmt.schema()}
    return {"grammar": fmt.spec}


def format_param(fmt: Format, sampling_params: Any) -> dict[str, Any]:
    """The ``SamplingParams`` keyword carrying ``fmt`` in the installed vLLM, whose ``vllm.sampling_params``
    module is ``sampling_params``: ``structured_outputs`` (``StructuredOutputsParams``, vLLM ≥ 0.10.2) or
    ``guided_decoding`` (``GuidedDecodingParams``, older)."""
    kwargs = structured_output_kwargs(fmt)
    params = getattr(sampling_params, "StructuredOutputsParams", None)
    if params is not None:
        return {"structured_outputs": params(**kwargs)}
    params = getattr(sampling_params, "GuidedDecodingParams", None)
    if params is not None:
        return {"guided_decoding": params(**kwargs)}
    raise ValueError("the installed vLLM has no structured outputs (neither StructuredOutputsParams nor "
                     "GuidedDecodingParams in vllm.sampling_params)")


def score_sampling_kwargs() -> dict[str, Any]:
    """``SamplingParams`` for scoring: one throwaway token, logprobs of every prompt token."""
    return {"n": 1, "temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0}


def engine_kwargs(model: ResolvedModel, options: dict[str, Any] | None = None,
                  model_path: Path | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` from the zoo entry's ``serving`` dict and the recipe's options.

    The options and their defaults are documented in ``runner.backends.options.VLLMOptions``.
    ``model_path`` replaces the model folder (a merged adapter).
    """
    settings = {**model.serving, **(options or {})}
    path = Path(model_path) if model_path is not None else model_folder(model)
    kwargs: dict[str, Any] = {
        "model": str(path),
        "tokenizer": str(path),
        "tensor_parallel_size": int(settings.get("tensor_parallel_size", 1)),
        "dtype": settings.get("dtype", "auto"),
        "gpu_memory_utilization": float(settings.get("gpu_memory_utilization", 0.9)),
        "enable_prefix_caching": bool(settings.get("enable_prefix_caching", True)),
    }
    max_len = settings.get("max_model_len", model.context_length)
    if max_len:
        kwargs["max_model_len"] = int(max_len)
    for key in ENGINE_OPTIONS:
        if key in settings and key not in kwargs and key != "max_model_len":
            kwargs[key] = settings[key]
    return kwargs


def _entries(position: Any) -> dict[int, Any]:
    return dict(position.items()) if position is not None else {}


def _token_logprob(token_id: int, entries: dict[int, Any], top: int, decode: Callable[[int], str],
                   wanted: dict[str, int] | None = None) -> TokenLogprob:
    """One generated token's logprob from vLLM's ``{token_id: Logprob}`` (sampled token plus top-k, and
    the ``wanted`` tracked tokens found among the entries)."""
    def text(tid: int, lp: Any) -> str:
        return lp.decoded_token if getattr(lp, "decoded_token", None) is not None else decode(tid)

    ranked = sorted(entries.items(), key=lambda kv: -kv[1].logprob)[:top] if top else []
    best: dict[str, float] = {}
    for tid, lp in ranked:
        best.setdefault(text(tid, lp), lp.logprob)
    chosen = entries[token_id]
    tracked = {t: entries[i].logprob for t, i in (wanted or {}).items() if i in entries}
    return TokenLogprob(token=text(token_id, chosen), logprob=chosen.logprob, top=best, tracked=tracked)


def _choice(completion: Any, sampling: Sampling, decode: Callable[[int], str],
            wanted: dict[str, int] | None) -> Choice:
    logprobs = None
    if (sampling.logprobs is not None or wanted) and completion.logprobs is not None:
        logprobs = [
            _token_logprob(tid, _entries(pos), sampling.logprobs or 0, decode, wanted)
            for tid, pos in zip(completion.token_ids, completion.logprobs)
        ]
    cumulative = getattr(completion, "cumulative_logprob", None) if wanted else None
    return Choice(text=completion.text, finish_reason=completion.finish_reason, logprobs=logprobs,
                  cumulative_logprob=cumulative)


def chat_result(output: Any, sampling: Sampling, decode: Callable[[int], str],
                wanted: dict[str, int] | None = None) -> ChatResult:
    """A ChatResult from a vLLM ``RequestOutput``: its first completion, or all of them (``choices``) when
    ``sampling.n > 1``. ``wanted``: the tracked tokens' ids (``Sampling.logprob_tokens``)."""
    completions = list(output.outputs)[: sampling.n]
    usage = Usage(prompt_tokens=len(output.prompt_token_ids),
                  completion_tokens=sum(len(c.token_ids) for c in completions))
    choices = [_choice(c, sampling, decode, wanted) for c in completions]
    if sampling.n > 1:
        return ChatResult.of_choices(choices, usage)
    first = choices[0]
    return ChatResult(text=first.text, usage=usage, finish_reason=first.finish_reason, logprobs=first.logprobs,
                      cumulative_logprob=first.cumulative_logprob)


def score_result(output: Any, convert: Callable[[list[int]], list[str]]) -> ScoreResult:
    """A ScoreResult from a vLLM ``RequestOutput`` made with ``prompt_logprobs`` (first entry None)."""
    ids = list(output.prompt_token_ids)
    logprobs: list[float | None] = []
    for i, (tid, pos) in enumerate(zip(ids, output.prompt_logprobs)):
        logprobs.append(None if i == 0 or pos is None else _entries(pos)[tid].logprob)
    return ScoreResult(tokens=convert(ids), token_ids=ids, logprobs=logprobs)


def merged_folder(folder: Path) -> Path:
    """A full model folder for ``folder``: itself, or for an adapter folder its merge into the base,
    written once to ``<folder>/merged`` (atomically, so an interrupted merge is redone)."""
    info = trained_info(folder)
    if not (info and info.get("adapter")):
        return folder
    target = folder / "merged"
    if (target / "config.json").is_file():
        return target
    import shutil

    from registry.model_folder import load_causal_lm

    config = load_config(folder)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    lm = load_causal_lm(folder, dtype=dtype, device="cpu")
    staging = folder / "merged.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    lm.save_pretrained(staging)
    load_tokenizer(folder).save_pretrained(staging)
    staging.rename(target)
    return target


class VLLMLLM(LLM):
    """A local model run by an in-process vLLM engine (started on first use)."""

    backend = "vllm"
    supports_n = True

    def __init__(self, model: ResolvedModel, options: dict[str, Any] | None = None) -> None:
        self.name = model.name
        self.model = model
        self.options = dict(options or {})
        self.on_result: Callable[[int, ChatResult], None] | None = None
        self._engine: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()

    def tokenizer(self) -> Any:
        if self._tok is None:
            self._tok = load_tokenizer(self.model)
        return self._tok

    def _get_engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                try:
                    import vllm
                except ImportError as exc:
                    raise RuntimeError(
                        f"model {self.name!r} uses the vllm backend, but vllm is not installed "
                        "(pip install 'recipe-zoo[vllm]')"
                    ) from exc
                path = merged_folder(model_folder(self.model))
                self._engine = vllm.LLM(**engine_kwargs(self.model, self.options, path))
            return self._engine

    def load(self) -> None:
        self._get_engine()

    @property
    def context_length(self) -> int | None:
        limit = self.options.get("max_model_len") or self.model.serving.get("max_model_len")
        if limit:
            return int(limit)
        if self.model.context_length:
            return self.model.context_length
        return getattr(load_config(self.model), "max_position_embeddings", None)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer().encode(text, add_special_tokens=False))

    def check_format(self, fmt: Format) -> None:
        """Every kind is enforced by vLLM's structured outputs; the spec itself is checked by the engine
        when the request is made."""

    def _prompt_ids(self, conversation: list[dict]) -> list[int]:
        return chat_prompt_ids(self.tokenizer(), conversation, self.model.chat_template)

    def chat(self, conversations: list[list[dict]], sampling: Sampling,
             on_result: Callable[[int, ChatResult], None] | None = None) -> list[ChatResult]:
        import vllm

        report = on_result if on_result is not None else self.on_result
        engine = self._get_engine()
        tok = self.tokenizer()
        wanted = tracked_ids(tok, sampling.logprob_tokens) if sampling.logprob_tokens else None
        prompts = [{"prompt_token_ids": self._prompt_ids(c)} for c in conversations]
        kwargs = sampling_kwargs(sampling, len(tok))
        if sampling.format is not None:
            import vllm.sampling_params

            kwargs.update(format_param(sampling.format, vllm.sampling_params))
        outputs = engine.generate(prompts, vllm.SamplingParams(**kwargs), use_tqdm=False)
        results = []
        for i, out in enumerate(outputs):
            result = chat_result(out, sampling, lambda tid: tok.decode([tid]), wanted)
            results.append(result)
            if report is not None:
                report(i, result)
        return results

    def score(self, texts: list[str], *, attentions: bool = False,
              prompt_lengths: list[int] | None = None) -> list[ScoreResult]:
        """Per-token logprobs through vLLM's ``prompt_logprobs``. Attentions need the transformers
        backend."""
        if attentions:
            raise NotImplementedError("the vllm backend cannot return attentions; use the transformers backend")
        import vllm

        engine = self._get_engine()
        tok = self.tokenizer()
        prompts = []
        for text in texts:
            has_bos = tok.bos_token is not None and text.startswith(tok.bos_token)
            prompts.append({"prompt_token_ids": tok(text, add_special_tokens=not has_bos)["input_ids"]})
        outputs = engine.generate(prompts, vllm.SamplingParams(**score_sampling_kwargs()), use_tqdm=False)
        return [score_result(out, tok.convert_ids_to_tokens) for out in outputs]

    def close(self) -> None:
        self._engine = None

