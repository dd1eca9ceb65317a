"""Problems a person can act on: each has a key path, a message and maybe a did-you-mean."""

from __future__ import annotations

from dataclasses import dataclass

from registry.yamlpos import Pos, SourceMap


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


class RunFileError(RuntimeError):
    """A file of the run folder that cannot be written (a full or failing disk) or is damaged; the
    message names the file and what to do."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
