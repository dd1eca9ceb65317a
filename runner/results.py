"""What running a stage gives back: its output (records, failures, counts) and its result for the run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageOutput:
    """What a map or whole stage produced, before the lifecycle writes it to the stage folder."""

    # a list, or (a component that streams) any iterable of records, consumed once as it is written
    records: Iterable[dict]
    failures: list[dict]  # the failures ledger: one row per record that failed for good
    counts: dict[str, int]  # in, out, failed (and dropped, for map stages); out counted when written


@dataclass
class StageResult:
    """How one stage of a run ended: reused from its folder, ran, or failed."""

    stage: str
    fingerprint: str
    status: str  # cached | ran | failed | waiting (an upstream stage's failed records are beyond its limit)
    dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    error: str | None = None
