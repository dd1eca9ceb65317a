"""Profiles and command-line overrides: deep merge, and typed ``a.b.c=value`` assignments."""

from __future__ import annotations

import copy
import re
from typing import Any


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` wins; dicts merge key by key, everything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


_OVERRIDE = re.compile(r"^([A-Za-z0-9_\-.]+)=(.*)$", re.DOTALL)


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``a.b.c=value`` → (("a","b","c"), value) with the value read as YAML (so 3 → int, true → bool)."""
    import yaml

    m = _OVERRIDE.match(text)
    if not m:
        raise ValueError(f"override {text!r} is not of the form key.path=value")
    path = tuple(m.group(1).split("."))
    raw = m.group(2)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string; a number is what anyone means
        try:
            value = float(value) if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value) else value
        except ValueError:
            pass
    return path, value


def apply_override(data: dict, path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
