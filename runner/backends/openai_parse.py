"""Reading an OpenAI-compatible chat response: choices, log-probabilities, Retry-After, error texts."""

from __future__ import annotations

import time
from typing import Any

from runner.backends.base import Choice, TokenLogprob
from runner.backends.jsonhttp import Response


class _Malformed(Exception):
    """A response body that is not a usable chat completion."""


class _ContentFiltered(Exception):
    """The endpoint refused the content; retrying will not help."""


def _choice(choice: Any) -> Choice:
    """One choice of a chat.completion (``KeyError``/``TypeError`` when it is not one)."""
    content = choice["message"].get("content")
    finish = choice.get("finish_reason")
    if content is None:
        if finish == "content_filter":
            raise _ContentFiltered()
        content = ""
    if not isinstance(content, str):
        raise _Malformed(f"message content is a {type(content).__name__}, not text")
    return Choice(text=content, finish_reason=finish, logprobs=_logprobs(choice.get("logprobs")))


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (a number of seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    import email.utils

    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _error_text(response: Response) -> str:
    """The error message of an OpenAI-style error body, else the body's text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
        if isinstance(inner, str):
            return inner[:500]
    return response.text().strip()[:500] or "(no body)"


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    content = raw.get("content") if isinstance(raw, dict) else None
    if not content:
        return None
    return [
        TokenLogprob(
            token=item["token"],
            logprob=item["logprob"],
            top={t["token"]: t["logprob"] for t in (item.get("top_logprobs") or [])},
        )
        for item in content
    ]
