"""Reading and writing JSON and JSON Lines, with errors that name the file and the line.

Every reader here is bounded: a line longer than ``MAX_LINE_BYTES`` is an error naming its line (never an
out-of-memory), bytes that are not UTF-8 are an error naming their line, and ``.gz`` files are
decompressed on the fly.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
>>> write_jsonl(p, [{"id": 1}, {"id": 2}])
>>> read_jsonl(p)
[{'id': 1}, {'id': 2}]
>>> _ = p.write_text('{"id": 1}\\n{"id": \\n')
>>> read_jsonl(p)
Traceback (most recent call last):
...
ValueError: ...r.jsonl:2: not valid JSON (Expecting value at column 8)
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from registry.atomic import atomic_write_text

MAX_LINE_BYTES = 256 * 2**20  # one record; longer lines are data errors, not something to load
MAX_JSON_BYTES = 2 * 2**30  # a whole .json document


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of ``path`` (1-based; newline stripped), bounded and decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with _open_binary(path) as f:
        lineno = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise ValueError(f"{path}:{lineno}: line longer than {max_line_bytes} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line)") from None
            yield lineno, text.rstrip("\r\n")


def iter_jsonl(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line; a line that is not JSON is an error naming it."""
    for lineno, line in iter_lines(path, max_line_bytes):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def read_jsonl(path: Path, limit: int | None = None, fields: list[str] | None = None, *,
               missing_ok: bool = False) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file, in order; blank lines are skipped.

    Errors name the file and 1-based line: a line that is not JSON or not an object, or lacks one of
    ``fields``. ``missing_ok``: a missing file reads as no records instead of an error.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    records: list[dict[str, Any]] = []
    if limit is not None and limit <= 0:
        return records
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [name for name in fields or [] if name not in rec]
        if missing:
            raise ValueError(f"{path}:{lineno}: record lacks required field(s) {', '.join(missing)}"
                             f" (has: {', '.join(sorted(rec)) or 'none'})")
        records.append(rec)
        if limit is not None and len(records) >= limit:
            break
    return records


def read_json_records(path: Path) -> list[Any]:
    """Records of a ``.json`` list or a ``.jsonl`` file (decided by the first character, not the suffix)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with _open_binary(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not head.startswith(b"["):
        return [value for _, value in iter_jsonl(path)]
    data = read_json_strict(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    return data


def read_json_strict(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A whole JSON document; errors name the file, line and column."""
    path = Path(path)
    if path.stat().st_size > max_bytes and path.suffix != ".gz":
        raise ValueError(f"{path}: larger than {max_bytes} bytes")
    with _open_binary(path) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's value, or ``default`` when it is missing or unreadable (for optional side files)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def dumps_line(record: Any) -> str:
    """One JSON Lines line (UTF-8 kept, unknown types as ``str``), newline included."""
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write ``records`` as JSON Lines, atomically."""
    atomic_write_text(path, "".join(dumps_line(r) for r in records))
