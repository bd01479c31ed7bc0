"""DNS rebinding: a request whose Host is not one the service answers to is refused before any route runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from diag.service.app import create_app
from diag.service.hosts import HostAllowList, default_allowed_hosts, host_name_of
from diag.service.settings import Settings, SettingsError
from tests.service.helpers import config_for, make_settings, uvicorn_in_thread

REBOUND = "evil.example"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real uvicorn with the real default allow list (loopback bind, no DIAG_ALLOWED_HOSTS)."""
    settings = make_settings(tmp_path, allowed_hosts=None)
    with uvicorn_in_thread(create_app(settings)) as url:
        yield url, int(url.rsplit(":", 1)[1])


def test_a_rebound_host_is_refused_before_any_route(served: tuple[str, int]) -> None:
    url, port = served
    with httpx.Client(base_url=url, timeout=10, headers={"host": f"{REBOUND}:{port}"}) as client:
        # Port 9 (discard) on loopback: had the run started, it would have been stored as a report.
        responses = [
            client.post("/api/diagnostics", json=config_for(9)),
            client.get("/api/diagnostics"),
            client.get("/"),
            client.get("/openapi.json"),
        ]
    for response in responses:
        assert response.status_code == 400, response.request.url
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["error"] == "invalid_host" and body["field"] == "Host"
        assert "DIAG_ALLOWED_HOSTS" in body["message"]
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/diagnostics").json()["items"] == []  # nothing ran


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "localhost."])
def test_loopback_names_are_served_on_any_port(served: tuple[str, int], host: str) -> None:
    url, port = served
    with httpx.Client(base_url=url, timeout=10, headers={"host": host.format(port=port)}) as client:
        assert client.get("/api/diagnostics").status_code == 200
        assert client.get("/").status_code == 200


def test_probes_answer_whatever_the_host(served: tuple[str, int]) -> None:
    """Kubernetes probes send the pod IP as Host."""
    url, _ = served
    with httpx.Client(base_url=url, timeout=10, headers={"host": "10.1.2.3:8025"}) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/api/diagnostics").status_code == 400


def test_allowed_hosts_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"DIAG_ALLOWED_HOSTS": "diag.example.com, *.corp.example, [2001:DB8::1]"})
    assert settings.allowed_hosts == ("diag.example.com", "*.corp.example", "2001:db8::1")
    app = create_app(make_settings(tmp_path, allowed_hosts=settings.allowed_hosts))
    with uvicorn_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:

        def status(host: str) -> int:
            return client.get("/api/diagnostics", headers={"host": host}).status_code

        assert status("diag.example.com:443") == 200
        assert status("a.corp.example") == 200
        assert status("[2001:db8:0::1]:8025") == 200
        assert status("corp.example") == 400  # *.corp.example is its subdomains only
        assert status("127.0.0.1") == 400  # a list replaces the default
        assert status(REBOUND) == 400


def test_a_star_allows_any_host() -> None:
    allowed = HostAllowList(Settings.from_env({"DIAG_ALLOWED_HOSTS": "*"}).allowed_hosts or ())
    assert allowed.allows(REBOUND) and allowed.allows(None)


@pytest.mark.parametrize("value", ["localhost:8025", "http://diag.example", "two words", "a/b", " , ", "[::1"])
def test_bad_allowed_hosts_name_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="DIAG_ALLOWED_HOSTS"):
        Settings.from_env({"DIAG_ALLOWED_HOSTS": value})


@pytest.mark.parametrize("header", ["", "evil.example:", "evil.example:80:80", "[::1", "[::1]x", "*.corp.example",
                                    "a b", "localhost:http"])
def test_malformed_host_headers_match_nothing(header: str) -> None:
    assert host_name_of(header) is None
    assert not HostAllowList(["*.corp.example", "localhost", "evil.example"]).allows(header)


def test_no_host_header_is_refused() -> None:
    assert not HostAllowList(["localhost"]).allows(None)


def test_default_off_loopback_is_the_bound_address_and_the_machine_name() -> None:
    assert default_allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert default_allowed_hosts("192.0.2.10", "Box1") == ("localhost", "127.0.0.1", "::1", "192.0.2.10", "box1")
    # A wildcard bind is no Host anyone sends: the machine name only.
    assert default_allowed_hosts("0.0.0.0", "box1") == ("localhost", "127.0.0.1", "::1", "box1")
    assert default_allowed_hosts("::", "box1") == ("localhost", "127.0.0.1", "::1", "box1")
