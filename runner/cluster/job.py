"""One shard job of ``recipe run --executor ...``: what runs inside each element of the job array."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ShardJob:
    """Run shard ``index`` of ``shards`` of map stage ``stage``, as ``recipe run --stage S --shard I/N``
    would. Pickled by submitit and called in the job, so it holds only plain, absolute values: the job
    loads the recipe again (same file, profile and overrides) from the submitting directory."""

    recipe: str
    profile: str | None
    overrides: tuple[str, ...]
    runs_dir: str
    cwd: str
    stage: str
    shards: int
    load_options: dict = field(default_factory=dict)  # more keyword arguments of load_recipe

    def __call__(self, index: int) -> str:
        os.chdir(self.cwd)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from runner.load import load_recipe
        from runner.session import run_recipe

        loaded = load_recipe(self.recipe, profile=self.profile, overrides=list(self.overrides),
                             **self.load_options)
        outcome = run_recipe(loaded, Path(self.runs_dir), progress=False, publish=False, stages=[self.stage],
                             shard=(index, self.shards))
        return str(outcome)
