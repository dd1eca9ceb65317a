"""Token-bucket rate limits for API backends (requests per minute, tokens per minute).

A bucket holds at most ``per_minute`` units and refills continuously at ``per_minute / 60`` units per
second, so a fresh bucket allows one minute's worth of burst and then the steady rate.

>>> import asyncio
>>> bucket = TokenBucket(per_minute=60)
>>> asyncio.run(bucket.acquire(10))   # a fresh bucket has 60 units: no wait
0.0
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """An asyncio token bucket. ``clock`` and ``sleep`` are injectable so waits can be checked exactly."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0  # units per second
        self._clock = clock
        self._sleep = sleep
        self._level = self.capacity
        self._stamp = clock()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Wait until ``amount`` units are available and take them; returns the seconds waited.

        A request larger than the whole bucket is clamped to the capacity, so it waits for a full
        bucket instead of forever.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        amount = min(float(amount), self.capacity)
        waited = 0.0
        # The lock makes waiters queue in arrival order instead of racing for each refill.
        async with self._lock:
            self._refill()
            while self._level < amount:
                delay = (amount - self._level) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
            self._level -= amount
        return waited

    def adjust(self, delta: float) -> None:
        """Take ``delta`` more units (or give back a negative ``delta``) once the true cost is known,
        e.g. the real token count of a response whose size was estimated before sending. The level may
        go below zero: later requests then wait off the debt."""
        self._refill()
        self._level = min(self.capacity, self._level - delta)
