"""Failed records and the limit a recipe sets on them (``max_failed``): whether a stage with failures
counts as finished, and the end-of-run summary of failures (console and ``report.md``).

>>> within_limit({"in": 20, "failed": 1}, 0.05), within_limit({"in": 20, "failed": 2}, 0.05)
(True, False)
>>> within_limit({"in": 20, "failed": 2}, 2), within_limit({"in": 20, "failed": 1}, 0)
(True, False)
>>> describe_limit(0), describe_limit(3), describe_limit(0.05)
('0', '3', '5%')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.jsonio import iter_jsonl

TOP_REASONS = 3


def within_limit(counts: dict[str, Any], limit: int | float) -> bool:
    """Whether a stage's failed records are within ``limit``: a count (int) or a fraction of its
    input records (float)."""
    failed = int(counts.get("failed", 0) or 0)
    if not failed:
        return True
    if isinstance(limit, float):
        return failed <= limit * int(counts.get("in", 0) or 0)
    return failed <= limit


def describe_limit(limit: int | float) -> str:
    return f"{limit * 100:g}%" if isinstance(limit, float) else str(limit)


@dataclass
class StageFailures:
    """How many records of one stage failed, the commonest reasons, and where the ledger is."""

    stage: str
    failed: int
    total: int
    limit: int | float
    ledger: Path
    reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def over(self) -> bool:
        return not within_limit({"in": self.total, "failed": self.failed}, self.limit)

    def lines(self) -> list[str]:
        state = "over" if self.over else "within"
        head = (f"stage {self.stage}: {self.failed} of {self.total} records failed ({state} its limit of "
                f"{describe_limit(self.limit)}); ledger: {self.ledger}")
        return [head] + [f"  {n}× {reason}" for reason, n in self.reasons]


def _reason(error: Any) -> str:
    text = " ".join(str(error or "unknown error").split())
    return text if len(text) <= 160 else text[:157] + "..."


def read_reasons(ledger: Path, top: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The commonest errors of a failures ledger, most frequent first; a damaged ledger says so."""
    counts: Counter[str] = Counter()
    try:
        for _, row in iter_jsonl(ledger):
            counts[_reason(row.get("error") if isinstance(row, dict) else row)] += 1
    except (OSError, ValueError) as e:
        counts[f"(the ledger cannot be read: {e})"] += 1
    return counts.most_common(top)


def stage_failures(stage: str, counts: dict[str, Any], limit: int | float, stage_dir: Path) -> StageFailures | None:
    """The failures of a stage that has some, else None."""
    failed = int(counts.get("failed", 0) or 0)
    if not failed:
        return None
    ledger = stage_dir / "failures.jsonl"
    return StageFailures(stage, failed, int(counts.get("in", 0) or 0), limit, ledger, read_reasons(ledger))
