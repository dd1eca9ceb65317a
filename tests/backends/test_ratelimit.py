"""Token buckets with a fake clock: the waits are computed by hand from the rate."""

from __future__ import annotations

import asyncio

import pytest

from runner.backends.ratelimit import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def test_burst_then_steady_rate():
    t = FakeTime()
    bucket = TokenBucket(60, clock=t.clock, sleep=t.sleep)  # 60 a minute: 1 per second, 60 of burst

    async def run():
        assert await bucket.acquire(60) == 0.0
        assert await bucket.acquire(30) == pytest.approx(30.0)  # empty: 30 units take 30 s
        t.now += 10  # 10 s idle refills 10 units
        assert await bucket.acquire(10) == 0.0
        assert await bucket.acquire(1) == pytest.approx(1.0)

    asyncio.run(run())
    assert t.now == pytest.approx(41.0)


def test_adjust_charges_the_real_cost_and_oversized_requests_are_clamped():
    t = FakeTime()
    bucket = TokenBucket(600, clock=t.clock, sleep=t.sleep)  # 10 per second

    async def run():
        await bucket.acquire(600)
        bucket.adjust(50)  # the response used 50 more tokens than estimated: a debt of 50
        assert await bucket.acquire(100) == pytest.approx(15.0)  # (50 + 100) / 10
        bucket.adjust(-100)  # estimate was 100 too high: given back
        assert await bucket.acquire(100) == 0.0
        t.now += 1000
        assert await bucket.acquire(5000) == 0.0  # more than the bucket holds: clamped to a full bucket

    asyncio.run(run())


def test_waiters_queue_in_arrival_order():
    t = FakeTime()
    bucket = TokenBucket(60, clock=t.clock, sleep=t.sleep)
    order: list[str] = []

    async def take(name: str, n: int) -> None:
        await bucket.acquire(n)
        order.append(name)

    async def run():
        await bucket.acquire(60)
        await asyncio.gather(take("a", 5), take("b", 1), take("c", 2))

    asyncio.run(run())
    assert order == ["a", "b", "c"]
    assert t.now == pytest.approx(8.0)
    with pytest.raises(ValueError):
        TokenBucket(0)
