"""``load.longbench_cite``: the LongBench-Cite benchmark file (LongCite §1.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Fields, Params, WholeComponent
from registry.jsonio import read_json_records

REQUIRED = ("query", "answer", "context")


def read_longbench_cite(path: Path) -> list[dict]:
    """Records of ``LongBench-Cite.json`` (a JSON list) or of a JSON Lines file with the same records.

    Each record becomes ``{idx, dataset, query, answer: [str], context, few_shot_scores: [{answer,
    score}]}``: a single reference string is wrapped in a list, missing ``few_shot_scores`` become [] and
    a missing ``idx`` becomes the position. Errors name the file and the record.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"LongBench-Cite data not found: {path}. The file is LongBench-Cite/LongBench-Cite.json from the "
            "THUDM/LongCite repository (1,000 items); download it and set params.path to it.")
    raw = read_json_records(path)
    return [_normalise(rec, pos, path) for pos, rec in enumerate(raw)]


def _normalise(rec: Any, pos: int, path: Path) -> dict:
    if not isinstance(rec, dict):
        raise TypeError(f"{path}: record {pos} is not an object")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise ValueError(f"{path}: record {pos} lacks {', '.join(missing)} (has: {', '.join(sorted(rec))})")
    answer = rec["answer"]
    return {**rec, "idx": rec.get("idx", pos), "dataset": rec.get("dataset", ""),
            "answer": [answer] if isinstance(answer, str) else list(answer),
            "few_shot_scores": list(rec.get("few_shot_scores") or [])}


class LongBenchCiteLoader(WholeComponent):
    """Reads LongBench-Cite: ``{idx, dataset, query, answer[], context, few_shot_scores[]}`` per item.

    The benchmark (1,000 items: longbench-chat, multifieldqa_en/zh, hotpotqa, dureader, gov_report) is not
    bundled; point ``path`` at your copy of ``LongBench-Cite.json``. ``datasets`` keeps only the named
    datasets and ``limit`` the first items (after that filter).
    """

    type = "load.longbench_cite"
    inputs: ClassVar[dict[str, Fields]] = {}
    outputs = Fields("idx", "dataset", "query", "answer", "context", "few_shot_scores")

    class Params(Params):
        path: str = Field(description=(
            "LongBench-Cite.json (or a .jsonl with the same records); relative to the recipe file"))
        datasets: list[str] | None = Field(None, description="keep only these datasets (exact names)")
        limit: int | None = Field(None, ge=1, description="keep only the first this-many items")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p = self.params
        records = read_longbench_cite(Path(p.path).expanduser())
        if p.datasets is not None:
            records = [r for r in records if r["dataset"] in p.datasets]
        return records[:p.limit] if p.limit is not None else records

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in records:
            counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
        return {"records": len(records), "datasets": counts}
