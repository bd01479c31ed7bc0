"""SSRF through the service: metadata and "this host" addresses in every spelling, a name that resolves to
one, and a port outside the policy are all refused, and no TCP connection is attempted.

Connections are observed with a spy on the socket's `connect_ex` (the engine's only way to open a TCP
connection, see diag.transport.open_socket): it records the address and calls the real method.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.service.app import create_app
from fake_smtp import FakeSMTP
from tests.security import FROM, Api, loopback_dns, loopback_settings

ZONE = {
    "metadata.test.": {"A": ["169.254.169.254"]},
    "mapped.test.": {"AAAA": ["::ffff:169.254.169.254"]},
    "imds6.test.": {"AAAA": ["fd00:ec2::254"]},
    "zero.test.": {"A": ["0.0.0.0"]},
}
LITERALS = ["169.254.169.254", "[::ffff:169.254.169.254]", "fd00:ec2::254", "0.0.0.0", "2852039166", "0xA9FEA9FE",
            "0251.0376.0251.0376", "169.254.169.254."]  # fmt: skip


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    real = socket.socket.connect_ex

    def spy(self: socket.socket, address: Any) -> int:
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect_ex", spy)
    return seen


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_smtp: FakeSMTP) -> Iterator[Api]:
    # The default policy (no allow list): only the always-denied networks stand between a client and them.
    settings = dataclasses.replace(
        loopback_settings(tmp_path, fake_smtp.port), allow_networks=(), allowed_ports=frozenset({25, fake_smtp.port})
    )
    with loopback_dns(monkeypatch, tmp_path, ZONE), Api(create_app(settings)) as client:
        yield client


def body(host: str, port: int = 25) -> dict[str, Any]:
    return {"host": host, "port": port, "from_email": FROM, "tls_mode": "none", "timeout_s": 2,
            "dns_servers": ["127.0.0.1"]}  # fmt: skip


def test_the_spy_sees_a_real_connection(api: Api, fake_smtp: FakeSMTP, connects: list[Any]) -> None:
    response = api.request("POST", "/api/diagnostics", json=body("127.0.0.1", fake_smtp.port))
    assert response.status_code == 201
    assert ("127.0.0.1", fake_smtp.port) in connects


@pytest.mark.parametrize("host", LITERALS)
def test_denied_ip_literals_are_refused_before_any_run(api: Api, connects: list[Any], host: str) -> None:
    response = api.request("POST", "/api/diagnostics", json=body(host))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["host"]
    assert "egress policy" in errors[0]["message"]
    assert connects == []


@pytest.mark.parametrize("name", list(ZONE))
def test_names_resolving_to_denied_addresses_fail_at_dns(api: Api, connects: list[Any], name: str) -> None:
    response = api.request("POST", "/api/diagnostics", json=body(name.rstrip(".")))
    assert response.status_code == 201, response.text
    stages = {s["name"]: s for s in response.json()["stages"]}
    assert stages["dns"]["status"] == "failed"
    assert stages["dns"]["finding"]["code"] == "dns.policy_denied"
    assert stages["connect"]["status"] == "skipped"
    assert connects == []


@pytest.mark.parametrize("host", ["127.0.0.1", "metadata.test", "169.254.169.254"])
def test_a_port_outside_the_policy_is_refused(api: Api, connects: list[Any], host: str) -> None:
    response = api.request("POST", "/api/diagnostics", json=body(host, port=6379))
    assert response.status_code == 422, response.text
    assert "port" in {e["field"] for e in response.json()["errors"]}
    assert connects == []


def test_denied_name_over_sse_ends_with_the_finding(api: Api, connects: list[Any]) -> None:
    response = api.request(
        "POST", "/api/diagnostics", json=body("metadata.test"), headers={"accept": "text/event-stream"}
    )
    assert response.status_code == 201
    assert "dns.policy_denied" in response.text
    assert connects == []
