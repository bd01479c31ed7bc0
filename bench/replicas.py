"""Replicas and the report store: one replica on SQLite, one on PostgreSQL, two on PostgreSQL (DIAG_DB_URL).
Prints figures (not a test: nothing here asserts timings).

Each side: the service in child processes as bench/load.py starts it (a real uvicorn, its own interpreter;
limits raised for the load), BENCH_REPLICA_RUNS diagnoses (default 1000) at BENCH_REPLICA_CONCURRENCY
(default 200) against one FakeSMTP (anonymous, plaintext: the figures measure the service and its store,
not TLS), after a warm-up of one wave. With two replicas the load client splits its workers between them,
as a Service would. Reported per side: runs/s, p50/p99 latency, errors, each replica's event-loop lag p99;
then the ratios against one replica on SQLite, measured in the same run.

With PostgreSQL every run also takes its admission (rate limits and a run slot) from the database and gives
the slot back, so the PostgreSQL sides do more work per run than SQLite's: that is what they cost.
The PostgreSQL server is the tests' own (tests/postgres_server.py: initdb + pg_ctl on a loopback port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import load  # bench/load.py: the service child, the HTTP load, the figures' format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postgres_server import postgres_server  # noqa: E402 - needs the repository root on the path

RUNS = int(os.environ.get("BENCH_REPLICA_RUNS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_REPLICA_CONCURRENCY", "200"))


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set for the children started inside (load.start_service passes os.environ on)."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def split_load(urls: list[str], payload: dict[str, Any], count: int) -> dict[str, Any]:
    """The load's workers split between the replicas; one figure for all of them."""
    share, workers = count // len(urls), CONCURRENCY // len(urls)
    parts = await asyncio.gather(*(load.http_load(url, payload, share, workers) for url in urls))
    return {"elapsed": max(p["elapsed"] for p in parts), "latencies": [x for p in parts for x in p["latencies"]],
            "errors": [e for p in parts for e in p["errors"]]}


def side(label: str, smtp_port: int, replicas: int, db_url: str | None) -> float:
    payload = load.body(smtp_port, None)
    children: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="smtp-diag-replicas-") as db_dir, \
            environment(**({"DIAG_DB_URL": db_url} if db_url else {})):
        try:
            urls = []
            for _ in range(replicas):
                child, url = load.start_service(smtp_port, db_dir)
                children.append(child)
                urls.append(url)
            asyncio.run(split_load(urls, payload, CONCURRENCY))  # warm-up: one wave
            for child in children:
                child.send_signal(signal.SIGUSR1)
            loaded = asyncio.run(split_load(urls, payload, RUNS))
            for child in children:
                child.send_signal(signal.SIGUSR2)
        finally:
            lags = [load.stop_service(child) for child in children]
    rate = load.describe(label, loaded, len(loaded["latencies"]) or 1)
    print("        event-loop lag p99 " + ", ".join(f"{lag.get('lag_p99_ms', 0):.1f} ms" for lag in lags))
    return rate


def main() -> int:
    from diag.logging import configure_logging
    from fake_smtp import FakeSMTP

    # As load.py does: JSON lines at INFO to /dev/null (FakeSMTP's included), so nothing floods the figures.
    configure_logging(json=True, level="INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    print(f"Replicas and stores: {RUNS} runs, {CONCURRENCY} concurrent, FakeSMTP anonymous, plaintext")
    with FakeSMTP(max_messages=10) as srv, postgres_server() as pg:
        sqlite = side("1 replica, SQLite", srv.port, 1, None)
        with pg.database() as url:
            one_pg = side("1 replica, PostgreSQL", srv.port, 1, url)
        with pg.database() as url:
            two_pg = side("2 replicas, PostgreSQL", srv.port, 2, url)
    print(f"    ratios: 1 PostgreSQL / 1 SQLite {one_pg / sqlite:.2f}; 2 PostgreSQL / 1 SQLite {two_pg / sqlite:.2f};"
          f" 2 PostgreSQL / 1 PostgreSQL {two_pg / one_pg:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
