"""Phase 3: the models — the zoo (with the recipe's extra zoo files), the zoo names the roles use, and
what each stage's model slots are bound to (a role, a zoo name or URI, or a trainer stage's output)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.base import Component
from registry.suggest import suggestion
from runner.errors import Problem, RecipeError
from runner.paths import URI_SCHEMES, resolve_one
from runner.schema import ModelSpec, StageSpec


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


def open_zoo(base_dir: Path, zoo_files: list[str]) -> tuple[Any, list[Problem]]:
    """The zoo with the recipe's extra files (relative to ``base_dir``); None when it cannot be loaded."""
    from registry.zoo import Zoo

    try:
        return Zoo.load([Path(resolve_one(z, base_dir)) for z in zoo_files]), []
    except RecipeError as e:
        return None, e.problems
    except Exception as e:  # a broken zoo file is a recipe problem too
        return None, [Problem(("zoo",), f"cannot load the model zoo: {e}")]


def zoo_problem(zoo: Any, name: str) -> str | None:
    """What is wrong with ``name`` as a zoo name or source URI, or None (also when there is no zoo)."""
    if "://" in name:
        from registry.sources import SourceError, parse_source

        try:
            parse_source(name)
        except SourceError as e:
            return str(e)
        return None
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


def check_roles(roles: dict[str, ModelSpec], models_raw: dict[str, Any], zoo: Any) -> list[Problem]:
    """Each role names a zoo model or a source URI."""
    problems = []
    for role, spec in roles.items():
        msg = zoo_problem(zoo, spec.name)
        if msg:
            problems.append(Problem(("models", role) + (() if isinstance(models_raw[role], str) else ("name",)), msg))
    return problems


def bind_models(stages: dict[str, StageSpec], classes: dict[str, type[Component]], roles: dict[str, ModelSpec],
                stage_names: list[str], zoo: Any) -> tuple[dict[str, dict[str, Binding]], dict[str, list[str]],
                                                           list[Problem]]:
    """Each stage's slot → binding, the trainer stages each stage takes a model from (its extra
    dependencies), and the problems: unknown slots and references, missing models, a stage without a
    model, an API model where weights are needed."""
    problems: list[Problem] = []
    bindings: dict[str, dict[str, Binding]] = {}
    model_deps: dict[str, list[str]] = {}
    for name, spec in stages.items():
        cls = classes.get(name)
        if cls is None:
            continue
        model_deps[name] = []
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
            elif ref in stage_names:
                up_cls = classes.get(ref)
                if up_cls is not None and not up_cls.produces_model:
                    problems.append(Problem(where, f"stage {ref!r} ({up_cls.type}) produces no model"))
                    continue
                if ref == name:
                    problems.append(Problem(where, "a stage cannot use its own model"))
                    continue
                model_deps[name].append(ref)
                b = Binding(slot, "stage", ref, slot_kind=ms.kind)
            else:
                msg = zoo_problem(zoo, ref)
                if msg and not any(ref.startswith(s) for s in URI_SCHEMES):
                    known = list(roles) + list(stage_names) + (zoo.names() if zoo else [])
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
            if ms.local and b.kind == "zoo" and _is_api(zoo, b):
                problems.append(Problem(where, f"slot {slot!r} needs a local model (transformers or vllm: "
                                        f"{spec.type} reads token log-probabilities); {b.ref!r} is an API model"))
            bound[slot] = b
        bindings[name] = bound
    return bindings, model_deps, problems


def _is_api(zoo: Any, b: Binding) -> bool:
    """Whether a zoo binding runs through the openai backend (an API model or an explicit backend)."""
    if b.backend is not None:
        return b.backend == "openai"
    if b.ref.startswith("openai://"):
        return True
    if zoo is None:
        return False
    try:
        entry = zoo.get(b.ref)
    except KeyError:
        return False
    return entry.source.startswith("openai://") or entry.serving.get("backend") == "openai"
