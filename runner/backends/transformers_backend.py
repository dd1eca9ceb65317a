"""The in-process transformers backend: CPU or GPU, left-padded batched generation.

Prompts are the conversation rendered with the zoo entry's chat template when it sets one, else the
tokenizer's own. ``temperature == 0`` decodes greedily; otherwise it samples with ``top_p`` (no top-k).
Stop strings end a sequence as soon as they appear and are cut from the text. ``Sampling.n > 1`` samples
the replies of a prompt in one ``generate`` call (``num_return_sequences``); a greedy request decodes once
and repeats the reply, since every greedy reply is the same. Usage counts are the real
token counts: prompt tokens, and generated tokens up to and including the one that ended the sequence
(an end-of-sequence token or the last token of a stop string); ``logprobs`` cover those same tokens and
come from the model's raw distribution (before temperature / top-p).

A ``sampling.format`` is enforced while decoding (``runner.backends.guidance``, llguidance): every row of a
batch gets its own matcher, and a format is compiled once per model and reused. An invalid format raises
``ValueError`` from ``chat`` before anything is generated.

The model is loaded on first use, once; ``score`` with ``attentions=True`` switches it to eager attention
for that call, since only eager attention exposes the attention probabilities.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from registry.model_folder import load_causal_lm, load_config, load_tokenizer
from registry.resolved import ResolvedModel
from runner.backends.base import LLM, ChatResult, Choice, Format, Sampling, ScoreResult, Usage
from runner.backends.generation import (
    _FinishTracker,
    generation_kwargs,
    reply_text,
    token_logprobs,
    tracked_ids,
)
from runner.backends.hf_loading import chat_prompt_ids


class TransformersLLM(LLM):
    """A local Hugging Face causal LM.

    ``batch_size``, ``dtype``, ``device``, ``num_threads``: the backend's options, declared (and
    documented) in ``runner.backends.options.TransformersOptions``. ``tokenizer_path``: a folder whose
    tokenizer replaces the model folder's own.
    """

    backend = "transformers"
    supports_n = True

    def __init__(
        self,
        model: ResolvedModel,
        *,
        batch_size: int = 8,
        dtype: Any = None,
        device: str | None = None,
        tokenizer_path: Any = None,
        num_threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = model.name
        self.model = model
        self.batch_size = batch_size
        self.dtype = dtype
        self.device_name = device
        self.tokenizer_path = tokenizer_path
        self.num_threads = num_threads
        self.trust_remote_code = trust_remote_code
        self.on_result: Callable[[int, ChatResult], None] | None = None
        self._lm: Any = None
        self._tok: Any = None
        self._guide: Any = None  # the llguidance format compiler, built on the first constrained request
        self._context_length: int | None = model.context_length
        self._lock = threading.RLock()  # one generate at a time; also guards lazy loading

    # ---- loading -------------------------------------------------------------------------------------

    def tokenizer(self) -> Any:
        with self._lock:
            if self._tok is None:
                source = self.tokenizer_path if self.tokenizer_path is not None else self.model
                self._tok = load_tokenizer(source, padding_side="left", trust_remote_code=self.trust_remote_code)
            return self._tok

    def _model(self) -> Any:
        with self._lock:
            if self._lm is None:
                if self.num_threads:
                    import torch

                    torch.set_num_threads(self.num_threads)
                self._lm = load_causal_lm(self.model, dtype=self.dtype, device=self.device_name,
                                          trust_remote_code=self.trust_remote_code)
            return self._lm

    def load(self) -> None:
        self.tokenizer()
        self._model()

    def model_method(self, name: str) -> Callable[..., Any] | None:
        """The loaded model's own method ``name`` (e.g. LongCite's ``query_longcite``), when the model's
        repository code is trusted (``trust_remote_code``) and defines it; None otherwise. Calls to it
        hold the backend's lock, so they do not overlap with ``chat``."""
        if not self.trust_remote_code:
            return None
        method = getattr(self._model(), name, None)
        if not callable(method):
            return None

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)
        return locked

    @property
    def device(self) -> Any:
        return self._model().device

    @property
    def context_length(self) -> int | None:
        if self._context_length is None:
            config = load_config(self.model, trust_remote_code=self.trust_remote_code)
            self._context_length = getattr(config, "max_position_embeddings", None)
        return self._context_length

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer().encode(text, add_special_tokens=False))

    def close(self) -> None:
        with self._lock:
            self._lm = None

    def check_format(self, fmt: Format) -> None:
        with self._lock:
            self.guide().compiled(fmt)

    def guide(self) -> Any:
        """This model's format compiler (``runner.backends.guidance.Guide``), built once."""
        with self._lock:
            if self._guide is None:
                from runner.backends.guidance import Guide

                tok = self.tokenizer()
                vocab = max(getattr(self._model().config, "vocab_size", 0) or 0, len(tok))
                self._guide = Guide(tok, sorted(self._eos_ids()), vocab)
            return self._guide

    # ---- chat ----------------------------------------------------------------------------------------

    def _prompt_ids(self, conversation: list[dict]) -> list[int]:
        return chat_prompt_ids(self.tokenizer(), conversation, self.model.chat_template)

    def chat(self, conversations: list[list[dict]], sampling: Sampling,
             on_result: Callable[[int, ChatResult], None] | None = None) -> list[ChatResult]:
        report = on_result if on_result is not None else self.on_result
        if sampling.format is not None:  # a bad format is the caller's error: raise it before generating
            self.check_format(sampling.format)
        if sampling.logprob_tokens:  # likewise a tracked token that is not one token of the vocabulary
            tracked_ids(self.tokenizer(), sampling.logprob_tokens)
        results: list[ChatResult | None] = [None] * len(conversations)
        prompts = [self._prompt_ids(c) for c in conversations]
        limit = self.context_length
        todo = []
        for i, ids in enumerate(prompts):
            if limit is not None and len(ids) >= limit:
                results[i] = ChatResult(error=f"prompt is {len(ids)} tokens; the model's context length is {limit}")
                if report is not None:
                    report(i, results[i])
            else:
                todo.append(i)
        # Longest first, so each batch holds similar lengths and little padding.
        todo.sort(key=lambda i: -len(prompts[i]))
        # n sampled replies per prompt are n rows of the batch: fewer prompts per batch keep its size
        per_batch = max(1, self.batch_size // generation_kwargs(sampling)["num_return_sequences"])
        for start in range(0, len(todo), per_batch):
            chunk = todo[start:start + per_batch]
            try:
                outs = self._generate([prompts[i] for i in chunk], sampling)
            except Exception as exc:  # noqa: BLE001 - one failing batch must not sink the others
                outs = [ChatResult(error=f"generation failed: {type(exc).__name__}: {exc}")] * len(chunk)
            for i, out in zip(chunk, outs):
                results[i] = out
                if report is not None:
                    report(i, out)
        return [r if r is not None else ChatResult(error="not generated") for r in results]

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        tok = self.tokenizer()
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        configured = getattr(self._model().generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(x) for x in configured)
        return ids

    def _generate(self, batch: list[list[int]], sampling: Sampling) -> list[ChatResult]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        with self._lock:
            tok, lm = self.tokenizer(), self._model()
            padded = tok.pad({"input_ids": batch}, padding=True, return_tensors="pt")
            input_ids = padded["input_ids"].to(lm.device)
            attention_mask = padded["attention_mask"].to(lm.device)
            prompt_len = input_ids.shape[1]
            eos = self._eos_ids()
            kwargs = generation_kwargs(sampling)
            per_prompt = kwargs["num_return_sequences"]
            tracker = _FinishTracker(tok, prompt_len, sampling.stop, eos, len(batch) * per_prompt)
            kwargs.update(
                pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(eos) or None,
                stopping_criteria=StoppingCriteriaList([tracker]),
                return_dict_in_generate=True,
                output_logits=sampling.logprobs is not None or bool(sampling.logprob_tokens),
            )
            if sampling.format is not None:
                # applied before temperature / top-p (transformers runs given processors first)
                constrain = self.guide().processor(sampling.format, len(batch) * per_prompt, prompt_len,
                                                   tracker.finished_at)
                kwargs["logits_processor"] = LogitsProcessorList([constrain])
            with self._seeded(sampling), torch.no_grad():
                out = lm.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            generated = out.sequences[:, prompt_len:].tolist()
            logits = out.logits if kwargs["output_logits"] else None
        wanted = tracked_ids(tok, sampling.logprob_tokens) if sampling.logprob_tokens else None

        results = []
        for b, prompt in enumerate(batch):
            # generate puts the replies of one prompt next to each other
            choices, used = [], 0
            for row in range(b * per_prompt, (b + 1) * per_prompt):
                finished = tracker.finished_at[row]
                kept = generated[row][:finished] if finished is not None else generated[row]
                used += len(kept)
                lps = token_logprobs(tok, logits, row, kept, sampling.logprobs, wanted) if logits is not None else None
                choices.append(Choice(
                    text=_cut_at_stop(reply_text(tok, kept, wanted), sampling.stop),
                    finish_reason="stop" if finished is not None else "length",
                    logprobs=lps,
                    cumulative_logprob=sum(t.logprob for t in lps) if wanted is not None and lps else None,
                ))
            usage = Usage(prompt_tokens=len(prompt), completion_tokens=used)
            if sampling.n == 1:
                results.append(ChatResult(text=choices[0].text, finish_reason=choices[0].finish_reason,
                                          logprobs=choices[0].logprobs, usage=usage,
                                          cumulative_logprob=choices[0].cumulative_logprob))
            else:  # a greedy request decoded once: every reply is that one
                usage.completion_tokens *= sampling.n // per_prompt
                results.append(ChatResult.of_choices(choices * (sampling.n // per_prompt), usage))
        return results

    def _seeded(self, sampling: Sampling) -> Any:
        """Seed torch for this generate call only, leaving the process's global RNG state untouched."""
        import torch

        if sampling.seed is None or sampling.temperature == 0:
            return contextlib.nullcontext()
        devices = [torch.cuda.current_device()] if self._model().device.type == "cuda" else []

        @contextlib.contextmanager
        def scope():
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(sampling.seed)
                yield

        return scope()

    # ---- score ---------------------------------------------------------------------------------------

    def _score_ids(self, text: str) -> list[int]:
        tok = self.tokenizer()
        # A text that already starts with BOS (e.g. a rendered chat prompt) must not get a second one.
        has_bos = tok.bos_token is not None and text.startswith(tok.bos_token)
        return tok(text, add_special_tokens=not has_bos)["input_ids"]

    def score(
        self, texts: list[str], *, attentions: bool = False, prompt_lengths: list[int] | None = None
    ) -> list[ScoreResult]:
        """Per-token logprobs of each text (the first token's is None).

        Tokenization: the tokenizer's default special tokens (e.g. a BOS), unless the text already
        starts with the BOS token. ``prompt_lengths[i]`` is the number of leading tokens of ``texts[i]``
        (tokenized that way) that form its prompt; it only narrows the attentions.
        With ``attentions=True`` each result's ``attentions`` is a float32 CPU tensor of shape
        ``(layers, n - p, n)``: for every layer, the head-averaged attention probabilities of query
        positions ``p..n-1`` (the response) over all ``n`` positions, where ``p = prompt_lengths[i]``
        (0 when not given). Only those rows are kept while the forward pass runs, so long prompts fit.
        """
        if prompt_lengths is not None and len(prompt_lengths) != len(texts):
            raise ValueError(f"got {len(prompt_lengths)} prompt_lengths for {len(texts)} texts")
        ids = [self._score_ids(t) for t in texts]
        tok = self.tokenizer()
        results: list[ScoreResult] = []
        if attentions:
            for i, row in enumerate(ids):
                p = prompt_lengths[i] if prompt_lengths is not None else 0
                logprobs, att = self._forward_with_attentions(row, p)
                results.append(_score_result(tok, row, logprobs, att))
            return results
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            for row, logprobs in zip(chunk, self._forward_logprobs(chunk)):
                results.append(_score_result(tok, row, logprobs, None))
        return results

    def _forward_logprobs(self, rows: list[list[int]]) -> list[list[float]]:
        import torch

        with self._lock:
            lm = self._model()
            pad = self.tokenizer().pad_token_id or 0
            width = max(len(r) for r in rows)
            # Right padding: positions stay 0..n-1 and causal attention never sees the pads.
            input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=lm.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=lm.device)
            with torch.no_grad():
                logits = lm(input_ids=input_ids, attention_mask=mask).logits
            return [_gather_logprobs(logits[b, : len(r)], r) for b, r in enumerate(rows)]

    def _forward_with_attentions(self, row: list[int], prompt_len: int) -> tuple[list[float], Any]:
        import torch

        with self._lock:
            lm = self._model()
            previous = lm.config._attn_implementation
            if previous != "eager":
                lm.set_attn_implementation("eager")
            layers = [m for name, m in lm.named_modules() if name.endswith("self_attn")]
            if not layers:
                raise NotImplementedError(f"cannot find the attention layers of {type(lm).__name__}")
            kept: list[Any] = []

            def keep_rows(_module: Any, _args: Any, output: Any) -> None:
                weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
                if weights is None:
                    raise RuntimeError("the attention layer returned no attention probabilities")
                kept.append(weights[0, :, prompt_len:, :].float().mean(dim=0).cpu())

            hooks = [m.register_forward_hook(keep_rows) for m in layers]
            try:
                with torch.no_grad():
                    logits = lm(input_ids=torch.tensor([row], device=lm.device)).logits
            finally:
                for h in hooks:
                    h.remove()
                if previous != "eager":
                    lm.set_attn_implementation(previous)
            return _gather_logprobs(logits[0], row), torch.stack(kept)


def _cut_at_stop(text: str, stops: list[str]) -> str:
    cuts = [text.find(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text


def _gather_logprobs(logits: Any, row: list[int]) -> list[float]:
    """logprob of token i given tokens < i, for i >= 1, from logits of shape (n, vocab)."""
    import torch

    if len(row) < 2:
        return []
    lp = torch.log_softmax(logits[:-1].float(), dim=-1)
    target = torch.tensor(row[1:], device=lp.device).unsqueeze(-1)
    return lp.gather(-1, target).squeeze(-1).tolist()


def _score_result(tok: Any, row: list[int], logprobs: list[float], attentions: Any) -> ScoreResult:
    return ScoreResult(
        tokens=tok.convert_ids_to_tokens(row),
        token_ids=row,
        logprobs=[None, *logprobs] if row else [],
        attentions=attentions,
    )

