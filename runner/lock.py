"""``recipe.lock.yaml``: the run as it really ran — defaults filled in, models pinned, versions, hashes.

The lockfile is itself a recipe (plus a ``lock:`` section), so ``recipe run recipe.lock.yaml`` repeats the
run; relative paths keep working because ``lock.recipe_dir`` points back at the recipe's folder. The
``lock:`` section also records every installed distribution and the torch build (``runner.environment``);
replaying the lockfile warns, naming the packages, where the environment differs.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import yaml

from registry.secrets import redact
from runner.environment import environment
from runner.fingerprint import relative_to, text_hash
from runner.folders import StageFolders
from runner.paths import is_path_field, resolve_one


def build_lock(folders: StageFolders, model_pins: dict[str, dict]) -> dict[str, Any]:
    """The lockfile of a run: ``model_pins`` are the models it opened (``ModelManager.pins``)."""
    loaded = folders.loaded
    recipe = loaded.recipe
    fps = folders.fingerprints()
    stages = {}
    for s in loaded.order:
        spec = recipe.stages[s].model_dump(mode="json", exclude_defaults=False)
        comp = loaded.components[s]
        params = comp.params.model_dump(mode="json")
        fields = comp.Params.model_fields
        for k in params:  # paths relative to the recipe folder, so the lock works in another checkout
            if k in fields and is_path_field(k, fields[k].annotation):
                params[k] = relative_to(params[k], loaded.base_dir)
        spec["params"] = params
        stages[s] = spec
    models: dict[str, Any] = {}
    for role in recipe.models:
        spec = recipe.model_spec(role)
        models[role] = spec.model_dump(mode="json")
    pinned: dict[str, dict] = {}
    refs = {b.ref for bs in loaded.bindings.values() for b in bs.values() if b.kind == "zoo"}
    for ref in sorted(refs):
        entry = None
        try:
            entry = folders.zoo.get(ref)
        except KeyError:
            pass
        pinned[ref] = {"source": entry.source if entry else ref, "pin": folders.zoo.pin(ref)}
    pinned.update({k: v for k, v in model_pins.items() if v.get("pin")})
    lock_dir = folders.root
    env = environment()
    data = {
        "recipe": recipe.recipe,
        "description": recipe.description,
        "seed": recipe.seed,
        "max_failed": recipe.max_failed,
        "zoo": [relative_to(resolve_one(z, loaded.base_dir), loaded.base_dir) for z in recipe.zoo],
        "models": models,
        "stages": stages,
        "publish": recipe.publish.model_dump(mode="json") if recipe.publish else None,
        "lock": {
            # relative to the recipe folder: no absolute path of this machine goes into a published lockfile
            "recipe_file": os.path.relpath(loaded.path.resolve(), loaded.base_dir),
            "recipe_dir": os.path.relpath(loaded.base_dir, lock_dir),
            "profile": loaded.profile,
            "models": pinned,
            "fingerprints": fps,
            "prompts": {s: {k: text_hash(v) for k, v in loaded.components[s].prompt_texts().items()}
                        for s in loaded.order if loaded.components[s].prompt_texts()},
            "stage_seeds": {s: folders.seed(s) for s in loaded.order},
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": env["torch"],
            "packages": env["packages"],  # every installed distribution (see runner.environment)
        },
    }
    if data["publish"] is None:
        del data["publish"]
    return data


def dump_lock(data: dict[str, Any]) -> str:
    header = "# Written by `recipe run`. Reproduce with: recipe run recipe.lock.yaml\n"
    return redact(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))
