"""What aiosmtpd lists on every new connection to find its commands, AUTH mechanisms and hooks (issue 13)."""

import asyncio
import inspect
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from fake_smtp import FakeSMTP
from fake_smtp.dispatch import HANDLER_PREFIXES, PROTOCOL_PREFIXES
from fake_smtp.handler import Handler
from fake_smtp.protocol import FakeSMTPProtocol
from tests.fake_smtp.conftest import PASSWORD, USER


class _FullyListedProtocol(FakeSMTPProtocol):
    __dir__ = object.__dir__  # every member, as aiosmtpd lists a class that does not say otherwise


class _FullyListedHandler(Handler):
    __dir__ = object.__dir__


def _tables(protocol: FakeSMTPProtocol) -> dict[str, Any]:
    """The dispatch tables aiosmtpd's SMTP.__init__ built (private attributes: what it found is the point)."""
    return {
        "commands": sorted(protocol._smtp_methods),
        "mechanisms": {name: impl.is_builtin for name, impl in protocol._auth_methods.items()},
        "hooks": sorted(protocol._handle_hooks),
        "ehlo hook": protocol._ehlo_hook_ver,
    }


@pytest.fixture
def every_mechanism() -> Iterator[FakeSMTP]:
    """AUTH with STARTTLS and XOAUTH2: the handler's and the protocol's auth_* methods all in play."""
    with FakeSMTP(auth="required", tls="starttls", username=USER, password=PASSWORD,
                  xoauth2_token="token") as srv:
        yield srv


def test_a_new_connection_lists_only_what_aiosmtpd_dispatches_to(
    every_mechanism: FakeSMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosmtpd lists the protocol's and the handler's members (inspect.getmembers, dir) on every connection;
    both answer with their commands, mechanisms and hooks alone, and aiosmtpd builds from that the same tables
    as from a full listing. A spy on inspect.getmembers: no peer can see what a server listed to itself."""
    listed: list[str] = []
    original = inspect.getmembers

    def spying(obj: object, predicate: Any = None) -> list[tuple[str, Any]]:
        members = original(obj, predicate)
        listed.extend(name for name, _ in members)
        return members

    monkeypatch.setattr(inspect, "getmembers", spying)
    with smtplib.SMTP("127.0.0.1", every_mechanism.port, timeout=10) as client:
        code, _ = client.ehlo("client.example")
        assert code == 250
    assert listed and all(name.startswith(PROTOCOL_PREFIXES + HANDLER_PREFIXES) for name in listed)

    runtime = every_mechanism._runtime
    loop = asyncio.new_event_loop()  # the protocols are built, never connected
    options = {"implicit_tls": False, "auth_needs_tls": True, "hostname": "localhost", "loop": loop}
    try:
        ours = FakeSMTPProtocol(Handler(runtime), runtime, **options)
        fully_listed = _FullyListedProtocol(_FullyListedHandler(runtime), runtime, **options)
    finally:
        loop.close()
    assert _tables(ours) == _tables(fully_listed)
    assert {"CRAM-MD5", "XOAUTH2", "PLAIN", "LOGIN"} <= set(_tables(ours)["mechanisms"])
