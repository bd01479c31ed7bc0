"""Fixtures every suite shares."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import structlog

from diag.logging import ROUTED_LIBRARY_LOGGERS, configure_logging
from tests.peer import Behaviour, Peer, never_greets


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put structlog and the stdlib loggers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libs = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in ROUTED_LIBRARY_LOGGERS}
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (lib_handlers, propagate) in libs.items():
        logging.getLogger(name).handlers[:] = lib_handlers
        logging.getLogger(name).propagate = propagate


@pytest.fixture
def json_logs(restore_logging: None) -> io.StringIO:
    """diag.logging's real JSON configuration (as the service runs it) writing to a buffer, at debug level."""
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)
    return stream


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound but never listening, and held for the whole test,
    so no other test (another xdist worker) can be given it in between, as a port bound then closed can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def start_peer() -> AsyncIterator[Callable[[Behaviour], Awaitable[Peer]]]:
    """Start scripted peers (tests/peer.py) on the test's loop; each is stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(behaviour: Behaviour) -> Peer:
            return await stack.enter_async_context(Peer(behaviour))

        yield start


@pytest.fixture
async def silent_peer() -> AsyncIterator[Peer]:
    """A peer that accepts and never says a word: a run against it waits for its greeting."""
    async with Peer(never_greets) as peer:
        yield peer
