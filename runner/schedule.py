"""Which stages of a run run now: every stage whose inputs are ready, side by side, up to ``--jobs``.

- A stage that calls only API models runs beside any others: it waits on its endpoint, not on this
  machine, and it does not reseed the process's RNGs. Any other stage (a model in this process, a
  trainer, a loader) runs one at a time, since they share the CPU or GPU and the global RNGs each one
  seeds; among themselves they keep the recipe's order.
- A map stage whose mapped input comes from a map stage that is still running starts at once and works
  on the records its upstream has finished so far (pipelining, ``runner.feed``).
- ``jobs`` caps how many stages run at once (default: no cap); ``jobs=1`` runs the stages one after
  another, as listed, without pipelining (as does a ``--shard`` run).
- When a stage fails no further stage starts; map stages running beside it finish the batches they are
  in and stop (their finished batches are kept), other stages run to their end; then the first failure
  is raised.
- A stage that ends with more failed records than it allows (``max_failed``) feeds no later stage: those
  wait (status ``waiting``), and a map stage that had started on its records stops and waits too.

Each running stage has a thread of its own; this one only starts stages and collects their ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from components.base import MapComponent
from runner.errors import StageFailure
from runner.failures import within_limit
from runner.feed import RecordFeed, StageLinks, StageStopped
from runner.folders import StageFolders
from runner.load import LoadedRecipe
from runner.map_stage import map_port
from runner.models import ModelManager
from runner.progress import Progress, set_current_stage
from runner.results import StageResult
from runner.stage import RunSettings, StageDecision, StageRun, decide

log = logging.getLogger("recipe.run")


@dataclass
class Job:
    """A stage running in its own thread."""

    stage: str
    local: bool  # holds the one slot for stages that run on this machine
    links: StageLinks
    decision: StageDecision


class StageScheduler:
    """Runs ``order`` (stages of ``loaded``, in dependency order) into ``results``."""

    def __init__(self, loaded: LoadedRecipe, folders: StageFolders, models: ModelManager, settings: RunSettings,
                 progress: Progress, results: dict[str, StageResult], *, held: set[str] | None = None,
                 jobs: int | None = None, say: Callable[[str], None] = log.info) -> None:
        self.loaded = loaded
        self.folders = folders
        self.models = models
        self.settings = settings
        self.progress = progress
        self.results = results
        self.held = set() if held is None else held  # beyond their max_failed, and the stages after them
        self.say = say
        self.jobs = 1 if settings.shard else jobs
        self.pipelining = self.jobs != 1
        self.stop = threading.Event()  # set on the first failure: running map stages stop after their batches
        self._events: queue.Queue[tuple[Job, StageResult | None, BaseException | None]] = queue.Queue()
        self._running: dict[str, Job] = {}
        self._finished: set[str] = set()
        self._error: BaseException | None = None

    def run(self, order: list[str]) -> None:
        pending = list(order)
        listed = set(order)  # dependencies outside the list are taken as they are (callers add them)
        try:
            while True:
                if self._error is None:
                    self._start_ready(pending, listed, order[-1] if order else None)
                if not self._running:
                    break
                self._collect()
        except BaseException:
            self.stop.set()  # Ctrl-C: running stages die with the process, their logs are crash-safe
            raise
        if self._error is not None:
            raise self._error
        if pending:  # pragma: no cover - every listed stage is startable once its upstream is done
            raise RuntimeError(f"stages never became ready: {', '.join(pending)}")

    # ---- starting ------------------------------------------------------------------------------------

    def _start_ready(self, pending: list[str], listed: set[str], last: str | None) -> None:
        """Start (or take from their folders) every pending stage that may start, first in recipe order."""
        started = True
        while started:
            started = False
            for s in pending:
                ready, source = self._ready(s, listed)
                if not ready:
                    continue
                if not self._waits(s):
                    decision = decide(self.folders, s, self.settings.retry_failed,
                                      self.loaded.recipe.failure_limit(s))
                    if self.settings.shard and s != last and decision.cached is None:
                        # shards run side by side: none of them may run (or redo records of) an upstream stage
                        raise StageFailure(s, "--shard runs one map stage whose inputs are finished: run the "
                                           "upstream stages first (without --shard)")
                    if self.settings.shard and decision.in_place:
                        raise StageFailure(s, "it finished with failed records; a run without --shard tries "
                                           "them again")
                    window = self.window(s)
                    if decision.cached is None and not self._has_room(window is None):
                        continue
                    if decision.note:
                        log.warning(decision.note)
                        self.say(decision.note)
                    if decision.cached is not None:
                        log.info("stage %s: cached (%s)", s, decision.cached.fingerprint[:12])
                        self._finish(s, decision.cached)
                    else:
                        self._start(s, decision, source, window)
                pending.remove(s)
                started = True
                break

    def _waits(self, s: str) -> bool:
        """A stage after one whose failed records are beyond its limit does not run: it would be paid for
        on partial data, then again once those records are redone."""
        short = [u for u in self.loaded.deps[s] if u in self.held]
        if short:
            self.held.add(s)
            self.results[s] = StageResult(s, self.folders.fingerprint(s), "waiting", self.folders.dir(s),
                                          error=f"waits for {', '.join(short)}")
            self._finished.add(s)
        return bool(short)

    def _finish(self, s: str, result: StageResult) -> None:
        self.results[s] = result
        self._finished.add(s)
        if not within_limit(result.counts, self.loaded.recipe.failure_limit(s)):
            self.held.add(s)

    def _ready(self, s: str, listed: set[str]) -> tuple[bool, RecordFeed | None]:
        """Whether ``s`` may start: every upstream done, or (pipelined) all but the map stage it maps over,
        which runs now and hands over its finished records."""
        waiting = {u for u in self.loaded.deps[s] if u in listed and u not in self._finished}
        if not waiting:
            return True, None
        job = self._running.get(next(iter(waiting)))
        comp, spec = self.loaded.components[s], self.loaded.recipe.stages[s]
        if not self.pipelining or len(waiting) != 1 or job is None or job.links.sink is None \
                or not isinstance(comp, MapComponent):
            return False, None
        try:
            port = map_port(comp, spec, s)
        except StageFailure:
            return False, None  # fails with its message once it runs
        if spec.inputs.get(port) != job.stage or list(spec.inputs.values()).count(job.stage) != 1:
            return False, None
        return True, job.links.sink

    def _mapped_from(self, s: str) -> bool:
        """Whether a map stage downstream maps over ``s`` (and could start on its records early): only
        then are its finished records handed on in memory."""
        for t, spec in self.loaded.recipe.stages.items():
            comp = self.loaded.components[t]
            if not isinstance(comp, MapComponent) or s not in spec.inputs.values():
                continue
            try:
                if spec.inputs.get(map_port(comp, spec, t)) == s:
                    return True
            except StageFailure:
                continue
        return False

    def window(self, s: str) -> int | None:
        """Requests the stage's models serve at once when it calls only API models; None otherwise."""
        windows = [self.models.window(b) for b in self.loaded.bindings.get(s, {}).values()]
        if not windows or None in windows:
            return None
        return max(w for w in windows if w is not None)

    def _has_room(self, local: bool) -> bool:
        """Whether a stage may start now: under ``jobs``, and a local one only when no other local runs."""
        if self.jobs is not None and len(self._running) >= self.jobs:
            return False
        return not (local and any(j.local for j in self._running.values()))

    def _start(self, s: str, decision: StageDecision, source: RecordFeed | None, window: int | None) -> None:
        local = window is None
        # a map stage hands its finished records to a map stage downstream that may start before it ends;
        # one re-run in place (--retry-failed) changes the fingerprints downstream, which then wait for it
        feeds = self.pipelining and isinstance(self.loaded.components[s], MapComponent) and not decision.in_place \
            and self._mapped_from(s)
        links = StageLinks(source=source, sink=RecordFeed(s) if feeds else None, stop=self.stop, window=window)
        job = Job(s, local, links, decision)
        self._running[s] = job
        if self._running.keys() - {s}:
            log.info("stage %s: starts beside %s%s", s, ", ".join(sorted(self._running.keys() - {s})),
                     f" (on the records {source.stage} has finished)" if source is not None else "")
        threading.Thread(target=self._work, args=(job,), name=f"stage:{s}", daemon=True).start()

    def _work(self, job: Job) -> None:
        """A stage's thread: run it, then say how it ended (first) and tell the stage it feeds."""
        set_current_stage(job.stage)
        sink = job.links.sink
        try:
            result = StageRun(job.stage, self.loaded, self.folders, self.models, self.settings,
                              revision=job.decision.revision, say=self.say, links=job.links).run(self.progress)
        except BaseException as e:  # noqa: BLE001 - handed to the scheduler's thread, which raises it
            self._events.put((job, None, e))
            if sink is not None:
                sink.fail()
            return
        self._events.put((job, result, None))
        if sink is None:
            return
        if not within_limit(result.counts, self.loaded.recipe.failure_limit(job.stage)):
            sink.fail("has more failed records than it allows")
            return
        try:
            sink.close(self.folders.records(job.stage))
        except Exception:  # pragma: no cover - a stage downstream must never wait for ever
            log.exception("stage %s: cannot hand its records on", job.stage)
            sink.fail()

    # ---- collecting ----------------------------------------------------------------------------------

    def _collect(self) -> None:
        try:
            job, result, error = self._events.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
        except queue.Empty:
            return
        s = job.stage
        del self._running[s]
        source = job.links.source
        if isinstance(error, StageStopped) and source is not None and source.stage in self.held:
            log.info("stage %s: stopped, waits for %s", s, source.stage)  # started on records now on hold
            self._waits(s)
            return
        if error is not None:
            # the failure that stopped the others is the one to report, not their stopping
            if self._error is None or (isinstance(self._error, StageStopped) and not isinstance(error, StageStopped)):
                self._error = error
            self.stop.set()
            return
        assert result is not None
        self._finish(s, result)
        if job.decision.in_place:  # its records changed in place: downstream fingerprints change
            self.folders.forget(s)
            self.folders.set_latest()
