"""Runs in flight: every request run at once, or the default cap with the queue in front of it. Prints
figures (not a test: nothing here asserts timings).

BENCH_CAP_CONCURRENCY (200) requests in flight from one client, BENCH_CAP_RUNS (2000) STARTTLS + AUTH
diagnoses through the HTTP API of a service child configured as `smtp-diag serve` configures it, against one
FakeSMTP, with a 10 ms ticker on the service's loop (bench/load.py's child and load). Two sides, same run:

- all at once: DIAG_MAX_CONCURRENT_RUNS = concurrency + 56, no queue: every request's run starts at once
  (what bench/load.py and bench/event_loop.py measure);
- the default cap with the queue: DIAG_MAX_CONCURRENT_RUNS at its default (16), DIAG_MAX_QUEUED_RUNS =
  concurrency + 56 and a wait long enough that nothing is refused: the other requests wait for a slot.

For each: runs/s, request latency p50/p99, the loop's lag p50/p99, and what the reports say: the median of
the connect and TLS stages' duration_ms (a loopback connect takes well under a millisecond; what a report
shows above that is the loop's lag, read by a person as the server's slowness). Reference, same run: the
same stages' medians of BENCH_CAP_ALONE (50) runs one after another on an idle service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import load  # bench/load.py: the service child, its lag ticker and its environment

RUNS = int(os.environ.get("BENCH_CAP_RUNS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_CAP_CONCURRENCY", "200"))
ALONE = int(os.environ.get("BENCH_CAP_ALONE", "50"))
# The queued side's DIAG_MAX_CONCURRENT_RUNS; unset: the service's default.
QUEUED_CAP = os.environ.get("BENCH_CAP_QUEUED_CAP")
STAGES = ("connect", "tls")


def side_env(name: str, smtp_port: int, db_path: Path) -> dict[str, str]:
    env = load.service_env(smtp_port, db_path, CONCURRENCY)
    if name == "queued":
        env.pop("DIAG_MAX_CONCURRENT_RUNS")  # the default, unless BENCH_CAP_QUEUED_CAP says
        if QUEUED_CAP:
            env["DIAG_MAX_CONCURRENT_RUNS"] = QUEUED_CAP
        env["DIAG_MAX_QUEUED_RUNS"] = str(CONCURRENCY + 56)
        env["DIAG_RUN_QUEUE_WAIT_S"] = "600"
    else:
        env["DIAG_MAX_QUEUED_RUNS"] = "0"
    return env


async def requests(base_url: str, payload: dict[str, Any], count: int, concurrency: int) -> dict[str, Any]:
    """bench/load.py's load, and each answer's stage durations."""
    stage_ms: dict[str, list[float]] = {name: [] for name in STAGES}

    def timings(report: dict[str, Any]) -> None:
        for stage in report["stages"]:
            if stage["name"] in stage_ms:
                stage_ms[stage["name"]].append(stage["duration_ms"])

    return {**await load.http_load(base_url, payload, count, concurrency, timings), "stage_ms": stage_ms}


def stage_medians(result: dict[str, Any]) -> str:
    return "   ".join(f"{name} {statistics.median(result['stage_ms'][name]):5.1f} ms" for name in STAGES
                      if result["stage_ms"][name])


def side(name: str, smtp_port: int, payload: dict[str, Any], db_dir: str) -> dict[str, Any]:
    env = side_env(name, smtp_port, Path(db_dir) / f"{name}.sqlite3")
    child, started = load.spawn_service([sys.executable, load.__file__, "--serve"], env)
    url = f"http://127.0.0.1:{started['port']}"
    try:
        alone = asyncio.run(requests(url, payload, ALONE, 1))
        asyncio.run(requests(url, payload, CONCURRENCY, CONCURRENCY))  # warm-up: one wave
        child.send_signal(signal.SIGUSR1)
        loaded = asyncio.run(requests(url, payload, RUNS, CONCURRENCY))
        child.send_signal(signal.SIGUSR2)
    finally:
        lag = load.stop_service(child)
    label = "all at once" if name == "all" else f"cap {QUEUED_CAP or 'default'} + queue"
    load.describe(label, loaded, RUNS)
    print(f"        event-loop lag p50 {lag.get('lag_p50_ms', 0):.1f} ms   p99 {lag.get('lag_p99_ms', 0):.1f} ms"
          f"   ({lag.get('lag_samples', 0)} ticks)")
    print(f"        reports' stage medians under load:  {stage_medians(loaded)}")
    print(f"        the same, {ALONE} runs one at a time: {stage_medians(alone)}")
    return {"loaded": loaded, "lag": lag}


def main() -> int:
    from diag.logging import configure_logging
    from fake_smtp import FakeSMTP

    configure_logging(json=True, level="INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    print(f"Runs in flight: {RUNS} STARTTLS + AUTH diagnoses, {CONCURRENCY} requests at once, one FakeSMTP")
    with FakeSMTP(max_messages=10, auth="required", tls="starttls", username=load.USER, password=load.PASSWORD) \
            as srv, tempfile.TemporaryDirectory(prefix="smtp-diag-cap-") as db_dir:
        payload = load.body(srv.port, str(srv.ca_pem))
        results = {name: side(name, srv.port, payload, db_dir) for name in ("all", "queued")}
    rates = {name: RUNS / r["loaded"]["elapsed"] for name, r in results.items()}
    lags = {name: float(r["lag"].get("lag_p99_ms", 0.0)) for name, r in results.items()}
    print(f"    queue / all at once: runs/s {rates['queued'] / rates['all']:.2f}, "
          f"lag p99 {lags['queued'] / max(lags['all'], 0.001):.2f}   (target: lag p99 < 50 ms)")
    print(json.dumps({"runs_s": rates, "lag_p99_ms": lags}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
