"""One run per run folder: the lock names its holder, is gone when the holder is killed, and lets shards
of one stage run side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.run_lock import RunFolderBusy, RunFolderLock

REPO = Path(__file__).resolve().parents[2]

HOLD = """\
import sys, time
from pathlib import Path
from runner.run_lock import RunFolderLock
shard = tuple(map(int, sys.argv[2].split("/"))) if len(sys.argv) > 2 else None
with RunFolderLock(Path(sys.argv[1]), shard=shard, stage="ask"):
    print("held", flush=True)
    time.sleep(60)
"""


def hold(root: Path, *shard: str) -> subprocess.Popen:
    """A process that holds ``root`` (or one shard of it) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), *shard], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_told_which_process_holds_the_folder(tmp_path):
    proc = hold(tmp_path)
    try:
        with pytest.raises(RunFolderBusy, match=rf"run folder {tmp_path} is in use by process {proc.pid}; wait "
                                                r"for it to finish, or run with --wait"):
            RunFolderLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunFolderLock(tmp_path):  # kill -9 leaves no stale lock
        pass


def test_wait_starts_when_the_holder_is_done(tmp_path):
    proc = hold(tmp_path)
    said: list[str] = []
    threading.Timer(0.5, lambda: proc.send_signal(signal.SIGTERM)).start()
    start = time.monotonic()
    with RunFolderLock(tmp_path, wait=True, say=said.append):
        waited = time.monotonic() - start
    proc.wait()
    assert waited >= 0.4
    assert said == [f"run folder {tmp_path} is in use by process {proc.pid}; waiting for it to finish"]


def test_shards_run_side_by_side_but_each_shard_once(tmp_path):
    proc = hold(tmp_path, "0/2")
    try:
        with RunFolderLock(tmp_path, shard=(1, 2), stage="ask"):  # another shard of the same stage
            pass
        with pytest.raises(RunFolderBusy, match=rf"shard 0/2 of {tmp_path} is in use by process {proc.pid}"):
            RunFolderLock(tmp_path, shard=(0, 2), stage="ask").acquire()
        with pytest.raises(RunFolderBusy, match=rf"is in use by process {proc.pid}"):
            RunFolderLock(tmp_path).acquire()  # an unsharded run waits for every shard
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
