"""Secrets never reach a file, log or card: values of secret-looking env vars are masked in any text."""

from __future__ import annotations

import logging
import os
import re

_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$|^HF_TOKEN$", re.IGNORECASE)


def secret_values() -> list[str]:
    vals = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 6]
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
