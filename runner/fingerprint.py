"""Content fingerprints: what a stage's output depends on, hashed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


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
                return hashlib.sha256(p.read_bytes()).hexdigest()
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
