"""Load and soak: many concurrent diagnoses through the HTTP API, against the in-process runner; the fake
server under many senders and garbage. Prints figures (not a test: nothing here asserts timings).

1. HTTP API: a real uvicorn serving `create_app` in a child process (its own interpreter, as deployed),
   BENCH_LOAD_RUNS diagnoses (default 1000), BENCH_LOAD_CONCURRENCY at once (default 200) from an
   httpx.AsyncClient, against one FakeSMTP. Reported: errors, p50/p99 latency, runs/s, the server's
   event-loop lag p99 (a 10 ms ticker on the server's own loop, recorded only while the load runs), and
   the server's RSS growth between a warm-up and the end.
   Reference, measured in the same run: diag.runner.run in-process, same concurrency, same count.
   Target: HTTP runs/s >= 0.7 x in-process; RSS growth < 20 MB; 0 errors.
2. FakeSMTP: BENCH_FAKE_SENDERS (200) concurrent senders x BENCH_FAKE_MESSAGES (5) messages: 0 lost;
   then BENCH_FAKE_GARBAGE (1000) sessions of random bytes, and a normal diagnosis still passes.

The service's limits are raised for the load (DIAG_* variables of the child): rate limits per client and
per target 1000000/min, DIAG_MAX_CONCURRENT_RUNS and DIAG_MAX_RUNS_PER_CLIENT = concurrency + 56 (one load
client plays every user), the policy opened to 127.0.0.1 and the FakeSMTP's port only. BENCH_LOAD_TLS=1
makes every run do STARTTLS + AUTH (default: anonymous, plaintext, so the figures measure the service, not
TLS handshakes on a 2-core machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_LOAD_RUNS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_LOAD_CONCURRENCY", "200"))
# Two full waves at the load's concurrency, so RSS growth measures what stays, not the first peak.
WARMUP = int(os.environ.get("BENCH_LOAD_WARMUP", str(2 * CONCURRENCY)))
TLS = os.environ.get("BENCH_LOAD_TLS", "0") == "1"
SENDERS = int(os.environ.get("BENCH_FAKE_SENDERS", "200"))
MESSAGES = int(os.environ.get("BENCH_FAKE_MESSAGES", "5"))
GARBAGE = int(os.environ.get("BENCH_FAKE_GARBAGE", "1000"))
USER, PASSWORD = "bench", "bench-password-0c1d"
FROM = "bench@example.com"
TICK_S = 0.01


# -- the server side (child process) -----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def serve_child() -> None:
    """uvicorn configured and on a socket bound as `smtp-diag serve` does (TCP_NODELAY on the listener), plus
    a ticker that measures this loop's lag between SIGUSR1 and SIGUSR2."""
    import uvicorn

    from diag.service.app import create_app
    from diag.service.logs import configure_service_logging
    from diag.service.serve import bind_socket, freeze_startup_objects, uvicorn_config
    from diag.service.settings import Settings

    settings = Settings.from_env()
    configure_service_logging(settings.log_level, stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    sock = bind_socket("127.0.0.1", 0)
    # uvicorn as `serve` configures it (its HTTP protocol and connection guard), start-up frozen as it does.
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, settings.max_connections))
    freeze_startup_objects()
    lags, tick = record_lag()
    from diag.service.event_loop import running_loop_name

    print(json.dumps({"port": sock.getsockname()[1], "loop": running_loop_name()}), flush=True)
    await server.serve(sockets=[sock])  # returns on SIGINT/SIGTERM
    tick.cancel()
    lags.sort()
    print(json.dumps({"lag_samples": len(lags), "lag_p50_ms": pct(lags, 50) * 1000, "lag_p99_ms": pct(lags, 99) * 1000,
                      "lag_max_ms": (lags[-1] if lags else 0.0) * 1000}), flush=True)


def record_lag() -> tuple[list[float], asyncio.Task[None]]:
    """This loop's lag: a ticker that, between SIGUSR1 and SIGUSR2, records how late each 10 ms tick comes."""
    lags: list[float] = []
    recording = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, recording.set)
    loop.add_signal_handler(signal.SIGUSR2, recording.clear)

    async def ticker() -> None:
        while True:
            t0 = loop.time()
            await asyncio.sleep(TICK_S)
            if recording.is_set():
                lags.append(loop.time() - t0 - TICK_S)

    return lags, asyncio.create_task(ticker())


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the load side -----------------------------------------------------------------------------------------


def body(port: int, ca_pem: str | None) -> dict[str, Any]:
    if ca_pem is None:
        return {"host": "127.0.0.1", "port": port, "from_email": FROM, "tls_mode": "none", "timeout_s": 30}
    return {"host": "localhost", "port": port, "from_email": FROM, "username": USER, "password": PASSWORD,
            "tls_mode": "starttls", "ca_bundle": Path(ca_pem).read_text(), "timeout_s": 30}


async def http_load(base_url: str, payload: dict[str, Any], count: int, concurrency: int,
                    on_report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`concurrency` workers, each with its own httpx.AsyncClient (one keep-alive connection); `on_report`
    sees each report answered. Measured on this machine: one shared client with a pool of 200 connections
    spent ~5 ms of CPU per request in the pool, and 200 clients each loading the CA store took 4 s; either
    made this a benchmark of the client."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    todo = iter(range(count))
    unused_tls = ssl.create_default_context()  # plain HTTP: shared so 200 clients do not load CAs 200 times

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=120, verify=unused_tls) as client:
            for _ in todo:
                t0 = time.perf_counter()
                try:
                    response = await client.post("/api/diagnostics", json=payload)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 201:
                    errors.append(f"HTTP {response.status_code}")
                    continue
                report = response.json()
                if report["verdict"] != "valid":
                    errors.append("verdict " + str(report.get("stages")))
                if on_report is not None:
                    on_report(report)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"elapsed": time.perf_counter() - t0, "latencies": latencies, "errors": errors}


async def sequential_latency(base_url: str, count: int = 50) -> float:
    """Median latency of GET /healthz, one request after another on one keep-alive connection: where a
    listener without TCP_NODELAY shows (a response split in two writes waits for the client's delayed ACK)."""
    import httpx

    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await client.get("/healthz")
        for _ in range(count):
            t0 = time.perf_counter()
            await client.get("/healthz")
            latencies.append(time.perf_counter() - t0)
    return statistics.median(latencies)


async def inprocess_load(config: Any, count: int, concurrency: int) -> dict[str, Any]:
    from diag.runner import run

    latencies: list[float] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            report = await run(config)
            latencies.append(time.perf_counter() - t0)
            if not report.valid:
                errors.append(str(report.first_failure))

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return {"elapsed": time.perf_counter() - t0, "latencies": latencies, "errors": errors}


def service_env(smtp_port: int, db_path: Path, concurrency: int = CONCURRENCY) -> dict[str, str]:
    """The service's settings for a load of `concurrency` runs in flight against FakeSMTP on `smtp_port`."""
    env = {
        **os.environ,
        "DIAG_DB_PATH": str(db_path),
        "DIAG_RATE_LIMIT_PER_CLIENT": "1000000/min",
        "DIAG_RATE_LIMIT_PER_TARGET": "1000000/min",
        "DIAG_MAX_CONCURRENT_RUNS": str(concurrency + 56),
        "DIAG_MAX_RUNS_PER_CLIENT": str(concurrency + 56),  # one load client plays every user
        "DIAG_MAX_CONNECTIONS": str(concurrency + 200),
        "DIAG_ALLOWED_PORTS": str(smtp_port),
        "DIAG_ALLOW_NETWORKS": "127.0.0.1/32",
        "DIAG_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
    }
    env.pop("DIAG_API_TOKEN", None)
    return env


def spawn_service(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A service child that prints one JSON line when it listens (its port, its loop); that line, parsed."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first = child.stdout.readline()
    if not first:
        raise SystemExit("the service did not start")
    started: dict[str, Any] = json.loads(first)
    return child, started


def start_service(port: int, db_dir: str) -> tuple[subprocess.Popen[str], str]:
    env = service_env(port, Path(db_dir) / "load.sqlite3")
    child, started = spawn_service([sys.executable, __file__, "--serve"], env)
    print(f"    (service on the {started.get('loop', 'asyncio')} event loop, as `smtp-diag serve` runs it)")
    return child, f"http://127.0.0.1:{started['port']}"


def stop_service(child: subprocess.Popen[str]) -> dict[str, Any]:
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


def describe(label: str, result: dict[str, Any], count: int) -> float:
    lat = sorted(result["latencies"])
    rate = count / float(result["elapsed"])
    print(f"    {label:<20} {rate:7.1f} runs/s   p50 {pct(lat, 50) * 1000:7.1f} ms   p99 {pct(lat, 99) * 1000:7.1f} ms"
          f"   errors {len(result['errors'])}")
    for error in result["errors"][:3]:
        print(f"        e.g. {error[:200]}")
    return rate


def api_figures() -> None:
    from diag.config import SmtpConfig, TlsMode
    from diag.secret import Secret
    from fake_smtp import FakeSMTP

    options: dict[str, Any] = {"max_messages": 10}
    if TLS:
        options.update(auth="required", tls="starttls", username=USER, password=PASSWORD)
    with FakeSMTP(**options) as srv, tempfile.TemporaryDirectory(prefix="smtp-diag-load-") as db_dir:
        ca_pem = str(srv.ca_pem) if TLS else None
        payload = body(srv.port, ca_pem)
        if TLS:
            config = SmtpConfig(host="localhost", port=srv.port, from_email=FROM, username=USER,
                                password=Secret(PASSWORD), tls_mode=TlsMode.STARTTLS,
                                ca_bundle=payload["ca_bundle"], timeout_s=30)
        else:
            config = SmtpConfig(host="127.0.0.1", port=srv.port, from_email=FROM, tls_mode=TlsMode.NONE, timeout_s=30)
        mode = "STARTTLS + AUTH" if TLS else "anonymous, plaintext"
        print(f"HTTP API vs in-process runner: {RUNS} runs, {CONCURRENCY} concurrent, FakeSMTP {mode}")

        reference = asyncio.run(inprocess_load(config, RUNS, CONCURRENCY))
        ref_rate = describe("in-process runner", reference, RUNS)
        print("  HTTP API, uvicorn in a child process, listener as `smtp-diag serve` binds it:")
        http_figures(srv.port, db_dir, payload, ref_rate)


def http_figures(port: int, db_dir: str, payload: dict[str, Any], ref_rate: float) -> None:
    child, url = start_service(port, db_dir)
    try:
        warm = asyncio.run(http_load(url, payload, WARMUP, CONCURRENCY))
        rss_before = rss_kib(child.pid)
        child.send_signal(signal.SIGUSR1)
        loaded = asyncio.run(http_load(url, payload, RUNS, CONCURRENCY))
        child.send_signal(signal.SIGUSR2)
        rss_after = rss_kib(child.pid)
        one_by_one = asyncio.run(sequential_latency(url))
    finally:
        lag = stop_service(child)
    api_rate = describe("HTTP API", loaded, RUNS)
    print(f"    ratio HTTP / in-process  {api_rate / ref_rate:.2f}   (target >= 0.7)")
    print(f"    server event-loop lag    p50 {lag.get('lag_p50_ms', 0):.1f} ms   p99 {lag.get('lag_p99_ms', 0):.1f} ms"
          f"   max {lag.get('lag_max_ms', 0):.1f} ms   ({lag.get('lag_samples', 0)} ticks of {TICK_S * 1000:.0f} ms)")
    growth = (rss_after - rss_before) / 1024
    print(f"    server RSS after {WARMUP} warm-up runs {rss_before / 1024:.1f} MB, after {RUNS} more "
          f"{rss_after / 1024:.1f} MB: growth {growth:+.1f} MB   (target < 20 MB)")
    print(f"    warm-up errors {len(warm['errors'])}; sequential GET /healthz on one connection: "
          f"median {one_by_one * 1000:.1f} ms")


async def senders(port: int) -> tuple[float, int]:
    import aiosmtplib

    failures = 0

    async def sender(n: int) -> None:
        nonlocal failures
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
        try:
            await smtp.connect()
            for m in range(MESSAGES):
                message = f"From: {FROM}\r\nTo: r{n}@example.net\r\nSubject: load {n}/{m}\r\n\r\nbody {n} {m}\r\n"
                await smtp.sendmail(FROM, [f"r{n}@example.net"], message)
            await smtp.quit()
        except aiosmtplib.SMTPException:
            failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(n) for n in range(SENDERS)))
    return time.perf_counter() - t0, failures


async def garbage(port: int) -> float:
    rng = random.Random(1)
    gate = asyncio.Semaphore(100)

    async def session() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(rng.randbytes(rng.randint(1, 4096)) + b"\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(256), 2.0)
                writer.close()
                await writer.wait_closed()
            except OSError:
                pass  # the server may hang up first: that is fine

    t0 = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(GARBAGE)))
    return time.perf_counter() - t0


def fake_figures() -> None:
    from diag.config import SmtpConfig, TlsMode
    from diag.runner import run
    from fake_smtp import FakeSMTP

    total = SENDERS * MESSAGES
    with FakeSMTP(max_messages=total + 10) as srv:
        elapsed, failures = asyncio.run(senders(srv.port))
        got = len(srv.messages)
        print(f"FakeSMTP: {SENDERS} concurrent senders x {MESSAGES} messages in {elapsed:.1f} s "
              f"({total / elapsed:.0f} messages/s): {got} of {total} captured, {total - got} lost, "
              f"{failures} sender errors")
        g = asyncio.run(garbage(srv.port))
        report = asyncio.run(run(SmtpConfig(host="127.0.0.1", port=srv.port, from_email=FROM, tls_mode=TlsMode.NONE)))
        print(f"FakeSMTP: {GARBAGE} garbage sessions in {g:.1f} s; a diagnosis afterwards: {report.verdict}")


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        # uvicorn re-raises the SIGINT that stopped it, after a clean shutdown
        from diag.service.event_loop import service_loop

        # On the loop `serve` runs on (uvloop, else asyncio).
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=service_loop()[1]) as runner:
            runner.run(serve_child())
        return 0
    from diag.logging import configure_logging

    # The same logging as the service (JSON lines at INFO, here to /dev/null): equal work on both sides.
    configure_logging(json=True, level="INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    api_figures()
    fake_figures()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
