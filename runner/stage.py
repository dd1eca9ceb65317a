"""The life of one stage in a run: reuse its finished folder or run it — manifest, seeding, context,
timing, records, summary — and record a failure in the manifest before raising it."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.base import MapComponent
from registry.atomic import atomic_write_json, atomic_write_text
from registry.jsonio import read_json, write_jsonl
from runner.backends.base import BudgetExceeded
from runner.callcache import Meter
from runner.context import StageContext
from runner.errors import RunFileError, StageFailure
from runner.failures import within_limit
from runner.feed import StageLinks
from runner.folders import StageFolders
from runner.load import LoadedRecipe
from runner.map_stage import MapStageRun, Shard, ShardDone, map_port, shard_name
from runner.models import ModelManager
from runner.progress import Progress, StageProgress
from runner.results import StageOutput, StageResult
from runner.store import check_files, file_sums, is_disk_fault, write_fault
from runner.tracking import log_judge_metrics
from runner.whole_stage import run_whole

log = logging.getLogger("recipe.run")


@dataclass(frozen=True)
class RunSettings:
    """How stages of this run are run: failed records processed again (also those within the stage's
    ``max_failed``), or one shard of one map stage."""

    retry_failed: bool = False
    # (i, n): process only batches b with b % n == i of the one map stage asked for, into logs of this
    # shard's own; a later unsharded run merges every shard's log and finishes the stage
    shard: Shard | None = None


@dataclass
class StageDecision:
    """Whether a stage's finished folder is reused, and the revision it runs as otherwise."""

    cached: StageResult | None  # the result to reuse; None: run the stage
    revision: int = 0
    in_place: bool = False  # a finished stage re-run for its failed records: its records change in place
    note: str | None = None  # why a finished stage runs again, for the console and the log


def decide(folders: StageFolders, stage: str, retry_failed: bool, limit: int | float = 0) -> StageDecision:
    """Reuse a finished stage unless its failed records are beyond ``limit`` (or ``retry_failed`` asks for
    them): then it runs again in place for those records alone. A finished stage whose files no longer
    match its manifest runs again in its folder (its logs give back every record and call)."""
    m = folders.manifest(stage)
    revision = int(m.get("revision", 0))
    if not folders.is_done(stage):
        return StageDecision(None, revision)
    counts = m.get("counts", {})
    sdir = folders.dir(stage)
    if counts.get("failed") and (retry_failed or not within_limit(counts, limit)):
        return StageDecision(None, revision + 1, True, f"stage {stage}: trying its {counts['failed']} failed "
                             "record(s) again (records that succeeded are kept)")
    damaged = check_files(sdir, m["files"]) if isinstance(m.get("files"), dict) else None
    if damaged:
        return StageDecision(None, revision, note=f"stage {stage}: {damaged}; running it again (its logs give "
                             "back every finished record and paid call)")
    cached = StageResult(stage, folders.fingerprint(stage), "cached", sdir, counts, m.get("seconds", 0.0),
                         m.get("usage", {}), read_json(sdir / "metrics.json"))
    return StageDecision(cached)


def seed_everything(seed: int) -> None:
    """Seed the global RNGs a component may touch, so a rerun of the lockfile repeats it exactly."""
    import random
    import sys

    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def usage_of(meter: Meter) -> dict[str, Any]:
    return {"calls": meter.calls, "cached_calls": meter.cached, "errors": meter.errors, **meter.usage.model_dump()}


class Manifest:
    """A stage folder's ``manifest.json``: ``running`` while the stage runs, then ``done`` or ``failed``
    with the time it took and the calls it made."""

    def __init__(self, path: Path, data: dict[str, Any], start: float) -> None:
        self.path = path
        self.data = data
        self.start = start  # time.monotonic() when the stage began
        self.data["status"] = "running"
        self._write()

    def seconds(self) -> float:
        return time.monotonic() - self.start

    def done(self, counts: dict[str, int], usage: dict[str, Any], files: dict[str, dict]) -> float:
        """``files``: what the stage wrote (``store.file_sums``), checked before the stage is reused."""
        seconds = self.seconds()
        self.data.update(status="done", counts=counts, seconds=round(seconds, 3), usage=usage, files=files,
                         finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.data.pop("error", None)
        self._write()
        return seconds

    def failed(self, error: str, usage: dict[str, Any]) -> None:
        self.data.update(status="failed", error=error, seconds=round(self.seconds(), 3), usage=usage)
        try:
            self._write()
        except OSError as e:  # the disk that stopped the stage may not take the manifest either
            log.warning("stage manifest %s not updated: %s", self.path, e)

    def _write(self) -> None:
        atomic_write_json(self.path, self.data)


class StageRun:
    """One stage, run into its folder: records, failures ledger, metrics, report section, manifest."""

    def __init__(self, stage: str, loaded: LoadedRecipe, folders: StageFolders, models: ModelManager,
                 settings: RunSettings, *, revision: int = 0, say: Callable[[str], None] = log.info,
                 links: StageLinks | None = None) -> None:
        self.stage = stage
        self.comp = loaded.components[stage]
        self.loaded_components = loaded.components
        self.spec = loaded.recipe.stages[stage]
        self.bindings = loaded.bindings.get(stage, {})
        self.folders = folders
        self.models = models
        self.settings = settings
        self.revision = revision
        self.say = say
        self.links = links or StageLinks()

    def run(self, progress: Progress) -> StageResult:
        s, comp, folders = self.stage, self.comp, self.folders
        fp = folders.fingerprint(s)
        sdir = folders.dir(s)
        start = time.monotonic()
        # a map stage fed by an upstream still running (links.source) sees that port's records grow
        source = self.links.source
        inputs = {port: source.records if source is not None and source.stage == up else folders.records(up)
                  for port, up in self.spec.inputs.items()}
        meter = Meter()
        try:
            sdir.mkdir(parents=True, exist_ok=True)
            manifest = Manifest(sdir / "manifest.json", {
                "stage": s, "type": comp.type, "version": comp.version, "fingerprint": fp, "status": "running",
                "revision": self.revision, "inputs": {p: folders.fingerprint(u) for p, u in self.spec.inputs.items()},
                "params": comp.params.model_dump(mode="json"), "produces_model": comp.produces_model}, start)
        except OSError as e:
            raise StageFailure(s, str(write_fault(sdir / "manifest.json", e))) from None
        log.info("stage %s (%s): running → %s", s, comp.type, sdir)
        try:
            fed = source.stage if source is not None else None  # its records come later
            self._check_inputs({p: r for p, r in inputs.items() if self.spec.inputs[p] != fed})
            mapped = isinstance(comp, MapComponent) and fed is None
            total = len(inputs[map_port(comp, self.spec, s)]) if mapped else None
            bar = progress.stage(s, total, meter)
            ctx = self._context(sdir, inputs, meter, bar)
            if isinstance(comp, MapComponent):
                self._open_models(ctx)
            output = self._execute(ctx, inputs, bar)
            if fed is not None:
                self._check_inputs({p: r for p, r in inputs.items() if self.spec.inputs[p] == fed})
            write_jsonl(sdir / "records.jsonl", output.records)
            write_jsonl(sdir / "failures.jsonl", output.failures)
            metrics = self._summarize(output.records, ctx, manifest, meter)
            usage = usage_of(meter)
            seconds = manifest.done(output.counts, usage, file_sums(sdir))
        except ShardDone:
            raise
        except BudgetExceeded as e:
            manifest.failed(f"budget reached: {e}", usage_of(meter))
            raise
        except StageFailure as e:
            manifest.failed(str(e), usage_of(meter))
            raise
        except Exception as e:
            if isinstance(e, RunFileError) or is_disk_fault(e):  # our own files: one message, no traceback
                fault = e if isinstance(e, RunFileError) else write_fault(None, e)
                log.error("stage %s stopped: %s", s, fault)
                manifest.failed(str(fault), usage_of(meter))
                raise StageFailure(s, str(fault)) from None
            log.error("stage %s failed:\n%s", s, traceback.format_exc(limit=8))
            manifest.failed(f"{type(e).__name__}: {e}", usage_of(meter))
            raise StageFailure(s, f"{type(e).__name__}: {e}") from e
        folders.keep_records(s, output.records)
        log_judge_metrics(folders, s, comp.type, metrics)  # into the tracker run of the model it scored
        log.info("stage %s: done in %.1fs, %s", s, seconds, output.counts)
        return StageResult(s, fp, "ran", sdir, output.counts, seconds, usage, metrics)

    def _check_inputs(self, inputs: dict[str, list[dict]]) -> None:
        """An input with no records stops the stage, unless the recipe allows it (``allow_empty``)."""
        if self.spec.allow_empty:
            return
        for port, records in inputs.items():
            if not records:
                up = self.spec.inputs[port]
                raise StageFailure(self.stage, f"its input {port!r} (stage {up!r}) has no records, so there is "
                                   f"nothing to do; if that is expected, set `allow_empty: true` on stage "
                                   f"{self.stage!r}")

    def _open_models(self, ctx: StageContext) -> None:
        """Load the stage's chat models before any record is tried: a model that cannot load fails the
        stage (naming the model and the cause) instead of failing every record."""
        for slot, b in self.bindings.items():
            if b.slot_kind != "chat":
                continue
            try:
                ctx.model(slot).load()
            except RunFileError:
                raise
            except Exception as e:
                cause = str(e) if isinstance(e, StageFailure) else f"{type(e).__name__}: {e}"
                raise StageFailure(self.stage, f"model {b.ref!r} (slot {slot!r}) cannot be loaded: {cause}") from e

    def _context(self, sdir: Path, inputs: dict[str, list[dict]], meter: Meter, bar: StageProgress) -> StageContext:
        """The component's ``ctx``, after seeding the global RNGs with the stage's seed; a stage that calls
        only API models (``links.window``) runs beside others and leaves them alone (it has ``ctx.rng``)."""
        seed = self.folders.seed(self.stage)
        if self.links.window is None:
            seed_everything(seed)
        # each shard journals its calls in a file of its own; every journal of the stage is replayed
        return StageContext(stage=self.stage, params=self.comp.params, seed=seed, stage_dir=sdir,
                            bindings=self.bindings, models=self.models, inputs=inputs, meter=meter,
                            on_advance=bar.advance, journal=sdir / shard_name("calls", self.settings.shard),
                            artifacts=self._artifacts())

    def _artifacts(self) -> dict[str, Path]:
        """Input port -> the artifact folder of the upstream stage, for ports whose stage produces one."""
        out = {}
        for port, up in self.spec.inputs.items():
            name = self.loaded_components[up].produces_artifact
            if name:
                out[port] = self.folders.dir(up) / name
        return out

    def _execute(self, ctx: StageContext, inputs: dict[str, list[dict]], bar: StageProgress) -> StageOutput:
        if isinstance(self.comp, MapComponent):
            records = inputs[map_port(self.comp, self.spec, self.stage)]
            # a re-run for failed records (revision > 0) tries them again, also when resumed after a crash
            return MapStageRun(self.comp, self.stage, self.spec, ctx, records, bar, shard=self.settings.shard,
                               retry_failed=self.revision > 0, revision=self.revision, links=self.links).run()
        return run_whole(self.comp, self.stage, self.spec, ctx, inputs, run_root=self.folders.root, say=self.say)

    def _summarize(self, records: list[dict], ctx: StageContext, manifest: Manifest, meter: Meter) -> Any:
        """The component's metrics and report section, written next to its records."""
        sdir = ctx.artifact_dir
        try:
            metrics = self.comp.summarize(records, ctx)
            if metrics is not None:
                atomic_write_json(sdir / "metrics.json", metrics)
            section = self.comp.report(records, metrics, ctx)
            if section:
                atomic_write_text(sdir / "report_section.md", section)
        except Exception as e:
            if is_disk_fault(e):
                raise  # our own write failed: the stage stops with the file named
            log.error("stage %s: summary failed:\n%s", self.stage, traceback.format_exc(limit=8))
            manifest.failed(f"summary failed: {type(e).__name__}: {e}", usage_of(meter))
            raise StageFailure(self.stage, f"summarising its records failed: {type(e).__name__}: {e}") from e
        return metrics
