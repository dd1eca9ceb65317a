"""``export.jsonl``: write records to a JSON Lines file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from components.base import Context, Estimate, Fields, Params, WholeComponent
from registry.records import RecordWriter


class ExportJsonl(WholeComponent):
    """Writes its input records to a JSON Lines file and passes them on unchanged.

    ``path`` relative to the recipe file (the runner resolves it); without one, ``export.jsonl`` in the
    stage's artifact folder. ``fields`` writes only those fields (every record must have them). The file
    is replaced atomically. The records stream: written one at a time as they are read.
    """

    type = "export.jsonl"
    inputs = {"records": Fields()}
    passthrough = "records"
    outputs = Fields()
    streams = True

    class Params(Params):
        path: str | None = Field(
            None, description="output file, relative to the recipe file; default: export.jsonl in the stage folder"
        )
        fields: list[str] | None = Field(None, description="write only these fields, in this order")

    def target(self, ctx: Context) -> Path:
        p = self.params.path
        return Path(p).expanduser() if p else ctx.artifact_dir / "export.jsonl"

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("records"))

    def run(self, inputs: dict[str, Iterable[dict]], ctx: Context) -> Iterable[dict]:
        records = inputs.get("records", [])
        names = self.params.fields
        with RecordWriter(self.target(ctx)) as out:  # temp file + rename, written as the records come
            for n, r in enumerate(records):
                if names is None:
                    out.write(r)
                    continue
                missing = [f for f in names if f not in r]
                if missing:
                    raise ValueError(
                        f"record {n} (id {r.get('id', r.get('idx'))!r}) lacks field(s) {', '.join(missing)}"
                    )
                out.write({f: r[f] for f in names})
        return records  # passed on as they came in (the runner links a stage's file rather than copy it)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        return {"path": str(self.target(ctx)), "records": len(records)}
