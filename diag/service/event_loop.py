"""Which event loop `serve` runs on: uvloop when it imports (a dependency everywhere but Windows), else
asyncio's own.

Measured by bench/event_loop.py (docs/performance.md, "uvloop under `serve`"): under 200 concurrent
STARTTLS + AUTH runs uvloop served 1.0-2.6x the runs per second with 0.3-0.8x the event-loop lag p99.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

UVLOOP: Final = "uvloop"
ASYNCIO: Final = "asyncio"


def service_loop() -> tuple[str, LoopFactory]:
    """The loop's name and factory: uvloop, or asyncio's when uvloop is not installed (Windows, a build
    without it)."""
    try:
        import uvloop
    except ImportError:
        return ASYNCIO, asyncio.new_event_loop
    return UVLOOP, uvloop.new_event_loop


def running_loop_name() -> str:
    """What the running loop is, for the start-up line: `uvloop` or `asyncio` (a class from elsewhere by
    its module)."""
    module = type(asyncio.get_running_loop()).__module__
    if module.startswith("uvloop"):
        return UVLOOP
    if module.startswith("asyncio"):
        return ASYNCIO
    return module
