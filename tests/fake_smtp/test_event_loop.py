"""The fake server's event loop: uvloop's when installed, asyncio's otherwise or when asked (issue 13)."""

import smtplib
import sys

import pytest
import structlog

from fake_smtp import FakeSMTP
from tests.fake_smtp.clients import make_message


def _send_one(srv: FakeSMTP) -> None:
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as smtp:
        smtp.send_message(make_message())
    assert len(srv.wait_for_messages(1)) == 1


def test_the_server_runs_on_uvloop_when_it_is_installed() -> None:
    """uvloop is in the test extra, as in the demo extra: the default server runs on it, and says so."""
    with structlog.testing.capture_logs() as logs, FakeSMTP() as srv:
        assert srv.event_loop == "uvloop"
        _send_one(srv)
    [listening] = [entry for entry in logs if entry["event"] == "listening"]
    assert listening["loop"] == "uvloop"


def test_without_uvloop_the_server_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop made unimportable (None in sys.modules makes `import uvloop` raise ImportError)."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with FakeSMTP() as srv:
        assert srv.event_loop == "asyncio"
        _send_one(srv)
    with pytest.raises(ValueError, match="event_loop='uvloop' needs uvloop installed"):
        FakeSMTP(event_loop="uvloop")


def test_event_loop_asyncio_keeps_the_standard_loop() -> None:
    with FakeSMTP(event_loop="asyncio") as srv:
        assert srv.event_loop == "asyncio"
        _send_one(srv)
    assert srv.event_loop is None  # stopped
    with pytest.raises(ValueError, match="event_loop must be one of auto, asyncio, uvloop, got 'trio'"):
        FakeSMTP(event_loop="trio")  # type: ignore[arg-type]
