"""Admission control: token-bucket rate limits per key, caps on runs in flight, and the keys they use.

Both live in memory, per process: with N workers the effective limits are N times the configured ones
(docs/operations.md says so). The bucket table is bounded: when it is full, buckets that have refilled
(which hold no state worth keeping) are dropped; if none has, a new key is refused rather than an old
one forgotten, so flooding many keys cannot reset the limit of the one being abused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Final, NamedTuple

from diag.policy import parse_ip_literal
from diag.service.settings import Rate

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
        return self.acquire_all((key,))

    def acquire_all(self, keys: Iterable[str]) -> float | None:
        """One token from every key's bucket, or none at all: None when every key allows it, else the
        longest wait. Nothing is taken when one is empty, so a refused run spends no budget."""
        wanted = dict.fromkeys(keys)  # ordered, without repeats
        waits = [self.wait(key) for key in wanted]
        if any(w is not None for w in waits):
            return max(w for w in waits if w is not None)
        for key in wanted:
            self._buckets[key].tokens -= 1.0
        return None

    def wait(self, key: str) -> float | None:
        """None when `key` has a token now (nothing is taken), else the seconds until it has one."""
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


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket to take a token from, for admission across replicas (diag.service.pg_admission): the
    limiter's name, its rate and the key in it."""

    limiter: str
    rate: Rate
    key: str


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class GateEntry(NamedTuple):
    """What `RunGate.enter` answered: `refused` is None when a slot is held (the caller must `leave` once),
    else why not ("busy", "client_busy"); `queued_s` is the time spent waiting in the queue, None when the
    request did not wait (admitted or refused at once)."""

    refused: str | None
    queued_s: float | None = None


class RunGate:
    """At most `limit` runs at once in this process, and at most `per_client` of them for one client, so
    one client cannot hold every slot; up to `max_queued` more requests wait FIFO for a slot, each for at
    most `queue_wait_s` (one event loop: no lock needed).

    Why a queue rather than a higher limit: past the CPU's saturation more runs in flight give no more runs
    a second, only event-loop lag that inflates every report's stage timings. Why FIFO with a direct
    hand-over: a slot freed by `leave` goes to the oldest waiter, so waiters are not woken to race for it
    and a newcomer cannot take it while someone waits."""

    def __init__(self, limit: int, per_client: int | None = None, *, max_queued: int = 0,
                 queue_wait_s: float = 0.0) -> None:
        self.limit = limit
        self.per_client = limit if per_client is None else per_client
        self.max_queued = max_queued
        self.queue_wait_s = queue_wait_s
        self.active = 0  # slots held: running, or handed to a waiter that has not resumed yet
        self._by_client: dict[str, int] = {}  # per client: slots held and places in the queue
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_enter(self, client: str = "") -> str | None:
        """The answer without waiting: None when the run may start (the caller must `leave(client)` once),
        else why it may not. Nobody jumps the queue: while anyone waits, a free slot is theirs."""
        if self._by_client.get(client, 0) >= self.per_client:
            return "client_busy"
        if self.active >= self.limit or self._waiters:
            return "busy"
        self.active += 1
        self._count(client, 1)
        return None

    def enter_now(self, client: str = "") -> GateEntry | None:
        """The answer when it needs no wait (a slot now, or a refusal); None when the request may wait for a
        slot in the queue: then `enter`. A caller that only waits when it must spares every other request
        what a wait needs (the service watches the client for a hang-up while it waits)."""
        refused = self.try_enter(client)
        if refused != "busy" or len(self._waiters) >= self.max_queued:
            return GateEntry(refused)
        return None

    async def enter(self, client: str = "") -> GateEntry:
        """`enter_now`, and when only a slot is missing, a place in the queue: a slot within `queue_wait_s`,
        else "busy". A cancelled waiter (its client left) leaves the queue and holds no slot."""
        now = self.enter_now(client)
        if now is not None:
            return now
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._count(client, 1)
        started = loop.time()
        try:
            async with asyncio.timeout(self.queue_wait_s):
                await waiter
        except TimeoutError:
            if _handed(waiter):  # the slot came as the wait ran out: it is this request's
                return GateEntry(None, loop.time() - started)
            self._forget(waiter, client)
            return GateEntry("busy", loop.time() - started)
        except BaseException:  # cancelled: the client left
            if _handed(waiter):  # handed a slot in the same moment: the next waiter gets it, not nobody
                self._count(client, -1)
                self._free_slot()
            else:
                self._forget(waiter, client)
            raise
        return GateEntry(None, loop.time() - started)

    def leave(self, client: str = "") -> None:
        self._count(client, -1)
        self._free_slot()

    def running(self, client: str) -> int:
        """The slots `client` holds and its places in the queue."""
        return self._by_client.get(client, 0)

    def _free_slot(self) -> None:
        """One slot given back: to the oldest waiter still waiting, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a done one was cancelled; its task takes it out of the count itself
                waiter.set_result(None)
                return
        self.active = max(0, self.active - 1)

    def _forget(self, waiter: asyncio.Future[None], client: str) -> None:
        with contextlib.suppress(ValueError):  # already taken off by `_free_slot`
            self._waiters.remove(waiter)
        self._count(client, -1)

    def _count(self, client: str, change: int) -> None:
        held = self._by_client.get(client, 0) + change
        if held > 0:
            self._by_client[client] = held
        else:
            self._by_client.pop(client, None)


def _handed(waiter: asyncio.Future[None]) -> bool:
    """Whether a slot was handed to this waiter (it may have been cancelled after that)."""
    return waiter.done() and not waiter.cancelled()


def client_key(address: str | None) -> str:
    """One key per client: its IPv4 address, or its IPv6 /64 (one host or one site holds a whole /64, so a
    key per address would give a client 2**64 budgets)."""
    if not address:
        return "unknown"
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is None:
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed.ipv4_mapped if isinstance(parsed, IPv6Address) else parsed)


def target_host_key(host: str) -> str:
    """One key per destination whatever its spelling: IP literals by `address_key`, names in their
    canonical IDNA form (fullwidth or circled letters, capitals and a trailing dot fold to one name)."""
    address = parse_ip_literal(host)
    if address is not None:
        return address_key(str(address))
    name = unicodedata.normalize("NFKC", host.strip()).rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid IDNA name: the config stage says so; the key is the folded text
        return name


def address_key(address: str) -> str:
    """One key per server an address reaches: all of loopback is one key (127.0.0.1, 127.1.1.1 and ::1 are
    this machine), an IPv6 address counts by its /64, IPv4-mapped IPv6 as the IPv4 address."""
    parsed = parse_ip_literal(address)
    if parsed is None:
        return address.strip().lower()
    if parsed.is_loopback:
        return "loopback"
    if isinstance(parsed, IPv6Address):
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def recipient_domain_key(recipient: str) -> str:
    """The domain a test message goes to, canonical, for the per-recipient-domain sending limit."""
    domain = recipient.rpartition("@")[2]
    return target_host_key(domain.strip("[]")) if domain else recipient.strip().lower()
