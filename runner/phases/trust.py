"""Phase 0 (only without ``--trust-code``): a recipe that is not one of the user's own files may not name code.

A recipe names code when a stage's ``type`` is not a built-in component (``module:Class``, or an installed
plugin's entry point: either runs in this process as soon as it is imported) or when a model it uses
sets ``trust_remote_code`` (the model repository's own Python code runs when it loads). Such a recipe
is refused, with each place named, unless it is the user's own file or the user passes ``--trust-code``.

A recipe (or lockfile) is the user's own when its real path (symlinks followed) lies inside the current
working directory, not inside a hidden folder there (``.cache/…``, where downloads land), and not inside a
folder downloaded from the Hugging Face Hub (``hf download --local-dir`` leaves ``.cache/huggingface`` in
it). So a published card's reproduce command (``recipe run recipe.lock.yaml`` in the downloaded folder),
a recipe in the Hub cache, or one given by a path outside the working directory needs ``--trust-code``;
a recipe copied by hand into the working directory counts as the user's own. This check runs before any
user module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import Problem
from runner.phases.options import resolved_model
from runner.schema import ModelSpec, StageSpec

FLAG = "--trust-code"


def not_own_reason(path: Path, cwd: Path | None = None) -> str | None:
    """Why ``path`` is not one of the user's own files (see the module docstring), or None when it is."""
    real = Path(path).resolve()
    here = (cwd or Path.cwd()).resolve()
    if not real.is_relative_to(here):
        return f"it lies outside the current directory {here}"
    inside = real.relative_to(here).parts[:-1]
    hidden = next((part for part in inside if part.startswith(".")), None)
    if hidden:
        return f"it lies in the hidden folder {hidden!r} (a cache or download)"
    for folder in [here, *(here.joinpath(*inside[: i + 1]) for i in range(len(inside)))]:
        if (folder / ".cache" / "huggingface").is_dir():
            return f"it was downloaded from the Hugging Face Hub into {folder}"
    return None


def _names_remote_code(model: Any, options: dict[str, Any]) -> bool:
    settings = {**(getattr(model, "serving", None) or {}), **options}
    return bool(settings.get("trust_remote_code"))


def check_trust(path: Path, stages: dict[str, StageSpec], roles: dict[str, ModelSpec], zoo: Any,
                builtin_types: set[str], plugin_types: set[str]) -> tuple[list[Problem], set[str]]:
    """Problems for every place a recipe that is not the user's own names code, and the stages whose
    component must not be imported. Nothing when the recipe is the user's own."""
    reason = not_own_reason(path)
    if reason is None:
        return [], set()
    why = f"this recipe is not one of your own files ({reason}): read it, then run again with {FLAG}"
    problems: list[Problem] = []
    refused: set[str] = set()
    for name, spec in stages.items():
        if spec.type not in builtin_types and (":" in spec.type or spec.type in plugin_types):
            refused.add(name)
            problems.append(Problem(("stages", name, "type"), f"{spec.type!r} is code that would run in this "
                                    f"process, and {why}"))
    looked_up = {role: (spec.name, spec.options, ("models", role)) for role, spec in roles.items()}
    for name, spec in stages.items():
        for slot, ref in [("model", spec.model), *((("models", s), r) for s, r in spec.models.items())]:
            if ref and ref not in roles and ref not in stages:
                where = ("stages", name, *((slot,) if isinstance(slot, str) else slot))
                looked_up.setdefault(f"{name}.{slot}", (ref, {}, where))
    for ref, options, where in looked_up.values():
        model = resolved_model(zoo, ref)
        if _names_remote_code(model, options):
            if "trust_remote_code" in options:  # the recipe's own option, else the zoo entry's serving
                where = (*where, "options", "trust_remote_code")
            problems.append(Problem(where, f"{ref!r} sets trust_remote_code (the model repository's code would "
                                    f"run), and {why}"))
    return problems, refused
