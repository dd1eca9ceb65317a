"""Every completed LLM call of a stage is journaled, so a resumed stage never pays for it twice.

A call's key is the model, the conversation, the sampling settings, the *scope* (the set of records
being processed, set by the runner) and how many identical requests came before it in that scope.
Batches are formed the same way on every run, so after a crash the same batch asks the same questions
in the same order and gets the journaled answers back.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from runner.backends.base import LLM, ChatResult, Sampling, Usage
from runner.fingerprint import digest
from runner.store import AppendLog, read_complete_lines

_scope = threading.local()


def set_scope(scope: str) -> None:
    _scope.value = scope
    _scope.seen = Counter()


def _current() -> tuple[str, Counter]:
    if not hasattr(_scope, "value"):
        set_scope("")
    return _scope.value, _scope.seen


class Meter:
    """Usage of one stage: calls, tokens, dollars (fresh and replayed from the journal)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.usage = Usage()
        self.calls = 0
        self.cached = 0
        self.errors = 0

    def add(self, r: ChatResult) -> None:
        with self.lock:
            if r.cached:
                self.cached += 1
                return
            self.calls += 1
            self.errors += r.error is not None
            self.usage.add(r.usage)


class CachedLLM(LLM):
    """Wraps a backend LLM with the stage's call journal (``calls.jsonl``) and usage meter."""

    def __init__(self, inner: LLM, journal: Path, meter: Meter, identity: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.backend = inner.backend
        self.meter = meter
        self.identity = identity
        self.log = AppendLog(journal)
        # replay from every journal of the stage (sharded runs each keep their own)
        self._done: dict[str, dict[str, Any]] = {}
        for path in sorted(journal.parent.glob("calls*.jsonl")):
            entries = self.log if path == journal else read_complete_lines(path)
            self._done.update({e["key"]: e["result"] for e in entries if "key" in e and "result" in e})
        self._lock = threading.Lock()
        # backends that take the completion callback per call keep concurrent batches apart; for any
        # other LLM the shared on_result attribute is swapped under a lock (one batch at a time)
        self._per_call = "on_result" in inspect.signature(inner.chat).parameters
        self._serial = threading.Lock()

    def _keys(self, conversations: list[list[dict]], sampling: Sampling) -> list[str]:
        scope, seen = _current()
        keys = []
        for conv in conversations:
            base = digest([self.identity, conv, sampling.model_dump(mode="json"), scope])
            keys.append(digest([base, seen[base]]))
            seen[base] += 1
        return keys

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[ChatResult]:
        keys = self._keys(conversations, sampling)
        out: list[ChatResult | None] = [None] * len(conversations)
        todo = []
        for i, k in enumerate(keys):
            hit = self._done.get(k)
            if hit is not None:
                out[i] = ChatResult.model_validate({**hit, "cached": True})
                self.meter.add(out[i])
            else:
                todo.append(i)
        if todo:
            def journal(j: int, result: ChatResult) -> None:
                # called by the backend as each item completes, so an item finished before a crash is kept
                i = todo[j]
                if result.error is None:
                    with self._lock:
                        self._done[keys[i]] = result.model_dump(mode="json")
                    self.log.append({"key": keys[i], "result": result.model_dump(mode="json")})

            journaled = set()
            batch = [conversations[i] for i in todo]
            if self._per_call:
                fresh = self.inner.chat(batch, sampling, on_result=journal)
            else:
                with self._serial:
                    prev = getattr(self.inner, "on_result", None)
                    self.inner.on_result = journal
                    try:
                        fresh = self.inner.chat(batch, sampling)
                    finally:
                        self.inner.on_result = prev
            for j, i in enumerate(todo):
                r = fresh[j]
                out[i] = r
                self.meter.add(r)
                if r.error is None and keys[i] not in self._done:
                    journaled.add(i)
            # backends that do not call on_result: journal what came back now
            for i in sorted(journaled):
                self._done[keys[i]] = out[i].model_dump(mode="json")
                self.log.append({"key": keys[i], "result": self._done[keys[i]]})
        return [r for r in out if r is not None]

    def score(self, texts, *, attentions=False, prompt_lengths=None):
        return self.inner.score(texts, attentions=attentions, prompt_lengths=prompt_lengths)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def load(self) -> None:
        load = getattr(self.inner, "load", None)
        if load is not None:
            load()

    def tokenizer(self):
        return self.inner.tokenizer()

    @property
    def context_length(self):
        return self.inner.context_length

    def close(self) -> None:
        self.inner.close()
