"""Shared bits of the runner tests: a counting LLM and a recipe writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.backends.base import LLM, ChatResult, Sampling, Usage


class CountingLLM(LLM):
    """Answers ``echo: <last user message>``; logs each completed generation to ``log_path`` (one line
    per call, written after the result was handed to ``on_result``, as real backends do)."""

    backend = "counting"

    def __init__(self, log_path: Path | None = None) -> None:
        self.name = "counting"
        self.log_path = log_path
        self.on_result = None
        self.generated = 0

    def chat(self, conversations, sampling: Sampling):
        out = []
        for i, conv in enumerate(conversations):
            text = "echo: " + conv[-1]["content"]
            r = ChatResult(text=text, usage=Usage(prompt_tokens=len(conv[-1]["content"].split()),
                                                  completion_tokens=len(text.split()), cost_usd=0.001))
            if self.on_result:
                self.on_result(i, r)
            self.generated += 1
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(conv[-1]["content"]) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            out.append(r)
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class PerCallLLM(CountingLLM):
    """Takes the completion callback per call, like the real backends, and completes items out of
    order with small sleeps, so concurrent batches interleave."""

    def chat(self, conversations, sampling: Sampling, on_result=None):
        import random
        import time

        order = list(range(len(conversations)))
        random.Random(len(conversations[0][-1]["content"])).shuffle(order)
        out: list = [None] * len(conversations)
        for i in order:
            time.sleep(0.002)
            text = "echo: " + conversations[i][-1]["content"]
            out[i] = ChatResult(text=text, usage=Usage(completion_tokens=len(text.split())))
            # without a per-call callback the shared attribute is read as each item completes
            report = on_result if on_result is not None else self.on_result
            if report:
                report(i, out[i])
            self.generated += 1
        return out
