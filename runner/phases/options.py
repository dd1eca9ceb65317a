"""Phase 4: each model role's ``backend`` and ``options``, checked against the options model of the
backend that will serve it (``runner.backends.options``), merged with the zoo entry's own values exactly
as at run time. A misspelled option gets a did-you-mean, also among the other backends' options.

``check_formats`` (run once the stages' models are bound) checks that a stage asking for its reply
formats to be enforced (``constrained: true``) runs on a model that can enforce them: the local backends
enforce every kind, an API endpoint only the kinds it declares (``structured_outputs``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from components.base import Component
from registry.suggest import did_you_mean, suggestion
from runner.backends.options import OPTIONS, settings_for
from runner.errors import Problem
from runner.schema import ModelSpec
from runner.schema_errors import problem_for


def check_options(roles: dict[str, ModelSpec], models_raw: dict[str, Any], zoo: Any) -> list[Problem]:
    """Problems with the roles' backends and options. A role whose model cannot be resolved (an unknown
    name, reported by the models phase) is skipped."""
    problems: list[Problem] = []
    for role, spec in roles.items():
        if spec.backend is not None and spec.backend not in OPTIONS:
            problems.append(Problem(("models", role, "backend"), f"unknown backend {spec.backend!r}"
                                    + (suggestion(spec.backend, OPTIONS) or f" (backends: {', '.join(OPTIONS)})")))
            continue
        model = resolved_model(zoo, spec.name)
        if model is None:
            continue
        backend = spec.backend or model.backend
        if backend not in OPTIONS:
            continue  # a zoo entry's own serving.backend; opening the model reports it
        try:
            settings_for(model, spec.options, backend=backend)
        except ValidationError as e:
            for err in e.errors():
                problems.append(_problem(err, role, spec, backend, isinstance(models_raw.get(role), str)))
    return problems


def check_formats(components: dict[str, Component], bindings: dict[str, Any], zoo: Any) -> list[Problem]:
    """Problems with stages whose ``constrained`` param is true while the model writing their replies
    (the first chat slot) cannot enforce the kinds of format they declare (``reply_formats``)."""
    problems: list[Problem] = []
    for name, comp in components.items():
        if not comp.reply_formats or getattr(comp.params, "constrained", None) is not True:
            continue
        binding = next((b for b in bindings.get(name, {}).values() if b.slot_kind == "chat"), None)
        if binding is None or binding.kind != "zoo":
            continue  # a trained stage's model runs on a local backend
        model = resolved_model(zoo, binding.ref)
        if model is None:
            continue
        backend = binding.backend or model.backend
        if backend != "openai":
            continue  # the local backends enforce every kind
        try:
            declared = settings_for(model, binding.options, backend=backend).structured_outputs
        except ValidationError:
            continue  # reported by check_options
        missing = sorted({k for k in comp.reply_formats.values() if k not in declared})
        if missing:
            replies = ", ".join(r for r, k in comp.reply_formats.items() if k in missing)
            problems.append(Problem(
                ("stages", name, "params", "constrained"),
                f"{binding.ref!r} (an API endpoint) cannot enforce the {' and '.join(missing)} format of "
                f"this stage's replies ({replies}): it declares "
                f"{', '.join(declared) or 'no'} structured outputs; set the model's `structured_outputs` "
                "option if the endpoint supports them (vLLM, recipe serve), or constrained: false"))
    return problems


def resolved_model(zoo: Any, name: str) -> Any:
    """The model as the run would open it, without pulling anything; None when it cannot be resolved."""
    if zoo is None:
        return None
    try:
        return zoo.resolve(name, pull=False)
    except Exception:  # unknown names and bad URIs are the models phase's to report
        return None


def _problem(err: Any, role: str, spec: ModelSpec, backend: str, plain_name: bool) -> Problem:
    key = str(err["loc"][0]) if err["loc"] else ""
    if key in spec.options:
        where = ("models", role, "options")
        if err["type"] == "extra_forbidden":
            return Problem(where + (key,), unknown_option(key, backend, spec.name), at_key=True)
        return problem_for(err, OPTIONS[backend], where)
    # a value the zoo entry gives (its serving or api block), not the recipe
    found = problem_for(err, OPTIONS[backend], ())
    return Problem(("models", role) + (() if plain_name else ("name",)),
                   f"zoo entry {spec.name!r}, {found.dotted()}: {found.message} (for the {backend} backend)")


def unknown_option(key: str, backend: str, model: str) -> str:
    """Why ``key`` is not an option of ``backend``, with a did-you-mean (among its own options first)."""
    own = list(OPTIONS[backend].model_fields)
    hint = suggestion(key, own)
    if hint:
        return f"unknown option {key!r} for the {backend} backend{hint}"
    listed = ", ".join(own) if len(own) <= 12 else f"{', '.join(own[:12])}, … ({len(own)} in all)"
    runs_on = f"{model!r} runs on {backend}, whose options are {listed}"
    takers = [b for b, cls in OPTIONS.items() if key in cls.model_fields]
    if takers:
        return f"{key!r} is an option of the {_backends(takers)}, but {runs_on}"
    elsewhere = {name for b, cls in OPTIONS.items() if b != backend for name in cls.model_fields}
    hits = did_you_mean(key, elsewhere)
    if hits:
        takers = [b for b, cls in OPTIONS.items() if hits[0] in cls.model_fields]
        return (f"unknown option {key!r} — did you mean {hits[0]!r}? ({hits[0]!r} is an option of the "
                f"{_backends(takers)}; {runs_on})")
    return f"unknown option {key!r} for the {backend} backend ({runs_on})"


def _backends(names: list[str]) -> str:
    return " and ".join(names) + (" backends" if len(names) > 1 else " backend")
