"""The window of requests in flight to one model: at most ``size`` at once, the next slot to the waiting
request whose caller comes first.

Callers are the batches of map stages, running in several threads; each thread says where it stands with
``set_call_order`` (a map stage sets its batch's index). Waiting requests get slots lowest order first,
then in arrival order, so batches finish in about their input order whatever order their threads
happened to start in: a stage downstream, which takes its upstream's records in input order, gets them
as a steady stream instead of all at the end.

>>> set_call_order(3); call_order()
3
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading

_order = threading.local()


def set_call_order(order: int | None) -> None:
    """Requests of chat calls made from this thread go before those of calls with a larger order."""
    _order.value = order


def call_order() -> int:
    """This thread's order (0 when none was set)."""
    return getattr(_order, "value", None) or 0


class Window:
    """An asyncio semaphore of ``size`` slots whose waiters are served by (order, arrival); one event
    loop's coroutines use it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._arrival = itertools.count()

    async def acquire(self, order: int) -> None:
        if self.in_use < self.size and not self._waiting:
            self.in_use += 1
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (order, next(self._arrival), turn))
        try:
            await turn  # release() counted the slot as ours when it woke us
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # woken and cancelled at once: pass the slot on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not turn]
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the slot goes straight to the next waiter
                return
        self.in_use -= 1
