"""``Plot`` sections drawn with matplotlib as SVG, embedded as ``data:`` images: self-contained (no
network, no file beside the report) and each figure keeps its own element ids."""

from __future__ import annotations

import base64
import io
import math

from components.report_data import Plot

COLORS = ["#3b6ea8", "#d9822b", "#3a9b5c", "#b5445b", "#7a5aa6", "#8c6d46"]


def _figure(width: float = 5.6, height: float = 3.0):
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasSVG(fig)
    return fig


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    # text stays text (smaller than glyph paths); a fixed salt makes the same plot the same bytes
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "recipe-zoo"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _line(fig, plot: Plot) -> None:
    ax = fig.add_subplot()
    for i, s in enumerate(plot.series):
        xs = s.x if s.x is not None else list(range(1, len(s.y) + 1))
        pts = [(x, y) for x, y in zip(xs, s.y) if y is not None and math.isfinite(y)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None,
                    markersize=3, color=COLORS[i % len(COLORS)], label=s.name)
    if len(plot.series) > 1:
        ax.legend(fontsize=8)


def _hist(fig, plot: Plot) -> None:
    ax = fig.add_subplot()
    values = [[v for v in s.y if v is not None and math.isfinite(v)] for s in plot.series]
    everything = [v for vs in values for v in vs]
    if not everything:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        return
    low = plot.low if plot.low is not None else min(everything)
    high = plot.high if plot.high is not None else max(everything)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    # a fixed range (a judge's scale) gets ten bins; otherwise the count grows with the data
    fixed = plot.low is not None and plot.high is not None
    bins = 10 if fixed else max(5, min(20, int(math.sqrt(len(everything))) + 4))
    for i, (s, vs) in enumerate(zip(plot.series, values)):
        if vs:
            ax.hist(vs, bins=bins, range=(low, high), alpha=0.6 if len(values) > 1 else 0.9,
                    color=COLORS[i % len(COLORS)], label=f"{s.name} (n={len(vs)})")
    ax.legend(fontsize=8)


def _bars(fig, plot: Plot) -> None:
    ax = fig.add_subplot()
    n = max(len(plot.series), 1)
    width = 0.8 / n
    for i, s in enumerate(plot.series):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(plot.labels))]
        ys = [y if y is not None else 0.0 for y in s.y[: len(plot.labels)]]
        ax.bar(xs[: len(ys)], ys, width=width, color=COLORS[i % len(COLORS)], label=s.name)
    ax.set_xticks(range(len(plot.labels)), plot.labels, rotation=20 if len(plot.labels) > 4 else 0)
    if len(plot.series) > 1:
        ax.legend(fontsize=8)


def _heatmap(fig, plot: Plot) -> None:
    ax = fig.add_subplot()
    grid = [[math.nan if v is None else v for v in s.y] for s in plot.series]
    image = ax.imshow(grid, vmin=plot.low, vmax=plot.high, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(plot.labels)), plot.labels)
    ax.set_yticks(range(len(plot.rows)), plot.rows)
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            if not math.isnan(v):
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax)


DRAW = {"line": _line, "hist": _hist, "bars": _bars, "heatmap": _heatmap}


def plot_svg(plot: Plot) -> str:
    """The plot as an SVG document."""
    if plot.chart == "heatmap":
        fig = _figure(1.6 + 0.8 * max(len(plot.labels), 1), 1.2 + 0.45 * max(len(plot.rows), 1))
    else:
        fig = _figure()
    DRAW[plot.chart](fig, plot)
    ax = fig.axes[0]
    ax.set_title(plot.title, fontsize=10)
    ax.set_xlabel(plot.x_label)
    ax.set_ylabel(plot.y_label)
    return _svg(fig)


def plot_img(plot: Plot) -> str:
    """The plot as an ``<img>`` whose source is the SVG itself (a ``data:`` URI)."""
    from html import escape

    data = base64.b64encode(plot_svg(plot).encode("utf-8")).decode("ascii")
    return f'<img class="plot" alt="{escape(plot.title)}" src="data:image/svg+xml;base64,{data}">'
