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
    for depth, key in enumerate(path[:-1]):
        if isinstance(node.get(key), str) and path[:1] == ("models",) and depth == 1:
            node[key] = {"name": node[key]}  # `models.judge.options.x=…` on a role given as a plain name
        elif not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def as_strings(raw: str) -> Any:
    """The override's raw text read as YAML with every scalar a string (``[for, no]`` → ["for", "no"]),
    for fields that want strings, where YAML's own typing would turn ``no`` into False."""
    import yaml

    try:
        return yaml.load(raw, Loader=yaml.BaseLoader) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def wants_strings(annotation: Any) -> bool:
    """Whether a field takes text (str, a Literal of strings, or a list of those) and nothing typed."""
    import types
    import typing

    args = [a for a in (typing.get_args(annotation)
                        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation])
            if a is not type(None)]
    if not args:
        return False
    for a in args:
        origin = typing.get_origin(a)
        if a is str or (origin is typing.Literal and all(isinstance(x, str) for x in typing.get_args(a))):
            continue
        if origin is list and wants_strings(typing.get_args(a)[0] if typing.get_args(a) else Any):
            continue
        return False
    return True
