"""Admission control: token-bucket rate limits per key, and a cap on runs in flight.

Both live in memory, per process: with N workers the effective limits are N times the configured ones
(docs/operations.md says so). The bucket table is bounded: when it is full, buckets that have refilled
(which hold no state worth keeping) are dropped; if none has, a new key is refused rather than an old
one forgotten, so flooding many keys cannot reset the limit of the one being abused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from diag.settings import Rate

DEFAULT_MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate: Rate, *, max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(rate.count)
        self.per_second = rate.count / rate.period_s
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float | None:
        """Take one token for `key`: None when allowed, else the seconds to wait before retrying."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._drop_refilled(now)
                if len(self._buckets) >= self.max_keys:
                    return 1.0 / self.per_second
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.per_second

    def _drop_refilled(self, now: float) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.per_second >= self.capacity
        ]
        for key in full:
            del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class RunGate:
    """At most `limit` runs at once in this process (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active = max(0, self.active - 1)
