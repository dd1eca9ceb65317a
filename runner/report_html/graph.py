"""The stage graph as inline SVG: one column per depth (a stage sits right of every stage it reads), boxes
coloured by status, arrows from inputs; a box links to its stage's part of the report."""

from __future__ import annotations

from html import escape

from runner.report_html.run_view import StageView

STATUS_COLORS = {"ran": "#cfe8d5", "done": "#cfe8d5", "cached": "#dde6f3", "failed": "#f4c7c7",
                 "waiting": "#f6e2b8", "running": "#f6e2b8", "not run": "#eeeeee"}
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 46, 46, 14


def depths(stages: list[StageView]) -> dict[str, int]:
    """Each stage's column: 0 for a stage with no inputs, else one more than its deepest input."""
    known = {s.name: s for s in stages}
    out: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in out:
            return out[name]
        if name in seen or name not in known:  # a cycle or an unknown input: never loops
            return 0
        ins = [i for i in known[name].inputs if i in known]
        out[name] = 1 + max((depth(i, seen | {name}) for i in ins), default=-1)
        return out[name]

    for s in stages:
        depth(s.name)
    return out


def graph_svg(stages: list[StageView]) -> str:
    if not stages:
        return ""
    cols = depths(stages)
    per_col: dict[int, list[StageView]] = {}
    for s in stages:
        per_col.setdefault(cols[s.name], []).append(s)
    pos: dict[str, tuple[int, int]] = {}
    for c, col in per_col.items():
        for r, s in enumerate(col):
            pos[s.name] = (10 + c * (BOX_W + GAP_X), 10 + r * (BOX_H + GAP_Y))
    width = 20 + (max(per_col) + 1) * (BOX_W + GAP_X) - GAP_X
    height = 20 + max(len(c) for c in per_col.values()) * (BOX_H + GAP_Y) - GAP_Y
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="stage graph">',
             '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#777"/></marker></defs>']
    for s in stages:
        x, y = pos[s.name]
        for i in s.inputs:
            if i in pos:
                ix, iy = pos[i]
                parts.append(f'<line x1="{ix + BOX_W}" y1="{iy + BOX_H / 2}" x2="{x}" y2="{y + BOX_H / 2}" '
                             'stroke="#777" stroke-width="1.2" marker-end="url(#arrow)"/>')
    for s in stages:
        x, y = pos[s.name]
        fill = STATUS_COLORS.get(s.status, "#eeeeee")
        secs = f", {s.seconds:.1f}s" if isinstance(s.seconds, (int, float)) else ""
        out = s.counts.get("out")
        tip = f"{s.name} ({s.type}): {s.status}{secs}" + (f", {out} records" if out is not None else "")
        parts.append(
            f'<a href="#stage-{escape(s.name)}"><g class="node" data-stage="{escape(s.name)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#888"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="13" font-weight="600">{escape(s.name[:20])}</text>'
            f'<text x="{x + 8}" y="{y + 36}" font-size="11" fill="#444">{escape(s.status)}{escape(secs)}'
            f"{escape(f' · {out} out' if out is not None else '')}</text></g></a>")
    parts.append("</svg>")
    return "".join(parts)
