"""Phase 5: each stage's component (by type name) and its params, with relative paths made absolute and
overridden text kept as typed for fields that want strings."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from components.base import Component
from registry import components as registry
from runner.errors import Problem
from runner.overrides import as_strings, wants_strings
from runner.paths import resolve_paths
from runner.schema import StageSpec
from runner.schema_errors import pydantic_problems


def build_components(stages: dict[str, StageSpec], raw_overrides: dict[tuple, str], base_dir: Path
                     ) -> tuple[dict[str, type[Component]], dict[str, Component], list[Problem]]:
    """The component class of each stage whose type is known, an instance for each whose params
    validate, and the problems with types and params."""
    problems: list[Problem] = []
    classes: dict[str, type[Component]] = {}
    comps: dict[str, Component] = {}
    for name, spec in stages.items():
        try:
            cls = registry.get(spec.type)
        except registry.UnknownComponent as e:
            msg = e.reason or f"unknown component {spec.type!r}" + (
                (" — did you mean " + " or ".join(repr(s) for s in e.suggestions) + "?") if e.suggestions
                else " (see `recipe components`)")
            problems.append(Problem(("stages", name, "type"), msg))
            continue
        classes[name] = cls
        params = dict(spec.params)
        for key, raw in raw_overrides.items():  # `system=Yes` stays the string "Yes" for a str field
            if len(key) == 4 and key[:2] == ("stages", name) and key[2] == "params" and key[3] in params:
                f = cls.Params.model_fields.get(key[3])
                if f is not None and wants_strings(f.annotation) and not isinstance(params[key[3]], str):
                    params[key[3]] = as_strings(raw)
        params = resolve_paths(params, cls.Params, base_dir)
        try:
            comps[name] = cls(cls.Params.model_validate(params))
        except ValidationError as e:
            problems += pydantic_problems(e, cls.Params, ("stages", name, "params"))
    return classes, comps, problems
