"""Which params are paths, and resolving them relative to the recipe file."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runner.schema_errors import unwrap

URI_SCHEMES = ("hf://", "file://", "random://", "openai://", "pypi://")

_PATH_NAMES = re.compile(r"^(path|paths|file|files|dir|glob)$|_(path|paths|file|files|dir|glob)$")


def is_path_field(name: str, ann: Any) -> bool:
    if _PATH_NAMES.search(name):
        return True
    for a in unwrap(ann):
        if a is Path or typing.get_args(a) and any(x is Path for x in typing.get_args(a)):
            return True
    return False


def resolve_one(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not any(value.startswith(s) for s in URI_SCHEMES):
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (base / p))
    return value


def resolve_paths(params: dict[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    """Relative path params → absolute, relative to the recipe file."""
    out = dict(params)
    for name, f in model.model_fields.items():
        if name in out and is_path_field(name, f.annotation):
            v = out[name]
            out[name] = [resolve_one(x, base) for x in v] if isinstance(v, list) else resolve_one(v, base)
    return out
