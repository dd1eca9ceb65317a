"""A trained model folder made portable for publishing: it loads on any machine, with no path of this one.

A trained folder (``registry.model_folder``) points at its base by a local path: ``recipe_model.json``
holds ``base_path`` and peft's ``adapter_config.json`` holds ``base_model_name_or_path``, both folders of
the machine that trained it. ``write_portable_model`` writes the published copy:

* an adapter over a model with a Hub id (an ``hf://`` source) stays an adapter, its
  ``adapter_config.json`` naming the base by that id and its commit (``revision``), so
  ``AutoPeftModelForCausalLM.from_pretrained`` finds the base on the Hub or in the Hugging Face cache;
* an adapter over a model without one (``random://``, ``pypi://``, ``file://``, a model trained by an
  earlier stage) is merged into its base and published as full weights;
* ``recipe_model.json`` keeps what was trained and how, without ``base_path`` and without a ``file://``
  source.

``leaked_paths`` finds text files that still hold one of the machine's folders (the run folder, the zoo
cache, the Hugging Face cache, the home folder), so ``publish`` can warn about them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from registry.model_folder import TRAINED_MODEL_FILE, TrainedModel, read_trained, write_trained

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
SKIPPED = ("README.md", TRAINED_MODEL_FILE)  # the card is publish's; the metadata is rewritten
PORTABLE_SCHEMES = ("hf://", "random://", "pypi://")  # sources that name a model on any machine
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class PortableModel:
    """What was published of a trained folder, for its card."""

    info: TrainedModel  # the published metadata
    adapter: bool  # published as a PEFT adapter (else full weights)
    merged: bool  # an adapter merged into its base at publishing (its base has no Hub id)
    base_hub_id: str | None  # the base model's Hub id, when it has one


def hub_id(source: str | None) -> str | None:
    """``org/name`` of an ``hf://org/name[@revision]`` source; None for any other source."""
    if source and source.startswith("hf://"):
        return source[len("hf://"):].split("@", 1)[0] or None
    return None


def hub_revision(source: str | None, pin: str | None) -> str | None:
    """The commit of a Hub model: the source's ``@revision``, else its pin when that is a commit sha."""
    if source and source.startswith("hf://") and "@" in source:
        return source.split("@", 1)[1] or None
    return pin if pin and _SHA.match(pin) else None


def write_portable_model(src: Path, dest: Path, copy: Callable[[Path, Path], None]) -> PortableModel:
    """Write the published copy of the trained folder ``src`` into ``dest`` (see the module docstring).

    ``copy(src_file, dest_file)`` copies one file (publish masks secrets in text files on the way)."""
    info = read_trained(src) or TrainedModel()
    base_hub = hub_id(info.base_source)
    merge = info.adapter and base_hub is None
    skip = set(SKIPPED) | (set(ADAPTER_FILES) if merge else set())
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = f.relative_to(src)
        if rel.as_posix() not in skip:
            copy(f, dest / rel)
    if merge:
        _save_merged(src, dest)
    elif info.adapter:
        rewrite_adapter_config(dest / "adapter_config.json", base_hub, hub_revision(info.base_source, info.base_pin))
    published = _portable_info(info, adapter=info.adapter and not merge)
    write_trained(dest, published)
    return PortableModel(info=published, adapter=published.adapter, merged=merge, base_hub_id=base_hub)


def rewrite_adapter_config(path: Path, base_hub_id: str, revision: str | None) -> None:
    """Point a peft ``adapter_config.json`` at its base by Hub id (and commit), not by a local folder."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_hub_id
    config["revision"] = revision
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _portable_info(info: TrainedModel, *, adapter: bool) -> TrainedModel:
    """The metadata as published: no local folder, no ``file://`` source; a Hub source carries its commit."""
    source = info.base_source
    if source and not source.startswith(PORTABLE_SCHEMES):
        source = None
    elif source and source.startswith("hf://") and "@" not in source:
        revision = hub_revision(source, info.base_pin)
        source = f"{source}@{revision}" if revision else source
    return info.model_copy(update={"base_source": source, "base_path": None, "adapter": adapter})


def _save_merged(src: Path, dest: Path) -> None:
    """The adapter in ``src`` merged into its base, saved as full weights in ``dest`` (in the base's dtype)."""
    from registry.model_folder import load_config, load_weights

    config = load_config(src)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    model = load_weights(src, dtype=dtype)
    model.save_pretrained(str(dest), safe_serialization=True)
    (dest / "README.md").unlink(missing_ok=True)


def machine_paths(*extra: Path | None) -> list[str]:
    """Folders of this machine that must not appear in a published file: ``extra`` (the run folder, the
    recipe's folder), the zoo cache, the Hugging Face cache and the home folder (when it is at least two
    levels deep, so ``/root`` does not match every path under it by accident)."""
    from registry.cache import zoo_home

    roots: list[Path] = [p for p in extra if p is not None]
    roots.append(zoo_home())
    try:
        from huggingface_hub import constants

        roots.append(Path(constants.HF_HUB_CACHE))
    except Exception:  # an old huggingface_hub: the home folder still covers its default cache
        pass
    home = Path.home()
    if len(home.parts) > 2:
        roots.append(home)
    out = set()
    for r in roots:
        for p in (r.expanduser(), r.expanduser().resolve()):
            if len(p.parts) > 1:
                out.add(str(p))
    return sorted(out, key=len, reverse=True)


def leaked_paths(folder: Path, roots: Iterable[str], text_suffixes: Iterable[str]) -> list[str]:
    """``file: path`` for each text file under ``folder`` holding one of ``roots``."""
    suffixes = set(text_suffixes)
    found = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        text = f.read_text(encoding="utf-8", errors="replace")
        hit = next((r for r in roots if r in text), None)
        if hit:
            found.append(f"{f.relative_to(folder).as_posix()}: {hit}")
    return found

