"""Side-by-side viewers as report data: question, answer, reference and the judge's analysis (LongBench-Chat,
the needle test, any LLM-judged answer), and the needle's depth × length heatmap.

Example::

    >>> ex = answer_example("r1", question="Q?", answer="A.", reference="R.", analysis=None, fields={"score": 7})
    >>> [p.title for p in ex.panes]
    ['question', 'answer', 'reference']
"""

from __future__ import annotations

from typing import Any

from components.report_data import MAX_EXAMPLES, Example, Examples, Pane, Plot, Series, Value

MAX_PANE_CHARS = 20_000  # a long question (a whole document) is cut in the middle, the report stays small


def _cut(text: str) -> str:
    if len(text) <= MAX_PANE_CHARS:
        return text
    half = MAX_PANE_CHARS // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters left out …]\n{text[-half:]}"


def answer_example(title: str, *, question: Any, answer: Any, reference: Any, analysis: Any,
                   fields: dict[str, Value] | None = None) -> Example:
    """One judged answer; panes whose text is missing are left out."""
    panes = [Pane(title=name, text=_cut(str(text))) for name, text in (
        ("question", question), ("answer", answer), ("reference", reference), ("judge analysis", analysis))
        if text is not None and str(text) != ""]
    return Example(title=title, fields=fields or {}, panes=panes)


def answers_section(title: str, examples: list[Example], note: str | None = None) -> Examples:
    return Examples(title=title, note=note, examples=examples[:MAX_EXAMPLES])


def heatmap(title: str, table: dict[float, dict[int, float]], low: float, high: float) -> Plot:
    """Mean score per depth (rows) and length (columns), on a fixed colour range."""
    lengths = sorted({n for row in table.values() for n in row})
    return Plot(title=title, chart="heatmap", x_label="context length", y_label="needle depth %",
                labels=[str(n) for n in lengths], rows=[f"{d:g}" for d in table], low=low, high=high,
                series=[Series(name=f"{d:g}", y=[row.get(n) for n in lengths]) for d, row in table.items()])
