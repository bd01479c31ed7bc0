"""The clock is injected (a list we advance): time is the one input a test cannot wait for honestly. The
run gate's queue is driven on a real event loop, whose order of steps is what its tests are about."""

from __future__ import annotations

import asyncio

from diag.service.limits import (
    GateEntry,
    RateLimiter,
    RunGate,
    address_key,
    retry_after_header,
    target_host_key,
)
from diag.service.settings import Rate
from tests.service.helpers import WatchedGate


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
    assert gate.try_enter("a") is None and gate.try_enter("b") is None
    assert gate.try_enter("c") == "busy"
    gate.leave("a")
    assert gate.try_enter("c") is None
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


# -- the queue in front of the cap: on a real event loop ----------------------------------------------------


async def queued(gate: WatchedGate, client: str) -> asyncio.Task[GateEntry]:
    """A task waiting in `gate`'s queue: returned once it holds its place (the queue has grown by one)."""
    before = gate.waiting
    task = asyncio.create_task(gate.enter(client))
    await gate.until(lambda: gate.waiting == before + 1 or task.done())
    assert not task.done(), task.result()
    return task


async def test_a_freed_slot_goes_to_the_oldest_waiter_and_no_newcomer_takes_it() -> None:
    gate = WatchedGate(1, per_client=10, max_queued=3, queue_wait_s=60)
    assert await gate.enter("holder") == GateEntry(None)
    waiters = {name: await queued(gate, name) for name in ("first", "second", "third")}
    order = []
    holder = "holder"
    for _ in waiters:
        gate.leave(holder)
        # Handed over directly: the slot is still taken, and a newcomer is refused rather than let in.
        assert gate.active == 1 and gate.try_enter("newcomer") == "busy"
        pending = [t for t in waiters.values() if not t.done()]
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        [task] = done
        holder = next(name for name, t in waiters.items() if t is task)
        entry = task.result()
        assert entry.refused is None and entry.queued_s is not None
        order.append(holder)
    assert order == ["first", "second", "third"]
    gate.leave(holder)
    assert gate.active == 0 and gate.waiting == 0


async def test_a_client_at_its_cap_is_refused_at_once_counting_its_waiting_requests() -> None:
    gate = WatchedGate(1, per_client=2, max_queued=5, queue_wait_s=60)
    assert await gate.enter("a") == GateEntry(None)
    waiting = await queued(gate, "a")
    assert gate.running("a") == 2
    assert await gate.enter("a") == GateEntry("client_busy")  # at once: no queued_s
    assert gate.waiting == 1
    gate.leave("a")
    assert (await waiting).refused is None
    gate.leave("a")
    assert gate.active == 0 and gate.running("a") == 0


async def test_a_full_queue_answers_busy_at_once() -> None:
    gate = WatchedGate(1, max_queued=1, queue_wait_s=60)
    assert await gate.enter("a") == GateEntry(None)
    waiting = await queued(gate, "b")
    assert await gate.enter("c") == GateEntry("busy")
    assert gate.running("c") == 0 and gate.waiting == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)



async def test_enter_now_answers_without_waiting_and_says_when_only_a_wait_would() -> None:
    """The service watches a client for a hang-up only while it waits (api.admit): `enter_now` admits or
    refuses at once, and answers None (without queueing anything) only when a place in the queue is free."""
    gate = WatchedGate(1, per_client=1, max_queued=1, queue_wait_s=60)
    assert gate.enter_now("a") == GateEntry(None)
    assert gate.enter_now("a") == GateEntry("client_busy")
    assert gate.enter_now("b") is None and gate.waiting == 0 and gate.running("b") == 0
    waiting = await queued(gate, "b")
    assert gate.enter_now("c") == GateEntry("busy")  # the queue is full
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)

async def test_without_a_queue_busy_is_at_once() -> None:
    gate = WatchedGate(1, max_queued=0, queue_wait_s=60)
    assert await gate.enter("a") == GateEntry(None)
    assert await gate.enter("b") == GateEntry("busy")
    assert gate.waiting == 0


async def test_a_wait_that_runs_out_is_busy_and_leaves_no_trace() -> None:
    gate = WatchedGate(1, max_queued=4, queue_wait_s=0.05)
    assert await gate.enter("a") == GateEntry(None)
    entry = await gate.enter("b")
    assert entry.refused == "busy" and entry.queued_s is not None
    assert gate.waiting == 0 and gate.running("b") == 0 and gate.active == 1
    gate.leave("a")
    assert gate.active == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    gate = WatchedGate(1, max_queued=4, queue_wait_s=60)
    assert await gate.enter("a") == GateEntry(None)
    gone = await queued(gate, "gone")
    gone.cancel()
    assert (await asyncio.gather(gone, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    assert gate.waiting == 0 and gate.running("gone") == 0
    gate.leave("a")
    assert gate.active == 0  # the slot went back to the pool, not to the client that left


async def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_moment_goes_to_the_next() -> None:
    gate = WatchedGate(1, max_queued=4, queue_wait_s=60)
    assert await gate.enter("a") == GateEntry(None)
    gone = await queued(gate, "gone")
    next_one = await queued(gate, "next")
    gate.leave("a")  # the slot is handed to `gone`, which has not resumed yet...
    gone.cancel()  # ...when its client leaves
    assert (await asyncio.gather(gone, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    async with asyncio.timeout(5):  # a lost slot would leave `next` waiting its full minute
        assert (await next_one).refused is None
    assert gate.active == 1 and gate.running("gone") == 0 and gate.running("next") == 1
    gate.leave("next")
    assert gate.active == 0 and gate.waiting == 0
