"""The fake-smtp CLI's log line: structlog's `ConsoleRenderer(colors=False)` line, built in one pass.

Every connection logs at least three lines (connect, message accepted, disconnect); ConsoleRenderer formats
each key through a column formatter and a StringIO of its own, ~10 µs a line, three quarters of what a
line costs (issue 13). For the fake's ordinary events (no traceback, no stack, no logger name column) this
renderer writes the same text directly; anything else goes to ConsoleRenderer itself.
tests/fake_smtp/test_console.py checks the two agree on any such event.
"""

from __future__ import annotations

import structlog
from structlog.typing import EventDict, WrappedLogger

# ConsoleRenderer pads the level to its longest level name ("exception") and the event to 30 characters.
_LEVEL_WIDTH = 9
_EVENT_WIDTH = 30
# Keys that make ConsoleRenderer do more than one line of key=value pairs, or add a column.
_NOT_PLAIN = frozenset({"stack", "exception", "exc_info", "logger", "logger_name"})
# Characters for which ConsoleRenderer writes a str value as its repr (quoted) rather than as it is.
_QUOTED = frozenset(" \t=\r\n\"'")


class ConsoleLine:
    """A structlog processor: the final renderer of the CLI's chain."""

    def __init__(self) -> None:
        self._general = structlog.dev.ConsoleRenderer(colors=False)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        if not _NOT_PLAIN.isdisjoint(event_dict):
            return self._general(logger, name, event_dict)
        parts = []
        if "timestamp" in event_dict:
            parts.append(str(event_dict.pop("timestamp")))
        if "level" in event_dict:
            parts.append(f"[{str(event_dict.pop('level')).ljust(_LEVEL_WIDTH)}]")
        if "event" in event_dict:
            parts.append(str(event_dict.pop("event")).ljust(_EVENT_WIDTH))
        parts.extend(f"{key}={_value(event_dict[key])}" for key in sorted(event_dict))
        return " ".join(part for part in parts if part).rstrip(" ")


def _value(value: object) -> str:
    if isinstance(value, str) and _QUOTED.isdisjoint(value):
        return value
    return repr(value)
