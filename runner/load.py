"""Load a recipe: YAML with positions → profile → overrides → schema → components, models, DAG.

Everything is checked before any model loads and every problem is reported at once
(``file:line:col: key.path: message``), with did-you-mean suggestions. The work is done by the phases
in ``runner.phases`` (each returns what it built and the problems it found); ``load_recipe`` runs them
in order and raises one RecipeError with every problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.base import Component
from registry import components as component_registry
from registry.yamlpos import SourceMap
from runner.errors import Problem, RecipeError
from runner.overrides import deep_merge, parse_override
from runner.phases.fields import check_templates, record_fields
from runner.phases.graph import check_publish, order_stages, wire_inputs
from runner.phases.models import Binding, bind_models, check_roles, open_zoo
from runner.phases.options import check_formats, check_options
from runner.phases.read import base_dir_of, read_recipe_data
from runner.phases.schema import check_schema
from runner.phases.secrets import check_secrets
from runner.phases.stages import build_components
from runner.phases.trust import check_trust
from runner.schema import Recipe

__all__ = ["Binding", "LoadedRecipe", "load_recipe", "parse_override", "deep_merge", "read_recipe_data"]

log = logging.getLogger("recipe.load")


@dataclass
class LoadedRecipe:
    recipe: Recipe
    smap: SourceMap
    path: Path  # the recipe (or lock) file
    base_dir: Path  # where relative paths in the recipe point from
    profile: str | None
    components: dict[str, Component]
    bindings: dict[str, dict[str, Binding]]
    order: list[str]  # stages in dependency order
    deps: dict[str, list[str]]  # stage → upstream stages (inputs and trained models)
    raw: dict[str, Any]  # the merged recipe data, params as written (not defaults)
    # a replayed lockfile: how this environment differs from the locked one (runner.environment), or None
    env_warning: str | None = None

    @property
    def name(self) -> str:
        return self.recipe.recipe


def load_recipe(path: str | Path, profile: str | None = None, overrides: list[str] | None = None,
                trust_code: bool = True) -> LoadedRecipe:
    """Read and check a recipe or a lockfile. Raises RecipeError listing every problem.

    ``trust_code=False`` (the command line without ``--trust-code``) refuses a recipe that is not one of
    the user's own files when it names code (``runner.phases.trust``), before any of that code is imported."""
    path = Path(path)
    raw_overrides: dict[tuple, str] = {}
    data, smap, problems = read_recipe_data(path, profile, list(overrides or []), raw_overrides)
    base_dir = base_dir_of(path, data)

    secrets = check_secrets(data)
    problems += secrets
    specs, found = check_schema(data)
    problems += found
    names = list(specs.stages_raw)

    zoo, found = open_zoo(base_dir, [z for z in data.get("zoo", []) or [] if isinstance(z, str)])
    problems += found
    problems += check_roles(specs.roles, specs.models_raw, zoo)
    problems += check_options(specs.roles, specs.models_raw, zoo)

    refused: set[str] = set()
    if not trust_code:
        found, refused = check_trust(path, specs.stages, specs.roles, zoo, set(component_registry.builtins()),
                                     set(component_registry.plugins()))
        problems += found
    classes, comps, found = build_components({n: s for n, s in specs.stages.items() if n not in refused},
                                             raw_overrides, base_dir)
    problems += found
    deps, found = wire_inputs(specs.stages, classes, names)
    problems += found
    bindings, model_deps, found = bind_models(specs.stages, classes, specs.roles, names, zoo)
    problems += found
    for name, ups in model_deps.items():
        deps[name] += ups
    problems += check_formats(comps, bindings, zoo)

    order, cycles = order_stages(deps, names)
    problems += cycles
    if not cycles:
        fields_of, found = record_fields(order, specs.stages, comps)
        problems += found
        problems += check_templates(specs.stages, comps, fields_of)

    problems += check_publish(data.get("publish"), names)

    # an inline secret is reported once, by the secrets phase, not again as an unknown key
    hidden = {p.path for p in secrets}
    problems = [p for p in problems if p.path not in hidden or p in secrets]
    if problems or specs.recipe is None:
        raise RecipeError(_dedupe(problems), smap)
    return LoadedRecipe(recipe=specs.recipe, smap=smap, path=path, base_dir=base_dir, profile=profile,
                        components=comps, bindings=bindings, order=order, deps=deps, raw=data,
                        env_warning=_environment_warning(path, data))


def _environment_warning(path: Path, data: dict[str, Any]) -> str | None:
    """For a lockfile: a warning naming the packages this environment has at other versions (logged)."""
    from runner.environment import difference_warning

    lock = data.get("lock")
    if not isinstance(lock, dict) or not isinstance(lock.get("packages"), dict):
        return None
    warning = difference_warning(lock)
    if warning:
        log.warning("%s: %s", path, warning)
    return warning


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        k = (p.path, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out
