"""``recipe serve``: any LLM behind an OpenAI-compatible HTTP API.

Endpoints: ``POST /v1/chat/completions`` (messages, temperature, top_p, max_tokens /
max_completion_tokens, stop, seed, logprobs / top_logprobs, n=1; no streaming; an output format as
``response_format``, vLLM's ``structured_outputs`` or its older ``guided_*`` fields, see
``format_fields``) and ``GET /v1/models``. A format is enforced by the served LLM's backend while decoding
(the transformers backend through llguidance); one it cannot enforce is refused with a 400.
Errors are OpenAI-style JSON: ``{"error": {"message", "type", "param", "code"}}``.

Each request runs on its own thread; the chat calls go through one batching worker that takes every
request waiting at that moment with the same sampling settings and sends them to the LLM as one batch, so
concurrent clients share forward passes instead of queueing one by one.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from runner.backends.base import LLM, ChatResult, Sampling
from runner.backends.format_fields import format_from_body

DEFAULT_TEMPERATURE = 1.0  # the OpenAI API's default when a request names none
DEFAULT_MAX_TOKENS = 256


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI error fields to send back."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code


@dataclass
class _Pending:
    conversation: list[dict]
    sampling: Sampling
    done: threading.Event = field(default_factory=threading.Event)
    result: ChatResult | None = None
    failure: BaseException | None = None


class ChatBatcher:
    """Sends waiting chat requests to the LLM in batches, one batch at a time."""

    def __init__(self, llm: LLM, max_batch: int = 32) -> None:
        self.llm = llm
        self.max_batch = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="chat-batcher", daemon=True)
        self._thread.start()

    def submit(self, conversation: list[dict], sampling: Sampling) -> ChatResult:
        item = _Pending(conversation, sampling)
        self._queue.put(item)
        item.done.wait()
        if item.failure is not None:
            raise item.failure
        assert item.result is not None
        return item.result

    def stop(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            waiting = [first]
            while len(waiting) < 4 * self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                waiting.append(nxt)
            for group in _group_by_sampling(waiting, self.max_batch):
                self._run(group)

    def _run(self, group: list[_Pending]) -> None:
        try:
            results = self.llm.chat([p.conversation for p in group], group[0].sampling)
            for p, r in zip(group, results):
                p.result = r
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request threads
            for p in group:
                p.failure = exc
        for p in group:
            p.done.set()


def _group_by_sampling(items: list[_Pending], max_batch: int) -> list[list[_Pending]]:
    groups: list[list[_Pending]] = []
    by_key: dict[str, list[_Pending]] = {}
    for p in items:
        # A seeded sampled request runs alone: its seed then decides its output, whatever else arrives.
        seeded = p.sampling.seed is not None and p.sampling.temperature > 0
        key = uuid.uuid4().hex if seeded else p.sampling.model_dump_json()
        group = by_key.get(key)
        if group is None or len(group) >= max_batch:
            group = by_key[key] = []
            groups.append(group)
        group.append(p)
    return groups


def parse_chat_request(body: Any, model_name: str) -> tuple[list[dict], Sampling]:
    """The conversation and sampling settings of a chat completion request body."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported", param="stream")
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n=1 is supported", param="n")
    model = body.get("model")
    if model is not None and model != model_name:
        raise RequestError(404, f"the model {model!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    conversation = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(400, "each message needs a role and a content", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RequestError(400, "each message needs a role and a content", param="messages")
        conversation.append({"role": m["role"], "content": content})
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    logprobs = None
    if body.get("logprobs"):
        logprobs = int(body.get("top_logprobs") or 0)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    try:
        fmt = format_from_body(body)
    except ValueError as exc:
        raise RequestError(400, f"output format: {exc}", param="response_format") from exc
    try:
        sampling = Sampling(
            temperature=_given(body, "temperature", DEFAULT_TEMPERATURE),
            top_p=_given(body, "top_p", 1.0),
            max_new_tokens=max_tokens,
            stop=stop or [],
            seed=body.get("seed"),
            logprobs=logprobs,
            format=fmt,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RequestError(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    return conversation, sampling


def _given(body: dict, key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def completion_body(result: ChatResult, model_name: str) -> dict[str, Any]:
    """An OpenAI chat.completion object for one result."""
    logprobs = None
    if result.logprobs is not None:
        logprobs = {"content": [
            {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
             "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode())} for k, v in t.top.items()]}
            for t in result.logprobs
        ]}
    usage = result.usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": result.finish_reason or "stop",
            "logprobs": logprobs,
        }],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    }


class ChatHandler(BaseHTTPRequestHandler):
    """The request handler. Subclasses may override ``do_POST`` / ``do_GET`` and use ``send_json``."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # small JSON replies go out at once, not after a delayed ACK
    server: ChatServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no per-request lines on stderr

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str, *, kind: str = "invalid_request_error",
                        param: str | None = None, code: str | None = None,
                        headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}}, headers)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            name = self.server.model_name
            self.send_json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": self.server.started, "owned_by": "recipe-zoo"}]})
        else:
            self.send_error_json(404, f"no route GET {self.path}", code="not_found")

    def do_POST(self) -> None:
        raw = self.read_body()
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self.send_error_json(404, f"no route POST {self.path}", code="not_found")
            return
        self.respond_chat(raw)

    def respond_chat(self, raw: bytes) -> None:
        """Answer a chat completion request whose body is ``raw``."""
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            self.send_error_json(400, "the request body is not valid JSON")
            return
        try:
            conversation, sampling = parse_chat_request(body, self.server.model_name)
        except RequestError as exc:
            self.send_error_json(exc.status, exc.message, kind=exc.kind, param=exc.param, code=exc.code)
            return
        if sampling.format is not None:
            try:
                self.server.llm.check_format(sampling.format)
            except ValueError as exc:
                self.send_error_json(400, f"output format: {exc}", param="response_format")
                return
        try:
            result = self.server.batcher.submit(conversation, sampling)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a server error
            self.send_error_json(500, f"{type(exc).__name__}: {exc}", kind="server_error")
            return
        if result.error is not None:
            self.send_error_json(500, result.error, kind="server_error")
            return
        self.send_json(200, completion_body(result, self.server.model_name))


class ChatServer(ThreadingHTTPServer):
    """A threading HTTP server holding the LLM's batcher and the served model name."""

    daemon_threads = True  # a slow request never blocks shutdown
    request_queue_size = 256  # many clients connect at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], llm: LLM,
                 model_name: str, max_batch: int) -> None:
        super().__init__(address, handler)
        self.llm = llm
        self.model_name = model_name
        self.started = int(time.time())
        self.batcher = ChatBatcher(llm, max_batch=max_batch)

    def server_close(self) -> None:
        self.batcher.stop()
        super().server_close()


def make_server(llm: LLM, host: str, port: int, *, model_name: str,
                handler: type[ChatHandler] = ChatHandler, max_batch: int = 32) -> ChatServer:
    """A ready server (port 0 picks a free one; see ``server_address``). Run it with ``serve_forever()``,
    stop it with ``shutdown()`` from another thread, then ``server_close()``."""
    return ChatServer((host, port), handler, llm, model_name, max_batch)


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def serve(llm: LLM, host: str, port: int, model_name: str) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(llm, host, port, model_name=model_name)
    shown_host, shown_port = server.server_address[:2]
    print(f"serving {model_name!r} at http://{shown_host}:{shown_port}/v1  (OpenAI-compatible; Ctrl-C stops)",
          flush=True)
    if _has_gpu():
        path = getattr(getattr(llm, "model", None), "path", None) or "<model folder>"
        print(f"a GPU is present: `vllm serve {path}` is the faster server for GPU decoding", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
