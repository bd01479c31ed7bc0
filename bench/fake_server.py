"""Messages per second: the fake server (anonymous, plaintext) vs bare aiosmtpd with a Sink handler.

Same run, same client: N messages sent with aiosmtplib, one connection per message, a few connections at a
time. Each round measures both servers (order alternating); prints the medians and the ratio fake/bare.

    .venv/bin/python bench/fake_server.py
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import aiosmtplib
import structlog
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from fake_smtp import FakeSMTP

MESSAGES = 300
CONCURRENCY = 4
ROUNDS = 5


@contextmanager
def bare_aiosmtpd() -> Iterator[int]:
    """aiosmtpd + Sink on its own loop thread, like FakeSMTP, so both sides pay the same thread hop."""
    loop = asyncio.new_event_loop()
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


async def send_all(port: int) -> float:
    """Messages per second for MESSAGES sends, CONCURRENCY at a time, a new connection each."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=MESSAGES)
    for index in range(MESSAGES):
        queue.put_nowait(index)
    msg = message()

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, start_tls=False, timeout=10)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return MESSAGES / (time.perf_counter() - started)


def main() -> None:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # log calls cost, output does not
    fake_rates: list[float] = []
    bare_rates: list[float] = []
    with FakeSMTP(max_messages=MESSAGES * ROUNDS * 2) as fake, bare_aiosmtpd() as bare_port:
        asyncio.run(send_all(fake.port))  # warm-up, both
        asyncio.run(send_all(bare_port))
        for round_index in range(ROUNDS):
            order = [("fake", fake.port), ("bare", bare_port)]
            for name, port in order if round_index % 2 == 0 else reversed(order):
                rate = asyncio.run(send_all(port))
                (fake_rates if name == "fake" else bare_rates).append(rate)
        assert len(fake.messages) == MESSAGES * (ROUNDS + 1)
    fake_median, bare_median = statistics.median(fake_rates), statistics.median(bare_rates)
    print(f"{MESSAGES} messages x {ROUNDS} rounds, {CONCURRENCY} concurrent connections, one message each")
    print(f"fake server : {fake_median:8.0f} msg/s  (rounds: {', '.join(f'{r:.0f}' for r in fake_rates)})")
    print(f"bare aiosmtpd: {bare_median:8.0f} msg/s  (rounds: {', '.join(f'{r:.0f}' for r in bare_rates)})")
    print(f"ratio fake/bare: {fake_median / bare_median:.2f}")


if __name__ == "__main__":
    main()
