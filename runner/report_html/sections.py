"""Report data sections (``components.report_data``) as HTML: tables, plots, text and example viewers."""

from __future__ import annotations

import json
import logging
from html import escape
from typing import Any

from components.report_data import Example, Examples, Pane, Plot, Section, Span, Table, Text
from runner.report_html.plots import plot_img

log = logging.getLogger("recipe.report")


def cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    if isinstance(v, (dict, list)):
        return escape(json.dumps(v, ensure_ascii=False, default=str)[:300])
    return escape(str(v))


def table(columns: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str | None) -> str:
    return f'<p class="note">{escape(text)}</p>' if text else ""


def _span(span: Span) -> str:
    attrs = [f'class="span{" item" if span.links or span.tags else ""}'
             + "".join(f" tag-{escape(t)}" for t in span.tags) + '"']
    if span.id is not None:
        attrs.append(f'data-sid="{escape(span.id)}"')
    if span.tags:
        attrs.append(f'data-tags="{escape(" ".join(span.tags))}"')
    if span.links:
        links = [link.model_dump(exclude_none=True) for link in span.links]
        attrs.append(f'data-links="{escape(json.dumps(links, ensure_ascii=False))}"')
    if span.note:
        attrs.append(f'data-note="{escape(span.note)}"')
    if span.links or span.note:
        attrs.append('tabindex="0" role="button"')
    number = f'<span class="num">{escape(span.number)}</span>' if span.number is not None else ""
    return f"<span {' '.join(attrs)}>{number}{escape(span.text)}</span>"


def _pane(pane: Pane) -> str:
    body = escape(pane.text) if pane.text is not None else pane.sep.join(_span(s) for s in pane.spans)
    return f'<div class="pane"><h5>{escape(pane.title)}</h5><div class="pane-body">{body}</div></div>'


def _example(ex: Example, open_: bool) -> str:
    facts = " · ".join(f"{escape(k)}: {cell(v)}" for k, v in ex.fields.items())
    fields = table(["field", "value"], [[k, v] for k, v in ex.fields.items()], "fields") if ex.fields else ""
    panes = "".join(_pane(p) for p in ex.panes)
    return (f'<details class="example"{" open" if open_ else ""} data-tags="{escape(" ".join(ex.tags))}">'
            f'<summary><b>{escape(ex.title)}</b> <span class="facts">{facts}</span></summary>{fields}'
            f'<div class="detail" hidden></div><div class="panes">{panes}</div></details>')


def _examples(sec: Examples) -> str:
    filters = "".join(f'<label><input type="checkbox" class="filter" value="{escape(tag)}"> {escape(label)}</label>'
                      for tag, label in sec.filters.items())
    bar = f'<div class="filters">{filters}</div>' if filters else ""
    body = "".join(_example(ex, i == 0) for i, ex in enumerate(sec.examples))
    return f'<div class="examples">{_note(sec.note)}{bar}{body}</div>'


def render_section(sec: Section) -> str:
    """One section as HTML; a plot that cannot be drawn is named instead of failing the report."""
    title = f"<h4>{escape(sec.title)}</h4>" if getattr(sec, "title", "") else ""
    if isinstance(sec, Table):
        return f'<div class="sec">{title}{table(sec.columns, sec.rows)}{_note(sec.note)}</div>'
    if isinstance(sec, Text):
        return f'<div class="sec">{title}<p>{escape(sec.text)}</p></div>'
    if isinstance(sec, Plot):
        try:
            img = plot_img(sec)
        except Exception as e:  # noqa: BLE001 - one bad plot must not cost the whole report
            log.warning("report: plot %r cannot be drawn: %s", sec.title, e)
            img = f'<p class="problem">plot cannot be drawn: {escape(f"{type(e).__name__}: {e}")}</p>'
        return f'<div class="sec plot-sec">{img}{_note(sec.note)}</div>'
    return f'<div class="sec">{title}{_examples(sec)}</div>'
