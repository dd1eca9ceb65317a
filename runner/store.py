"""The run folder on disk: the per-stage write-ahead log, manifests, latest stage folders."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from registry.atomic import atomic_write_json
from registry.jsonio import dumps_line, read_json, read_jsonl
from registry.secrets import redact


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
        self._sync_lock = threading.Lock()
        self._written = self._synced = 0  # appends written to the file, and made durable
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
        return iter(read_jsonl(self.path, missing_ok=True))

    def append(self, *entries: dict) -> None:
        text = redact("".join(dumps_line(e) for e in entries))
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
            self._written += 1
            mine = self._written
        # group commit: appends from many threads (a window of API calls) share one fsync, which covers
        # every line written before it started; each append still returns only once its line is on disk
        with self._sync_lock:
            if self._synced >= mine:
                return
            upto = self._written
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._synced = upto


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
        return read_jsonl(self.stage_dir(stage, fingerprint) / "records.jsonl", missing_ok=True)

    def set_latest(self, stages: dict[str, str]) -> None:
        latest = read_json(self.root / "latest.json", {}) or {}
        latest.setdefault("stages", {}).update(stages)
        atomic_write_json(self.root / "latest.json", latest)
