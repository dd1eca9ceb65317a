"""Runs a loaded recipe: fingerprints, cache reuse, map stages with a write-ahead log, whole stages."""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.base import Component, Failed, MapComponent, record_key
from registry.atomic import atomic_write_json, atomic_write_text
from registry.jsonio import read_json, write_jsonl
from runner.backends.base import BudgetExceeded
from runner.callcache import Meter, set_scope
from runner.context import StageContext
from runner.errors import StageFailure
from runner.fingerprint import digest, files_identity, relative_to, stage_seed, text_hash
from runner.load import LoadedRecipe
from runner.models import ModelManager
from runner.paths import is_path_field, resolve_one
from runner.progress import Progress
from runner.store import AppendLog, RunStore, read_complete_lines

log = logging.getLogger("recipe.run")

# backend options that change speed or spending, never outputs: left out of fingerprints
RUNTIME_OPTIONS = {"batch_size", "concurrency", "rpm", "tpm", "timeout_s", "max_retries", "budget_usd", "device",
                   "num_threads", "backoff_s", "backoff_max_s", "max_retry_after_s", "api_key_env",
                   "gpu_memory_utilization", "enable_prefix_caching"}


def unique_keys(records: list[dict]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for r in records:
        k = record_key(r)
        if k in seen:
            seen[k] += 1
            k = f"{k}#{seen[k]}"
        else:
            seen[k] = 0
        out.append(k)
    return out


@dataclass
class StageResult:
    stage: str
    fingerprint: str
    status: str  # cached | ran | failed
    dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    error: str | None = None


def shard_name(stem: str, shard: tuple[int, int] | None) -> str:
    return f"{stem}.jsonl" if shard is None else f"{stem}.shard{shard[0]}of{shard[1]}.jsonl"


class ShardDone(Exception):
    """A sharded run finished its share of a stage; the stage is finished by an unsharded run."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__(f"stage {stage!r}: this shard is done; {done} of {total} records finished so far "
                         "(run without --shard once every shard is done to merge and finish the stage)")
        self.stage, self.done, self.total = stage, done, total


def seed_everything(seed: int) -> None:
    """Seed the global RNGs a component may touch, so a rerun of the lockfile repeats it exactly."""
    import random
    import sys

    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


class Runner:
    def __init__(self, loaded: LoadedRecipe, runs_dir: Path, *, console: Any = None, show_progress: bool = True,
                 retry_failed: bool = False, shard: tuple[int, int] | None = None) -> None:
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.store = RunStore(Path(runs_dir) / loaded.name)
        self.console = console
        self.show_progress = show_progress
        self.retry_failed = retry_failed
        # (i, n): process only batches b with b % n == i of the one map stage asked for, into logs of
        # this shard's own; a later unsharded run merges every shard's log and finishes the stage
        self.shard = shard
        self._salt = ""
        self._zoo = None
        self._fps: dict[str, str] | None = None
        self._records: dict[str, list[dict]] = {}
        self.results: dict[str, StageResult] = {}
        locked = (loaded.recipe.lock or {}).get("models", {})
        self.models = ModelManager(self.zoo, self.trained_model_dir, locked=locked, progress=self._say)

    # ------------------------------------------------------------------ helpers
    @property
    def zoo(self):
        if self._zoo is None:
            from registry.zoo import Zoo

            self._zoo = Zoo.load([Path(resolve_one(z, self.loaded.base_dir)) for z in self.recipe.zoo])
        return self._zoo

    def _say(self, msg: str) -> None:
        log.info(msg)
        if self.console is not None:
            self.console.print(f"[dim]{msg}[/dim]")

    def trained_model_dir(self, stage: str) -> Path:
        return self.store.stage_dir(stage, self.fingerprints()[stage]) / "model"

    def model_identity(self, stage: str, slot: str) -> Any:
        """What a model contributes to a fingerprint: its source, what pins it, and the entry's settings
        that change outputs (chat template, serving options, API model) — never speed-only options."""
        b = self.loaded.bindings[stage][slot]
        opts = {k: v for k, v in b.options.items() if k not in RUNTIME_OPTIONS}
        if b.kind == "stage":
            return ["stage", self.fingerprints()[b.ref]]
        source, settings = b.ref, None
        try:
            entry = self.zoo.get(b.ref)
            source = entry.source
            api = entry.api.model_dump(mode="json") if entry.api else {}
            settings = {
                "chat_template": text_hash(entry.chat_template) if entry.chat_template else None,
                "serving": {k: v for k, v in (entry.serving or {}).items() if k not in RUNTIME_OPTIONS},
                "api": {k: api.get(k) for k in ("model_id", "base_url")},
            }
        except KeyError:
            pass
        pin = None
        if source.startswith("file://"):
            # a local folder (e.g. a model published by an earlier recipe) is pinned by its content now,
            # so retraining into the same folder reruns what used it
            try:
                pin = self.zoo.resolve(b.ref, pull=True).pin
            except Exception:  # a missing folder fails when the stage opens it, with a clear error
                pin = None
        return ["zoo", source, pin, settings, b.backend, opts]

    def fingerprints(self) -> dict[str, str]:
        """Every stage's fingerprint, computed without loading any model."""
        if self._fps is not None:
            return self._fps
        fps: dict[str, str] = {}
        self._fps = fps
        for s in self.loaded.order:
            comp = self.loaded.components[s]
            spec = self.recipe.stages[s]
            params = comp.params.model_dump(mode="json")
            fields = comp.Params.model_fields
            path_keys = [k for k in params if k in fields and is_path_field(k, fields[k].annotation)]
            # a source stage (nothing connected upstream) depends on the files it reads; other stages'
            # path params are usually outputs, whose content must not change their own fingerprint
            files = {} if spec.inputs else {k: files_identity(params[k]) for k in path_keys}
            # paths relative to the recipe: moving the checkout keeps every fingerprint
            for k in path_keys:
                params[k] = relative_to(params[k], self.loaded.base_dir)
            fps[s] = digest({
                "type": comp.type, "version": comp.version, "params": params, "files": files,
                "inputs": {p: [fps[u], self.revision(u)] for p, u in sorted(spec.inputs.items())},
                "models": {slot: self.model_identity(s, slot) for slot in self.loaded.bindings.get(s, {})},
                "prompts": {k: text_hash(v) for k, v in comp.prompt_texts().items()},
                "seed": self.stage_seed(s),
            })
        return fps

    def revision(self, stage: str) -> int:
        """How many times a finished stage was re-run in place (``--retry-failed``): part of the
        fingerprints downstream, so what read the old records runs again in a fresh folder."""
        m = self.store.manifest(stage, self.fingerprints()[stage]) or {}
        return int(m.get("revision", 0))

    def stage_seed(self, stage: str) -> int:
        return stage_seed(self.recipe.seed, stage)

    def stage_dir(self, stage: str) -> Path:
        return self.store.stage_dir(stage, self.fingerprints()[stage])

    def records(self, stage: str) -> list[dict]:
        if stage not in self._records:
            self._records[stage] = self.store.records(stage, self.fingerprints()[stage])
        return self._records[stage]

    def is_cached(self, stage: str) -> bool:
        return self.store.is_done(stage, self.fingerprints()[stage])

    # ------------------------------------------------------------------ run
    def run(self, stages: list[str] | None = None) -> dict[str, StageResult]:
        order = self.loaded.order if stages is None else [s for s in self.loaded.order if s in set(stages)]
        fps = self.fingerprints()
        self.store.set_latest({s: str(self.stage_dir(s).relative_to(self.store.root)) for s in self.loaded.order})
        with Progress(self.console, enabled=self.show_progress) as progress:
            for s in order:
                fps = self.fingerprints()
                if self.shard and s != order[-1] and not self.is_cached(s):
                    raise StageFailure(s, "--shard runs one map stage whose inputs are finished: run the "
                                       "upstream stages first (without --shard)")
                m = self.store.manifest(s, fps[s]) or {}
                retry = self.retry_failed and self.is_cached(s) and bool(m.get("counts", {}).get("failed"))
                if self.is_cached(s) and not retry:
                    self.results[s] = StageResult(s, fps[s], "cached", self.stage_dir(s), m.get("counts", {}),
                                                  m.get("seconds", 0.0), m.get("usage", {}),
                                                  read_json(self.stage_dir(s) / "metrics.json"))
                    log.info("stage %s: cached (%s)", s, fps[s][:12])
                    continue
                revision = int(m.get("revision", 0)) + (1 if retry else 0)
                self.results[s] = self._run_stage(s, progress, revision)
                if retry:  # its records changed in place: downstream fingerprints change with its revision
                    self._fps = None
                    self._records.pop(s, None)
                    self.store.set_latest({x: str(self.stage_dir(x).relative_to(self.store.root))
                                           for x in self.loaded.order})
        return self.results

    def _inputs(self, stage: str) -> dict[str, list[dict]]:
        return {port: self.records(up) for port, up in self.recipe.stages[stage].inputs.items()}

    def _run_stage(self, s: str, progress: Progress, revision: int = 0) -> StageResult:
        comp = self.loaded.components[s]
        spec = self.recipe.stages[s]
        fp = self.fingerprints()[s]
        sdir = self.stage_dir(s)
        sdir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        inputs = self._inputs(s)
        meter = Meter()
        manifest = {"stage": s, "type": comp.type, "version": comp.version, "fingerprint": fp, "status": "running",
                    "revision": revision,
                    "inputs": {p: self.fingerprints()[u] for p, u in spec.inputs.items()},
                    "params": comp.params.model_dump(mode="json"), "produces_model": comp.produces_model}
        atomic_write_json(sdir / "manifest.json", manifest)
        total = None
        if isinstance(comp, MapComponent):
            total = len(inputs[self._map_port(comp, s)])
        bar = progress.stage(s, total, meter)
        seed_everything(self.stage_seed(s))
        self._salt = f":rev{revision}" if revision else ""  # a retry pass asks afresh, not from the journal
        ctx = StageContext(stage=s, params=comp.params, seed=self.stage_seed(s), stage_dir=sdir,
                           bindings=self.loaded.bindings.get(s, {}), models=self.models, inputs=inputs, meter=meter,
                           on_advance=bar.advance, journal=sdir / shard_name("calls", self.shard))
        log.info("stage %s (%s): running → %s", s, comp.type, sdir)
        try:
            if isinstance(comp, MapComponent):
                records, failures, counts = self._run_map(comp, s, ctx, inputs, bar)
            else:
                records, failures, counts = self._run_whole(comp, s, ctx, inputs)
        except ShardDone:
            raise
        except BudgetExceeded as e:
            self._fail(sdir, manifest, meter, start, f"budget reached: {e}")
            raise
        except StageFailure as e:
            self._fail(sdir, manifest, meter, start, str(e))
            raise
        except Exception as e:
            tb = traceback.format_exc(limit=8)
            log.error("stage %s failed:\n%s", s, tb)
            self._fail(sdir, manifest, meter, start, f"{type(e).__name__}: {e}")
            raise StageFailure(s, f"{type(e).__name__}: {e}") from e
        write_jsonl(sdir / "records.jsonl", records)
        write_jsonl(sdir / "failures.jsonl", failures)
        self._records[s] = records
        try:
            metrics = comp.summarize(records, ctx)
            if metrics is not None:
                atomic_write_json(sdir / "metrics.json", metrics)
            section = comp.report(records, metrics, ctx)
            if section:
                atomic_write_text(sdir / "report_section.md", section)
        except Exception as e:
            log.error("stage %s: summary failed:\n%s", s, traceback.format_exc(limit=8))
            self._fail(sdir, manifest, meter, start, f"summary failed: {type(e).__name__}: {e}")
            raise StageFailure(s, f"summarising its records failed: {type(e).__name__}: {e}") from e
        seconds = time.monotonic() - start
        usage = self._usage(meter)
        manifest.update(status="done", counts=counts, seconds=round(seconds, 3), usage=usage,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_json(sdir / "manifest.json", manifest)
        log.info("stage %s: done in %.1fs, %s", s, seconds, counts)
        return StageResult(s, fp, "ran", sdir, counts, seconds, usage, metrics)

    @staticmethod
    def _usage(meter: Meter) -> dict[str, Any]:
        return {"calls": meter.calls, "cached_calls": meter.cached, "errors": meter.errors,
                **meter.usage.model_dump()}

    def _fail(self, sdir: Path, manifest: dict, meter: Meter, start: float, error: str) -> None:
        manifest.update(status="failed", error=error, seconds=round(time.monotonic() - start, 3),
                        usage=self._usage(meter))
        atomic_write_json(sdir / "manifest.json", manifest)

    def _map_port(self, comp: MapComponent, s: str) -> str:
        if comp.map_over:
            return comp.map_over
        ports = list(self.recipe.stages[s].inputs)
        if len(ports) != 1:
            raise StageFailure(s, f"{comp.type} maps over one input; give exactly one or set map_over")
        return ports[0]

    # ------------------------------------------------------------------ map stages
    def _run_map(self, comp: MapComponent, s: str, ctx: StageContext, inputs: dict[str, list[dict]], bar):
        spec = self.recipe.stages[s]
        records = inputs[self._map_port(comp, s)]
        keys = unique_keys(records)
        by_key = dict(zip(keys, records))
        size = spec.batch_size or comp.batch_size
        wal = AppendLog(ctx.artifact_dir / shard_name("wal", self.shard))
        done: dict[str, dict] = {}
        # every shard's log counts; this process's own log is read last so its newer entries win
        for path in sorted(ctx.artifact_dir.glob("wal*.jsonl"), key=lambda p: p == wal.path):
            entries = wal if path == wal.path else read_complete_lines(path)
            for entry in entries:
                done.update(entry.get("items", {}))
        if self.retry_failed:
            done = {k: v for k, v in done.items() if "failed" not in v}
        batches = []
        for b, i in enumerate(range(0, len(keys), size)):
            if self.shard and b % self.shard[1] != self.shard[0]:
                continue
            todo = [k for k in keys[i:i + size] if k not in done]
            if todo:
                batches.append(todo)
        if done:
            log.info("stage %s: resuming, %d of %d records already done", s, len(done), len(keys))
            bar.advance(sum(1 for k in keys if k in done))

        def work(bkeys: list[str]) -> None:
            items = self._process_batch(comp, s, ctx, bkeys, [by_key[k] for k in bkeys], spec.retries)
            wal.append({"items": items})
            done.update(items)
            bar.advance(len(bkeys))

        if spec.concurrency > 1 and len(batches) > 1:
            pool = ThreadPoolExecutor(spec.concurrency)
            try:
                for f in [pool.submit(work, b) for b in batches]:
                    f.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # no further batch is started (or paid)
                raise
            pool.shutdown()
        else:
            for b in batches:
                work(b)

        if self.shard:
            raise ShardDone(s, sum(1 for k in keys if k in done), len(keys))
        out, failures = [], []
        for k in keys:
            item = done[k]
            if "failed" in item:
                failures.append({"stage": s, "record_id": k, **item["failed"]})
            else:
                out.extend(item["out"])
        counts = {"in": len(records), "out": len(out), "failed": len(failures),
                  "dropped": sum(1 for k in keys if "out" in done[k] and not done[k]["out"])}
        for f in failures[:5]:
            log.warning("stage %s, record %s failed: %s", s, f["record_id"], f["error"])
        return out, failures, counts

    def _process_batch(self, comp: MapComponent, s: str, ctx: StageContext, keys: list[str], batch: list[dict],
                       retries: int) -> dict[str, dict]:
        set_scope(digest(keys) + self._salt)
        batch_failed = False
        try:
            outs: list[Any] = list(comp.process(batch, ctx))
            if len(outs) != len(batch):
                raise StageFailure(s, f"{comp.type}.process returned {len(outs)} results for {len(batch)} records")
        except (BudgetExceeded, StageFailure):
            raise
        except Exception as e:  # the batch failed as a whole: try each record alone
            log.warning("stage %s: batch of %d failed (%s: %s); retrying records one by one",
                        s, len(batch), type(e).__name__, e)
            outs = [e] * len(batch)
            batch_failed = len(batch) > 1
        # a record of a batch that failed as a whole gets one extra attempt: its first try alone
        budget = retries + (1 if batch_failed else 0)
        items: dict[str, dict] = {}
        for k, rec, o in zip(keys, batch, outs):
            attempt = 0
            while self._retryable(o) and attempt < budget:
                attempt += 1
                set_scope(f"{k}:retry{attempt}{self._salt}")
                try:
                    o = comp.process([rec], ctx)[0]
                except (BudgetExceeded, StageFailure):
                    raise
                except Exception as e:
                    o = e
            items[k] = self._encode(o, k)
        return items

    @staticmethod
    def _retryable(o: Any) -> bool:
        return isinstance(o, Exception) or (isinstance(o, Failed) and o.retry)

    @staticmethod
    def _encode(o: Any, key: str) -> dict:
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

    # ------------------------------------------------------------------ whole stages
    def _run_whole(self, comp: Component, s: str, ctx: StageContext, inputs: dict[str, list[dict]]):
        spec = self.recipe.stages[s]
        set_scope(f"whole:{s}")
        if spec.launch is not None and spec.launch.num_processes > 1:
            from runner.launch import run_launched

            records = run_launched(self, s, ctx)
        else:
            records = comp.run(inputs, ctx)
        records = list(records or [])
        n_in = sum(len(v) for v in inputs.values())
        return records, [], {"in": n_in, "out": len(records), "failed": 0}
