"""Messages per second: the fake server (anonymous, plaintext) vs bare aiosmtpd with a Sink handler, and
vs maildev (npm), a peer written for the same job (issue 13).

The fake runs as shipped: on uvloop when it is installed (fake_smtp/event_loop.py). So that the comparison
stays honest, bare aiosmtpd runs on asyncio's loop (the target's reference) and on uvloop's, and the fake
also on asyncio's ("fake-asyncio"): the fake's own cost against aiosmtpd's is fake/bare-uvloop and
fake-asyncio/bare.

Same run, same client, same messages: N messages sent with aiosmtplib, a few connections at a time, in two
modes: a new connection per message, and each connection reused for its share of the messages. Each round
measures every server (order rotating); prints the medians and the ratios fake/bare and fake/maildev.

maildev is installed with npm into ~/.cache/smtp-diag-bench when it is missing (BENCH_MAILDEV=0 skips it;
so does a machine without node and npm, and says so). It keeps its mail in memory, its web UI off.

    .venv/bin/python bench/fake_server.py
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import structlog
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from fake_smtp import FakeSMTP
from fake_smtp.cli import configure_logging
from fake_smtp.event_loop import new_event_loop

MESSAGES = 300
CONCURRENCY = 4
ROUNDS = 5
MAILDEV_DIR = Path.home() / ".cache" / "smtp-diag-bench"
MAILDEV_VERSION = "3"


@contextmanager
def bare_aiosmtpd(event_loop: str = "asyncio") -> Iterator[int]:
    """aiosmtpd + Sink on its own loop thread, like FakeSMTP, so both sides pay the same thread hop."""
    loop = new_event_loop(event_loop)  # type: ignore[arg-type]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def open_server() -> asyncio.Server:
        return await loop.create_server(lambda: SMTP(Sink(), hostname="localhost", loop=loop), "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(open_server(), loop).result(10)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bench@example.test", "sink@example.test", "bench"
    msg.set_content("x" * 1000)
    return msg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _maildev_script() -> Path | None:
    """maildev's entry point, installed with npm when missing; None (and why, printed) when it cannot be."""
    if os.environ.get("BENCH_MAILDEV", "1") == "0":
        print("maildev: skipped (BENCH_MAILDEV=0)")
        return None
    script = MAILDEV_DIR / "node_modules" / "maildev" / "dist" / "bin" / "maildev.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        print("maildev: skipped, node and npm are not installed (apt-get install nodejs npm)")
        return None
    MAILDEV_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(MAILDEV_DIR), "--no-audit", "--no-fund", "--silent",
                    f"maildev@{MAILDEV_VERSION}"], check=True, timeout=300)
    return script if script.exists() else None


@contextmanager
def maildev() -> Iterator[int | None]:
    """maildev listening on 127.0.0.1 (in memory, no web UI), or None when it is not available."""
    script = _maildev_script()
    if script is None:
        yield None
        return
    port = _free_port()
    node = shutil.which("node") or "node"
    proc = subprocess.Popen([node, str(script), "--smtp", str(port), "--ip", "127.0.0.1", "--disable-web",
                             "--silent", "--max-emails", "100"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # a bench waiting for a child to listen, not a test
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(3) == b"220":
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("maildev did not start listening within 20 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def send_all(port: int, *, reuse: bool = False) -> float:
    """Messages per second for MESSAGES sends, CONCURRENCY at a time: a new connection each, or (`reuse`)
    one connection per worker for all of its messages."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=MESSAGES)
    for index in range(MESSAGES):
        queue.put_nowait(index)
    msg = message()

    async def worker() -> None:
        if not reuse:
            while not queue.empty():
                queue.get_nowait()
                await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
            return
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10) as smtp:
            while not queue.empty():
                queue.get_nowait()
                await smtp.send_message(msg)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return MESSAGES / (time.perf_counter() - started)


def main() -> None:
    # The fake's log lines rendered as the fake-smtp CLI renders them (its processors), then dropped: log
    # calls cost, output does not. (Until issue 13's item 4: structlog's default processors, a colour
    # console renderer with local time stamps, which neither the CLI nor a test run uses.)
    configure_logging(structlog.ReturnLoggerFactory())
    rates: dict[tuple[str, bool], list[float]] = {}
    with ExitStack() as stack:
        fake = stack.enter_context(FakeSMTP(max_messages=MESSAGES * ROUNDS * 4))
        servers = [("fake", fake.port)]
        fakes = [fake]
        if fake.event_loop != "asyncio":
            fakes.append(stack.enter_context(FakeSMTP(max_messages=MESSAGES * ROUNDS * 4, event_loop="asyncio")))
            servers.append(("fake-asyncio", fakes[-1].port))
        servers.append(("bare", stack.enter_context(bare_aiosmtpd("asyncio"))))
        if importlib.util.find_spec("uvloop") is not None:
            servers.append(("bare-uvloop", stack.enter_context(bare_aiosmtpd("uvloop"))))
        else:
            print("bare-uvloop: skipped, uvloop is not installed")
        maildev_port = stack.enter_context(maildev())
        if maildev_port is not None:
            servers.append(("maildev", maildev_port))
        print(f"fake: FakeSMTP on {fake.event_loop}")
        for reuse in (False, True):
            for _, port in servers:  # warm-up, every server
                asyncio.run(send_all(port, reuse=reuse))
            for round_index in range(ROUNDS):
                turn = round_index % len(servers)
                for name, port in servers[turn:] + servers[:turn]:
                    rates.setdefault((name, reuse), []).append(asyncio.run(send_all(port, reuse=reuse)))
        assert all(len(each.messages) == MESSAGES * (ROUNDS + 1) * 2 for each in fakes)
    print(f"{MESSAGES} messages x {ROUNDS} rounds, {CONCURRENCY} concurrent connections")
    for reuse in (False, True):
        print("reused connections:" if reuse else "a new connection per message:")
        medians = {name: statistics.median(rates[(name, reuse)]) for name, _ in servers}
        for name, _ in servers:
            rounds = ", ".join(f"{r:.0f}" for r in rates[(name, reuse)])
            print(f"  {name:<12} {medians[name]:8.0f} msg/s  (rounds: {rounds})")
        print(f"  ratio fake/bare: {medians['fake'] / medians['bare']:.2f} (target >= 0.9)")
        if "bare-uvloop" in medians:
            print(f"  ratio fake/bare-uvloop: {medians['fake'] / medians['bare-uvloop']:.2f}")
        if "fake-asyncio" in medians:
            print(f"  ratio fake-asyncio/bare: {medians['fake-asyncio'] / medians['bare']:.2f}")
        if "maildev" in medians:
            print(f"  ratio fake/maildev: {medians['fake'] / medians['maildev']:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
