"""Blocking calls made for an event loop in a few worker threads, each awaited by the coroutine that
asked for it: a queue put and one wake-up per call, lighter than ``loop.run_in_executor``. The openai
backend hands each finished item's journal append (a write and an fsync) over this way, so the loop that
serves every request in flight never waits on the disk, while the request still holds its slot until
its answer is journaled."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any


class Handoff:
    """``await handoff.run(fn, *args)`` runs ``fn(*args)`` in one of ``threads`` daemon threads."""

    def __init__(self, threads: int, name: str) -> None:
        self.size = threads
        self.name = name
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Returns once ``fn(*args)`` has returned; raises what it raised."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if len(self._threads) < self.size:
            self._start()
        self._queue.put((loop, done, fn, args))
        await done

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.size:
                t = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, done, fn, args = item
            error = None
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                error = e
            try:
                loop.call_soon_threadsafe(_settle, done, error)
            except RuntimeError:  # the loop is closed: nobody awaits any more
                pass

    def close(self) -> None:
        """The threads end once the calls queued so far are done."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._threads = []


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if done.done():  # the awaiting coroutine was cancelled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
