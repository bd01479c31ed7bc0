"""Engine overhead, as ratios measured in one run against the same fake server.

1. In-process: a full smtp-diag run (config, dns, connect, EHLO, STARTTLS with certificate checks, AUTH,
   MAIL FROM) against a bare aiosmtplib transaction of the same steps. Target: ratio <= 1.3.
2. Whole process: `smtp-diag check` against swaks (Debian package) doing the same transaction and quitting
   after MAIL FROM. Target (issue 13): <= 2x swaks. Skipped, and said so, when swaks is not installed.
   Beside it, the floor: a bare `python -c "import asyncio, ssl"`, the least a Python client can start with.

Runs alternate between the two sides so drift on a busy machine hits both equally. Prints medians.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib

from diag.config import SmtpConfig
from diag.logging import configure_logging
from diag.runner import run
from diag.secret import Secret
from fake_smtp import FakeSMTP

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))
PROCESS_ROUNDS = int(os.environ.get("BENCH_PROCESS_ROUNDS", "10"))
USER, PASSWORD = "bench", "bench-password"


async def bare_transaction(port: int, ca_pem: str) -> None:
    context = ssl.create_default_context(cafile=ca_pem)
    smtp = aiosmtplib.SMTP(hostname="localhost", port=port, start_tls=False, timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    await smtp.starttls(tls_context=context)
    await smtp.ehlo()
    await smtp.login(USER, PASSWORD)
    await smtp.mail("bench@example.com")
    await smtp.rset()
    await smtp.quit()


async def engine_run(config: SmtpConfig) -> None:
    report = await run(config)
    if not report.valid:
        raise SystemExit(f"engine run failed: {report.first_failure}")


async def in_process(srv: FakeSMTP) -> tuple[float, float]:
    ca = Path(srv.ca_pem).read_text()
    config = SmtpConfig(
        host="localhost", port=srv.port, from_email="bench@example.com", username=USER,
        password=Secret(PASSWORD), ca_bundle=ca, timeout_s=10,
    )
    bare: list[float] = []
    engine: list[float] = []
    for _ in range(3):  # warm-up: imports, first TLS contexts
        await bare_transaction(srv.port, srv.ca_pem)
        await engine_run(config)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        await bare_transaction(srv.port, srv.ca_pem)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await engine_run(config)
        engine.append(time.perf_counter() - t0)
    return statistics.median(bare), statistics.median(engine)


def timed(cmd: list[str], env: dict[str, str], timeout_s: float = 60) -> float:
    """The wall time of one whole process; SystemExit with its output's tail when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout_s, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stdout[-400:]!r} {done.stderr[-400:]!r}")
    return elapsed


def whole_process(srv: FakeSMTP) -> tuple[float, float, float] | None:
    swaks = shutil.which("swaks")
    if swaks is None:
        return None
    cli = str(Path(sys.executable).with_name("smtp-diag"))
    env = {**os.environ, "BENCH_SMTP_PASSWORD": PASSWORD}
    ours = [cli, "check", "--profile", "generic", "--host", "localhost", "--port", str(srv.port),
            "--from-email", "bench@example.com", "--username", USER, "--password-env", "BENCH_SMTP_PASSWORD",
            "--ca-file", srv.ca_pem, "--json"]
    theirs = [swaks, "--server", f"localhost:{srv.port}", "--tls", "--tls-verify", "--tls-ca-path", srv.ca_pem,
              "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD, "--from", "bench@example.com",
              "--to", "nobody@example.com", "--quit-after", "FROM", "--silent", "2"]
    floor = [sys.executable, "-c", "import asyncio, ssl"]
    timed(ours, env)
    timed(theirs, env)
    a: list[float] = []
    b: list[float] = []
    c: list[float] = []
    for _ in range(PROCESS_ROUNDS):
        a.append(timed(theirs, env))
        b.append(timed(ours, env))
        c.append(timed(floor, env))
    return statistics.median(a), statistics.median(b), statistics.median(c)


def main() -> int:
    configure_logging(json=False, level="warning")  # the figures, not a log line per stage
    with FakeSMTP(auth="required", tls="starttls", username=USER, password=PASSWORD) as srv:
        bare, engine = asyncio.run(in_process(srv))
        print(f"engine vs bare aiosmtplib (STARTTLS+AUTH+MAIL FROM, median of {ROUNDS}):")
        print(f"  bare aiosmtplib {bare * 1000:7.1f} ms   smtp-diag engine {engine * 1000:7.1f} ms   "
              f"ratio {engine / bare:.2f} (target <= 1.3)")
        process = whole_process(srv)
        if process is None:
            print("whole process vs swaks: skipped, swaks is not installed (apt-get install swaks)")
        else:
            swaks_s, ours_s, floor_s = process
            print(f"whole process vs swaks (median of {PROCESS_ROUNDS}):")
            print(f"  swaks {swaks_s * 1000:7.1f} ms   smtp-diag check {ours_s * 1000:7.1f} ms   "
                  f"ratio {ours_s / swaks_s:.2f} (target <= 2.0)")
            print(f"  floor: python -c 'import asyncio, ssl' {floor_s * 1000:7.1f} ms "
                  f"({floor_s / swaks_s:.2f} x swaks; smtp-diag check is {ours_s / floor_s:.2f} x the floor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
