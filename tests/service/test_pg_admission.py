"""Admission across replicas, on the real PostgreSQL server: each `SharedAdmission` is one replica's."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from diag.secret import Secret
from diag.service.limits import Limit
from diag.service.pg_admission import SharedAdmission
from diag.service.pg_store import PostgresReportStore
from diag.service.settings import Rate

ONE_PER_HOUR = Rate(1, 3600.0)


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[list[SharedAdmission]]:
    stores = [PostgresReportStore(Secret(postgres_url)) for _ in range(2)]
    yield [SharedAdmission(s, max_runs=2, max_runs_per_client=1, max_run_s=60) for s in stores]
    for store in stores:
        store.close()


def test_a_refused_admission_spends_no_token(replicas: list[SharedAdmission], postgres_url: str) -> None:
    a, b = replicas
    first = a.admit("client-a", [Limit("client", ONE_PER_HOUR, "client-a"), Limit("target", ONE_PER_HOUR, "mx")])
    assert first.slot is not None
    refused = b.admit("client-b", [Limit("client", ONE_PER_HOUR, "client-b"), Limit("target", ONE_PER_HOUR, "mx")])
    assert (refused.slot, refused.refused, refused.limiter) == (None, "rate_limited", "target")
    assert 3500 < refused.wait_s <= 3600
    with psycopg.connect(postgres_url) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM rate_buckets")}
    assert keys == {"client-a", "mx"}  # client-b's bucket was never touched


def test_slots_are_counted_per_client_and_in_total(replicas: list[SharedAdmission]) -> None:
    a, b = replicas
    one = a.admit("x", [])
    assert one.slot is not None
    assert b.admit("x", []).refused == "client_busy"
    two = b.admit("y", [])
    assert two.slot is not None
    assert a.admit("z", []).refused == "busy"
    a.leave(two.slot)  # given back by another replica than the one that took it: the slot is shared
    assert b.admit("z", []).slot is not None
    assert a.running() == 2


def test_a_slot_of_a_replica_that_died_expires(replicas: list[SharedAdmission], postgres_url: str) -> None:
    a, b = replicas
    assert a.admit("x", []).slot is not None and a.admit("y", []).slot is not None
    assert b.admit("z", []).refused == "busy"
    with psycopg.connect(postgres_url) as conn:  # what a dead replica's slots look like once their time is up
        conn.execute("UPDATE run_slots SET expires_at = expires_at - 3600 WHERE client = 'x'")
    assert b.admit("z", []).slot is not None


def test_refilled_buckets_are_deleted(replicas: list[SharedAdmission], postgres_url: str) -> None:
    a, _ = replicas
    fast = Rate(5, 1.0)
    first = a.admit("x", [Limit("client", fast, "x")])
    assert first.slot is not None
    a.leave(first.slot)
    with psycopg.connect(postgres_url) as conn:  # as if the bucket had been refilling for a minute
        conn.execute("UPDATE rate_buckets SET updated = updated - 60, full_at = full_at - 60")
    assert a.admit("y", [Limit("client", fast, "y")]).slot is not None
    with psycopg.connect(postgres_url) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM rate_buckets")}
    assert keys == {"y"}
