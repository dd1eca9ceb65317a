"""A stage's records as a published dataset: Parquet through ``datasets`` when they fit one schema, else JSONL.

Records fit a schema when an Arrow table can be built from them (one type per field; a field missing
from a record is null) and reading the table back gives the same records (no int turned into a float,
nothing dropped), and the table can be written as Parquet. Otherwise, e.g. a field that holds a number in
one record and a string in another, the records are published as they are, as JSON lines. The card's
``configs:`` entry points the Hub's dataset viewer and ``datasets.load_dataset`` at the file.

Example::

    >>> fits_schema([{"a": 1, "b": "x"}, {"a": 2}]), fits_schema([{"a": 1}, {"a": "one"}])
    (True, False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARQUET_FILE = "data/train-00000-of-00001.parquet"
JSONL_FILE = "data/train.jsonl"


@dataclass
class PublishedData:
    """The published data file of a dataset stage and its records (for the card's field table)."""

    file: str | None  # relative to the repo; None for a stage without records
    format: str | None  # "parquet" | "json"
    rows: list[dict]


def _arrow_table(rows: list[dict]) -> Any:
    """An Arrow table of ``rows`` (fields in the order of first appearance), or None when they have no
    common schema."""
    import pyarrow as pa

    fields: dict[str, None] = {}
    for r in rows:
        fields.update(dict.fromkeys(r))
    try:
        table = pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in fields})
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None
    if _canonical(table.to_pylist()) != _canonical(rows):
        return None
    return table


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _canonical(rows: list[dict]) -> str:
    """The rows as JSON with null fields left out: equal texts mean the same records (1 and 1.0 differ)."""
    return json.dumps(_without_nulls(rows), sort_keys=True, ensure_ascii=False, default=str)


def fits_schema(rows: list[dict]) -> bool:
    return _arrow_table(rows) is not None


def write_dataset(records: Path, dest: Path, mask: Any) -> PublishedData:
    """Write the records of ``records`` (JSONL, masked line by line by ``mask``) into the repo folder
    ``dest`` as Parquet or JSONL (see the module docstring)."""
    lines = []
    if records.is_file():
        with records.open(encoding="utf-8", errors="surrogateescape") as f:
            lines = [mask(line) for line in f if line.strip()]
    if not lines:
        return PublishedData(None, None, [])
    try:
        rows = [json.loads(line) for line in lines]
    except json.JSONDecodeError:  # not JSON records after all: published as they are
        rows = []
    table = _arrow_table(rows) if rows and all(isinstance(r, dict) for r in rows) else None
    if table is not None:
        from datasets import Dataset
        from datasets.table import InMemoryTable

        path = dest / PARQUET_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            Dataset(InMemoryTable(table)).to_parquet(str(path))
            return PublishedData(PARQUET_FILE, "parquet", rows)
        except Exception:  # a type Parquet cannot hold (an empty struct): the records go out as JSON lines
            path.unlink(missing_ok=True)
    path = dest / JSONL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", errors="surrogateescape") as f:
        for line in lines:
            f.write(line if line.endswith("\n") else line + "\n")
    return PublishedData(JSONL_FILE, "json", rows)
