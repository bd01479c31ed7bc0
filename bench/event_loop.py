"""uvloop or asyncio under `smtp-diag serve`: event-loop lag p99 under BENCH_LOOP_CONCURRENCY (200)
concurrent STARTTLS + AUTH runs, both measured in the same run. Prints figures (not a test).

The service runs as `serve` runs it (diag.service.serve.uvicorn_config: the guarded httptools protocol on
both sides, so only the loop is compared; see docs/performance.md), in a child process, with a 10 ms
ticker on its loop recorded only while the measured load runs. The load is bench/load.py's (one httpx
client per worker), against one FakeSMTP doing STARTTLS + AUTH. uvloop must be installed for its side
(`pip install uvloop`); without it that side is reported as missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import load  # bench/load.py: the HTTP load and the figures' format

RUNS = int(os.environ.get("BENCH_LOOP_RUNS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_LOOP_CONCURRENCY", "200"))


async def serve_child() -> None:
    import uvicorn

    from diag.service.app import create_app
    from diag.service.logs import configure_service_logging
    from diag.service.serve import bind_socket, freeze_startup_objects, uvicorn_config
    from diag.service.settings import Settings

    settings = Settings.from_env()
    configure_service_logging(settings.log_level, stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, settings.max_connections))
    freeze_startup_objects()  # as `serve` does before it serves
    lags, tick = load.record_lag()
    loop = asyncio.get_running_loop()
    print(json.dumps({"port": sock.getsockname()[1], "loop": type(loop).__module__}), flush=True)
    await server.serve(sockets=[sock])
    tick.cancel()
    print(json.dumps({"lag_p50_ms": load.pct(lags, 50) * 1000, "lag_p99_ms": load.pct(lags, 99) * 1000,
                      "lag_samples": len(lags)}), flush=True)


def start(loop_name: str, smtp_port: int, db_dir: str) -> tuple[subprocess.Popen[str], str]:
    env = load.service_env(smtp_port, Path(db_dir) / f"{loop_name}.sqlite3", CONCURRENCY)
    child, started = load.spawn_service([sys.executable, __file__, "--serve", loop_name], env)
    print(f"    ({loop_name} side: the child's running loop is from {started['loop']})")
    return child, f"http://127.0.0.1:{started['port']}"


def side(loop_name: str, smtp_port: int, payload: dict[str, Any], db_dir: str) -> tuple[float, float] | None:
    child, url = start(loop_name, smtp_port, db_dir)
    try:
        asyncio.run(load.http_load(url, payload, CONCURRENCY, CONCURRENCY))  # warm-up: one wave
        child.send_signal(signal.SIGUSR1)
        loaded = asyncio.run(load.http_load(url, payload, RUNS, CONCURRENCY))
        child.send_signal(signal.SIGUSR2)
    finally:
        lag = load.stop_service(child)
    rate = load.describe(f"loop {loop_name}", loaded, RUNS)
    print(f"        event-loop lag p50 {lag.get('lag_p50_ms', 0):.1f} ms   p99 {lag.get('lag_p99_ms', 0):.1f} ms")
    return rate, float(lag.get("lag_p99_ms", 0.0))


def main() -> int:
    if sys.argv[1:2] == ["--serve"]:
        with contextlib.suppress(KeyboardInterrupt):
            if sys.argv[2] == "uvloop":
                import uvloop

                uvloop.run(serve_child())
            else:
                asyncio.run(serve_child())
        return 0
    from diag.logging import configure_logging
    from fake_smtp import FakeSMTP

    configure_logging(json=True, level="INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed: only the asyncio side can be measured")
        loops = ["asyncio"]
    else:
        # BENCH_LOOP_ORDER: which side goes first, to see that the order (a machine warming up) decides nothing.
        loops = os.environ.get("BENCH_LOOP_ORDER", "asyncio,uvloop").split(",")
    print(f"Event loop under serve: {RUNS} runs, {CONCURRENCY} concurrent, FakeSMTP STARTTLS + AUTH")
    with FakeSMTP(max_messages=10, auth="required", tls="starttls", username=load.USER, password=load.PASSWORD) \
            as srv, tempfile.TemporaryDirectory(prefix="smtp-diag-loop-") as db_dir:
        payload = load.body(srv.port, str(srv.ca_pem))
        results = {name: side(name, srv.port, payload, db_dir) for name in loops}
    if results.get("uvloop") and results.get("asyncio"):
        (a_rate, a_lag), (u_rate, u_lag) = results["asyncio"], results["uvloop"]  # type: ignore[misc]
        print(f"    uvloop / asyncio: runs/s {u_rate / a_rate:.2f}, lag p99 {u_lag / max(a_lag, 0.001):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
