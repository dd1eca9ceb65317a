"""Report data: what a component shows in the run's report, as data (part of the component contract).

A component's ``report_data(records, metrics, ctx)`` returns a list of sections; the runner stores them
in the stage folder (``report_data.json``) and one renderer on the runner's side turns them into the
run's ``report.html``. No component writes HTML. Four kinds:

* ``Table`` — columns and rows of plain values;
* ``Plot`` — series to draw: ``line`` (x/y per series, e.g. loss per step), ``hist`` (the values of each
  series, e.g. a judge's scores), ``bars`` (one bar per label and series, e.g. before/after per
  dimension) or ``heatmap`` (a grid of cells with row and column labels);
* ``Text`` — a short paragraph of plain text;
* ``Examples`` — records to read, each made of ``fields`` (small facts: scores, a decision) and ``panes``
  of text spans shown side by side. A span may carry an ``id``; a span with ``links`` highlights the
  spans it names when clicked and lists each link's label (a judge's verdict, say); a span's ``tags``
  colour it and feed the section's ``filters`` (e.g. show only uncited statements). Any method's viewer
  (citations, retrieval decisions, judged facts) is data of this one shape.

Example::

    >>> s = Examples(title="answers", examples=[Example(title="q1", panes=[
    ...     Pane(title="answer", spans=[Span(text="Paris.", links=[Link(target="c0", label="supported")])]),
    ...     Pane(title="context", spans=[Span(id="c0", text="Paris is the capital.")])])])
    >>> section_list([s])[0]["kind"]
    'examples'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

REPORT_DATA = "report_data.json"  # the file the runner keeps them in, in the stage folder
MAX_EXAMPLES = 12  # examples a component shows per section: the report stays a few MB
Value = str | int | float | bool | None


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Table(_Data):
    kind: Literal["table"] = "table"
    title: str
    columns: list[str]
    rows: list[list[Value]]
    note: str | None = None


class Series(_Data):
    name: str
    y: list[float | None]
    x: list[float] | None = None  # line plots: the x of each y (default 1, 2, ...)


class Plot(_Data):
    kind: Literal["plot"] = "plot"
    title: str
    chart: Literal["line", "hist", "bars", "heatmap"]
    series: list[Series] = Field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    labels: list[str] = Field(default_factory=list, description="bars: the label of each bar group; "
                              "heatmap: the column labels")
    rows: list[str] = Field(default_factory=list, description="heatmap: the row labels (one series per row)")
    low: float | None = None  # fixed value range (a heatmap's colour scale, a histogram's bins)
    high: float | None = None
    note: str | None = None


class Text(_Data):
    kind: Literal["text"] = "text"
    title: str = ""
    text: str


class Link(_Data):
    target: str  # the id of a span in the same example
    label: str | None = None  # shown when the linking span is clicked (e.g. "relevant")
    tag: str | None = None  # colours the label: good, partial, bad, unknown


class Span(_Data):
    text: str
    id: str | None = None
    number: str | None = None  # shown before the text (a sentence's index in a numbered context)
    links: list[Link] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    note: str | None = None  # shown when the span is clicked (e.g. the judge's verdict on a statement)


class Pane(_Data):
    title: str
    spans: list[Span] = Field(default_factory=list)
    text: str | None = None  # a pane of one plain text (instead of spans)
    sep: str = " "  # put between spans ("" when their texts carry their own spacing)


class Example(_Data):
    title: str
    fields: dict[str, Value] = Field(default_factory=dict)
    panes: list[Pane] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class Examples(_Data):
    kind: Literal["examples"] = "examples"
    title: str
    note: str | None = None
    filters: dict[str, str] = Field(default_factory=dict, description="span tag -> checkbox label: when "
                                    "checked, only spans with that tag stay bright")
    examples: list[Example]


Section = Annotated[Table | Plot | Text | Examples, Field(discriminator="kind")]
SECTIONS: TypeAdapter[list[Section]] = TypeAdapter(list[Section])


def section_list(sections: list[Any]) -> list[dict]:
    """Sections as JSON data (validated)."""
    return SECTIONS.dump_python(SECTIONS.validate_python(sections), mode="json")


def read_sections(data: Any) -> list[Section]:
    """Sections from their JSON data (raises ``pydantic.ValidationError`` on a bad shape)."""
    return SECTIONS.validate_python(data)


def finite(values: Any) -> list[float]:
    """The finite numbers among ``values`` (None, NaN and non-numbers dropped)."""
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def columns(records: Iterable[dict], keys: Sequence[str],
            part: Callable[[dict], dict] | None = None) -> dict[str, list]:
    """Each key's values over ``records`` (in ``part(record)`` when given), in one pass: a stage's records
    are read from disk again on every pass."""
    out: dict[str, list] = {k: [] for k in keys}
    for r in records:
        source = part(r) if part else r
        for k in keys:
            out[k].append(source.get(k))
    return out


def score_histogram(title: str, scores: dict[str, Any], *, x_label: str = "score", low: float | None = None,
                    high: float | None = None) -> Plot:
    """A histogram of each named list of scores (non-numbers dropped)."""
    return Plot(title=title, chart="hist", x_label=x_label, y_label="records", low=low, high=high,
                series=[Series(name=k, y=finite(v)) for k, v in scores.items()])


def step_curves(records: list[dict], keys: dict[str, str], title: str = "training") -> list[Plot]:
    """One line plot per ``keys`` entry (record field -> axis label) over the records' ``step``."""
    out = []
    for key, label in keys.items():
        rows = [r for r in records if isinstance(r.get(key), (int, float)) and r.get("step") is not None]
        if rows:
            out.append(Plot(title=f"{title}: {label} per step", chart="line", x_label="step", y_label=label,
                            series=[Series(name=label, x=[float(r["step"]) for r in rows],
                                           y=[float(r[key]) for r in rows])]))
    return out
