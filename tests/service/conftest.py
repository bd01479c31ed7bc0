from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from diag.logging import OUR_HANDLER_NAME, configure_logging


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The service's real JSON log output, captured in memory; logging is put back afterwards."""
    stream = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == OUR_HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        structlog.reset_defaults()
