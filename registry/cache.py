"""The zoo cache on disk: where pulled models live, their pull records and file manifests.

Layout under ``zoo_home()`` (``$RECIPE_ZOO_HOME`` or ``~/.cache/recipe-zoo``)::

    zoo.yaml                  the user zoo (entries added by hand or by publishing to file://)
    models/<key>/pull.json    the pull record: source, local path, pin, per-file sha256 manifest
    models/<key>/model/       the model folder, for sources whose files the zoo builds itself
                              (pypi wheels, GGUF conversions, random models)
    tmp/<key>.<pid>.<n>/      a pull in progress; renamed onto models/<key> when complete

``<key>`` is a readable slug of the source URI plus 12 hex digits of its sha256. A pull is built in
``tmp/`` and renamed into place in one step, so a killed pull never leaves a half folder under
``models/``; leftovers of dead processes in ``tmp/`` are removed by the next pull of the same key.
Hugging Face snapshots stay in the Hugging Face cache (shared with other tools); their record points there.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from registry.atomic import atomic_write_text

RECORD_FILE = "pull.json"
MODEL_DIR = "model"
_CHUNK = 1 << 20
_counter = itertools.count()


def zoo_home() -> Path:
    """The zoo's cache and user-zoo folder: ``$RECIPE_ZOO_HOME``, else ``$XDG_CACHE_HOME/recipe-zoo``,
    else ``~/.cache/recipe-zoo``."""
    env = os.environ.get("RECIPE_ZOO_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return base / "recipe-zoo"


def cache_key(uri: str) -> str:
    """A folder name for a source URI: readable, and unique through a hash of the whole URI."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("://", 1)[-1]).strip("_.")[:60]
    return f"{readable}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def entry_dir(uri: str) -> Path:
    return zoo_home() / "models" / cache_key(uri)


class FileHash(BaseModel):
    """One file of a manifest. ``mtime_ns`` only lets an unchanged file skip rehashing (file:// pins)."""

    size: int
    sha256: str
    mtime_ns: int = 0


class PullRecord(BaseModel):
    """What a pull left behind; read without network or model loading (``is_pulled``, ``pin``)."""

    source: str = Field(description="The source URI that was pulled.")
    path: str | None = Field(default=None, description="Local model folder; None for API models.")
    pin: str | None = Field(default=None, description="What makes the pull reproducible (see Zoo.pin).")
    pulled_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    files: dict[str, FileHash] = Field(default_factory=dict, description="Relative path -> size, sha256.")
    info: dict[str, Any] = Field(default_factory=dict, description="Source-specific facts (wheel, GGUF).")


def _load_record(folder: Path) -> PullRecord | None:
    """The pull record in ``folder`` if its model files are still there (None when they were deleted)."""
    record_file = folder / RECORD_FILE
    if not record_file.is_file():
        return None
    record = PullRecord.model_validate_json(record_file.read_text())
    return record if record.path is None or Path(record.path).exists() else None


def read_record(uri: str) -> PullRecord | None:
    """The record of the last complete pull of ``uri``; None if never pulled or its files are gone."""
    return _load_record(entry_dir(uri))


def write_record(folder: Path, record: PullRecord) -> None:
    """Write ``pull.json`` into ``folder`` atomically (temp file + rename)."""
    atomic_write_text(folder / RECORD_FILE, record.model_dump_json(indent=2))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp(tmp_root: Path, key: str) -> None:
    """Remove leftovers of killed pulls of ``key`` (their process no longer exists)."""
    for leftover in tmp_root.glob(f"{key}.*"):
        parts = leftover.name[len(key) + 1 :].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_entry(uri: str) -> Iterator[Path]:
    """Build a cache entry in a temp folder; on success it is renamed onto ``models/<key>`` at once.

    On any exception (including KeyboardInterrupt) the temp folder is removed and nothing appears under
    ``models/``. If another process finished the same pull first, its entry is kept and ours dropped.
    """
    key = cache_key(uri)
    tmp_root = zoo_home() / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(tmp_root, key)
    tmp = tmp_root / f"{key}.{os.getpid()}.{next(_counter)}"
    tmp.mkdir()
    try:
        yield tmp
        final = entry_dir(uri)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and _load_record(final) is None:
            shutil.rmtree(final)  # an entry whose files were deleted by hand: replace it whole
        try:
            os.rename(tmp, final)
        except OSError:
            if _load_record(final) is None:  # else another process finished the same pull first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder`` (following symlinks, as Hub snapshots are symlinks)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path


def manifest(folder: Path, previous: dict[str, FileHash] | None = None) -> dict[str, FileHash]:
    """sha256 and size of every file under ``folder``.

    A file whose size and mtime match ``previous`` keeps its old hash, so re-pinning an unchanged
    file:// folder does not reread it; ``verify`` never passes ``previous``.
    """
    out: dict[str, FileHash] = {}
    for path in _files(folder):
        rel = path.relative_to(folder).as_posix()
        stat = path.stat()
        old = (previous or {}).get(rel)
        if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
            out[rel] = old
        else:
            out[rel] = FileHash(size=stat.st_size, sha256=sha256_file(path), mtime_ns=stat.st_mtime_ns)
    return out


def manifest_digest(files: dict[str, FileHash]) -> str:
    """One hash for a whole folder: over the sorted file names, sizes and sha256 digests."""
    lines = "".join(f"{rel}\t{fh.size}\t{fh.sha256}\n" for rel, fh in sorted(files.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def check_manifest(folder: Path, files: dict[str, FileHash]) -> list[str]:
    """Rehash every file and list what differs from the manifest: missing, changed or unexpected files."""
    if not folder.is_dir():
        return [f"model folder is missing: {folder}"]
    problems: list[str] = []
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for rel, expected in sorted(files.items()):
        path = present.pop(rel, None)
        if path is None:
            problems.append(f"missing: {rel}")
        elif path.stat().st_size != expected.size or sha256_file(path) != expected.sha256:
            problems.append(f"changed: {rel} (sha256 differs from the pull record)")
    problems.extend(f"unexpected file: {rel}" for rel in sorted(present))
    return problems


def build_entry(uri: str, build: Callable[[Path], tuple[str, dict[str, Any]]]) -> PullRecord:
    """Build a model folder the zoo owns (pypi, random) atomically and record it.

    ``build(folder)`` fills the empty ``folder`` and returns ``(pin, info)``. Scratch work belongs in
    a sibling of ``folder`` that ``build`` removes; everything left beside it is discarded here.
    """
    with atomic_entry(uri) as tmp:
        folder = tmp / MODEL_DIR
        folder.mkdir()
        pin, info = build(folder)
        for leftover in tmp.iterdir():
            if leftover.is_dir() and leftover.name != MODEL_DIR:
                shutil.rmtree(leftover)
            elif leftover.is_file():
                leftover.unlink()
        record = PullRecord(
            source=uri, path=str(entry_dir(uri) / MODEL_DIR), pin=pin, files=manifest(folder), info=info
        )
        write_record(tmp, record)
    return record
