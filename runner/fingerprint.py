"""Content fingerprints: what a stage's output depends on (params, input files, upstream stages, models,
prompts, seed), hashed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.paths import is_path_field

if TYPE_CHECKING:
    from registry.zoo import Zoo
    from runner.load import Binding, LoadedRecipe


def digest(obj: Any) -> str:
    """sha256 of canonical JSON."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_identity(path: str) -> Any:
    """What an input file contributes: content hash for files up to 64 MB, else size + mtime; folders by
    their files' names and sizes; None when it does not exist (a glob or an output path)."""
    p = Path(path)
    try:
        if p.is_file():
            st = p.stat()
            if st.st_size <= 64 << 20:
                h = hashlib.sha256()
                with open(p, "rb") as f:  # a chunk at a time: memory stays flat whatever the file's size
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                return h.hexdigest()
            return [st.st_size, st.st_mtime_ns]
        if p.is_dir():
            return sorted((str(f.relative_to(p)), f.stat().st_size) for f in p.rglob("*") if f.is_file())
    except OSError:
        return None
    return None


def files_identity(value: Any) -> Any:
    """``file_identity`` of a path param: one path, a glob (its sorted matches), or a list of either."""
    import glob

    if isinstance(value, list):
        return [files_identity(v) for v in value]
    if not isinstance(value, str):
        return None
    if any(ch in value for ch in "*?["):
        return [[m, file_identity(m)] for m in sorted(glob.glob(value, recursive=True))]
    return file_identity(value)


def relative_to(value: Any, base: Path) -> Any:
    """Absolute paths under ``base`` (or lists of them) written relative to it; anything else as is."""
    import os

    if isinstance(value, list):
        return [relative_to(v, base) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        rel = os.path.relpath(value, base)
        return value if rel.startswith("..") and not Path(value).is_relative_to(base.parent) else rel
    return value


def stage_seed(recipe_seed: int, stage: str) -> int:
    return int(digest([recipe_seed, stage])[:8], 16) & 0x7FFFFFFF


# backend options that change speed or spending, never outputs: left out of fingerprints
RUNTIME_OPTIONS = {"batch_size", "concurrency", "rpm", "tpm", "timeout_s", "max_retries", "budget_usd", "device",
                   "num_threads", "backoff_s", "backoff_max_s", "max_retry_after_s", "api_key_env",
                   "gpu_memory_utilization", "enable_prefix_caching"}


def model_identity(binding: Binding, zoo: Zoo, fingerprints: Mapping[str, str]) -> Any:
    """What a model contributes to a fingerprint: its source, what pins it, and the entry's settings
    that change outputs (chat template, serving options, API model) — never speed-only options.
    ``fingerprints`` holds (at least) the stage that trained the model, for a model bound to a stage."""
    opts = {k: v for k, v in binding.options.items() if k not in RUNTIME_OPTIONS}
    if binding.kind == "stage":
        return ["stage", fingerprints[binding.ref]]
    source, settings = binding.ref, None
    try:
        entry = zoo.get(binding.ref)
        source = entry.source
        api = entry.api.model_dump(mode="json") if entry.api else {}
        settings = {
            "chat_template": text_hash(entry.chat_template) if entry.chat_template else None,
            "serving": {k: v for k, v in (entry.serving or {}).items() if k not in RUNTIME_OPTIONS},
            "api": {k: api.get(k) for k in ("model_id", "base_url")},
        }
    except KeyError:
        pass
    pin = None
    if source.startswith("file://"):
        # a local folder (e.g. a model published by an earlier recipe) is pinned by its content now,
        # so retraining into the same folder reruns what used it
        try:
            pin = zoo.resolve(binding.ref, pull=True).pin
        except Exception:  # a missing folder fails when the stage opens it, with a clear error
            pin = None
    return ["zoo", source, pin, settings, binding.backend, opts]


def fingerprinted(field: Any) -> bool:
    """Whether a component param counts in the fingerprint: all do but those marked
    ``json_schema_extra={"fingerprint": False}`` (how a run is watched, e.g. experiment trackers)."""
    extra = getattr(field, "json_schema_extra", None)
    return not (isinstance(extra, dict) and extra.get("fingerprint") is False)


def stage_fingerprints(loaded: LoadedRecipe, zoo: Zoo, revision: Callable[[str, str], int]) -> dict[str, str]:
    """Every stage's fingerprint, in dependency order, computed without loading any model.

    ``revision(stage, fingerprint)`` says how many times a finished stage was re-run in place
    (``--retry-failed``); it is part of the fingerprints downstream, so what read the old records runs
    again in a fresh folder."""
    fps: dict[str, str] = {}
    for s in loaded.order:
        comp = loaded.components[s]
        spec = loaded.recipe.stages[s]
        fields = comp.Params.model_fields
        params = {k: v for k, v in comp.params.model_dump(mode="json").items() if fingerprinted(fields.get(k))}
        path_keys = [k for k in params if k in fields and is_path_field(k, fields[k].annotation)]
        # a source stage (nothing connected upstream) depends on the files it reads; other stages'
        # path params are usually outputs, whose content must not change their own fingerprint
        files = {} if spec.inputs else {k: files_identity(params[k]) for k in path_keys}
        # paths relative to the recipe: moving the checkout keeps every fingerprint
        for k in path_keys:
            params[k] = relative_to(params[k], loaded.base_dir)
        fps[s] = digest({
            "type": comp.type, "version": comp.version, "params": params, "files": files,
            "inputs": {p: [fps[u], revision(u, fps[u])] for p, u in sorted(spec.inputs.items())},
            "models": {slot: model_identity(b, zoo, fps) for slot, b in loaded.bindings.get(s, {}).items()},
            "prompts": {k: text_hash(v) for k, v in comp.prompt_texts().items()},
            "seed": stage_seed(loaded.recipe.seed, s),
        })
    return fps
