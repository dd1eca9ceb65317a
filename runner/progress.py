"""Progress bars (records, rate, ETA, tokens, cost) on a terminal; periodic log lines elsewhere.

Stages running side by side each have their own bar (and log lines, each naming its stage); a stage's
batches may advance it from several threads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.callcache import Meter

log = logging.getLogger("recipe.progress")

_current = threading.local()


def set_current_stage(stage: str | None) -> None:
    """Name the stage this thread works for, so that what it says can name it."""
    _current.stage = stage


def current_stage() -> str | None:
    return getattr(_current, "stage", None)


class StageProgress:
    def __init__(self, owner: Progress, stage: str, total: int | None, meter: Meter | None) -> None:
        self.owner = owner
        self.stage = stage
        self.total = total
        self.done = 0
        self.meter = meter
        self.start = time.monotonic()
        self._last_log = 0.0
        self._ended = False  # the last line was logged
        self._lock = threading.Lock()
        self.task = owner.bar.add_task(stage, total=total, tokens="", cost="") if owner.bar else None

    def _usage(self) -> tuple[str, str]:
        if self.meter is None:
            return "", ""
        u = self.meter.usage
        tok = u.prompt_tokens + u.completion_tokens
        return (f"{tok:,} tok" if tok else ""), (f"${u.cost_usd:.4f}" if u.cost_usd else "")

    def advance(self, n: int = 1, total: int | None = None) -> None:
        with self._lock:
            if total is not None:
                self.total = total
            self.done += n
            tokens, cost = self._usage()
            if self.owner.bar is not None:
                self.owner.bar.update(self.task, completed=self.done, total=self.total, tokens=tokens, cost=cost)
            now = time.monotonic()
            end = bool(self.total) and self.done >= self.total and not self._ended
            if now - self._last_log >= 10 or end:
                self._last_log, self._ended = now, self._ended or end
                rate = self.done / max(now - self.start, 1e-9)
                eta = (self.total - self.done) / rate if self.total and rate > 0 else None
                log.info("%s: %d/%s records, %.2f/s%s %s %s", self.stage, self.done, self.total or "?", rate,
                         f", ETA {eta:.0f}s" if eta is not None else "", tokens, cost)


class Progress:
    def __init__(self, console: Any | None, enabled: bool = True) -> None:
        self.bar = None
        if enabled and console is not None and console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                ProgressColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task: Any) -> Text:
                    return Text(f"{task.speed:.2f} rec/s" if task.speed else "")

            self.bar = RichProgress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                    MofNCompleteColumn(), RateColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[tokens]}"),
                                    TextColumn("{task.fields[cost]}"), console=console, transient=False)

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def stage(self, stage: str, total: int | None, meter: Meter | None) -> StageProgress:
        return StageProgress(self, stage, total, meter)
