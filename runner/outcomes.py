"""The finished records of a map stage, by key, as an index into its write-ahead logs.

A record's outcome (``{"out": [records]}`` or ``{"failed": {...}}``) lives in the log line of its batch;
memory keeps only where that line is and what kind of outcome it holds, so a stage over many records does
not hold their outputs. The outcomes are read back from the logs, in input order, when the stage's
records are written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from runner.store import entry_at, log_entries, read_line_at

FAILED = -1


class Outcomes:
    """key -> (log file, offset of its line, records out or ``FAILED``); later entries win."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self._index: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self._cached: tuple[int, int, dict] | None = None  # the last line read back

    def _file(self, path: Path) -> int:
        if path not in self.files:
            self.files.append(path)
        return self.files.index(path)

    def read_log(self, path: Path) -> None:
        """Index every complete entry of a log (its damaged lines are skipped with a warning)."""
        f = self._file(path)
        for offset, entry in log_entries(path):
            self.add(path, offset, entry.get("items", {}), file_no=f)

    def add(self, path: Path, offset: int, items: dict[str, dict], *, file_no: int | None = None) -> None:
        """The outcomes of one log line, written at ``offset`` of ``path``."""
        f = self._file(path) if file_no is None else file_no
        with self._lock:
            for k, v in items.items():
                self._index[k] = (f, offset, FAILED if "failed" in v else len(v.get("out", [])))

    def drop_failed(self) -> None:
        with self._lock:
            self._index = {k: v for k, v in self._index.items() if v[2] != FAILED}

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def n_out(self, key: str) -> int:
        """How many records ``key`` gave, or ``FAILED``."""
        return self._index[key][2]

    def get(self, key: str) -> dict:
        """The outcome of ``key``, read back from its log line (the last line read is kept: a batch's
        records share one)."""
        f, offset, _ = self._index[key]
        cached = self._cached
        if cached is None or cached[:2] != (f, offset):
            items = read_line_at(self.files[f], offset).get("items", {})
            cached = self._cached = (f, offset, items)
        return cached[2][key]

    def records(self, keys: Iterable[str]) -> Iterator[dict]:
        """The output records of ``keys`` in that order (failed ones give none), each log line read once
        for the keys of its batch, through one open file per log."""
        handles: dict[int, IO[bytes]] = {}
        last: tuple[int, int] | None = None
        items: dict = {}
        try:
            for k in keys:
                f, offset, n = self._index[k]
                if n <= 0:
                    continue
                if last != (f, offset):
                    fh = handles.get(f) or handles.setdefault(f, open(self.files[f], "rb"))
                    items, last = entry_at(fh, self.files[f], offset).get("items", {}), (f, offset)
                yield from items[k]["out"]
        finally:
            for fh in handles.values():
                fh.close()
