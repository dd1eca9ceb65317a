"""Test doubles: a scripted LLM and a minimal component context.

``ScriptedLLM`` answers each conversation with ``reply(messages) -> str`` written by the test, so a test
states exactly what the "model" says and checks what the component makes of it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.backends.base import LLM, ChatResult, Embedder, Sampling, Usage


class ScriptedLLM(LLM):
    backend = "scripted"

    def __init__(self, reply: Callable[[list[dict]], str], name: str = "scripted") -> None:
        self.reply = reply
        self.name = name
        self.calls: list[tuple[list[dict], Sampling]] = []

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        out = []
        for conv in conversations:
            self.calls.append((conv, sampling))
            text = self.reply(conv)
            out.append(ChatResult(text=text, usage=Usage(prompt_tokens=self.count_tokens(
                " ".join(m["content"] for m in conv)), completion_tokens=self.count_tokens(text))))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class BagOfWordsEmbedder(Embedder):
    """Deterministic hashed bag-of-words vectors: similar texts get similar vectors."""

    name = "bow"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def embed(self, texts: list[str]):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype="float32")
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


class FakeCtx:
    """A ``components.base.Context`` for unit tests."""

    def __init__(self, params: Any = None, models: dict[str | None, Any] | None = None,
                 tmp: Path | None = None, seed: int = 0, inputs: dict[str, list[dict]] | None = None) -> None:
        self.stage = "test"
        self.params = params
        self.seed = seed
        self.rng = random.Random(seed)
        base = Path(tmp) if tmp else Path.cwd() / ".fakectx"
        self.scratch = base / "scratch"
        self.artifact_dir = base / "artifacts"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger("test")
        self.inputs = inputs or {}
        self._models = models or {}
        self.advanced = 0
        self.stats: dict[str, str] = {}

    def model(self, slot: str | None = None):
        if slot in self._models:
            return self._models[slot]
        return self._models[None]

    def embedder(self, slot: str = "embedder"):
        return self._models[slot]

    def model_source(self, slot: str | None = None):
        return self._models[("source", slot)]

    def advance(self, n: int = 1, total: int | None = None) -> None:
        self.advanced += n

    def save_stats(self, name: str, data: Any) -> None:
        """Kept as JSON text, as the runner keeps it: what a component saves must survive a round trip."""
        self.stats[name] = json.dumps(data)

    def load_stats(self, name: str, default: Any = None) -> Any:
        return json.loads(self.stats[name]) if name in self.stats else default
