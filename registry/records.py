"""Records on disk as JSON Lines, read lazily and written as they come, so memory does not grow with them.

``Records`` is a re-iterable view of a JSON Lines file: each pass reads the file again, one line at a
time (orjson), and checks every line as ``jsonio.read_jsonl`` does (an object, the required ``fields``,
errors naming the file and line). ``write_records`` writes any iterable of records (a generator too)
atomically, a chunk at a time, with secrets masked; ``link_records`` puts a whole file that only has to be
read in place under a second name (a hard link; a copy across disks) after checking every line.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_records(d / "a.jsonl", ({"id": i} for i in range(3)))
3
>>> recs = Records(d / "a.jsonl")
>>> len(recs), [r["id"] for r in recs], [len(b) for b in recs.batches(2)]
(3, [0, 1, 2], [2, 1])
>>> link_records(recs, d / "b.jsonl"), (d / "b.jsonl").stat().st_ino == (d / "a.jsonl").stat().st_ino
(3, True)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from registry.jsonio import MAX_LINE_BYTES, _open_binary
from registry.secrets import secret_values

_DUMP = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
BUFFER_BYTES = 1 << 20


def dumps_line_bytes(record: Any) -> bytes:
    """One record as a JSON line's bytes, newline included: UTF-8 kept, unknown types as ``str``."""
    try:
        return orjson.dumps(record, default=str, option=_DUMP)
    except TypeError:  # what orjson does not write (an integer beyond 64 bits): the standard library does
        return json.dumps(record, ensure_ascii=False, default=str).encode("utf-8") + b"\n"


def loads_record(raw: bytes) -> Any:
    """A JSON line's value; ``NaN`` and big integers (which the standard library writes) read too."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"))


class Records:
    """The records of a JSON Lines file, read each time they are iterated (never all held at once).

    ``len()`` counts the lines once (or takes ``count`` when the writer knew it); ``batches(n)`` gives
    lists of at most ``n``. ``limit`` reads only the first records; ``fields`` must be in every record.
    ``error`` turns a problem message (``path:line: ...``) into the exception to raise.
    """

    def __init__(self, path: Path | str, *, count: int | None = None, limit: int | None = None,
                 fields: list[str] | None = None, error: Callable[[str], Exception] = ValueError,
                 missing_ok: bool = False) -> None:
        self.path = Path(path)
        self.missing_ok = missing_ok
        self.limit = limit
        self.fields = list(fields or [])
        self._count = count
        self._error = error

    def __repr__(self) -> str:
        return f"Records({str(self.path)!r})"

    @property
    def whole(self) -> bool:
        """Every record of a plain file, which can therefore be linked rather than copied."""
        return self.limit is None and self.path.suffix != ".gz"

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line number, bytes)`` of each record's line, unparsed; blank lines are skipped, a line longer
        than ``jsonio.MAX_LINE_BYTES`` is an error naming it (never an out-of-memory)."""
        if not self.path.is_file():
            if self.missing_ok and not self.path.exists():
                return
            raise FileNotFoundError(f"no such file: {self.path}")
        limit, n, lineno = self.limit, 0, 0
        with _open_binary(self.path) as f:
            readline = f.readline
            while limit is None or n < limit:
                raw = readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                lineno += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise self._error(f"{self.path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes")
                if raw.isspace():
                    continue
                n += 1
                yield lineno, raw

    def parse(self, lineno: int, raw: bytes) -> dict[str, Any]:
        """One line's record, checked."""
        try:
            rec = loads_record(raw)
        except UnicodeDecodeError as e:
            raise self._error(f"{self.path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line)") from None
        except json.JSONDecodeError as e:
            raise self._error(f"{self.path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise self._error(f"{self.path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [name for name in self.fields if name not in rec]
        if missing:
            raise self._error(f"{self.path}:{lineno}: record lacks required field(s) {', '.join(missing)}"
                              f" (has: {', '.join(sorted(rec)) or 'none'})")
        return rec

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, rec in self.parsed():
            yield rec

    def parsed(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """``(line, record)`` for each record, checked."""
        fields, loads = self.fields, orjson.loads
        for lineno, raw in self.lines():
            try:
                rec = loads(raw)
            except orjson.JSONDecodeError:
                rec = None
            if type(rec) is not dict or (fields and not all(name in rec for name in fields)):
                rec = self.parse(lineno, raw)  # the slow path: standard-library JSON, or the error
            yield raw, rec

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self.lines())
        return self._count

    def __bool__(self) -> bool:
        return len(self) > 0

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        it = iter(self)
        while batch := list(islice(it, size)):
            yield batch

    def by_position(self) -> RecordsByPosition:
        """The records by position, read when asked: in memory only each line's offset (8 bytes)."""
        return RecordsByPosition(self)

    def check(self) -> int:
        """Parse and check every line; the number of records (now also ``len()``)."""
        n = sum(1 for _ in self)
        self._count = n
        return n


class RecordsByPosition:
    """Random access to the records of a plain (not gzipped) file: ``len()`` and ``[i]``, each record read
    from its line when asked. Use it as a context manager (it keeps the file open)."""

    def __init__(self, records: Records) -> None:
        if records.path.suffix == ".gz":
            raise ValueError(f"{records.path}: records of a gzipped file cannot be read by position")
        self.records = records
        self.offsets = array("q")
        if not records.path.exists() and records.missing_ok:
            self._f = None
            return
        self._f = open(records.path, "rb")
        offset, n, limit = 0, 0, records.limit
        for raw in iter(lambda: self._f.readline(MAX_LINE_BYTES + 1), b""):
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise records._error(f"{records.path}: a line longer than {MAX_LINE_BYTES} bytes at byte {offset}")
            if not raw.isspace():
                if limit is not None and n >= limit:
                    break
                self.offsets.append(offset)
                n += 1
            offset += len(raw)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        assert self._f is not None
        self._f.seek(self.offsets[i])
        return self.records.parse(i + 1, self._f.readline())  # numbered by record: blank lines not counted

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> RecordsByPosition:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class RecordWriter:
    """Records written as they come into a temp file next to ``path``, renamed into place by ``close``
    (a reader never sees half a file); secret values are masked. An ``OSError`` names ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.count = 0
        self._secrets = [s.encode("utf-8") for s in secret_values()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        # each line goes into the file's buffer at once and is freed: holding many small byte strings
        # and freeing them together makes the allocator hand pages back and fault them in again
        self._f = os.fdopen(fd, "wb", buffering=BUFFER_BYTES)

    def write(self, record: Any) -> None:
        line = dumps_line_bytes(record)
        for s in self._secrets:  # a secret never spans lines: JSON escapes newlines
            if s in line:
                line = line.replace(s, b"***")
        try:
            self._f.write(line)
        except OSError as e:  # a full disk: named by the file being written
            raise _naming(e, self.path) from e
        self.count += 1

    def close(self) -> None:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.path)
        except BaseException as e:
            self.abort()
            raise _naming(e, self.path) from e

    def abort(self) -> None:
        try:
            self._f.close()  # may flush what a full disk refuses: the file goes anyway
        except OSError:
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _naming(e: BaseException, path: Path) -> BaseException:
    if isinstance(e, OSError) and e.filename != str(path):
        return OSError(e.errno, e.strerror or str(e), str(path))
    return e


def write_records(path: Path | str, records: Iterable[Any]) -> int:
    """Write ``records`` (any iterable, consumed once) as JSON Lines, atomically; how many were written."""
    with RecordWriter(path) as w:
        for r in records:
            w.write(r)
    return w.count


def link_records(records: Records, path: Path | str) -> int:
    """Put the whole file behind ``records`` at ``path`` without copying it (a hard link; a copy where
    the disk or permissions refuse one), after checking every line; how many records it holds. A file
    holding a secret value is written again instead, masked. ``records.whole`` must be true."""
    path = Path(path)
    secrets = [s.encode("utf-8") for s in secret_values()]
    n = 0
    for raw, _ in records.parsed():
        if secrets and any(s in raw for s in secrets):
            return write_records(path, records)
        n += 1
    records._count = n
    tmp = path.parent / f".{path.name}.{os.getpid()}.link"
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(records.path, tmp)
        except OSError:  # another disk, or a file the link rules refuse: copy it
            shutil.copyfile(records.path, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        raise _naming(e, path) from e
    return n
