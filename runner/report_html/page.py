"""The page of ``report.html``: the run overview (graph, stages, usage, failures, lockfile facts), then
each stage's metrics, report data and markdown section. Styles and the viewers' script are inline."""

from __future__ import annotations

import json
import re
from html import escape
from importlib.resources import files

from runner.report_html.graph import graph_svg
from runner.report_html.run_view import RunView, StageView
from runner.report_html.sections import render_section, table

RAW_CHARS = 4000  # model text shown per failed record
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


def _asset(name: str) -> str:
    return (files("runner.report_html") / "assets" / name).read_text(encoding="utf-8")


def _markdown(text: str) -> str:
    """A component's markdown section; raw HTML in it is escaped, its images are hidden (the report draws
    its plots from the report data)."""
    from markdown_it import MarkdownIt

    text = IMAGE.sub("", text)  # nothing may load from outside the file
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _stage_rows(run: RunView) -> list[list]:
    rows = []
    for s in run.stages:
        calls = s.usage.get("calls", "")
        if s.usage.get("cached_calls"):
            calls = f"{calls} (+{s.usage['cached_calls']} replayed)"
        rows.append([s.name, s.type, s.status, s.counts.get("in"), s.counts.get("out"), s.counts.get("failed"),
                     s.seconds, calls, s.tokens or None, s.cost or None])
    return rows


def _failures(run: RunView) -> str:
    failed = [s for s in run.stages if s.failures or s.problem]
    if not failed:
        return ""
    out = ['<h2 id="failures">Failed records</h2>']
    for s in failed:
        if s.problem:
            out.append(f'<p class="problem">{escape(s.name)}: {escape(s.problem)}</p>')
        if not s.failures:
            continue
        more = f" (first {len(s.failures)} shown; all in failures.jsonl)" if s.failed_total > len(s.failures) else ""
        out.append(f"<h3>{escape(s.name)}: {s.failed_total} failed{escape(more)}</h3>")
        for f in s.failures:
            raw = f.get("raw")
            body = f"<pre>{escape(str(raw)[:RAW_CHARS])}</pre>" if raw else "<p class='note'>no model text</p>"
            out.append(f"<details><summary>record <code>{escape(str(f.get('record_id')))}</code>: "
                       f"{escape(str(f.get('error')))}</summary>{body}</details>")
    return "".join(out)


def _metrics(metrics: dict) -> str:
    flat = [[k, v] for k, v in metrics.items() if not isinstance(v, (dict, list))]
    nested = {k: v for k, v in metrics.items() if isinstance(v, (dict, list))}
    out = table(["metric", "value"], flat) if flat else ""
    if nested:
        out += f"<pre>{escape(json.dumps(nested, indent=1, ensure_ascii=False, default=str)[:20000])}</pre>"
    return f"<details><summary>metrics</summary>{out}</details>"


def _stage(s: StageView) -> str:
    parts = [f'<section class="stage" id="stage-{escape(s.name)}"><h3>{escape(s.name)} '
             f'<span class="type">{escape(s.type)} · {escape(s.status)}</span></h3>']
    if s.metrics:
        parts.append(_metrics(s.metrics))
    parts += [render_section(sec) for sec in s.sections]
    if s.markdown:
        parts.append(f'<details class="md"{"" if s.sections else " open"}><summary>summary (as in report.md)'
                     f"</summary>{_markdown(s.markdown)}</details>")
    if not (s.metrics or s.sections or s.markdown):
        parts.append('<p class="note">nothing to show beyond the table above</p>')
    parts.append("</section>")
    return "".join(parts)


def render_page(run: RunView) -> str:
    title = f"{run.name} — run report"
    head = [f"<h1>{escape(title)}</h1>"]
    if run.description:
        head.append(f"<p>{escape(run.description)}</p>")
    head.append(f'<p class="note">profile: {escape(run.profile or "none")}'
                + (f" · last run finished {escape(run.written)}" if run.written else "")
                + " · reproduce: <code>recipe run recipe.lock.yaml</code></p>")
    nav = '<nav><a href="#overview">overview</a><a href="#stages">stages</a>' + (
        '<a href="#failures">failures</a>' if any(s.failures for s in run.stages) else "") + "</nav>"
    body = []
    if run.error:
        body.append(f'<p class="stopped"><b>Stopped:</b> {escape(run.error)}. Run the same command again to '
                    "resume: finished records and paid calls are kept.</p>")
    columns = ["stage", "type", "status", "in", "out", "failed", "seconds", "LLM calls", "tokens", "cost $"]
    body += ['<h2 id="overview">Overview</h2>', graph_svg(run.stages), table(columns, _stage_rows(run), "stages"),
             f"<p>Total API cost: ${run.cost:.4f} · tokens: {sum(s.tokens for s in run.stages)}</p>",
             "<h3>Lockfile</h3>", table(["fact", "value"], [list(f) for f in run.facts], "facts"),
             _failures(run), '<h2 id="stages">Stages</h2>', *(_stage(s) for s in run.stages)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # nothing outside this file may load: a report opens offline, from any disk or repo
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head>"
            f"<body><header>{''.join(head)}{nav}</header><main>{''.join(body)}</main>"
            f"<script>{_asset('report.js')}</script></body></html>\n")
