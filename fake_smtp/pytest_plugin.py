"""pytest fixtures for the fake SMTP server (registered through the pytest11 entry point).

    def test_send(fake_smtp):                    # anonymous, plaintext, ephemeral port
        smtplib.SMTP(fake_smtp.host, fake_smtp.port).sendmail(...)

    def test_tls(fake_smtp_factory):             # any FakeSMTP options; all stopped at teardown
        srv = fake_smtp_factory(auth="required", tls="starttls")

The server is imported lazily so that merely having this plugin installed costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fake_smtp.server import FakeSMTP


@pytest.fixture
def fake_smtp_factory() -> Iterator[Callable[..., FakeSMTP]]:
    from fake_smtp.server import FakeSMTP

    started: list[FakeSMTP] = []

    def start(**options: Any) -> FakeSMTP:
        server = FakeSMTP(**options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fake_smtp(fake_smtp_factory: Callable[..., FakeSMTP]) -> FakeSMTP:
    return fake_smtp_factory()
