"""Phase 2: the recipe file format — the whole recipe, each stage spec and each model role on its own (so
one bad stage does not hide the others from the later phases)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from runner.errors import Problem
from runner.schema import ModelSpec, Recipe, StageSpec
from runner.schema_errors import pydantic_problems


@dataclass
class Specs:
    """What the schema phase read: the recipe (None when it does not validate), the stage specs and
    model roles that do validate, and the raw ``stages:`` / ``models:`` mappings."""

    recipe: Recipe | None
    stages: dict[str, StageSpec] = field(default_factory=dict)
    roles: dict[str, ModelSpec] = field(default_factory=dict)
    stages_raw: dict[str, Any] = field(default_factory=dict)
    models_raw: dict[str, Any] = field(default_factory=dict)


def check_schema(data: dict) -> tuple[Specs, list[Problem]]:
    """Validate ``data`` against the recipe format; every problem is reported through ``Recipe``, the
    per-stage and per-role parses only keep what is usable."""
    problems: list[Problem] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems += pydantic_problems(e, Recipe, ())
    specs = Specs(recipe)
    specs.stages_raw = data.get("stages") if isinstance(data.get("stages"), dict) else {}
    for name, raw in specs.stages_raw.items():
        try:
            specs.stages[name] = StageSpec.model_validate(raw)
        except ValidationError:
            pass  # already reported through Recipe
    specs.models_raw = data.get("models") if isinstance(data.get("models"), dict) else {}
    for role, m in specs.models_raw.items():
        try:
            specs.roles[role] = ModelSpec(name=m) if isinstance(m, str) else ModelSpec.model_validate(m)
        except ValidationError:
            pass
    return specs, problems
