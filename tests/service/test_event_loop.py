"""Which loop `serve` picks: uvloop when it imports, asyncio's otherwise."""

from __future__ import annotations

import sys

import pytest

from diag.service.event_loop import ASYNCIO, UVLOOP, running_loop_name, service_loop


def test_uvloop_is_the_service_loop() -> None:
    name, factory = service_loop()
    loop = factory()
    try:
        assert name == UVLOOP
        assert loop.run_until_complete(_name_inside()) == UVLOOP
    finally:
        loop.close()


def test_without_uvloop_the_service_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop cannot be uninstalled for one test: a None in sys.modules makes its import fail, as on Windows."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    name, factory = service_loop()
    loop = factory()
    try:
        assert name == ASYNCIO
        assert loop.run_until_complete(_name_inside()) == ASYNCIO
    finally:
        loop.close()


async def _name_inside() -> str:
    return running_loop_name()
