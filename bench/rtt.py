"""A full diagnosis at 100 ms of round-trip time: `smtp-diag check` against swaks, whole process, same path.

This kernel has no netem qdisc, so the latency comes from a delaying TCP proxy on loopback (`DelayProxy`,
below, in a thread of this process): every chunk read from either side is written to the other side half
the round-trip time later, in order; and a new connection's first bytes wait one extra round trip, which
stands for the TCP handshake the proxy answers at once on loopback. Both clients go through the same
proxy to the same FakeSMTP (STARTTLS, AUTH PLAIN required, certificate for localhost from its own CA).

- smtp-diag: `check` with the hosts file answering localhost, connect, EHLO, STARTTLS, EHLO, AUTH, MAIL
  FROM, RCPT TO the From address (the envelope probe a check makes when no recipient is set), QUIT; the
  report as JSON.
- swaks, twice: STARTTLS + AUTH PLAIN + MAIL FROM (`--quit-after FROM`, what issue 13 compared against,
  before the check had its RCPT TO probe), and the same work as the check (`--quit-after RCPT`, RCPT TO the
  From address), verifying against the same CA.

Prints the medians (BENCH_RTT_ROUNDS, default 5, alternating), the ratios (target <= 1.1), and the round
trips per stage of one in-process run (a stage's duration over the round-trip time, rounded), with the
client's flights counted at the proxy (each time the client speaks after it has heard the server).
BENCH_RTT_MS sets the round-trip time (default 100).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import threading
from pathlib import Path

import engine  # bench/engine.py: a whole process, timed

from diag.config import SmtpConfig
from diag.logging import configure_logging
from diag.runner import run
from diag.secret import Secret
from fake_smtp import FakeSMTP

RTT_S = float(os.environ.get("BENCH_RTT_MS", "100")) / 1000
ROUNDS = int(os.environ.get("BENCH_RTT_ROUNDS", "5"))
USER, PASSWORD = "bench", "bench-password"
CHUNK = 65536


class DelayProxy:
    """TCP on 127.0.0.1 to `upstream_port`, each direction delayed by rtt / 2, on a loop in its own thread."""

    def __init__(self, upstream_port: int, rtt_s: float) -> None:
        self.upstream_port = upstream_port
        self.rtt_s = rtt_s
        self.port = 0
        self.client_flights = 0  # client -> server chunks sent after the client heard from the server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        """Close the listener and every relayed connection still open (a peer that never closed its side):
        their relays then end on their own."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if relays:
            await asyncio.wait(relays, timeout=5)

    async def _start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        # The handshake's round trip: nothing crosses before it would have completed.
        opened = asyncio.get_running_loop().time() + self.rtt_s
        heard = [True]  # the client has heard from the server since it last spoke (it speaks after the greeting)
        tasks = [
            asyncio.ensure_future(self._pipe(client_r, server_w, opened, heard, upstream=True)),
            asyncio.ensure_future(self._pipe(server_r, client_w, opened, heard, upstream=False)),
        ]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers -= {client_w, server_w}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opened: float, heard: list[bool],
        *, upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the simulated link's latency, not synchronisation
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if upstream and data and heard[0]:
                    self.client_flights += 1
                    heard[0] = False
                elif not upstream and data:
                    heard[0] = True
                queue.put_nowait((max(loop.time(), opened) + self.rtt_s / 2, data))
                if not data:
                    break
            await delivering
        except (ConnectionError, OSError):
            delivering.cancel()
            writer.close()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    return engine.timed(cmd, env, timeout_s=120)  # ten round trips of 100 ms, and swaks' start-up


def whole_process(port: int, ca_pem: str) -> dict[str, float] | None:
    """Each command's median whole-process time, the commands alternating round by round."""
    swaks = shutil.which("swaks")
    if swaks is None:
        return None
    cli = str(Path(sys.executable).with_name("smtp-diag"))
    env = {**os.environ, "BENCH_SMTP_PASSWORD": PASSWORD}
    sender = "bench@example.com"
    swaks_args = [swaks, "--server", f"localhost:{port}", "--tls", "--tls-verify", "--tls-ca-path", ca_pem,
                  "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD, "--from", sender,
                  "--to", sender, "--silent", "2"]
    commands = {
        "swaks --quit-after FROM": [*swaks_args, "--quit-after", "FROM"],
        "swaks --quit-after RCPT": [*swaks_args, "--quit-after", "RCPT"],
        "smtp-diag check": [cli, "check", "--profile", "generic", "--host", "localhost", "--port", str(port),
                            "--from-email", sender, "--username", USER, "--password-env", "BENCH_SMTP_PASSWORD",
                            "--ca-file", ca_pem, "--json"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():
        timed(cmd, env)  # warm
    for _ in range(ROUNDS):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env))
    return {name: statistics.median(values) for name, values in times.items()}


def stage_round_trips(port: int, ca_pem: str, proxy: DelayProxy) -> tuple[list[tuple[str, float]], float, int]:
    config = SmtpConfig(host="localhost", port=port, from_email="bench@example.com", username=USER,
                        password=Secret(PASSWORD), ca_bundle=Path(ca_pem).read_text(), timeout_s=10)
    asyncio.run(run(config))  # warm: contexts, imports
    flights = proxy.client_flights
    report = asyncio.run(run(config))
    stages = [(s.name, s.duration_ms) for s in report.stages if s.status.value != "skipped"]
    return stages, report.duration_ms, proxy.client_flights - flights


def main() -> int:
    configure_logging(json=False, level="warning")
    with FakeSMTP(auth="required", tls="starttls", username=USER, password=PASSWORD) as srv, \
            DelayProxy(srv.port, RTT_S) as proxy:
        stages, total_ms, flights = stage_round_trips(proxy.port, srv.ca_pem, proxy)
        rtt_ms = RTT_S * 1000
        print(f"round trips per stage at {rtt_ms:.0f} ms RTT (one in-process run; duration / RTT):")
        for name, ms in stages:
            print(f"  {name:<10} {ms:7.1f} ms   {ms / rtt_ms:4.1f} round trips")
        print(f"  {'run':<10} {total_ms:7.1f} ms   {total_ms / rtt_ms:4.1f} round trips "
              f"(client flights counted at the proxy: {flights}, the closing QUIT included)")
        process = whole_process(proxy.port, srv.ca_pem)
        if process is None:
            print("whole process vs swaks: skipped, swaks is not installed (apt-get install swaks)")
        else:
            ours_s = process.pop("smtp-diag check")
            print(f"whole process vs swaks at {rtt_ms:.0f} ms RTT (median of {ROUNDS}): smtp-diag check "
                  f"{ours_s * 1000:.1f} ms")
            for name, swaks_s in process.items():
                print(f"  {name:<24} {swaks_s * 1000:7.1f} ms   ratio {ours_s / swaks_s:.2f} (target <= 1.1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
