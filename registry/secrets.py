"""Secrets never reach a file, log or card: values of secret-looking env vars are masked in any text.

A variable is secret when its name looks like one (``*_API_KEY``, ``*APIKEY``, ``*TOKEN*``, ``*AUTH*``...)
or when a recipe, zoo entry or backend names it as the place a key lives (``api_key_env: MY_VAR``), which
registers it (``register_secret_env``). Secrets written inline in a recipe or zoo file are found by
``inline_secrets`` so loading can refuse them.

>>> is_secret_key("api_key"), is_secret_key("hf_token"), is_secret_key("max_new_tokens"), is_secret_key("bos_token")
(True, True, False, False)
>>> inline_secrets({"models": {"g": {"options": {"api_key": "sk-1", "api_key_env": "K"}}}})
[('models', 'g', 'options', 'api_key')]
>>> sorted(secret_env_names({"api": {"api_key_env": "MY_KEY"}, "publish": {"token_env": "HUB"}, "x_env": "NOT",
...                          "models": {"m": "openai://gpt?base_url=http://h/v1&api_key_env=URI_KEY"}}))
['HUB', 'MY_KEY', 'URI_KEY']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from typing import Any

# env var names that hold secrets (AUTH, but not AUTHOR)
_SECRET_NAME = re.compile(r"API[_-]?KEY|ACCESS[_-]?KEY|_KEY$|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR)",
                          re.IGNORECASE)
# keys in a recipe or zoo file whose value would be a secret (``api_key: sk-...``); their ``*_env`` form
# names the variable instead. ``bos_token`` and friends are tokenizer settings, not secrets.
_SECRET_KEY = re.compile(
    r"(?:\w+[_-])?(?:api[_-]?key|access[_-]?key|secret(?:[_-]key)?|password|passwd|credentials?)"
    r"|(?:(?:hf|hub|api|access|auth|bearer|openai|github|gh|session)[_-]?)?token"
    r"|auth|authorization",
    re.IGNORECASE,
)
_EXTRA_NAMES: set[str] = set()


def register_secret_env(name: str) -> None:
    """Treat the env var ``name`` as a secret too (e.g. a zoo entry's ``api_key_env``)."""
    _EXTRA_NAMES.add(name)


def is_secret_key(key: str) -> bool:
    """Whether a key of a recipe or zoo file names a secret value (``api_key``, ``token``, ``password``...)."""
    return bool(_SECRET_KEY.fullmatch(key))


def _walk(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, str, Any]]:
    """(path of the key, key, value) for every mapping entry below ``data``."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield path + (k,), str(k), v
            yield from _walk(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, path + (i,))


def inline_secrets(data: Any) -> list[tuple]:
    """Key paths below ``data`` that hold a secret written inline (a non-empty text under a secret key)."""
    return [p for p, k, v in _walk(data) if is_secret_key(k) and isinstance(v, str) and v.strip()]


_URI_ENV = re.compile(r"[?&](\w+)_env=([^&#\s]+)")


def secret_env_names(data: Any) -> set[str]:
    """Env var names that ``data`` says hold secrets: the values of ``api_key_env``, ``token_env``... keys,
    also in a source URI's query (``openai://m?api_key_env=MY_KEY``)."""
    names = set()
    for _, k, v in _walk({"": data}):
        if not isinstance(v, str) or not v:
            continue
        if k.endswith("_env") and is_secret_key(k[:-4]):
            names.add(v)
        names.update(name for key, name in _URI_ENV.findall(v) if is_secret_key(key))
    return names


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
