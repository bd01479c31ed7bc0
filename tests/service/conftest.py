"""Fixtures of the service tests: a real PostgreSQL server, started once per test worker when a test asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the real server (it holds a password, as DIAG_DB_URL does)."""
    with postgres.database() as url:
        yield url
