"""Admission shared by every replica through PostgreSQL: the rate limits and the runs in flight.

In memory (diag.service.limits) each process counts alone, so N replicas allow N times the settings. With
DIAG_DB_URL the same token buckets and run slots live in the database instead: an admission takes one
advisory lock (admissions queue for a millisecond or so; runs do not), refills the buckets by the database's
clock (one clock for every replica), checks the slots, and takes a token from each bucket and a slot only
when everything allows it, as the memory version does. A slot expires on its own after the longest a run
can last (DIAG_MAX_RUN_S, plus a margin), so a replica that dies mid-run does not hold it forever. A bucket
row that has refilled holds nothing worth keeping and is deleted, which bounds the table.

The resolved addresses' per-server keys (`admit_addresses`, asked by the dns stage on the event loop) stay
in memory per process: a blocking database call there would stall every run of the replica.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal

from psycopg import Connection
from psycopg.rows import TupleRow

from diag.logging import get_logger
from diag.service.limits import Limit
from diag.service.pg_store import PostgresReportStore

ADMISSION_LOCK: Final = 0x5D1A6_0002
SLOT_MARGIN_S: Final = 30.0

log = get_logger("diag.service.pg_admission")

Refused = Literal["rate_limited", "busy", "client_busy"]


@dataclass(frozen=True, slots=True)
class Admission:
    """The slot when admitted; else why not, which limit (for rate_limited) and how long to wait."""

    slot: str | None
    refused: Refused | None = None
    limiter: str | None = None
    wait_s: float = 0.0


class SharedAdmission:
    def __init__(self, store: PostgresReportStore, *, max_runs: int, max_runs_per_client: int,
                 max_run_s: float) -> None:
        self.store = store
        self.max_runs = max_runs
        self.max_runs_per_client = max_runs_per_client
        self.slot_ttl_s = max_run_s + SLOT_MARGIN_S

    def admit(self, client: str, limits: list[Limit]) -> Admission:
        """A token from every limit and a run slot, or nothing at all (blocking: call it in a thread)."""
        with self.store.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK,))
            now = _now(conn)
            conn.execute("DELETE FROM run_slots WHERE expires_at < %s", (now,))
            conn.execute("DELETE FROM rate_buckets WHERE full_at < %s", (now,))
            tokens: list[float] = []
            for limit in limits:
                have = _tokens(conn, limit, now)
                if have < 1.0:
                    per_second = limit.rate.count / limit.rate.period_s
                    return Admission(None, "rate_limited", limit.limiter, (1.0 - have) / per_second)
                tokens.append(have)
            row = conn.execute("SELECT count(*), count(*) FILTER (WHERE client = %s) FROM run_slots",
                               (client,)).fetchone()
            active, mine = (int(row[0]), int(row[1])) if row else (0, 0)
            if active >= self.max_runs:
                return Admission(None, "busy")
            if mine >= self.max_runs_per_client:
                return Admission(None, "client_busy")
            slot = uuid.uuid4().hex
            conn.execute("INSERT INTO run_slots (id, client, expires_at) VALUES (%s, %s, %s)",
                         (slot, client, now + self.slot_ttl_s))
            for limit, have in zip(limits, tokens, strict=True):
                left = have - 1.0
                per_second = limit.rate.count / limit.rate.period_s
                conn.execute(
                    "INSERT INTO rate_buckets (limiter, key, tokens, updated, full_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (limiter, key) DO UPDATE SET tokens = excluded.tokens,"
                    " updated = excluded.updated, full_at = excluded.full_at",
                    (limit.limiter, limit.key, left, now, now + (limit.rate.count - left) / per_second),
                )
            return Admission(slot)

    def leave(self, slot: str) -> None:
        """Give the slot back (blocking). A failure is logged: the slot then expires on its own."""
        try:
            with self.store.connection() as conn:
                conn.execute("DELETE FROM run_slots WHERE id = %s", (slot,))
        except Exception as exc:
            log.warning("run_slot_not_released", error_type=type(exc).__name__)

    def running(self) -> int:
        with self.store.connection() as conn:
            row = conn.execute("SELECT count(*) FROM run_slots").fetchone()
        return int(row[0]) if row else 0


def _now(conn: Connection[TupleRow]) -> float:
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def _tokens(conn: Connection[TupleRow], limit: Limit, now: float) -> float:
    """The bucket's tokens now: full when it has no row (it was never used, or refilled and deleted)."""
    row = conn.execute("SELECT tokens, updated FROM rate_buckets WHERE limiter = %s AND key = %s",
                       (limit.limiter, limit.key)).fetchone()
    capacity = float(limit.rate.count)
    if row is None:
        return capacity
    per_second = limit.rate.count / limit.rate.period_s
    return min(capacity, float(row[0]) + max(0.0, now - float(row[1])) * per_second)
