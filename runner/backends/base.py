"""The one interface every LLM backend implements (transformers, openai, vllm).

``chat`` takes a batch of conversations (lists of ``{"role", "content"}`` messages) and sampling settings,
and returns one ``ChatResult`` per conversation, in order. A conversation that failed after the backend's
own retries comes back with ``error`` set instead of raising, so one bad item never sinks a batch.
``score`` returns per-token log-probabilities of given texts (optionally attentions, local backends only).

``Sampling.n`` asks for several replies per conversation. A backend that sets ``supports_n`` answers them in
one request (vLLM and OpenAI-style ``n``, transformers ``num_return_sequences``): the conversation's
``ChatResult`` then holds every reply in ``choices`` (``text``, ``finish_reason`` and ``logprobs`` repeat the
first one; ``usage`` counts the prompt once and the tokens of all replies). A backend without
``supports_n`` answers one reply per conversation whatever ``n`` says; callers that need ``n`` replies ask
such a backend ``n`` times.

``Sampling.logprob_tokens`` asks for the log-probabilities of given tokens (each one token of the model's
vocabulary, e.g. Self-RAG's reflection tokens) at every generated position: each ``TokenLogprob`` then
carries them in ``tracked`` (a token the backend did not return is left out), the reply's text keeps those
tokens even when the tokenizer marks them special, and the reply carries ``cumulative_logprob``. With
``max_new_tokens=1`` this is the next-token distribution after the prompt, at the cost of one step. Only the
local backends (``LOCAL_BACKENDS``) can do this; API backends raise ``ValueError``.

A conversation whose last message is an assistant message is continued: the prompt ends with that
message's text (no end-of-turn marker), and the reply is what follows it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

FormatKind = Literal["regex", "json_schema", "grammar"]
FORMAT_KINDS: tuple[str, ...] = ("regex", "json_schema", "grammar")
# the backends that run the model in-process and so can enforce every kind of format while decoding
LOCAL_BACKENDS = ("transformers", "vllm")

_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")
_REGEX_CONTROL = {"\n": r"\n", "\t": r"\t", "\r": r"\r"}


def regex_escape(text: str) -> str:
    """``text`` as a literal in the regex subset formats use (Rust ``regex`` and Python ``re`` alike:
    meta characters and ``#&-~`` escaped, newlines and tabs as ``\\n`` / ``\\t``).

    >>> regex_escape("a.b (c)")
    'a\\\\.b \\\\(c\\\\)'
    """
    return "".join(_REGEX_CONTROL.get(c) or ("\\" + c if c in _REGEX_META else c) for c in text)


class Format(BaseModel):
    """The output format a reply must follow, enforced by the backend while decoding.

    ``kind``: ``regex`` (the whole reply matches ``spec``; Rust ``regex`` syntax, the common subset of
    llguidance, xgrammar and vLLM: no lookarounds or backreferences), ``json_schema`` (``spec`` is the
    schema as JSON text) or ``grammar`` (``spec`` is a Lark grammar in llguidance's dialect, which vLLM's
    ``guidance`` backend also takes). Build one with ``Format.regex`` / ``Format.json_schema`` /
    ``Format.grammar``. ``key`` identifies it for compile caches.

    >>> Format.regex("[1-9]+").kind
    'regex'
    >>> Format.json_schema({"type": "integer"}).spec
    '{"type":"integer"}'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FormatKind
    spec: str = Field(min_length=1, description="the regex, the JSON schema as JSON text, or the Lark grammar")

    @model_validator(mode="after")
    def _schema_is_json(self) -> Format:
        if self.kind == "json_schema":
            try:
                if not isinstance(json.loads(self.spec), dict):
                    raise ValueError("a JSON schema is an object")
            except ValueError as exc:
                raise ValueError(f"json_schema format: the spec is not a JSON object ({exc})") from exc
        return self

    @classmethod
    def regex(cls, pattern: str) -> Format:
        return cls(kind="regex", spec=pattern)

    @classmethod
    def choice(cls, options: list[str]) -> Format:
        """A regex format matching exactly one of ``options``."""
        if not options:
            raise ValueError("a choice needs at least one option")
        return cls.regex("(" + "|".join(regex_escape(o) for o in options) + ")")

    @classmethod
    def json_schema(cls, schema: dict | str) -> Format:
        text = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True, separators=(",", ":"))
        return cls(kind="json_schema", spec=text)

    @classmethod
    def grammar(cls, lark: str) -> Format:
        return cls(kind="grammar", spec=lark)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.spec}".encode()).hexdigest()[:32]

    def schema(self) -> dict:
        """The JSON schema of a ``json_schema`` format, parsed."""
        return json.loads(self.spec)


class Sampling(BaseModel):
    """Decoding settings. ``temperature == 0`` means greedy. ``format``: the reply must follow it; the
    backend enforces it while decoding, or raises ``ValueError`` when it cannot (never ignores it)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list, description="stop strings (not included in the text)")
    seed: int | None = Field(None, description="per-request seed where the backend supports one")
    logprobs: int | None = Field(None, ge=0, description="return this many top logprobs per generated token")
    n: int = Field(1, ge=1, description="replies per conversation (see ``ChatResult.choices``)")
    format: Format | None = Field(None, description="the output format enforced while decoding (None: free)")
    logprob_tokens: list[str] | None = Field(
        None, description="return these tokens' log-probabilities at every generated position (local backends)")

    @model_serializer(mode="wrap")
    def _without_free_format(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A free request dumps exactly as before formats existed, so call-journal keys (which hash the
        # dump) of existing runs stay valid; a constrained one carries its format into the key.
        data = handler(self)
        if isinstance(data, dict) and data.get("format") is None:
            data.pop("format", None)
        if isinstance(data, dict) and data.get("n") == 1:  # likewise for one reply per conversation
            data.pop("n", None)
        if isinstance(data, dict) and data.get("logprob_tokens") is None:
            data.pop("logprob_tokens", None)
        return data


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)
    # with Sampling.logprob_tokens: those tokens' log-probabilities at this position
    tracked: dict[str, float] = Field(default_factory=dict)


class Choice(BaseModel):
    """One of the replies to a conversation asked with ``Sampling.n > 1``."""

    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None  # with Sampling.logprob_tokens: the sum of the tokens' logprobs


class ChatResult(BaseModel):
    text: str = ""
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    error: str | None = None  # set when this item failed after retries; text is then ""
    cached: bool = False  # served from the stage's call cache (not paid again)
    # with Sampling.n > 1 on a backend that supports it: every reply, in order (None otherwise)
    choices: list[Choice] | None = None
    cumulative_logprob: float | None = None  # with Sampling.logprob_tokens: the sum of the tokens' logprobs

    def replies(self) -> list[str]:
        """The text of every reply: the choices' texts, or ``[text]`` for a single reply."""
        return [c.text for c in self.choices] if self.choices is not None else [self.text]

    @classmethod
    def of_choices(cls, choices: list[Choice], usage: Usage) -> ChatResult:
        """A result holding ``choices`` (the first one also as ``text``/``finish_reason``/``logprobs``)."""
        first = choices[0]
        return cls(text=first.text, finish_reason=first.finish_reason, logprobs=first.logprobs, usage=usage,
                   choices=list(choices), cumulative_logprob=first.cumulative_logprob)

    def all_choices(self) -> list[Choice]:
        """Every reply as a ``Choice`` (the single reply when ``choices`` is None)."""
        if self.choices is not None:
            return list(self.choices)
        return [Choice(text=self.text, finish_reason=self.finish_reason, logprobs=self.logprobs,
                       cumulative_logprob=self.cumulative_logprob)]


class ScoreResult(BaseModel):
    """Per-token log-probabilities of ``text`` (token i's logprob given tokens < i; the first is None)."""

    tokens: list[str]
    token_ids: list[int]
    logprobs: list[float | None]
    attentions: Any | None = None  # backend-specific tensor, local backends only


class LLM(ABC):
    """A chat model behind some backend."""

    name: str  # zoo name (or a description for inline models)
    backend: str
    # whether ``chat`` answers ``Sampling.n`` replies per conversation in one request (``ChatResult.choices``)
    supports_n: bool = False
    # set by the runner: called as each item of a chat batch completes, so finished calls are journaled
    # even if the process dies before the batch returns
    on_result: Callable[[int, ChatResult], None] | None = None

    @abstractmethod
    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        """Backends may also take ``on_result=callback`` (called as each item completes); the runner
        passes it per call when the signature has it, which keeps concurrent callers apart."""

    def score(
        self, texts: list[str], *, attentions: bool = False, prompt_lengths: list[int] | None = None
    ) -> list[ScoreResult]:
        raise NotImplementedError(f"backend {self.backend!r} cannot score text")

    def check_format(self, fmt: Format) -> None:
        """Raise ``ValueError`` unless this backend can enforce ``fmt`` while decoding (its kind is
        supported and, where the backend can tell before generating, the spec is valid)."""
        raise ValueError(f"the {self.backend} backend cannot enforce output formats")

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    def load(self) -> None:  # noqa: B027 - optional hook: backends that load lazily load now
        """Open the model now (weights, tokenizer, credentials), so a model that cannot be used fails
        before any record is tried; the runner calls it as a stage starts."""

    def tokenizer(self) -> Any:
        """A Hugging Face tokenizer for this model when one is known (local weights or the zoo's
        ``tokenizer`` entry), else None."""
        return None

    @property
    def context_length(self) -> int | None:
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        pass


class Embedder(ABC):
    """A sentence embedder (dense retrieval)."""

    name: str

    @abstractmethod
    def embed(self, texts: list[str]) -> Any:
        """L2-normalised embeddings, a float32 numpy array of shape (len(texts), dim)."""

    def embed_queries(self, texts: list[str]) -> Any:
        """``embed`` for search queries, with the model's query prompt where it defines one."""
        return self.embed(texts)

    def embed_documents(self, texts: list[str]) -> Any:
        """``embed`` for the passages searched, with the model's document prompt where it defines one."""
        return self.embed(texts)


class BudgetExceeded(RuntimeError):
    """Raised by an API backend when a stage's spend reached its ``budget_usd``; the run stops cleanly
    and everything finished so far is kept."""
