"""One run per run folder: a run holds an OS lock on ``runs/<recipe>/run.lock`` for its whole life.

The lock is ``flock``: the kernel releases it when the process ends, however it ends, so a ``kill -9``
leaves no stale lock. A second run of the same folder is told which process holds it (the holder writes
its PID into the lock file) and stops, or waits for it (``wait=True``). Shards of one map stage
(``--shard I/N``) run side by side: each takes the folder lock shared, and its own shard lock
(``run.<stage>.shard<I>of<N>.lock``) exclusively, so the same shard never runs twice at once and an
unsharded run waits for every shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder (or the same shard of it)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_in(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid != os.getpid() and _alive(pid) else None


class RunFolderLock:
    """``with RunFolderLock(root): ...`` holds ``root`` for this run (see the module doc)."""

    def __init__(self, root: Path, *, shard: tuple[int, int] | None = None, stage: str | None = None,
                 wait: bool = False, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.shard = shard
        self.wait = wait
        self.say = say
        self.folder_lock = self.root / "run.lock"
        self.shard_lock = self.root / f"run.{stage}.shard{shard[0]}of{shard[1]}.lock" if shard else None
        self._fds: list[int] = []

    def holders(self) -> list[int]:
        """PIDs of the live processes that hold (or held last) this folder's locks, this one excepted."""
        pids = [_pid_in(p) for p in [self.folder_lock, *sorted(self.root.glob("run.*.lock"))]]
        return sorted({p for p in pids if p is not None})

    def _busy(self, what: str) -> str:
        pids = self.holders()
        who = f"process {', '.join(map(str, pids))}" if pids else "another process"
        return f"{what} is in use by {who}; wait for it to finish, or run with --wait to start when it does"

    def _take(self, path: Path, exclusive: bool, what: str) -> None:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fds.append(fd)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                self.release()
                raise RunFolderBusy(self._busy(what)) from None
            if self.say:
                self.say(self._busy(what).split(";")[0] + "; waiting for it to finish")
            fcntl.flock(fd, mode)
        if exclusive:  # who holds it, for the message a second run prints
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def acquire(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl  # noqa: F401 - POSIX only; elsewhere runs are not locked
        except ImportError:
            return
        if self.shard_lock is None:
            self._take(self.folder_lock, True, f"run folder {self.root}")
        else:
            self._take(self.folder_lock, False, f"run folder {self.root}")
            self._take(self.shard_lock, True, f"shard {self.shard[0]}/{self.shard[1]} of {self.root}")

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing the last descriptor releases the flock

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
