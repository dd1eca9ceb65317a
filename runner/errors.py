"""Problems a person can act on: each has a key path, a message and maybe a did-you-mean."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from runner.yamlpos import Pos, SourceMap


def did_you_mean(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``word`` among ``options`` (case-insensitive, best first)."""
    opts = list(options)
    lower = {o.lower(): o for o in opts}
    hits = difflib.get_close_matches(str(word).lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def suggestion(word: str, options: Iterable[str]) -> str:
    hits = did_you_mean(word, options)
    if not hits:
        return ""
    return " — did you mean " + " or ".join(repr(h) for h in hits) + "?"


@dataclass
class Problem:
    path: tuple
    message: str
    at_key: bool = False  # point at the key (unknown keys) rather than the value
    pos: Pos | None = None

    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path) or "<recipe>"

    def render(self, smap: SourceMap | None) -> str:
        pos = self.pos or (smap.find(self.path, key=self.at_key) if smap else None)
        where = f"{pos}: " if pos else ""
        return f"{where}{self.dotted()}: {self.message}"


class RecipeError(Exception):
    """A recipe that cannot run; carries every problem found, already placed in the file."""

    def __init__(self, problems: list[Problem], smap: SourceMap | None = None) -> None:
        self.problems = problems
        self.smap = smap
        super().__init__("\n".join(p.render(smap) for p in problems))

    def lines(self) -> list[str]:
        return [p.render(self.smap) for p in self.problems]


class StageFailure(RuntimeError):
    """A runtime failure, named by stage (and record id when there is one)."""

    def __init__(self, stage: str, message: str, record_id: str | None = None) -> None:
        self.stage = stage
        self.record_id = record_id
        where = f"stage {stage!r}" + (f", record {record_id!r}" if record_id is not None else "")
        super().__init__(f"{where}: {message}")
