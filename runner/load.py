"""Load a recipe: YAML with positions → profile → overrides → schema → components, models, DAG.

Everything is checked before any model loads and every problem is reported at once
(``file:line:col: key.path: message``), with did-you-mean suggestions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from components.base import Component, Fields
from registry import components as registry
from registry.suggest import suggestion
from registry.yamlpos import Pos, SourceMap, YamlSyntaxError, load_yaml
from runner.errors import Problem, RecipeError
from runner.overrides import apply_override, as_strings, deep_merge, parse_override, wants_strings
from runner.paths import URI_SCHEMES, resolve_one, resolve_paths
from runner.schema import ModelSpec, Recipe, StageSpec
from runner.schema_errors import pydantic_problems

__all__ = ["Binding", "LoadedRecipe", "load_recipe", "parse_override", "deep_merge"]


@dataclass
class Binding:
    """What a component's model slot is bound to."""

    slot: str
    kind: str  # "zoo" (a zoo name or URI) | "stage" (a trainer's output)
    ref: str  # zoo name / URI, or stage name
    role: str | None = None
    backend: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    slot_kind: str = "chat"


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

    @property
    def name(self) -> str:
        return self.recipe.recipe


# ---------------------------------------------------------------------------------------------- loading

def read_recipe_data(path: Path, profile: str | None, overrides: list[str],
                     raw_overrides: dict[tuple, str] | None = None) -> tuple[dict, SourceMap, list[Problem]]:
    """The recipe's data with the profile and overrides applied; ``raw_overrides`` collects each override's
    text by key path (so a field that wants a string can take it as typed)."""
    problems: list[Problem] = []
    raw_overrides = {} if raw_overrides is None else raw_overrides
    try:
        data, smap = load_yaml(path)
    except YamlSyntaxError as e:
        raise RecipeError([Problem((), e.message, pos=e.pos)]) from None
    except OSError as e:
        raise RecipeError([Problem((), f"cannot read recipe: {e.strerror}", pos=Pos(str(path), 0, 0))]) from None
    if not isinstance(data, dict):
        raise RecipeError([Problem((), "a recipe is a mapping (recipe:, models:, stages:, …)")], smap)
    if profile:
        profiles = data.get("profiles") or {}
        if profile not in profiles:
            problems.append(Problem(("profiles",), f"no profile {profile!r}"
                                    + (suggestion(profile, profiles) or f" (profiles: {', '.join(profiles) or 'none'})"),
                                    pos=smap.find(("profiles",), key=True) or Pos(str(path), 0, 0)))
        elif not isinstance(profiles[profile], dict):
            problems.append(Problem(("profiles", profile), "a profile is a mapping overlaid on the recipe"))
        else:
            overlay = profiles[profile]
            base_stages = data.get("stages") if isinstance(data.get("stages"), dict) else {}
            over_stages = overlay.get("stages") if isinstance(overlay.get("stages"), dict) else {}
            for name, st in over_stages.items():
                # a profile that swaps a stage's component replaces the stage: the old params mean nothing
                if isinstance(st, dict) and "type" in st and isinstance(base_stages.get(name), dict) \
                        and base_stages[name].get("type") != st["type"]:
                    base_stages = {**base_stages, name: {}}
                    for table in (smap.values, smap.keys):
                        for p in [p for p in table if p[:2] == ("stages", name) and len(p) > 2]:
                            del table[p]
            data = deep_merge({**data, "stages": base_stages} if base_stages else data, overlay)
            smap.update(smap.move(("profiles", profile), ()))
    for i, text in enumerate(overrides):
        try:
            key, value = parse_override(text)
        except ValueError as e:
            problems.append(Problem((), str(e), pos=Pos(f"override #{i + 1}", 0, 0)))
            continue
        apply_override(data, key, value)
        raw_overrides[key] = text.split("=", 1)[1]
        here = Pos(f"override {text!r}", 0, 0)
        for table in (smap.values, smap.keys):
            for p in [p for p in table if p[: len(key)] == key]:
                table[p] = here
        smap.values[key] = here
        smap.keys[key] = here
    return data, smap, problems


def _zoo(recipe_dir: Path, zoo_files: list[str]):
    from registry.zoo import Zoo

    return Zoo.load([Path(resolve_one(z, recipe_dir)) for z in zoo_files])


def load_recipe(path: str | Path, profile: str | None = None, overrides: list[str] | None = None) -> LoadedRecipe:
    """Read and check a recipe or a lockfile. Raises RecipeError listing every problem."""
    path = Path(path)
    raw_overrides: dict[tuple, str] = {}
    data, smap, problems = read_recipe_data(path, profile, list(overrides or []), raw_overrides)
    base_dir = path.resolve().parent
    lock = data.get("lock") if isinstance(data.get("lock"), dict) else None
    if lock and lock.get("recipe_dir"):
        base_dir = (path.resolve().parent / lock["recipe_dir"]).resolve()

    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems += pydantic_problems(e, Recipe, ())

    stages_raw = data.get("stages") if isinstance(data.get("stages"), dict) else {}
    specs: dict[str, StageSpec] = {}
    for name, raw in stages_raw.items():
        try:
            specs[name] = StageSpec.model_validate(raw)
        except ValidationError:
            pass  # already reported through Recipe

    models_raw = data.get("models") if isinstance(data.get("models"), dict) else {}
    roles: dict[str, ModelSpec] = {}
    for role, m in models_raw.items():
        try:
            roles[role] = ModelSpec(name=m) if isinstance(m, str) else ModelSpec.model_validate(m)
        except ValidationError:
            pass

    zoo = None
    try:
        zoo = _zoo(base_dir, [z for z in data.get("zoo", []) or [] if isinstance(z, str)])
    except RecipeError as e:
        problems += e.problems
    except Exception as e:  # a broken zoo file is a recipe problem too
        problems.append(Problem(("zoo",), f"cannot load the model zoo: {e}"))

    def zoo_problem(name: str) -> str | None:
        if any(name.startswith(s) for s in URI_SCHEMES):
            return None
        if "://" in name:
            return f"unknown model source scheme in {name!r} (use one of {', '.join(URI_SCHEMES)})"
        if zoo is None:
            return None
        try:
            zoo.get(name)
            return None
        except KeyError as e:
            sugg = getattr(e, "suggestions", [])
            hint = (" — did you mean " + " or ".join(repr(s) for s in sugg) + "?") if sugg else \
                " (see `recipe zoo list`)"
            return f"unknown zoo model {name!r}{hint}"

    for role, spec in roles.items():
        msg = zoo_problem(spec.name)
        if msg:
            problems.append(Problem(("models", role) + (() if isinstance(models_raw[role], str) else ("name",)), msg))

    comps: dict[str, Component] = {}
    classes: dict[str, type[Component]] = {}
    for name, spec in specs.items():
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

    # inputs and the DAG
    deps: dict[str, list[str]] = {n: [] for n in stages_raw}
    for name, spec in specs.items():
        cls = classes.get(name)
        for port, up in spec.inputs.items():
            if cls is not None and port not in cls.inputs:
                problems.append(Problem(("stages", name, "inputs", port),
                                        f"{spec.type} has no input {port!r}"
                                        + (suggestion(port, cls.inputs) or
                                           f" (inputs: {', '.join(cls.inputs) or 'none'})"), at_key=True))
            if up not in stages_raw:
                problems.append(Problem(("stages", name, "inputs", port),
                                        f"no stage named {up!r}" + suggestion(up, stages_raw)))
            elif up == name:
                problems.append(Problem(("stages", name, "inputs", port), "a stage cannot read its own output"))
            else:
                deps[name].append(up)
        if cls is not None:
            for port in cls.inputs:
                if port not in spec.inputs and port not in cls.optional_inputs:
                    problems.append(Problem(("stages", name, "inputs"),
                                            f"{spec.type} needs input {port!r} (an upstream stage name)"))

    # model bindings
    bindings: dict[str, dict[str, Binding]] = {}
    for name, spec in specs.items():
        cls = classes.get(name)
        if cls is None:
            continue
        slots = list(cls.models)
        wanted: dict[str, tuple[str, tuple]] = {}
        if spec.model is not None:
            if not slots:
                problems.append(Problem(("stages", name, "model"), f"{spec.type} uses no model"))
            else:
                wanted[slots[0]] = (spec.model, ("stages", name, "model"))
        for slot, ref in spec.models.items():
            if slot not in cls.models:
                problems.append(Problem(("stages", name, "models", slot),
                                        f"{spec.type} has no model slot {slot!r}"
                                        + (suggestion(slot, slots) or f" (slots: {', '.join(slots) or 'none'})"),
                                        at_key=True))
                continue
            wanted[slot] = (ref, ("stages", name, "models", slot))
        bound: dict[str, Binding] = {}
        for slot, ms in cls.models.items():
            if slot in wanted:
                ref, where = wanted[slot]
            elif ms.default:
                ref, where = ms.default, ("stages", name, "type")
            elif ms.required:
                problems.append(Problem(("stages", name), f"{spec.type} needs a model for slot {slot!r} "
                                        f"(set `model:` or `models: {{{slot}: …}}`)", at_key=True))
                continue
            else:
                continue
            if ref in roles:
                m = roles[ref]
                b = Binding(slot, "zoo", m.name, role=ref, backend=m.backend, options=dict(m.options),
                            slot_kind=ms.kind)
            elif ref in stages_raw and ref not in roles:
                up_cls = classes.get(ref)
                if up_cls is not None and not up_cls.produces_model:
                    problems.append(Problem(where, f"stage {ref!r} ({up_cls.type}) produces no model"))
                    continue
                if ref == name:
                    problems.append(Problem(where, "a stage cannot use its own model"))
                    continue
                deps[name].append(ref)
                b = Binding(slot, "stage", ref, slot_kind=ms.kind)
            else:
                msg = zoo_problem(ref)
                if msg and not any(ref.startswith(s) for s in URI_SCHEMES):
                    known = list(roles) + list(stages_raw) + (zoo.names() if zoo else [])
                    hint = suggestion(ref, known)
                    msg = f"{ref!r} is not a model role, a trainer stage or a zoo model" + (
                        hint or " (roles: " + (", ".join(roles) or "none") + "; see `recipe zoo list`)")
                if msg:
                    problems.append(Problem(where, msg))
                    continue
                b = Binding(slot, "zoo", ref, slot_kind=ms.kind)
            if b.kind == "zoo" and zoo is not None and ms.kind == "weights":
                try:
                    if zoo.get(b.ref).source.startswith("openai://"):
                        problems.append(Problem(where, f"slot {slot!r} needs local weights; "
                                                f"{b.ref!r} is an API model"))
                except KeyError:
                    pass
            bound[slot] = b
        bindings[name] = bound

    # cycles
    order: list[str] = []
    state: dict[str, int] = {}
    cycle_found: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cyc = stack[stack.index(n):] + [n]
            cycle_found.append(cyc)
            return
        state[n] = 1
        for d in deps.get(n, []):
            visit(d, stack + [n])
        state[n] = 2
        order.append(n)

    for n in stages_raw:
        visit(n, [])
    for cyc in cycle_found:
        problems.append(Problem(("stages", cyc[0]), "dependency cycle: " + " → ".join(cyc)))

    # record fields between stages
    fields_of: dict[str, Fields | None] = {}
    if not cycle_found:
        for n in order:
            comp = comps.get(n)
            if comp is None:
                fields_of[n] = None
                continue
            own = comp.output_fields()
            pt = type(comp).passthrough
            spec = specs[n]
            if pt and pt in spec.inputs:
                up = fields_of.get(spec.inputs[pt])
                fields_of[n] = None if up is None else Fields(*(set(up) | set(own or ())))
            else:
                fields_of[n] = own
            for port, up in spec.inputs.items():
                need = type(comp).inputs.get(port)
                have = fields_of.get(up)
                if need and have is not None:
                    missing = sorted(set(need) - set(have))
                    if missing:
                        problems.append(Problem(
                            ("stages", n, "inputs", port),
                            f"{spec.type} needs record fields {missing} on {port!r}, but stage {up!r} "
                            f"({specs[up].type}) gives {sorted(have)}"))

    pub = data.get("publish")
    to = pub.get("to") if isinstance(pub, dict) else None
    if isinstance(to, str) and to:
        if to.startswith("hf://"):
            if not re.fullmatch(r"hf://[\w.\-]+/[\w.\-]+", to):
                problems.append(Problem(("publish", "to"), f"{to!r}: a Hub target is hf://org/name"))
        elif not to.startswith("file://"):
            problems.append(Problem(("publish", "to"), f"unknown publish target {to!r} (use hf://org/name "
                                    "or file://folder)"))
    if isinstance(pub, dict) and isinstance(pub.get("artifacts"), list):
        for i, a in enumerate(pub["artifacts"]):
            if a not in stages_raw:
                problems.append(Problem(("publish", "artifacts", i), f"no stage named {a!r}" + suggestion(str(a), stages_raw)))

    if problems or recipe is None:
        raise RecipeError(_dedupe(problems), smap)
    return LoadedRecipe(recipe=recipe, smap=smap, path=path, base_dir=base_dir, profile=profile,
                        components=comps, bindings=bindings, order=order, deps=deps, raw=data)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        k = (p.path, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out
