"""A model's window of requests in flight: never more than its size, freed slots to the lowest order
first (then the first to arrive), and a cancelled waiter neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio

from runner.backends.window import Window


def test_slots_go_to_the_lowest_order_then_the_first_to_arrive():
    async def go() -> tuple[list[str], int]:
        window = Window(2)
        served: list[str] = []
        peak = 0

        async def request(name: str, order: int) -> None:
            nonlocal peak
            await window.acquire(order)
            peak = max(peak, window.in_use)
            served.append(name)
            await asyncio.sleep(0.01)
            window.release()

        first = [asyncio.create_task(request(n, o)) for n, o in (("a", 5), ("b", 5))]
        await asyncio.sleep(0)  # a and b hold both slots; the rest wait
        waiting = [asyncio.create_task(request(n, o)) for n, o in (("late", 9), ("x", 1), ("y", 1), ("z", 0))]
        await asyncio.gather(*first, *waiting)
        return served, peak

    served, peak = asyncio.run(go())
    assert served == ["a", "b", "z", "x", "y", "late"]
    assert peak == 2


def test_a_cancelled_waiter_leaves_the_window_whole():
    async def go() -> int:
        window = Window(1)
        await window.acquire(0)
        waiter = asyncio.create_task(window.acquire(0))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        window.release()
        await asyncio.wait_for(window.acquire(0), 1)  # the slot came back
        return window.in_use

    assert asyncio.run(go()) == 1
