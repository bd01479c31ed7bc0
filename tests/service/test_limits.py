"""The clock is injected (a list we advance): time is the one input a test cannot wait for honestly."""

from __future__ import annotations

from diag.service.limits import RateLimiter, RunGate, retry_after_header
from diag.settings import Rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(3, 60.0), clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait is not None and 19.0 < wait <= 20.0  # one token every 20 s
    assert limiter.acquire("b") is None  # keys are independent
    clock.now += 20.0
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None


def test_table_is_bounded_and_refuses_new_keys_rather_than_forgetting_busy_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(1, 60.0), max_keys=2, clock=clock)
    assert limiter.acquire("x") is None
    assert limiter.acquire("y") is None
    assert limiter.acquire("z") is not None  # both buckets are empty: z waits, x keeps its state
    assert limiter.acquire("x") is not None
    clock.now += 60.0  # x and y have refilled: they can be dropped
    assert limiter.acquire("z") is None
    assert len(limiter) <= 2


def test_retry_after_is_a_whole_number_of_seconds() -> None:
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(19.01) == "20"


def test_gate_caps_runs_in_flight() -> None:
    gate = RunGate(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()
    assert gate.active == 2
