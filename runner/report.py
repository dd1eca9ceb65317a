"""``report.md``: stages, counts, timings, usage, failures, metrics, and each component's own section."""

from __future__ import annotations

import json
import time
from typing import Any

from registry.jsonio import read_json, read_jsonl
from registry.secrets import redact
from runner.failures import StageFailures
from runner.folders import StageFolders
from runner.results import StageResult


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)[:200]
    return str(v)


def build_report(folders: StageFolders, results: dict[str, StageResult], error: str | None = None,
                 failures: list[StageFailures] | None = None) -> str:
    """The run's report from its stage folders; ``results`` are the stages this process got to (the
    others show the status their manifest has); ``failures``: the stages with failed records."""
    loaded = folders.loaded
    root = folders.root
    lines = [f"# {loaded.name} — run report", ""]
    if loaded.recipe.description:
        lines += [loaded.recipe.description, ""]
    lines += [f"- recipe: `{loaded.path}`" + (f" (profile `{loaded.profile}`)" if loaded.profile else ""),
              f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}",
              "- reproduce: `recipe run recipe.lock.yaml`", ""]
    if error:
        lines += ["## Stopped", "", f"> {error}", "", "Run the same command again to resume: finished records "
                  "and paid calls are kept.", ""]
    if failures:
        lines += ["## Failed records", ""]
        for f in failures:
            head, *reasons = f.lines()
            lines += [f"- {head}"] + [f"  - {r.strip()}" for r in reasons]
        waiting = [s for s, r in results.items() if r.status == "waiting"]
        if any(f.over for f in failures):
            lines += ["", "Beyond a stage's `max_failed` the run exits 3" + (
                f" and later stages wait ({', '.join(waiting)})" if waiting else "") + "; run the same command "
                "again to try the failed records again (records that succeeded are kept)."]
        lines.append("")
    lines += ["## Stages", "", "| stage | type | status | in | out | failed | seconds | LLM calls | tokens | cost $ |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    total_cost = 0.0
    sections = []
    metrics_all = {}
    failures_all = []
    for s in loaded.order:
        res = results.get(s)
        sdir = folders.dir(s)
        m = read_json(sdir / "manifest.json", {}) or {}
        status = res.status if res else ("cached" if m.get("status") == "done" else m.get("status", "not run"))
        counts = m.get("counts", {})
        usage = m.get("usage", {})
        total_cost += float(usage.get("cost_usd", 0) or 0)
        tokens = int(usage.get("prompt_tokens", 0) or 0) + int(usage.get("completion_tokens", 0) or 0)
        calls = usage.get("calls", 0)
        if usage.get("cached_calls"):
            calls = f"{calls} (+{usage['cached_calls']} replayed)"
        lines.append(f"| {s} | `{loaded.components[s].type}` | {status} | {counts.get('in', '')} | "
                     f"{counts.get('out', '')} | {counts.get('failed', '')} | {m.get('seconds', '')} | {calls} | "
                     f"{tokens or ''} | {usage.get('cost_usd', 0) or ''} |")
        metrics = read_json(sdir / "metrics.json")
        if metrics:
            metrics_all[s] = metrics
        if (sdir / "failures.jsonl").exists():
            try:
                failures_all += [(s, f) for f in read_jsonl(sdir / "failures.jsonl", missing_ok=True)[:3]]
            except ValueError as e:  # a damaged ledger is named, never a traceback
                failures_all.append((s, {"record_id": "?", "error": f"the ledger cannot be read: {e}"}))
        sec = sdir / "report_section.md"
        if sec.exists():
            rel = sdir.relative_to(root)
            text = sec.read_text(encoding="utf-8")
            # images a component wrote next to its section are linked from the report's folder
            text = text.replace("](", f"]({rel}/").replace(f"]({rel}/http", "](http")
            sections.append((s, text))
    lines += ["", f"Total API cost: ${total_cost:.4f}", ""]
    if metrics_all:
        lines += ["## Metrics", ""]
        for s, metrics in metrics_all.items():
            lines += [f"### {s}", "", "| metric | value |", "|---|---|"]
            for k, v in metrics.items():
                lines.append(f"| {k} | {_fmt(v)} |")
            lines.append("")
    if failures_all:
        lines += ["## Failures (first per stage; all in each stage's failures.jsonl)", ""]
        for s, f in failures_all:
            raw = (f.get("raw") or "")[:160].replace("\n", " ")
            lines.append(f"- `{s}` record `{f.get('record_id')}`: {f.get('error')}" + (f" — raw: `{raw}`" if raw else ""))
        lines.append("")
    for s, text in sections:
        lines += [f"## {s}", "", text.strip(), ""]
    return redact("\n".join(lines) + "\n")
