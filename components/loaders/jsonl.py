"""``load.jsonl``: records from a JSON Lines file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from components.base import Context, Estimate, Fields, Params, WholeComponent


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path, limit: int | None = None, fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Records of a JSON Lines file (``.gz`` is decompressed); blank lines are skipped.

    Errors name the file and 1-based line number: a line that is not JSON, not an object, or lacks one of
    ``fields``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    records: list[dict[str, Any]] = []
    with _open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            missing = [name for name in fields or [] if name not in rec]
            if missing:
                raise ValueError(
                    f"{path}:{lineno}: record lacks required field(s) {', '.join(missing)}"
                    f" (has: {', '.join(sorted(rec)) or 'none'})"
                )
            records.append(rec)
    return records


class LoadJsonl(WholeComponent):
    """Reads records from a JSON Lines file, one object per line (``.jsonl.gz`` works too).

    The runner resolves a relative ``path`` against the recipe file; absolute paths are used as given.
    ``fields`` makes the loader check that every record has those fields (the error names the line) and
    tells the runner what later stages can rely on.
    """

    type = "load.jsonl"

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

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p = self.params
        return read_jsonl(Path(p.path).expanduser(), p.limit, p.fields)
