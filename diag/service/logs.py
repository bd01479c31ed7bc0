"""The service's logs: JSON lines through diag.logging, and lines that must not flood (one per interval
gets through, the rest are counted).

asyncio logs "socket.accept() out of system resource" for every failed accept when the process runs out of
file descriptors, and Python 3.11 keeps calling accept() after the first failure (up to the listen backlog
times per wake-up, each time scheduling another retry): 150 MB of log in 30 s. One line says it all.
uvloop logs nothing for a failed accept(); the service's own check (descriptors.py) says it instead, and is
bounded the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, TextIO

from diag.logging import configure_logging
from diag.service.descriptors import DESCRIPTORS_EXHAUSTED

ACCEPT_ERROR: Final = "socket.accept() out of system resource"


class OncePerInterval(logging.Filter):
    """Passes one record whose message starts with `prefix` per `interval_s`; the next one that passes
    says how many were dropped in between. Other records pass untouched."""

    def __init__(self, prefix: str, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._passed_at: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(self.prefix):
            return True
        now = self._clock()
        with self._lock:
            if self._passed_at is not None and now - self._passed_at < self.interval_s:
                self._dropped += 1
                return False
            dropped, self._dropped, self._passed_at = self._dropped, 0, now
        if dropped:
            record.msg = f"{record.getMessage()}\n({dropped} more like this were not logged)"
            record.args = None
        return True


ACCEPT_ERRORS: Final = OncePerInterval(ACCEPT_ERROR, interval_s=10.0)
EXHAUSTED_DESCRIPTORS: Final = OncePerInterval(DESCRIPTORS_EXHAUSTED, interval_s=10.0)


def limit_accept_errors() -> None:
    """Idempotent: a filter object is added to a logger once."""
    logging.getLogger("asyncio").addFilter(ACCEPT_ERRORS)
    logging.getLogger("diag.service.descriptors").addFilter(EXHAUSTED_DESCRIPTORS)


def configure_service_logging(level: str, stream: TextIO | None = None) -> None:
    """What `serve`, `uvicorn --factory` and the benchmarks log through: JSON lines, accept errors bounded."""
    configure_logging(json=True, level=level, stream=stream)
    limit_accept_errors()
