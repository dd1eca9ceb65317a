"""How a stage running beside others is tied to them: the records it gets from a map stage upstream that
is still running, where its own finished records go, and the signal to stop.

A ``RecordFeed`` holds a map stage's output records in input order, as far as they are finished: the
upstream stage extends it as batches finish (only ever a complete prefix of its final records), and
closes it with the final list once the stage is done. A map stage downstream forms its batches from it
as soon as a batch's worth of records is there (pipelining); it keeps its own write-ahead log, so a
resume stays exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from runner.errors import StageFailure


class StageStopped(StageFailure):
    """A stage stopped before its end because another stage failed (its finished batches are kept)."""


class RecordFeed:
    """The finished prefix of one stage's output records, shared between threads."""

    def __init__(self, stage: str, records: list[dict] | None = None, *, closed: bool = False) -> None:
        self.stage = stage
        self.records: list[dict] = list(records or [])
        self.closed = closed
        self.failed: str | None = None  # why no more records will come (the upstream failed)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def complete(cls, stage: str, records: Iterable[dict]) -> RecordFeed | FileFeed:
        """A feed of every record of a finished upstream: a list as it is (nothing is copied), anything
        else (its records file) read as the records are taken."""
        if not isinstance(records, list):
            return FileFeed(stage, records)
        feed = cls(stage, closed=True)
        feed.records = records
        return feed

    def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever records arrive, the feed closes or fails."""
        with self._lock:
            self._listeners.append(wake)

    def take(self, start: int, limit: int | None = None) -> tuple[list[dict], bool, str | None]:
        """The records from position ``start`` on (at most ``limit``), whether no more will come after
        them, why the feed failed (or None)."""
        with self._lock:
            new = self.records[start:] if limit is None else self.records[start:start + limit]
            return new, self.closed and start + len(new) >= len(self.records), self.failed

    def available(self, start: int) -> bool:
        """Whether records from position ``start`` on are there to take now."""
        with self._lock:
            return len(self.records) > start

    def extend(self, records: list[dict]) -> None:
        if records:
            with self._lock:
                self.records.extend(records)
            self._wake()

    def close(self, final: list[dict]) -> None:
        """The upstream stage is done and ``final`` is all its records (the published ones first)."""
        with self._lock:
            if len(final) < len(self.records):
                raise RuntimeError(f"stage {self.stage!r} published {len(self.records)} records but "
                                   f"finished with {len(final)}")
            self.records.extend(final[len(self.records):])
            self.closed = True
        self._wake()

    def fail(self, why: str = "failed") -> None:
        """No more records will come: the upstream stage ``why`` (e.g. ``failed``)."""
        with self._lock:
            self.failed = why
        self._wake()

    def _wake(self) -> None:
        for wake in list(self._listeners):
            wake()


class FileFeed:
    """A finished upstream's records, read from its file (any iterable) as they are taken, so only the
    records taken and not yet done are in memory."""

    def __init__(self, stage: str, records: Iterable[dict]) -> None:
        self.stage = stage
        self.failed: str | None = None
        self._it = iter(records)
        self._done = False

    def listen(self, wake: Callable[[], None]) -> None:
        """Nothing arrives later: every record is there to take."""

    def take(self, start: int, limit: int | None = None) -> tuple[list[dict], bool, str | None]:
        """The next records (at most ``limit``; ``start`` is where the last take ended)."""
        new = list(self._it if limit is None else islice(self._it, limit))
        if limit is None or len(new) < limit:
            self._done = True
        return new, self._done, None

    def available(self, start: int) -> bool:
        return not self._done


@dataclass
class StageLinks:
    """What the run's scheduler hands a stage that may run beside others (all optional)."""

    # the records of the mapped port, from an upstream map stage still running
    source: RecordFeed | None = None
    # where this map stage's finished records go, for a map stage downstream that already runs
    sink: RecordFeed | None = None
    # set when another stage failed: start no further batch
    stop: threading.Event = field(default_factory=threading.Event)
    # requests the stage's models serve at once (API models); None: a model in this process
    window: int | None = None
