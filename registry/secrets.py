"""Secrets never reach a file, log or card: values of secret-looking env vars are masked in any text."""

from __future__ import annotations

import logging
import os
import re

_SECRET_NAME = re.compile(r"API_KEY|_KEY$|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_EXTRA_NAMES: set[str] = set()


def register_secret_env(name: str) -> None:
    """Treat the env var ``name`` as a secret too (e.g. a zoo entry's ``api_key_env``)."""
    _EXTRA_NAMES.add(name)


def secret_values() -> list[str]:
    vals = [v for k, v in os.environ.items()
            if (_SECRET_NAME.search(k) or k in _EXTRA_NAMES) and v and len(v) >= 6]
    return sorted(set(vals), key=len, reverse=True)


def redact(text: str) -> str:
    for v in secret_values():
        if v in text:
            text = text.replace(v, "***")
    return text


class RedactingFilter(logging.Filter):
    """Masks secret values in every log record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True
