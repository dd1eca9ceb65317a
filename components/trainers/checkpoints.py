"""Training checkpoints in the stage's scratch folder, and resuming from the newest one.

A checkpoint ``step-NNNNNNNN/`` holds accelerate's saved state (weights or only the adapter, optimizer,
scheduler, RNG states) and ``trainer_state.json`` (step, loss history, plan fingerprint). It is written
as ``.tmp`` and renamed when complete, so a kill mid-save leaves the previous checkpoint as the newest.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"  # the folder under the stage's scratch folder
STATE_FILE = "trainer_state.json"
log = logging.getLogger(__name__)


def _step_dirs(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    done = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-") and not d.name.endswith(".tmp")]
    return sorted(done, key=lambda d: int(d.name.split("-")[1]))


def latest_checkpoint(root: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint folder under ``root`` and its trainer state."""
    if not root.is_dir():
        return None
    done = [d for d in _step_dirs(root) if (d / STATE_FILE).is_file()]
    if not done:
        return None
    newest = done[-1]
    return newest, json.loads((newest / STATE_FILE).read_text())


def save_checkpoint(accelerator: Any, root: Path, step: int, state: dict, keep: int) -> None:
    """Save the training state into ``root/step-N`` (written as ``.tmp`` first, renamed when complete)
    and keep the newest ``keep`` checkpoints. Every rank calls it; only the main process writes files."""
    tmp, final = root / f"step-{step:08d}.tmp", root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for d in _step_dirs(root)[:-keep]:
            shutil.rmtree(d, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_only_trainable(accelerator: Any, model: Any) -> None:
    """Make checkpoints hold only the trainable weights (the adapter): the frozen base is re-read from its
    folder on resume."""
    trainable = {n for n, w in model.named_parameters() if w.requires_grad}

    def keep_trainable(models: list, weights: list[dict], output_dir: str) -> None:
        weights[:] = [{k: v for k, v in w.items() if k in trainable} for w in weights]

    accelerator.register_save_state_pre_hook(keep_trainable)


def resume(accelerator: Any, root: Path, fingerprint: str, adapter_only: bool) -> tuple[int, list[dict]]:
    """Load the newest checkpoint under ``root`` into the prepared objects; returns (steps done, loss
    history), (0, []) without a checkpoint. A checkpoint made for another plan is an error."""
    from accelerate.utils import DistributedType

    last = latest_checkpoint(root)
    if last is None:
        return 0, []
    path, state = last
    if state["fingerprint"] != fingerprint:
        raise RuntimeError(
            f"train.sft: checkpoint {path} was made for other data, params or world size; "
            "delete it to start over"
        )
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    # an adapter checkpoint holds only the adapter; FSDP / DeepSpeed load their own sharded layout
    accelerator.load_state(str(path), **({} if sharded else {"strict": not adapter_only}))
    log.info("train.sft: resuming after step %d from %s", state["step"], path)
    return state["step"], state["history"]
