"""The fake-smtp CLI's log lines: structlog's ConsoleRenderer(colors=False) text, built in one pass (issue 13)."""

import io
import logging
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_smtp import FakeSMTP
from fake_smtp.cli import configure_logging
from fake_smtp.console import ConsoleLine
from tests.fake_smtp.clients import RECIPIENT, SENDER, make_message

_values = st.one_of(
    st.text(max_size=12), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False),
    st.lists(st.text(max_size=6), max_size=3), st.binary(max_size=4),
)
_keys = st.text("abcdefghij_", min_size=1, max_size=8)
_events = st.fixed_dictionaries(
    {},
    optional={"event": st.text(max_size=40), "timestamp": st.text(max_size=30), "level": st.sampled_from(
        ["debug", "info", "warning", "error", "critical", "exception"])},
).flatmap(lambda fixed: st.dictionaries(_keys, _values, max_size=6).map(lambda extra: {**extra, **fixed}))


@settings(deadline=None)  # a shared, loaded machine: no per-example deadline
@given(_events)
def test_a_line_is_console_renderers_line(event: dict[str, Any]) -> None:
    assert ConsoleLine()(None, "info", dict(event)) == structlog.dev.ConsoleRenderer(colors=False)(
        None, "info", dict(event))


@pytest.mark.parametrize("extra", [{"exc_info": False}, {"stack": "a stack"}, {"logger": "fake_smtp"},
                                   {"exception": "Traceback ..."}])
def test_anything_more_than_a_plain_line_is_console_renderers_own(extra: dict[str, Any]) -> None:
    event = {"event": "session error", "level": "error", "timestamp": "T", "error_type": "OSError", **extra}
    assert ConsoleLine()(None, "error", dict(event)) == structlog.dev.ConsoleRenderer(colors=False)(
        None, "error", dict(event))


@pytest.fixture
def cli_logging() -> Iterator[io.StringIO]:
    """The CLI's logging configuration, writing to a buffer; structlog and aiosmtpd's logger restored after."""
    out = io.StringIO()
    mail_log = logging.getLogger("mail.log")
    level = mail_log.level
    configure_logging(structlog.PrintLoggerFactory(out))
    try:
        yield out
    finally:
        structlog.reset_defaults()
        mail_log.setLevel(level)


def test_the_cli_logs_a_session_without_the_general_renderer(
    cli_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect, message accepted and disconnect, each a ConsoleRenderer line, none rendered by ConsoleRenderer.
    A spy on ConsoleRenderer: which code rendered a line is invisible to any peer."""
    general: list[object] = []
    original = structlog.dev.ConsoleRenderer.__call__

    def spying(self: structlog.dev.ConsoleRenderer, *args: Any) -> str:
        general.append(args)
        return original(self, *args)

    monkeypatch.setattr(structlog.dev.ConsoleRenderer, "__call__", spying)
    with FakeSMTP() as srv:
        with smtplib.SMTP(srv.host, srv.port, timeout=10) as smtp:
            smtp.send_message(make_message())
        srv.wait_for_messages(1)
    lines = cli_logging.getvalue().splitlines()
    events = [line.split("] ", 1)[1].split("  ", 1)[0] for line in lines]
    assert {"listening", "connect", "message accepted", "disconnect", "stopped"} <= set(events)
    [accepted] = [line for line in lines if "] message accepted " in line]
    assert f"mail_from={SENDER} " in accepted and f"rcpt_tos=['{RECIPIENT}']" in accepted
    assert general == []
