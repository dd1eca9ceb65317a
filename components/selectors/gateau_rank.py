"""``select.gateau_rank``: GATEAU's ranking of long SFT records and the top-k cut (spec §4.3)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from components.base import Context, Estimate, Fields, Params, WholeComponent
from components.selectors.gateau import cas_scores, hmg_scores, rank, top_count

STATS = "ranking"  # every candidate's scores, for the report
SHOWN = 30  # report rows


class GateauRankParams(Params):
    alpha: float = Field(
        0.7, ge=0.0, le=1.0,
        description="Weight of HMG against CAS: final = alpha·HMG + (1−alpha)·CAS. The paper: 0.8 in the "
        "real-world setting (100k ShareGPT), 0.7 in the limited one (10k); the reference's default is 0.8.",
    )
    top_k: int | None = Field(None, ge=1, description="Keep the k best records (the paper: 1k, 3k or 5k).")
    top_fraction: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Keep this share of the records instead (halves round up). Neither set: the whole ranked "
        "list, as the reference's rank.py writes it.",
    )
    method: Literal["gateau", "random"] = Field(
        "gateau",
        description="gateau: the best-ranked records; random: the same number of records drawn at random "
        "(seeded), the baseline the selection is compared with.",
    )
    on_missing: Literal["error", "drop"] = Field(
        "error",
        description="A record of `hmg` with no CAS in `cam` (its score.cam failed): error names it; drop "
        "leaves it out and counts it.",
    )

    @model_validator(mode="after")
    def _one_cut(self) -> GateauRankParams:
        if self.top_k is not None and self.top_fraction is not None:
            raise ValueError("give top_k or top_fraction, not both")
        return self


class GateauRank(WholeComponent):
    """Ranks long SFT records by GATEAU's score and keeps the top k (or a top share).

    Joins the `hmg` records (``ppl_short``, ``ppl_long`` from ``score.hmg``) with the `cam` records
    (``cas`` from ``score.cam``) by ``id``, not by line; an id missing from `cam` is an error naming it
    (the reference silently reuses the previous record's value), duplicated ids are errors. HMG =
    softmax over the dataset of min-max(ppl_short) − min-max(ppl_long); CAS is normalised the same way
    (softmax of min-max), and final = alpha·HMG + (1−alpha)·CAS (see ``components.selectors.gateau``).
    Without a `cam` input the score is HMG alone (the paper's "w/o CAM" ablation). Records are sorted by
    final score, highest first, ties in input order, and cut to ``top_k`` / ``top_fraction`` (the
    reference writes the whole list and never cuts it). ``method: random`` keeps as many records, drawn
    with the stage's seed, in input order: the baseline the selection is compared with.

    Output records are the `hmg` records with ``hmg``, ``cas_score``, ``score`` and ``rank`` (1 = best).
    """

    type: ClassVar[str] = "select.gateau_rank"
    Params: ClassVar[type[Params]] = GateauRankParams
    inputs: ClassVar[dict[str, Fields]] = {"hmg": Fields("id", "ppl_short", "ppl_long"), "cam": Fields("id", "cas")}
    optional_inputs: ClassVar[frozenset[str]] = frozenset({"cam"})
    passthrough: ClassVar[str | None] = "hmg"
    outputs: ClassVar[Fields | None] = Fields("hmg", "cas_score", "score", "rank")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: GateauRankParams = self.params  # type: ignore[assignment]
        records = list(inputs.get("hmg", []))
        _unique(records, "hmg")
        cas_raw: list[float] | None = None
        dropped: list[str] = []
        if "cam" in inputs:  # an unconnected optional port is absent
            by_id = {str(r["id"]): r for r in _unique(inputs["cam"], "cam")}
            kept, cas_raw = [], []
            for i, r in enumerate(records):
                found = by_id.get(str(r["id"]))
                if found is None:
                    if p.on_missing == "error":
                        raise ValueError(
                            f"select.gateau_rank: record {r['id']!r} (record {i + 1} of input 'hmg') has no CAS in "
                            "input 'cam'; its score.cam likely failed (see that stage's failures.jsonl), or set "
                            "on_missing: drop")
                    dropped.append(str(r["id"]))
                    continue
                kept.append(r)
                cas_raw.append(float(found["cas"]))
            records = kept
        if not records:
            raise ValueError("select.gateau_rank: no records to rank")
        ids = [str(r["id"]) for r in records]
        hmg = hmg_scores([r["ppl_short"] for r in records], [r["ppl_long"] for r in records])
        cas = cas_scores(cas_raw) if cas_raw is not None else [0.0] * len(records)
        alpha = p.alpha if cas_raw is not None else 1.0
        finals, ordered = rank(ids, hmg, cas, alpha)
        position = {rid: n for n, rid in enumerate(ordered, 1)}
        scored = [{**r, "hmg": h, "cas_score": c, "score": f, "rank": position[rid]}
                  for r, rid, h, c, f in zip(records, ids, hmg, cas, finals)]
        k = top_count(len(scored), p.top_k, p.top_fraction)
        if p.method == "random":
            chosen = set(ctx.rng.sample(range(len(scored)), k))
            picked = [r for i, r in enumerate(scored) if i in chosen]
        else:
            picked = sorted(scored, key=lambda r: r["rank"])[:k]
        ctx.save_stats(STATS, {
            "candidates": len(scored), "selected": k, "dropped_missing_cas": dropped, "alpha": alpha,
            "with_cam": cas_raw is not None,
            "rows": [{k_: r.get(k_) for k_ in ("id", "ppl_short", "ppl_long", "hmg", "cas_score", "score", "rank")}
                     for r in scored],
        })
        return picked

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("hmg")
        p: GateauRankParams = self.params  # type: ignore[assignment]
        return Estimate() if n is None else Estimate(records_out=top_count(n, p.top_k, p.top_fraction))

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        stats = ctx.load_stats(STATS) or {}
        rows = stats.get("rows", [])
        out: dict[str, Any] = {
            "method": self.params.method,  # type: ignore[attr-defined]
            "candidates": stats.get("candidates"),
            "selected": len(records),
            "alpha": stats.get("alpha"),
            "dropped_missing_cas": len(stats.get("dropped_missing_cas", [])),
            "mean_score_selected": _mean([r["score"] for r in records]),
            "mean_score_all": _mean([r["score"] for r in rows]),
            "mean_rank_selected": _mean([r["rank"] for r in records]),
        }
        return out

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """Each score's distribution, the selected subset against the rest, and the ranking's head."""
        from components.report_data import Table, score_histogram

        rows = _ranked(ctx.load_stats(STATS) or {})
        if not rows:
            return []
        chosen = {str(r["id"]) for r in records}
        selected = [r for r in rows if str(r["id"]) in chosen]
        rest = [r for r in rows if str(r["id"]) not in chosen]
        out: list[Any] = []
        for key, label in (("score", "final score"), ("hmg", "HMG (normalised)"), ("cas_score", "CAS (normalised)"),
                           ("ppl_long", "perplexity, long context")):
            out.append(score_histogram(f"{label}: selected against the rest", {
                "selected": [r[key] for r in selected], "rest": [r[key] for r in rest]}, x_label=label))
        cols = ["rank", "id", "selected", "ppl_short", "ppl_long", "hmg", "cas_score", "score"]
        out.append(Table(title=f"ranking (first {min(SHOWN, len(rows))} of {len(rows)})", columns=cols,
                         rows=[[r["rank"], r["id"], str(r["id"]) in chosen, *(r[c] for c in cols[3:])]
                               for r in rows[:SHOWN]]))
        out.append(_examples(records, (getattr(ctx, "inputs", None) or {}).get("hmg", []), chosen))
        return out

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        stats = ctx.load_stats(STATS) or {}
        rows = _ranked(stats)
        if not rows:
            return None
        chosen = {str(r["id"]) for r in records}
        method = self.params.method  # type: ignore[attr-defined]
        lines = [
            f"{len(records)} of {len(rows)} records selected ({method}); final = {stats.get('alpha'):g}·HMG + "
            f"{1 - stats.get('alpha', 1.0):g}·CAS, both softmax-normalised over the candidates. CAS = 1 − cos(layer-mean "
            "segment attention, softmax(−log segment PPL)), our definition (the reference computes none).",
            "",
            "| rank | id | selected | PPL short | PPL long | HMG | CAS (norm.) | final |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows[:SHOWN]:
            lines.append(f"| {r['rank']} | {r['id']} | {'yes' if str(r['id']) in chosen else ''} | "
                         f"{r['ppl_short']:.3g} | {r['ppl_long']:.3g} | {r['hmg']:.4g} | {r['cas_score']:.4g} | "
                         f"{r['score']:.4g} |")
        if len(rows) > SHOWN:
            lines.append(f"| … | {len(rows) - SHOWN} more | | | | | | |")
        return "\n".join(lines) + "\n"


def _examples(selected: list[dict], candidates: list[dict], chosen: set[str], each: int = 3) -> Any:
    """The best-ranked selected records beside the candidates left out (their conversations)."""
    from components.report_data import Example, Examples, Pane

    def example(r: dict, picked: bool) -> Example:
        turns = r.get("messages") or []
        return Example(title=f"{'selected' if picked else 'left out'}: {r.get('id')}", tags=[
            "selected" if picked else "rest"], fields={k: r.get(k) for k in ("rank", "score", "hmg", "cas_score")
                                                       if r.get(k) is not None},
            panes=[Pane(title=str(t.get("role")), text=str(t.get("content"))[:4000]) for t in turns[:2]])

    rest = [r for r in candidates if str(r.get("id")) not in chosen]
    best = sorted(selected, key=lambda r: r.get("rank", 0))[:each]
    return Examples(title="selected records against those left out",
                    examples=[example(r, True) for r in best] + [example(r, False) for r in rest[:each]])


def _unique(records: list[dict], port: str) -> list[dict]:
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        if r.get("id") is None:
            raise ValueError(f"select.gateau_rank: record {i + 1} of input '{port}' has no id")
        rid = str(r["id"])
        if rid in seen:
            raise ValueError(f"select.gateau_rank: id {rid!r} appears twice in input '{port}' "
                             f"(records {seen[rid] + 1} and {i + 1}); records are joined by id")
        seen[rid] = i
    return records


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ranked(stats: dict[str, Any]) -> list[dict]:
    """The scored candidates of the ranking's stats, best first."""
    return sorted(stats.get("rows", []), key=lambda r: r["rank"])
