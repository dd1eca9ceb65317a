"""Map stages: the input records in batches, each finished batch in a write-ahead log, retries, shards.

A ``MapStageRun`` is one run of one map stage. Its state is the list of record keys, where the outcome of
every finished record is (``done``: an index into the write-ahead logs, read on resume and grown as batches
finish) and this process's own log. A record's outcome is either ``{"out": [records]}`` or
``{"failed": {...}}``; the failed ones become the stage's failures ledger.

Records stream: the input is taken from its feed (the upstream's file, read as it goes) a few batches
ahead of the batches running, a record is dropped once its batch is logged, and the stage's records are
read back from the logs, in input order, as they are written. Memory holds the keys and the index.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from components.base import Failed, MapComponent, record_key
from runner.backends.base import BudgetExceeded
from runner.backends.window import set_call_order
from runner.callcache import set_scope
from runner.context import StageContext
from runner.errors import RunFileError, StageFailure
from runner.feed import RecordFeed, StageLinks, StageStopped
from runner.fingerprint import digest
from runner.outcomes import FAILED, Outcomes
from runner.progress import StageProgress, set_current_stage
from runner.results import StageOutput
from runner.schema import StageSpec
from runner.store import AppendLog, is_disk_fault, write_fault

log = logging.getLogger("recipe.run")

Shard = tuple[int, int]  # (i, n): this process runs batches b with b % n == i


class DuplicateIds(ValueError):
    """Two records of a map stage's input with the same ``id`` (or ``idx``)."""


class RecordKeys:
    """Keys for the records of one input, given all at once or in parts as they arrive (see unique_keys)."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.repeats: dict[str, int] = {}
        self.count = 0

    def add(self, records: list[dict]) -> list[str]:
        out = []
        for i, r in enumerate(records, self.count + 1):
            k = record_key(r)
            if k in self.first:
                if r.get("id") is not None or r.get("idx") is not None:
                    field = "id" if r.get("id") is not None else "idx"
                    raise DuplicateIds(f"records #{self.first[k]} and #{i} of the input both have {field} {k!r}; "
                                       "the write-ahead log and the call journal file records by id, so ids must "
                                       "be unique (fix the input, or drop the id field to key records by content)")
                self.repeats[k] = self.repeats.get(k, 0) + 1
                k = f"{k}#{self.repeats[k]}"
            else:
                self.first[k] = i
            out.append(k)
        self.count += len(records)
        return out


def unique_keys(records: list[dict]) -> list[str]:
    """Each record's key (``components.base.record_key``). Resume and the call journal file records by
    key, so two records with the same ``id`` (or ``idx``) raise DuplicateIds naming both (1-based
    positions in the input); records keyed by content (no id) that repeat get ``#1``, ``#2``..."""
    return RecordKeys().add(records)


def shard_name(stem: str, shard: Shard | None) -> str:
    """The file a process keeps its own log in: ``wal.jsonl``, or ``wal.shard0of2.jsonl`` for a shard."""
    return f"{stem}.jsonl" if shard is None else f"{stem}.shard{shard[0]}of{shard[1]}.jsonl"


def map_port(comp: MapComponent, spec: StageSpec, stage: str) -> str:
    """The input port a map stage goes over."""
    if comp.map_over:
        return comp.map_over
    ports = list(spec.inputs)
    if len(ports) != 1:
        raise StageFailure(stage, f"{comp.type} maps over one input; give exactly one or set map_over")
    return ports[0]


class ShardDone(Exception):
    """A sharded run finished its share of a stage; the stage is finished by an unsharded run."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__(f"stage {stage!r}: this shard is done; {done} of {total} records finished so far "
                         "(run without --shard once every shard is done to merge and finish the stage)")
        self.stage, self.done, self.total = stage, done, total


def retryable(o: Any) -> bool:
    return isinstance(o, Exception) or (isinstance(o, Failed) and o.retry)


def encode(o: Any) -> dict:
    """A record's outcome as written to the log: ``{"out": [...]}`` or ``{"failed": {error, raw}}``."""
    if isinstance(o, Exception):
        return {"failed": {"error": f"{type(o).__name__}: {o}", "raw": None}}
    if isinstance(o, Failed):
        return {"failed": {"error": o.error, "raw": o.raw}}
    if isinstance(o, dict):
        return {"out": [o]}
    if isinstance(o, list):
        return {"out": list(o)}
    return {"failed": {"error": f"component returned {type(o).__name__}, expected dict, list or Failed",
                       "raw": None}}


class MapStageRun:
    """One run of a map stage over ``records`` (the records of its mapped port), or over the records a
    running upstream stage hands it as they are finished (``links.source``)."""

    def __init__(self, comp: MapComponent, stage: str, spec: StageSpec, ctx: StageContext,
                 records: Iterable[dict], bar: StageProgress, *, shard: Shard | None = None,
                 retry_failed: bool = False, revision: int = 0, links: StageLinks | None = None) -> None:
        self.comp = comp
        self.stage = stage
        self.ctx = ctx
        self.bar = bar
        self.links = links or StageLinks()
        self.feed = self.links.source or RecordFeed.complete(stage, records)
        self.keys: list[str] = []
        self.by_key: dict[str, dict] = {}  # the records taken whose batch is not logged yet
        self.batch_size = spec.batch_size or comp.batch_size
        self.concurrency = spec.concurrency
        self.retries = spec.retries
        self.shard = shard
        self.retry_failed = retry_failed
        # a retry pass (revision > 0) asks afresh, not from the call journal
        self.salt = f":rev{revision}" if revision else ""
        # opening the log cuts a line torn by a crash, before any log is read
        self.wal = AppendLog(ctx.artifact_dir / shard_name("wal", shard))
        self.done = Outcomes()
        self._keyer = RecordKeys()
        self._closed = False  # every record is known
        self._formed = 0  # keys[:_formed] are in batches already
        self._published = 0  # keys[:_published] are done and handed to links.sink
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set when records arrive or a batch finishes
        self.feed.listen(self._wake.set)
        self._take()

    def run(self) -> StageOutput:
        self._resume()
        if self.done:
            log.info("stage %s: resuming, %d of %s records already done", self.stage, len(self.done),
                     len(self.keys) if self._closed else "?")
        self._publish()
        self._run_batches()
        if self.shard:
            raise ShardDone(self.stage, sum(1 for k in self.keys if k in self.done), len(self.keys))
        return self._output()

    def _resume(self) -> None:
        """Read what earlier runs finished: every shard's log counts, this process's own log last so its
        newer entries win."""
        for path in sorted(self.ctx.artifact_dir.glob("wal*.jsonl"), key=lambda p: p == self.wal.path):
            self.done.read_log(path)
        if self.retry_failed:
            self.done.drop_failed()

    def _room(self) -> int:
        """How many more records to take now: enough for the batches that may run next, a few ahead."""
        return max(0, self.batch_size * (2 * self._workers() + 2) - len(self.by_key))

    def _take(self) -> bool:
        """Add the records the feed got since the last look (as many as there is room for); False once
        the upstream stopped feeding."""
        new, closed, failed = self.feed.take(len(self.keys), self._room())
        if new:
            try:
                keys = self._keyer.add(new)
            except DuplicateIds as e:
                raise StageFailure(self.stage, str(e)) from None
            with self._lock:
                self.by_key.update(zip(keys, new))
            self.keys.extend(keys)
        if closed and not self._closed:
            self._closed = True
            if self.links.source is not None:
                self.bar.advance(0, total=len(self.keys))
        return failed is None

    def _batches(self) -> list[tuple[int, list[str]]]:
        """The keys still to do, by batch index, in the batches the records known so far make: batch i is
        always keys ``[i * batch_size, (i + 1) * batch_size)``, so batches are formed the same way on every
        run (the call journal relies on it); a shard keeps its own batches only."""
        batches = []
        n = len(self.keys)
        while self._formed < n and (self._formed + self.batch_size <= n or self._closed):
            i = self._formed
            self._formed = min(i + self.batch_size, n)
            keys = self.keys[i:self._formed]
            todo = [k for k in keys if k not in self.done]
            if len(todo) < len(keys):
                self.bar.advance(len(keys) - len(todo))
            b = i // self.batch_size
            if todo and not (self.shard and b % self.shard[1] != self.shard[0]):
                batches.append((b, todo))
            else:
                todo = []
            with self._lock:
                for k in set(keys) - set(todo):  # done already, or another shard's
                    self.by_key.pop(k, None)
        return batches

    def _workers(self) -> int:
        """Batches run at once: the stage's ``concurrency``; for API models at least their window, so
        their requests stay ``concurrency`` in flight over the whole input even when every batch is down
        to its slowest request (batches wait on the model's window, never on each other)."""
        return max(self.concurrency, self.links.window or 1)

    def _run_batches(self) -> None:
        """Run every batch, forming more as records arrive: one at a time in this thread, or up to
        ``_workers()`` at once in threads, each new one started as soon as one finishes. When another
        stage failed (``links.stop``) or the upstream did, no further batch starts; those running finish
        and are logged, then the stage stops."""
        workers = self._workers()
        pool = None
        if workers > 1:
            pool = ThreadPoolExecutor(workers, thread_name_prefix=f"stage:{self.stage}",
                                      initializer=set_current_stage, initargs=(self.stage,))
        waiting: deque[tuple[int, list[str]]] = deque()
        running: set[Future] = set()
        try:
            while True:
                self._wake.clear()
                upstream_ok = self._take()
                waiting.extend(self._batches())
                for f in [f for f in running if f.done()]:
                    running.discard(f)
                    f.result()  # a batch that raised stops the stage
                finished = not waiting and self._closed and self._formed == len(self.keys)
                stopping = self.links.stop.is_set() or not upstream_ok
                if not running and (finished or stopping):
                    break
                if not stopping and not waiting and self._room() and self.feed.available(len(self.keys)):
                    continue  # more records to take now (all those taken were done already)
                if not stopping and pool is None and waiting:
                    self._run_batch(*waiting.popleft())
                    continue
                while not stopping and pool is not None and waiting and len(running) < workers:
                    f = pool.submit(self._run_batch, *waiting.popleft())
                    f.add_done_callback(lambda _: self._wake.set())
                    running.add(f)
                self._wake.wait(0.5)  # polls links.stop too
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # no further batch is started (or paid)
        if not upstream_ok:
            raise StageStopped(self.stage, f"stopped: upstream stage {self.feed.stage!r} {self.feed.failed}")
        if not finished:
            raise StageStopped(self.stage, "stopped: another stage failed (finished batches are kept)")

    def _run_batch(self, index: int, keys: list[str]) -> None:
        set_call_order(index)  # a model's window serves earlier batches first: they finish in input order
        items = self._process(keys)
        offset = self.wal.append({"items": items})
        with self._lock:
            self.done.add(self.wal.path, offset, items)
            for k in keys:
                self.by_key.pop(k, None)
        self.bar.advance(len(keys))
        self._publish()

    def _publish(self) -> None:
        """Hand the records finished in input order so far to the stage downstream (``links.sink``)."""
        sink = self.links.sink
        if sink is None:
            return
        with self._lock:
            start = self._published
            while self._published < len(self.keys) and self.keys[self._published] in self.done:
                self._published += 1
            # under the lock: batches finishing together publish in order
            sink.extend(list(self.done.records(self.keys[start:self._published])))

    def _process(self, keys: list[str]) -> dict[str, dict]:
        """Each record's outcome for one batch: the batch at once, then the records that failed alone."""
        batch = [self.by_key[k] for k in keys]
        set_scope(digest(keys) + self.salt)
        batch_failed = False
        try:
            outs: list[Any] = list(self.comp.process(batch, self.ctx))
            if len(outs) != len(batch):
                raise StageFailure(self.stage, f"{self.comp.type}.process returned {len(outs)} results for "
                                   f"{len(batch)} records")
        except (BudgetExceeded, StageFailure, RunFileError):
            raise
        except Exception as e:  # the batch failed as a whole: try each record alone
            if is_disk_fault(e):  # our own files cannot be written: asking the model again cannot help
                raise write_fault(None, e) from e
            log.warning("stage %s: batch of %d failed (%s: %s); retrying records one by one",
                        self.stage, len(batch), type(e).__name__, e)
            outs = [e] * len(batch)
            batch_failed = len(batch) > 1
        # a record of a batch that failed as a whole gets one extra attempt: its first try alone
        budget = self.retries + (1 if batch_failed else 0)
        return {k: encode(self._retry(k, rec, o, budget)) for k, rec, o in zip(keys, batch, outs)}

    def _retry(self, key: str, record: dict, outcome: Any, budget: int) -> Any:
        attempt = 0
        while retryable(outcome) and attempt < budget:
            attempt += 1
            set_scope(f"{key}:retry{attempt}{self.salt}")
            try:
                outcome = self.comp.process([record], self.ctx)[0]
            except (BudgetExceeded, StageFailure, RunFileError):
                raise
            except Exception as e:
                if is_disk_fault(e):
                    raise write_fault(None, e) from e
                outcome = e
        return outcome

    def _output(self) -> StageOutput:
        """Counts and failures now; the records as a generator, read back from the logs as it is written."""
        failures, n_out, dropped = [], 0, 0
        for k in self.keys:
            n = self.done.n_out(k)
            if n == FAILED:
                failures.append({"stage": self.stage, "record_id": k, **self.done.get(k)["failed"]})
            else:
                n_out += n
                dropped += n == 0
        counts = {"in": len(self.keys), "out": n_out, "failed": len(failures), "dropped": dropped}
        for f in failures[:5]:
            log.warning("stage %s, record %s failed: %s", self.stage, f["record_id"], f["error"])
        return StageOutput(self.done.records(self.keys), failures, counts)
