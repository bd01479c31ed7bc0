"""pytest fixtures for the fake SMTP server (registered through the pytest11 entry point).

    def test_send(fake_smtp):                    # anonymous, plaintext, ephemeral port
        smtplib.SMTP(fake_smtp.host, fake_smtp.port).sendmail(...)

    def test_tls(fake_smtp_factory):             # any FakeSMTP options; all stopped at teardown
        srv = fake_smtp_factory(auth="required", tls="starttls")

    @pytest.mark.fake_smtp(scenario="gmail-app-password", username="me@gmail.com", password="app-pw")
    def test_marked(fake_smtp): ...              # the marker's keywords are FakeSMTP options

    @pytest.mark.parametrize("fake_smtp", scenario_params(), indirect=True)
    def test_every_scenario(fake_smtp): ...      # a str parameter is a scenario; a dict, FakeSMTP options

    @pytest.mark.parametrize("fake_smtp", cert_fault_params(), indirect=True)
    def test_every_cert_fault(fake_smtp): ...

The server is imported lazily so that merely having this plugin installed costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

    from fake_smtp.server import FakeSMTP

MARKER = "fake_smtp"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(**options): FakeSMTP options for the fake_smtp fixture")


def scenario_params(names: Iterable[str] | None = None) -> list[ParameterSet]:
    """`pytest.param`s for the named scenarios (all by default), each with its name as the test id."""
    from fake_smtp.scenarios import SCENARIOS

    return [pytest.param(name, id=name) for name in (SCENARIOS if names is None else names)]


def cert_fault_params(faults: Iterable[str] | None = None, *, tls: str = "starttls") -> list[ParameterSet]:
    """`pytest.param`s for certificate faults (all by default; expiring-soon as expiring-soon:7)."""
    from fake_smtp.cert_faults import CERT_FAULTS

    chosen = [f if f != "expiring-soon" else "expiring-soon:7" for f in CERT_FAULTS] if faults is None else faults
    return [pytest.param({"tls": tls, "cert_fault": fault}, id=fault) for fault in chosen]


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
def fake_smtp(request: pytest.FixtureRequest, fake_smtp_factory: Callable[..., FakeSMTP]) -> FakeSMTP:
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only (FakeSMTP options)")
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, str):
        options["scenario"] = param
    elif isinstance(param, dict):
        options.update(param)
    elif param is not None:
        raise pytest.UsageError("a fake_smtp parameter is a scenario name (str) or FakeSMTP options (dict)")
    return fake_smtp_factory(**options)
