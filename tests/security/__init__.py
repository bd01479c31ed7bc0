"""Bad input, secrets and SSRF: what the security tests share.

Every service here is confined to loopback: the policy allows only 127.0.0.1 and the FakeSMTP's port, and
names are resolved by a DnsResponder on 127.0.0.1 (SMTP_DIAG_DNS_PORT), never by a real DNS server.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette

from diag import resolver
from diag.service.hosts import LOOPBACK_HOSTS
from diag.service.settings import Rate, Settings
from tests.dns_responder import DnsResponder

GENEROUS = Rate(1_000_000, 60.0)
FROM = "alerts@example.com"


def loopback_settings(tmp_path: Path, smtp_port: int, **changes: Any) -> Settings:
    """A service that may reach 127.0.0.1:smtp_port and nothing else, with a SQLite file in tmp_path."""
    base = Settings(
        db_path=tmp_path / "reports.sqlite3",
        allow_networks=("127.0.0.1/32",),
        allowed_ports=frozenset({smtp_port}),
        rate_limit_per_client=GENEROUS,
        rate_limit_per_target=GENEROUS,
        max_concurrent_runs=64,
        # httpx's ASGITransport sends Host: testserver; the real default (loopback names) stays untouched.
        allowed_hosts=(*LOOPBACK_HOSTS, "testserver"),
    )
    return dataclasses.replace(base, **changes)


@contextmanager
def loopback_dns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, zone: dict[str, dict[str, list[str]]] | None = None
) -> Iterator[DnsResponder]:
    """A DnsResponder on 127.0.0.1 that the dns stage asks, with or without `dns_servers` in the config."""
    with DnsResponder(zone or {}) as responder:
        resolv_conf = tmp_path / "resolv.conf"
        resolv_conf.write_text(f"nameserver {responder.address}\n")
        monkeypatch.setenv(resolver.DNS_PORT_ENV, str(responder.port))
        monkeypatch.setenv(resolver.RESOLV_CONF_ENV, str(resolv_conf))
        yield responder


@contextmanager
def smtp_connections() -> Iterator[Callable[[], int]]:
    """Counts the SMTP sessions FakeSMTP opens while the block runs (its "connect" log event, one per
    accepted connection, read with structlog's capture_logs: the fake server's own public output)."""
    with structlog.testing.capture_logs() as logs:
        yield lambda: sum(1 for e in logs if e.get("event") == "connect" and "session" in e)


class Api:
    """A synchronous handle on an app in-process (httpx ASGITransport on a private event loop), so that
    hypothesis can drive it from plain test functions. The client address is 127.0.0.1."""

    def __init__(self, app: Starlette) -> None:
        self._runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, path, **options))

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()
