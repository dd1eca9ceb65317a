"""Entry point of one launched process: ``python -m runner.worker RUN_DIR STAGE`` (see runner.launch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from registry.jsonio import read_jsonl, write_jsonl
    from runner.callcache import Meter
    from runner.context import StageContext
    from runner.execute import Runner
    from runner.load import load_recipe

    run_root, stage = Path(argv[0]), argv[1]
    loaded = load_recipe(run_root / "recipe.lock.yaml")
    runner = Runner(loaded, run_root.parent, show_progress=False)
    comp = loaded.components[stage]
    sdir = runner.stage_dir(stage)
    inputs = {port: read_jsonl(sdir / "scratch" / f"input.{port}.jsonl") for port in loaded.recipe.stages[stage].inputs}
    ctx = StageContext(stage=stage, params=comp.params, seed=runner.stage_seed(stage), stage_dir=sdir,
                       bindings=loaded.bindings.get(stage, {}), models=runner.models, inputs=inputs, meter=Meter())
    records = comp.run(inputs, ctx)
    if int(os.environ.get("RANK", "0")) == 0:
        write_jsonl(sdir / "scratch" / "worker_records.jsonl", list(records or []))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
