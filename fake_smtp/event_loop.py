"""The fake server's event loop: uvloop's when it is installed (smtp-diag depends on it, except on Windows,
which uvloop does not support), else asyncio's.

aiosmtpd runs unchanged on either; uvloop takes less of the loop thread's time for each connection (its
transports and its accept are C), and the whole test suite diagnoses a FakeSMTP on it (docs/performance.md,
"fake_server.py"). `auto` picks uvloop when it imports; `asyncio` forces the standard loop (a suspected
uvloop problem is then one flag away from being ruled out); `uvloop` fails when it is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal, get_args

LoopChoice = Literal["auto", "asyncio", "uvloop"]
LOOP_CHOICES: tuple[str, ...] = get_args(LoopChoice)


def check_loop_choice(choice: str) -> None:
    """ValueError for an unknown choice, or for `uvloop` when it is not installed: refused when a server is
    made, not when it starts."""
    if choice not in LOOP_CHOICES:
        raise ValueError(f"event_loop must be one of {', '.join(LOOP_CHOICES)}, got {choice!r}")
    if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("event_loop='uvloop' needs uvloop installed (pip install uvloop)")


def new_event_loop(choice: LoopChoice = "auto") -> asyncio.AbstractEventLoop:
    """A new loop of the chosen kind (see check_loop_choice)."""
    check_loop_choice(choice)
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:  # only under `auto`: check_loop_choice refused `uvloop` without it
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """'uvloop' or 'asyncio', for the `listening` log line and `FakeSMTP.event_loop`."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
