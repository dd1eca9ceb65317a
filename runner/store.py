"""The run folder on disk: atomic writes, the per-stage write-ahead log, manifests."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.secrets import redact


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact(text))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_complete_lines(path: Path) -> list[dict]:
    """The complete JSON lines of a log another process may still be appending to (no repair)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # blank, or a line still being written
    return out


class AppendLog:
    """An append-only JSON-lines file that survives ``kill -9``.

    Each ``append`` writes whole lines with one ``write`` and fsyncs. On open, a torn last line (the
    process died mid-write) is cut off, so every line read back is complete.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl == -1:
                break
            try:
                json.loads(data[pos:nl])
            except ValueError:
                break
            good = nl + 1
            pos = nl + 1
        if good != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def __iter__(self) -> Iterator[dict]:
        if not self.path.exists():
            return iter(())
        return iter(read_jsonl(self.path))

    def append(self, *entries: dict) -> None:
        text = redact("".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in entries))
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class RunStore:
    """``runs/<recipe>/``: lockfile, log, report, and ``stages/<stage>/<fingerprint>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def stage_dir(self, stage: str, fingerprint: str) -> Path:
        return self.root / "stages" / stage / fingerprint[:16]

    def manifest(self, stage: str, fingerprint: str) -> dict | None:
        return read_json(self.stage_dir(stage, fingerprint) / "manifest.json")

    def is_done(self, stage: str, fingerprint: str) -> bool:
        m = self.manifest(stage, fingerprint)
        return bool(m and m.get("status") == "done" and m.get("fingerprint") == fingerprint)

    def revision(self, stage: str, fingerprint: str) -> int:
        """How many times the stage's folder was re-run in place (``--retry-failed``)."""
        m = self.manifest(stage, fingerprint) or {}
        return int(m.get("revision", 0))

    def records(self, stage: str, fingerprint: str) -> list[dict]:
        return read_jsonl(self.stage_dir(stage, fingerprint) / "records.jsonl")

    def set_latest(self, stages: dict[str, str]) -> None:
        latest = read_json(self.root / "latest.json", {}) or {}
        latest.setdefault("stages", {}).update(stages)
        atomic_write_json(self.root / "latest.json", latest)
