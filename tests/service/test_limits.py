"""The clock is injected (a list we advance): time is the one input a test cannot wait for honestly."""

from __future__ import annotations

from diag.service.limits import RateLimiter, RunGate, address_key, retry_after_header, target_host_key
from diag.service.settings import Rate


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
    assert gate.try_enter() is None and gate.try_enter() is None
    assert gate.try_enter() == "busy"
    gate.leave()
    assert gate.try_enter() is None
    assert gate.active == 2


def test_gate_caps_runs_per_client_and_forgets_idle_clients() -> None:
    gate = RunGate(3, per_client=2)
    assert gate.try_enter("a") is None and gate.try_enter("a") is None
    assert gate.try_enter("a") == "client_busy"
    assert gate.try_enter("b") is None
    assert gate.try_enter("c") == "busy"
    gate.leave("a")
    assert gate.running("a") == 1 and gate.try_enter("c") is None
    for client in ("a", "b", "c"):
        gate.leave(client)
    assert gate.active == 0 and gate.running("a") == 0


def test_acquire_all_takes_every_token_or_none() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(1, 60.0), clock=clock)
    assert limiter.acquire("spent") is None
    assert limiter.acquire_all(["fresh", "spent"]) is not None
    assert limiter.acquire("fresh") is None  # the refused call took nothing from "fresh"
    assert limiter.acquire_all(["x", "x", "y"]) is None  # a key named twice costs one token


def test_target_keys_fold_spellings_of_one_server() -> None:
    fullwidth = "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54"
    keys = {target_host_key(h) for h in ("localhost", "LOCALHOST.", fullwidth, "\u24dbocalhost")}
    assert keys == {"localhost"}
    assert {target_host_key(h) for h in ("127.0.0.1", "127.1.1.1", "::1", "[::1]", "0x7f000001")} == {"loopback"}
    assert address_key("2001:db8::1") == address_key("2001:db8::2") == "2001:db8::/64"
    assert target_host_key("Bücher.example") == "xn--bcher-kva.example"
