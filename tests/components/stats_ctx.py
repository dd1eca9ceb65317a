"""A test context with the side-statistics channel of ``components.base.Context``."""

from __future__ import annotations

from typing import Any

from registry.atomic import atomic_write_json
from registry.jsonio import read_json
from tests.fakes import FakeCtx


class StatsCtx(FakeCtx):
    """``FakeCtx`` whose ``save_stats``/``load_stats`` keep JSON under ``artifact_dir/stats/`` as the
    runner's stage context does, so a test sees what a later ``summarize`` would read."""

    def save_stats(self, name: str, data: Any) -> None:
        atomic_write_json(self.artifact_dir / "stats" / f"{name}.json", data)

    def load_stats(self, name: str, default: Any = None) -> Any:
        return read_json(self.artifact_dir / "stats" / f"{name}.json", default)
