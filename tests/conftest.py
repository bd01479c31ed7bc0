"""Fixtures every suite shares."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from diag.logging import ROUTED_LIBRARY_LOGGERS, configure_logging


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
