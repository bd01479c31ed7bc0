"""Says, once per interval, that the process has run out of file descriptors, on either event loop.

On asyncio's loop a failed accept() is logged ("socket.accept() out of system resource", bounded by
logs.py). uvloop reports nothing at all: libuv keeps one spare descriptor and, when accept() fails with
EMFILE, closes it, accepts the waiting connections and closes them at once (the clients see a reset), then
takes the spare back; no callback reaches Python. Measured with a lowered RLIMIT_NOFILE and 80 connections:
0 bytes of log, the clients past the limit reset, the service serving again once descriptors freed up.
So the service looks for itself: once a second, whether one more descriptor can be opened.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from typing import Final

DESCRIPTORS_EXHAUSTED: Final = "out of file descriptors"
CHECK_INTERVAL_S: Final = 1.0
# Linux lists a process's descriptors here, macOS and the BSDs here; neither: the watch does nothing.
_FD_DIRS: Final = ("/proc/self/fd", "/dev/fd")

logger = logging.getLogger("diag.service.descriptors")


def _fd_dir() -> str | None:
    return next((path for path in _FD_DIRS if os.path.isdir(path)), None)


def none_left(fd_dir: str) -> bool:
    """Whether the process holds every descriptor its soft RLIMIT_NOFILE allows: listing them needs one more.
    (uvloop's spare is one of them, so it is full then too.)"""
    try:
        with os.scandir(fd_dir):
            return False
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return True
        raise


def exhausted_line() -> str:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return f"{DESCRIPTORS_EXHAUSTED}: all {soft} in use (ulimit -n); new connections are refused or reset"


async def watch_descriptors(interval_s: float = CHECK_INTERVAL_S) -> None:
    """Runs until cancelled; logs (bounded by logs.py's filter) every check that finds none left."""
    fd_dir = _fd_dir()
    if fd_dir is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        if none_left(fd_dir):
            logger.error(exhausted_line())
