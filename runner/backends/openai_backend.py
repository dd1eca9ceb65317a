"""The openai backend: any OpenAI-compatible chat endpoint (OpenAI, GLM, a ``vllm serve`` or
``recipe serve`` server), through one aiohttp session per endpoint (``jsonhttp``: a fraction of the CPU
per request of the ``openai``/``httpx`` stack, which a window of hundreds of requests a second needs).

``chat`` is synchronous for the caller; inside, the batch runs concurrently on a private event loop
thread, under optional requests-per-minute and tokens-per-minute limits. At most ``concurrency``
requests are in flight per backend instance, across every ``chat`` call: callers in several threads (the
batches of a map stage, stages side by side) share one window (``window``), refilled as each request
finishes, earlier batches first; a request waiting out a retry or a ``Retry-After`` keeps its slot, and
so does a finished one until ``on_result`` has journaled it. Failed attempts are retried with
exponential backoff and jitter, waiting exactly ``Retry-After`` when the server sends it (the HTTP
client only retries a request on a fresh connection when a kept-alive one turns out closed before any
answer). An item that still fails comes back with ``ChatResult.error``; the batch never raises for it.

A ``sampling.format`` is sent as the request fields of ``format_fields.request_fields``
(``response_format`` for JSON schemas, vLLM's ``structured_outputs`` for regexes and grammars), when the
endpoint declares that kind in its ``structured_outputs`` setting; any other format is a ``ValueError``
while the request body is built, so it is never sent.

Settings (endpoint, limits, prices, retries) are ``options.OpenAISettings``, from the zoo entry's ``api``
block, its ``serving`` values and the recipe's options (``options.settings_for``).

Spend is priced from the zoo entry's ``input_per_mtok`` / ``output_per_mtok`` and summed per backend
instance in ``total``. With ``budget_usd`` set, once the total reaches it no further request is sent;
requests in flight finish, each finished item is handed to ``on_result``, and ``BudgetExceeded`` is
raised (its ``results`` attribute holds the finished items, None for those never sent).

The endpoint is ``base_url`` (default ``$OPENAI_BASE_URL``, else OpenAI's). The API key is read from the
environment variable named in ``api_key_env`` and never written to a log or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from registry.resolved import ResolvedModel
from runner.backends.base import (
    LLM,
    BudgetExceeded,
    ChatResult,
    Format,
    Sampling,
    Usage,
)
from runner.backends.format_fields import request_fields
from runner.backends.handoff import Handoff
from runner.backends.jsonhttp import JsonClient, Response, TransportError
from runner.backends.openai_parse import (
    _choice,
    _ContentFiltered,
    _error_text,
    _Malformed,
    _retry_after,
)
from runner.backends.options import OpenAISettings, settings_for
from runner.backends.ratelimit import TokenBucket
from runner.backends.window import Window, call_order

__all__ = ["OpenAILLM", "OpenAISettings", "settings_for"]

log = logging.getLogger("runner.backends.openai")

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class _StatusError(Exception):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class OpenAILLM(LLM):
    """A chat model behind an OpenAI-compatible HTTP API."""

    backend = "openai"
    supports_n = True  # the request's `n`; an endpoint that answers fewer choices gives an item error

    def __init__(self, model: ResolvedModel, settings: OpenAISettings, *, tokenizer_path: Path | None = None) -> None:
        self.name = model.name
        self.model = model
        self.settings = settings
        self.tokenizer_path = tokenizer_path
        self.on_result: Callable[[int, ChatResult], None] | None = None
        self.total = Usage()  # everything this instance spent
        self.stats = {"requests": 0, "retries": 0, "failed": 0}
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaceable in tests
        self._rng = random.Random()
        self._gate = Window(settings.concurrency)  # shared by every chat() call, used on the loop
        self._rpm = TokenBucket(settings.rpm) if settings.rpm else None
        self._tpm = TokenBucket(settings.tpm) if settings.tpm else None
        self._tok: Any = None
        self._client: JsonClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # journal appends of finished items, off the loop (they share fsyncs, so several threads)
        self._reports = Handoff(max(4, min(16, settings.concurrency)), "openai-results")

    # ---- tokens --------------------------------------------------------------------------------------

    def tokenizer(self) -> Any:
        if self._tok is None and self.tokenizer_path is not None:
            from runner.backends.hf_loading import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer_path)
        return self._tok

    def count_tokens(self, text: str) -> int:
        tok = self.tokenizer()
        if tok is not None:
            return len(tok.encode(text, add_special_tokens=False))
        return math.ceil(len(text) / 4)  # the usual ~4 characters per token of English, when no tokenizer is known

    @property
    def context_length(self) -> int | None:
        return self.model.context_length

    def check_format(self, fmt: Format) -> None:
        request_fields(fmt, self.settings.structured_outputs, self.settings.structured_outputs_fields)

    # ---- event loop and client -----------------------------------------------------------------------

    def _run(self, coro: Awaitable[Any]) -> Any:
        with self._start_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _api_key(self) -> str:
        key = os.environ.get(self.settings.api_key_env)
        if key:
            return key
        host = urlparse(self._base_url()).hostname or ""
        if host in {"localhost", "127.0.0.1", "::1", "0.0.0.0"}:
            return "EMPTY"  # local servers (vllm serve, recipe serve) accept any key
        raise RuntimeError(
            f"model {self.name!r}: set the environment variable {self.settings.api_key_env} to the API key"
        )

    def load(self) -> None:
        """Nothing to load; a missing key is reported now rather than once per record."""
        self._api_key()

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.settings.api_key_env)
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _get_client(self) -> JsonClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key()}"}
            # what the openai client sends from the same variables
            for name, var in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
                if os.environ.get(var):
                    headers[name] = os.environ[var]
            self._client = JsonClient(self._base_url(), headers, timeout=self.settings.timeout_s)
        return self._client

    def _base_url(self) -> str:
        return self.settings.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self._run(self._client.aclose())
            self._client = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None
        self._gate = Window(self.settings.concurrency)
        self._reports.close()

    # ---- chat ----------------------------------------------------------------------------------------

    def chat(self, conversations: list[list[dict]], sampling: Sampling,
             on_result: Callable[[int, ChatResult], None] | None = None) -> list[ChatResult]:
        if sampling.logprob_tokens:
            raise ValueError("the openai backend cannot return the log-probabilities of given tokens "
                             "(Sampling.logprob_tokens); use a local model (transformers or vllm)")
        if not conversations:
            return []
        # the callback is taken now, in the caller's thread: concurrent callers each keep their own
        report = on_result if on_result is not None else self.on_result
        return self._run(self._chat_all(conversations, sampling, report, call_order()))

    def _budget_reached(self) -> bool:
        budget = self.settings.budget_usd
        return budget is not None and self.total.cost_usd >= budget

    async def _chat_all(self, conversations: list[list[dict]], sampling: Sampling,
                        report: Callable[[int, ChatResult], None] | None = None, order: int = 0) -> list[ChatResult]:
        client = self._get_client()
        results: list[ChatResult | None] = [None] * len(conversations)
        gate = self._gate
        stopped: list[BaseException] = []  # the caller could not take a result (its disk is full): send no more

        async def one(i: int) -> None:
            await gate.acquire(order)
            try:
                if stopped or self._budget_reached():
                    return
                result = await self._complete(client, conversations[i], sampling)
                self.total.add(result.usage)
                if result.error is not None:
                    self.stats["failed"] += 1
                results[i] = result
                if report is not None:
                    # journaling (a file write and fsync) runs off the loop, which serves every request
                    # in flight; the slot is held until it is done, so a crash resends at most the
                    # requests in flight
                    try:
                        await self._reports.run(report, i, result)
                    except Exception as exc:  # noqa: BLE001 - raised once every request in flight is done
                        stopped.append(exc)
            finally:
                gate.release()

        await asyncio.gather(*(one(i) for i in range(len(conversations))))
        if stopped:
            raise stopped[0]
        unsent = sum(r is None for r in results)
        if unsent:
            exc = BudgetExceeded(
                f"model {self.name!r}: spent ${self.total.cost_usd:.4f} of the ${self.settings.budget_usd} budget; "
                f"{unsent} of {len(conversations)} requests were not sent"
            )
            exc.results = results  # type: ignore[attr-defined]
            raise exc
        return results  # type: ignore[return-value]

    def _request(self, conversation: list[dict], sampling: Sampling) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.settings.model_id,
            "messages": conversation,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            self.settings.max_tokens_field: sampling.max_new_tokens,
        }
        if sampling.n > 1:
            req["n"] = sampling.n
        if sampling.stop:
            req["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            req["seed"] = sampling.seed
        if sampling.logprobs is not None:
            req["logprobs"] = True
            if sampling.logprobs > 0:
                req["top_logprobs"] = sampling.logprobs
        if sampling.format is not None:
            req.update(request_fields(sampling.format, self.settings.structured_outputs,
                                      self.settings.structured_outputs_fields))
        return req

    async def _complete(self, client: Any, conversation: list[dict], sampling: Sampling) -> ChatResult:
        request = self._request(conversation, sampling)
        estimate = 0
        if self._tpm is not None:
            estimate = self._prompt_tokens(conversation) + sampling.max_new_tokens
        attempt = 0
        while True:
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None:
                await self._tpm.acquire(estimate)
            self.stats["requests"] += 1
            try:
                response = await client.post("/chat/completions", request)
                if not 200 <= response.status < 300:
                    raise _StatusError(response)
                result = self._parse(response.json(), conversation, sampling.n)
                if self._tpm is not None:
                    used = result.usage.prompt_tokens + result.usage.completion_tokens
                    self._tpm.adjust(used - estimate)
                return result
            except Exception as exc:  # noqa: BLE001 - every failure becomes a retry or an item error
                retryable, retry_after, message = self._classify(exc)
            if not retryable or attempt >= self.settings.max_retries:
                log.warning("model %s: request failed after %d attempt(s): %s", self.name, attempt + 1, message)
                return ChatResult(error=message)
            delay = self._delay(attempt, retry_after)
            attempt += 1
            self.stats["retries"] += 1
            log.info("model %s: %s; retry %d in %.2fs", self.name, message, attempt, delay)
            await self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.settings.max_retry_after_s)
        base = min(self.settings.backoff_max_s, self.settings.backoff_s * 2**attempt)
        return base * (0.5 + 0.5 * self._rng.random())  # jitter keeps retrying clients apart

    def _classify(self, exc: Exception) -> tuple[bool, float | None, str]:
        """(retryable, Retry-After seconds or None, a message safe to log)."""
        if isinstance(exc, TimeoutError):
            return True, None, f"timed out after {self.settings.timeout_s}s"
        if isinstance(exc, (TransportError, OSError)):
            return True, None, self._redact(f"connection error: {exc}")
        if isinstance(exc, _StatusError):
            status = exc.response.status
            message = self._redact(f"HTTP {status}: {_error_text(exc.response)}")
            return status in RETRYABLE_STATUS, _retry_after(exc.response.headers), message
        if isinstance(exc, _ContentFiltered):
            return False, None, "the endpoint filtered the content"
        if isinstance(exc, (_Malformed, ValueError)):
            return True, None, self._redact(f"malformed response: {type(exc).__name__}: {exc}")[:500]
        return False, None, self._redact(f"{type(exc).__name__}: {exc}")[:500]

    def _prompt_tokens(self, conversation: list[dict]) -> int:
        return self.count_tokens(" ".join(str(m.get("content", "")) for m in conversation))

    def _parse(self, response: Any, conversation: list[dict], n: int = 1) -> ChatResult:
        """A ChatResult from a chat.completion JSON object (its first ``n`` choices, in ``choices`` when
        ``n > 1``); anything else is malformed, and so is a reply with fewer choices than asked for."""
        try:
            raw_choices = sorted(response["choices"], key=lambda c: c.get("index", 0))
            choices = [_choice(c) for c in raw_choices[:n]]
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise _Malformed(f"no chat completion in the response ({type(response).__name__})") from exc
        if len(choices) < n or not choices:
            raise _Malformed(f"asked for {n} choices, the response has {len(choices)}")
        usage = response.get("usage") or {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
            # Some servers omit usage; count with the tokenizer (or the estimate) instead.
            prompt_tokens = self._prompt_tokens(conversation)
            completion_tokens = sum(self.count_tokens(c.text) for c in choices)
        cost = (prompt_tokens * self.settings.input_per_mtok + completion_tokens * self.settings.output_per_mtok) / 1e6
        used = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost)
        if n > 1:
            return ChatResult.of_choices(choices, used)
        first = choices[0]
        return ChatResult(text=first.text, usage=used, finish_reason=first.finish_reason, logprobs=first.logprobs)
