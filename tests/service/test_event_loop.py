"""Which loop `serve` picks: uvloop when it imports, asyncio's otherwise."""

from __future__ import annotations

import sys

import pytest

from diag.service.event_loop import ASYNCIO, UVLOOP, running_loop_name, service_loop


@pytest.mark.parametrize("uvloop_importable", [True, False])
def test_the_service_runs_on_uvloop_when_it_imports_else_on_asyncio(
    monkeypatch: pytest.MonkeyPatch, uvloop_importable: bool
) -> None:
    """uvloop cannot be uninstalled for one test: a None in sys.modules makes its import fail, as on Windows."""
    if not uvloop_importable:
        monkeypatch.setitem(sys.modules, "uvloop", None)
    expected = UVLOOP if uvloop_importable else ASYNCIO
    name, factory = service_loop()
    loop = factory()
    try:
        assert name == expected
        assert loop.run_until_complete(_name_inside()) == expected
    finally:
        loop.close()


async def _name_inside() -> str:
    return running_loop_name()
