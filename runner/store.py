"""The run folder on disk: the per-stage write-ahead log, manifests, latest stage folders, and the
checksums that tell a finished stage's files are still the ones it wrote."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from registry.atomic import atomic_write_json
from registry.jsonio import dumps_line, read_json, read_jsonl  # noqa: F401 - read_jsonl: re-exported
from registry.records import Records, loads_record
from registry.secrets import redact
from runner.errors import RunFileError

log = logging.getLogger("recipe.files")

# errors of the disk itself: retrying a model call cannot help, the stage stops at once
DISK_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT}


def is_disk_fault(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def _free(path: Path) -> str:
    """Free space on the disk holding ``path``, for messages."""
    for p in (path, *path.parents):
        if p.exists():
            try:
                n = float(shutil.disk_usage(p).free)
            except OSError:
                return "unknown space"
            for unit in ("bytes", "KB", "MB", "GB"):
                if n < 1024 or unit == "GB":
                    return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
                n /= 1024
    return "unknown space"


def write_fault(path: Path | str | None, e: OSError) -> RunFileError:
    """The one message for a write of ours that failed: the file, the cause and the free space left."""
    target = Path(path or e.filename or ".")
    why = e.strerror or str(e)
    return RunFileError(target, f"cannot write: {why} ({_free(target)} free on its disk). Free some space (or "
                        "fix the disk) and run the same command again: finished records and paid calls are kept")


def log_entries(path: Path) -> Iterator[tuple[int, dict]]:
    """``(offset, entry)`` of each entry of a JSON-lines log, read a line at a time: a damaged line in the
    middle is skipped with a warning naming it; a last line without its newline (still being written, or
    torn by a crash) is left out."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        offset, lineno = 0, 0
        for line in f:
            start, offset = offset, offset + len(line)
            lineno += 1
            if not line.endswith(b"\n"):  # unfinished
                return
            if not line.strip():
                continue
            try:
                entry = loads_record(line)
            except ValueError:
                log.warning("%s:%d: damaged line skipped (%d bytes); the entries around it are kept",
                            path, lineno, len(line) - 1)
                continue
            if isinstance(entry, dict):
                yield start, entry


def read_line_at(path: Path, offset: int) -> dict:
    """The log entry that starts at ``offset`` of ``path`` (an offset ``log_entries`` or ``append`` gave)."""
    with open(path, "rb") as f:
        return entry_at(f, path, offset)


def entry_at(f: IO[bytes], path: Path, offset: int) -> dict:
    """``read_line_at`` through a file already open."""
    f.seek(offset)
    line = f.readline()
    try:
        entry = loads_record(line)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        raise RunFileError(path, f"damaged at byte {offset} since this run read it; run the same command again")
    return entry


def _log_lines(path: Path) -> Iterator[dict]:
    for _, entry in log_entries(path):
        yield entry


def read_complete_lines(path: Path) -> list[dict]:
    """The complete JSON lines of a log another process may still be appending to (no repair)."""
    return list(_log_lines(path))


def _end_of_last_line(path: Path, size: int) -> int:
    """Where the last complete line of a file ends (0: none), reading back from its end a block at a time."""
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
    return 0


class AppendLog:
    """An append-only JSON-lines file that survives ``kill -9``.

    Each ``append`` writes whole lines with one ``write`` and returns once they are fsynced (appends from
    several threads share an fsync). On open, a torn last line (the
    process died mid-write) is cut off; a damaged line elsewhere is skipped when read. A write that
    fails (a full disk) is undone and raised as ``RunFileError``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = self._synced = 0  # appends written to the file, and made durable
        self._cut = 0  # appends up to this one were taken back when their fsync failed
        self._cut_cause: OSError | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._size = self._synced_size = self.path.stat().st_size if self.path.exists() else 0

    def _repair(self) -> None:
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        good = _end_of_last_line(self.path, size)
        if good != size:
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(good)
            except OSError as e:
                raise write_fault(self.path, e) from e

    def __iter__(self) -> Iterator[dict]:
        return _log_lines(self.path)

    def append(self, *entries: dict) -> int:
        """Append ``entries`` (durably, see the class); the offset in the file where the first one starts."""
        text = redact("".join(dumps_line(e) for e in entries))
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            try:
                self._write(text)
            except OSError as e:
                try:  # no half line left behind for the next append to follow
                    os.truncate(self.path, size)
                except OSError:
                    pass
                raise write_fault(self.path, e) from e
            self._written += 1
            self._size = size + len(text.encode("utf-8"))
            mine = self._written
        # group commit: appends from many threads (a window of API calls) share one fsync, which covers
        # every line written before it started; each append still returns only once its line is on disk
        with self._sync_lock:
            if self._synced >= mine:
                return size
            if self._cut >= mine:
                raise write_fault(self.path, self._cut_cause)
            with self._lock:
                upto, end = self._written, self._size
            try:
                self._sync()
            except OSError as e:
                with self._lock:  # every line not yet on disk is taken back, and its append fails
                    try:
                        os.truncate(self.path, self._synced_size)
                    except OSError:
                        pass
                    self._cut, self._size, self._cut_cause = self._written, self._synced_size, e
                raise write_fault(self.path, e) from e
            self._synced, self._synced_size = upto, end
        return size

    def _write(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)

    def _sync(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# what a finished stage wrote and the manifest vouches for: not its logs (they only grow; a trainer's
# tracker run in tracking/ gets its judges' metrics later), its scratch space or the manifest itself
_UNCHECKED = ("manifest.json", "scratch", "tracking")
_LOGS = ("wal", "calls")


def _checked(rel: Path) -> bool:
    if rel.parts[0] in _UNCHECKED or rel.name.startswith("."):
        return False
    return not (len(rel.parts) == 1 and rel.suffix == ".jsonl" and rel.name.split(".")[0] in _LOGS)


def _sha256_lines(path: Path) -> tuple[str, int]:
    """A file's sha256 and its number of lines (a last line without a newline counts), in one pass."""
    h = hashlib.sha256()
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return h.hexdigest(), lines + (last != b"\n")


def file_sums(stage_dir: Path) -> dict[str, dict]:
    """Size, line count (JSON lines) and sha256 of every file a stage wrote; a trained model's files by
    size only (weights are large and a cached run checks them every time)."""
    out: dict[str, dict] = {}
    for f in sorted(p for p in stage_dir.rglob("*") if p.is_file()):
        rel = f.relative_to(stage_dir)
        if not _checked(rel):
            continue
        entry: dict = {"bytes": f.stat().st_size}
        if rel.parts[0] != "model":
            entry["sha256"], lines = _sha256_lines(f)
            if f.suffix == ".jsonl":
                entry["lines"] = lines
        out[rel.as_posix()] = entry
    return out


def check_files(stage_dir: Path, recorded: dict[str, dict]) -> str | None:
    """What differs between a finished stage's files and what its manifest recorded, or None."""
    for name, want in recorded.items():
        f = stage_dir / name
        if not f.is_file():
            return f"{f} is missing"
        size = f.stat().st_size
        if size != want.get("bytes"):
            return f"{f} has {size} bytes, but the stage wrote {want.get('bytes')}"
        if want.get("sha256") and _sha256_lines(f)[0] != want["sha256"]:
            return f"{f} changed since the stage wrote it (its sha256 differs)"
    return None


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
        """How many times the stage's folder was re-run in place (for its failed records)."""
        m = self.manifest(stage, fingerprint) or {}
        return int(m.get("revision", 0))

    def record_file(self, stage: str, fingerprint: str) -> Records:
        """A stage's records, read from its ``records.jsonl`` each time they are iterated; a damaged line
        is a ``RunFileError`` naming the file and the line."""
        path = self.stage_dir(stage, fingerprint) / "records.jsonl"
        m = self.manifest(stage, fingerprint) or {}
        count = m.get("counts", {}).get("out") if m.get("status") == "done" and "files" in m else None

        def damaged(problem: str) -> RunFileError:
            where = problem.removeprefix(f"{path}:")
            return RunFileError(path, f"damaged, {'line ' if where[:1].isdigit() else ''}{where}; run the recipe "
                                f"again to rebuild the stage, or delete {path.parent}")

        return Records(path, count=count if isinstance(count, int) else None, error=damaged, missing_ok=True)

    def set_latest(self, stages: dict[str, str]) -> None:
        latest = read_json(self.root / "latest.json", {}) or {}
        latest.setdefault("stages", {}).update(stages)
        atomic_write_json(self.root / "latest.json", latest)
