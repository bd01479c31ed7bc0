"""What the fake server logs through: nothing until its user configures logging.

structlog's defaults print every event to stdout, so a test suite that started a FakeSMTP got the server's
lines mixed into its own output. The fake-smtp CLI configures structlog, and so may a test
(`structlog.testing.capture_logs`) or an application; until one does, events are dropped.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

# Binds and calls like any structlog logger; its ReturnLogger hands each event back instead of writing it.
_DROPPED: Final = structlog.wrap_logger(structlog.ReturnLogger(), processors=[], wrapper_class=structlog.BoundLogger)


def logger(**context: Any) -> Any:
    """The fake server's logger as of now (structlog's once it is configured), bound to `context`."""
    base = structlog.get_logger("fake_smtp") if structlog.is_configured() else _DROPPED
    return base.bind(**context) if context else base
