"""``load.jsonl``: records from a JSON Lines file."""

from __future__ import annotations

import gzip
from pathlib import Path

from pydantic import Field

from components.base import Context, Estimate, Fields, Params, WholeComponent
from registry.records import Records


class LoadJsonl(WholeComponent):
    """Reads records from a JSON Lines file, one object per line (``.jsonl.gz`` works too).

    The runner resolves a relative ``path`` against the recipe file; absolute paths are used as given.
    ``fields`` makes the loader check that every record has those fields (the error names the line) and
    tells the runner what later stages can rely on. The records stream: the file is read a line at a time,
    and without ``limit`` (and not gzipped) the stage's records are the file itself, hard-linked into the
    stage folder after every line is checked (copied where a link is not possible), never a second copy.
    """

    type = "load.jsonl"
    streams = True

    class Params(Params):
        path: str = Field(description="the .jsonl file; relative paths are relative to the recipe file")
        limit: int | None = Field(None, ge=0, description="read at most this many records (the first ones)")
        fields: list[str] | None = Field(
            None, description="fields every record must have; a record without one is an error naming its line"
        )

    def output_fields(self) -> Fields | None:
        return Fields(*self.params.fields) if self.params.fields else None

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """Counts the file's non-blank lines (no JSON parsing), so `recipe plan` knows what flows on."""
        path = Path(self.params.path).expanduser()
        if not path.is_file():
            return Estimate()
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            n = sum(1 for line in f if line.strip())
        return Estimate(records_out=n if self.params.limit is None else min(n, self.params.limit))

    def run(self, inputs: dict[str, Records], ctx: Context) -> Records:
        p = self.params
        return Records(Path(p.path).expanduser(), limit=p.limit, fields=p.fields)
