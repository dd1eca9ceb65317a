"""Pydantic validation errors → recipe problems, with did-you-mean for unknown keys."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from registry.suggest import suggestion
from runner.errors import Problem

SAFE_NAME_PATTERN = "[A-Za-z0-9_][A-Za-z0-9_.-]*"  # runner.schema.SafeName


def unwrap(ann: Any) -> list[Any]:
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(ann) for a in unwrap(arg)]
    if origin is typing.Annotated:
        return unwrap(typing.get_args(ann)[0])
    return [ann]


def model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the dict at ``loc`` below ``model``."""
    cur: Any = model
    i = 0
    while i < len(loc):
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        f = cur.model_fields.get(str(loc[i]))
        if f is None:
            return None
        i += 1
        nxt = None
        for ann in unwrap(f.annotation):
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nxt = ann
                break
            origin = typing.get_origin(ann)
            if origin in (dict, list) and i < len(loc):
                inner = typing.get_args(ann)[-1]
                for a in unwrap(inner):
                    if isinstance(a, type) and issubclass(a, BaseModel):
                        nxt = a
                i += 1
                break
        if nxt is None:
            return None
        cur = nxt
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def pydantic_problems(err: ValidationError, model: type[BaseModel], prefix: tuple) -> list[Problem]:
    """Every error of ``err`` (raised by ``model``) as a problem under the key path ``prefix``."""
    return [problem_for(e, model, prefix) for e in err.errors()]


def problem_for(e: Any, model: type[BaseModel], prefix: tuple) -> Problem:
    """One pydantic error (an item of ``ValidationError.errors()``) as a problem: unknown keys point at the
    key, with a did-you-mean among the keys of the model that owns it."""
    loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x in ("str", "ModelSpec"))
                and not str(x).startswith("function-"))
    if e["type"] == "extra_forbidden":
        key = loc[-1]
        owner = model_at(model, loc[:-1])
        hint = suggestion(str(key), owner.model_fields) if owner else ""
        return Problem(prefix + loc, f"unknown key {key!r}{hint}", at_key=True)
    if e["type"] == "missing":
        return Problem(prefix + loc[:-1], f"missing required key {loc[-1]!r}")
    at_key = bool(loc) and loc[-1] == "[key]"  # a bad dict key (e.g. a stage name): point at the key
    if at_key:
        loc = loc[:-1]
    if e["type"] == "string_pattern_mismatch" and SAFE_NAME_PATTERN in str(e.get("ctx", {}).get("pattern")):
        return Problem(prefix + loc, f"{e.get('input')!r} is not a safe name: use letters, digits, _ . - "
                       "(not starting with a dot); it becomes a folder name", at_key=at_key)
    got = e.get("input")
    shown = f", got {got!r}" if isinstance(got, (str, int, float, bool)) else ""
    msg = e["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    return Problem(prefix + loc, f"{msg}{shown}", at_key=at_key)
