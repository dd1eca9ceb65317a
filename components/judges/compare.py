"""``judge.compare``: two trained models' judge results (and the data they were trained on) side by side."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Fields, Params, WholeComponent

PAIRS = (("chat_a", "chat_b"), ("needle_a", "needle_b"), ("selection_a", "selection_b"))


class CompareParams(Params):
    label_a: str = Field("A", description="Name of the first model in the report (e.g. GATEAU).")
    label_b: str = Field("B", description="Name of the second model (e.g. random).")


class Compare(WholeComponent):
    """Puts the judge scores of two models side by side, e.g. a model trained on a GATEAU selection and one
    trained on a random selection of the same size.

    Every input is optional, but ports come in pairs (`chat_a` with `chat_b`, ...):

    * `chat_a`/`chat_b`: ``judge.longbench_chat`` records: mean rating ×10 (as GATEAU reports it) and the
      number of rated answers;
    * `needle_a`/`needle_b`: ``judge.needle`` records: mean score (1–10), mean recall where present, and the
      mean score per context length;
    * `selection_a`/`selection_b`: the selected training records (``select.gateau_rank``): how many, their
      mean GATEAU score and rank, how many both share, and the mean ``depth`` where records carry one.

    Records out: one ``{metric, a, b, difference}`` per row (difference = a − b where both are numbers);
    the report renders them as one table. Judges whose verdicts did not parse contribute fewer records;
    the n rows say how many were compared.
    """

    type: ClassVar[str] = "judge.compare"
    Params: ClassVar[type[Params]] = CompareParams
    inputs: ClassVar[dict[str, Fields]] = {
        "chat_a": Fields("score"), "chat_b": Fields("score"),
        "needle_a": Fields("score", "length"), "needle_b": Fields("score", "length"),
        "selection_a": Fields("id"), "selection_b": Fields("id"),
    }
    optional_inputs: ClassVar[frozenset[str]] = frozenset(inputs)
    outputs: ClassVar[Fields | None] = Fields("metric", "a", "b", "difference")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        for a, b in PAIRS:
            if (a in inputs) != (b in inputs):
                raise ValueError(f"judge.compare: connect both {a} and {b}, or neither")
        if not any(a in inputs for a, _ in PAIRS):
            raise ValueError("judge.compare: nothing to compare; connect chat_a/chat_b, needle_a/needle_b or "
                             "selection_a/selection_b")
        rows: list[dict] = []
        if "chat_a" in inputs:
            rows += _rows("LongBench-Chat", chat_metrics(inputs["chat_a"]), chat_metrics(inputs["chat_b"]))
        if "needle_a" in inputs:
            rows += _rows("needle", needle_metrics(inputs["needle_a"]), needle_metrics(inputs["needle_b"]))
        if "selection_a" in inputs:
            sel_a, sel_b = inputs["selection_a"], inputs["selection_b"]
            shared = len({str(r["id"]) for r in sel_a} & {str(r["id"]) for r in sel_b})
            rows += _rows("training selection", selection_metrics(sel_a), selection_metrics(sel_b))
            rows.append({"metric": "training selection: records in both", "a": shared, "b": shared,
                         "difference": None})
        return rows

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        return {r["metric"]: {"a": r["a"], "b": r["b"]} for r in records}

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """The comparison as a table."""
        from components.report_data import Table

        p: CompareParams = self.params  # type: ignore[assignment]
        a, b = p.label_a, p.label_b
        return [Table(title=f"{a} against {b}", columns=["metric", a, b, f"{a} − {b}"],
                      rows=[[r["metric"], r["a"], r["b"], r["difference"]] for r in records])] if records else []

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not records:
            return None
        p: CompareParams = self.params  # type: ignore[assignment]
        lines = [f"| metric | {p.label_a} | {p.label_b} | {p.label_a} − {p.label_b} |", "|---|---|---|---|"]
        for r in records:
            lines.append(f"| {r['metric']} | {_fmt(r['a'])} | {_fmt(r['b'])} | {_fmt(r['difference'])} |")
        return "\n".join(lines) + "\n"


def chat_metrics(records: list[dict]) -> dict[str, float | int | None]:
    scores = [float(r["score"]) for r in records if r.get("score") is not None]
    mean = _mean(scores)
    return {"score ×10": mean * 10 if mean is not None else None, "n": len(scores)}


def needle_metrics(records: list[dict]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {
        "mean score (1-10)": _mean([float(r["score"]) for r in records]),
        "n": len(records),
    }
    recalls = [float(r["recall"]) for r in records if r.get("recall") is not None]
    if recalls:
        out["mean recall"] = _mean(recalls)
    for length in sorted({int(r["length"]) for r in records}):
        out[f"score at {length} tokens"] = _mean([float(r["score"]) for r in records if int(r["length"]) == length])
    return out


def selection_metrics(records: list[dict]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {"records": len(records)}
    for field, name in (("score", "mean GATEAU score"), ("rank", "mean GATEAU rank"), ("depth", "mean depth")):
        values = [float(r[field]) for r in records if isinstance(r.get(field), (int, float))]
        if values:
            out[name] = _mean(values)
    return out


def _rows(group: str, a: dict[str, Any], b: dict[str, Any]) -> list[dict]:
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key), b.get(key)
        diff = va - vb if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append({"metric": f"{group}: {key}", "a": va, "b": vb, "difference": diff})
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
