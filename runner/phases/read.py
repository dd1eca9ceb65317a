"""Phase 1: the recipe's data as the run will see it — the YAML (with positions), the profile overlaid on
it, then the command-line overrides."""

from __future__ import annotations

from pathlib import Path

from registry.suggest import suggestion
from registry.yamlpos import Pos, SourceMap, YamlSyntaxError, load_yaml
from runner.errors import Problem, RecipeError
from runner.overrides import apply_override, deep_merge, parse_override


def read_recipe_data(path: Path, profile: str | None, overrides: list[str],
                     raw_overrides: dict[tuple, str] | None = None) -> tuple[dict, SourceMap, list[Problem]]:
    """The recipe's data with the profile and overrides applied; ``raw_overrides`` collects each override's
    text by key path (so a field that wants a string can take it as typed). A file that cannot be read
    as a mapping raises RecipeError: nothing else can be checked then."""
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
        data, found = _overlay_profile(data, smap, profile, path)
        problems += found
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


def _overlay_profile(data: dict, smap: SourceMap, profile: str, path: Path) -> tuple[dict, list[Problem]]:
    """``data`` with the named profile deep-merged over it; ``smap`` is updated in place so problems in
    the profile point into the profile."""
    profiles = data.get("profiles") or {}
    if profile not in profiles:
        return data, [Problem(("profiles",), f"no profile {profile!r}"
                              + (suggestion(profile, profiles) or f" (profiles: {', '.join(profiles) or 'none'})"),
                              pos=smap.find(("profiles",), key=True) or Pos(str(path), 0, 0))]
    if not isinstance(profiles[profile], dict):
        return data, [Problem(("profiles", profile), "a profile is a mapping overlaid on the recipe")]
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
    return data, []


def base_dir_of(path: Path, data: dict) -> Path:
    """Where relative paths in the recipe point from: the recipe's folder, or for a lockfile the folder
    of the recipe it was written for."""
    base_dir = path.resolve().parent
    lock = data.get("lock") if isinstance(data.get("lock"), dict) else None
    if lock and lock.get("recipe_dir"):
        base_dir = (path.resolve().parent / lock["recipe_dir"]).resolve()
    return base_dir
