"""The one interface every LLM backend implements (transformers, openai, vllm).

``chat`` takes a batch of conversations (lists of ``{"role", "content"}`` messages) and sampling settings,
and returns one ``ChatResult`` per conversation, in order. A conversation that failed after the backend's
own retries comes back with ``error`` set instead of raising, so one bad item never sinks a batch.
``score`` returns per-token log-probabilities of given texts (optionally attentions, local backends only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Sampling(BaseModel):
    """Decoding settings. ``temperature == 0`` means greedy."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list, description="stop strings (not included in the text)")
    seed: int | None = Field(None, description="per-request seed where the backend supports one")
    logprobs: int | None = Field(None, ge=0, description="return this many top logprobs per generated token")


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


class ChatResult(BaseModel):
    text: str = ""
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    error: str | None = None  # set when this item failed after retries; text is then ""
    cached: bool = False  # served from the stage's call cache (not paid again)


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


class BudgetExceeded(RuntimeError):
    """Raised by an API backend when a stage's spend reached its ``budget_usd``; the run stops cleanly
    and everything finished so far is kept."""
