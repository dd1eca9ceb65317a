"""Load LongBench-Chat test cases with their few-shot judge examples (LongAlign)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Fields, Params, WholeComponent
from registry.jsonio import read_json_records


class LongBenchChatParams(Params):
    path: str = Field(
        description="The test cases: a JSON list (`test_cases.json`) or JSONL of "
        "`{idx, query, answer, prompt}`. A relative path is relative to the recipe file.",
        json_schema_extra={"path": True},
    )
    few_shots_path: str | None = Field(
        None,
        description="The judge's scored example answers: a list whose item k is a list of "
        "`{answer, score}` for the case with idx k+1. Default: `few_shots.json` in the folder of `path`.",
        json_schema_extra={"path": True},
    )
    limit: int | None = Field(None, ge=1, description="Keep only the first this-many cases.")


class LongBenchChatLoader(WholeComponent):
    """Reads LongBench-Chat: `{idx, query, answer, prompt}` per case plus its three scored example answers.

    LongBench-Chat ships `test_cases.json` (50 cases, idx 1..50; `prompt` is the long
    context followed by the query) and `few_shots.json`, a list of 50 items of 3 `{answer, score}` where
    item k belongs to the case with idx k+1. The output record is `{idx, query, answer, prompt, few_shots}`.
    A case whose record already carries `few_shots` keeps them. A case with no matching few-shot item is
    an error, as is a missing file.
    """

    type: ClassVar[str] = "load.longbench_chat"
    Params: ClassVar[type[Params]] = LongBenchChatParams
    inputs: ClassVar[dict[str, Fields]] = {}
    outputs: ClassVar[Fields | None] = Fields("idx", "query", "answer", "prompt", "few_shots")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: LongBenchChatParams = self.params  # type: ignore[assignment]
        cases_path = Path(p.path)
        if not cases_path.is_file():
            raise FileNotFoundError(f"load.longbench_chat: test cases file not found: {cases_path}")
        shots_path = Path(p.few_shots_path) if p.few_shots_path else cases_path.parent / "few_shots.json"
        cases = read_json_records(cases_path)
        if p.limit is not None:
            cases = cases[: p.limit]
        shots: list[Any] | None = None
        if any("few_shots" not in c for c in cases if isinstance(c, dict)):
            if not shots_path.is_file():
                raise FileNotFoundError(
                    f"load.longbench_chat: few-shot file not found: {shots_path} (set few_shots_path)"
                )
            shots = read_json_records(shots_path)
        return [attach_few_shots(case, pos, shots, cases_path) for pos, case in enumerate(cases)]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        return {"n": len(records)}


def attach_few_shots(case: Any, pos: int, shots: list[Any] | None, source: Path) -> dict:
    """The normalised case; its few-shot examples are `shots[idx - 1]` (item k belongs to idx k+1)."""
    if not isinstance(case, dict):
        raise TypeError(f"{source}: case {pos + 1} is not an object")
    missing = [k for k in ("query", "answer", "prompt") if k not in case]
    if missing:
        raise ValueError(f"{source}: case {pos + 1} lacks {', '.join(missing)}")
    idx = case.get("idx", pos + 1)
    if "few_shots" in case:
        examples = case["few_shots"]
    else:
        assert shots is not None
        if not isinstance(idx, int) or not 1 <= idx <= len(shots):
            raise ValueError(f"{source}: case idx {idx!r} has no few-shot item (the file has {len(shots)})")
        examples = shots[idx - 1]
    examples = [_example(e, idx, source) for e in examples]
    return {**case, "idx": idx, "few_shots": examples}


def _example(e: Any, idx: Any, source: Path) -> dict:
    if not isinstance(e, dict) or "answer" not in e or "score" not in e:
        raise ValueError(f"{source}: case {idx}: each few-shot example needs `answer` and `score`")
    return {"answer": str(e["answer"]), "score": e["score"]}
