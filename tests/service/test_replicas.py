"""Two replicas of the service (two `smtp-diag serve` processes) on one PostgreSQL database: the rate limits
and the runs in flight are counted in total, not per process (DIAG_DB_URL, diag.service.pg_admission)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.peer import Peer, never_greets
from tests.service.helpers import config_for
from tests.service.test_front_door import ServeProcess


@pytest.fixture
def two_replicas(tmp_path: Path, postgres_url: str, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    env = {"DIAG_DB_URL": postgres_url, "DIAG_ALLOWED_PORTS": "*", **getattr(request, "param", {})}
    with ExitStack() as stack:
        replicas = []
        for n in range(2):
            replica = ServeProcess(tmp_path / f"replica{n}", env)
            stack.callback(replica.stop)
            replicas.append(replica.url)
        yield replicas


@pytest.mark.parametrize("two_replicas", [{"DIAG_RATE_LIMIT_PER_TARGET": "3/min"}], indirect=True)
def test_the_per_server_rate_limit_is_reached_in_total(two_replicas: list[str], refused_port: int) -> None:
    statuses = []
    with httpx.Client(timeout=30) as client:
        for n in range(6):  # A, B, A, B...: each replica alone would allow 3
            answer = client.post(f"{two_replicas[n % 2]}/api/diagnostics", json=config_for(refused_port))
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["error"] == "rate_limited" and "Retry-After" in answer.headers
    assert statuses == [201, 201, 201, 429, 429, 429]


@pytest.mark.parametrize("two_replicas", [{"DIAG_MAX_CONCURRENT_RUNS": "1"}], indirect=True)
def test_a_run_in_flight_on_one_replica_holds_the_only_slot_of_both(
    two_replicas: list[str], refused_port: int
) -> None:
    first, second = two_replicas
    answers: list[httpx.Response] = []
    with Peer(never_greets) as silent, httpx.Client(timeout=60) as client:
        waiting = threading.Thread(target=lambda: answers.append(
            client.post(f"{first}/api/diagnostics", json=config_for(silent.port, timeout_s=2))))
        waiting.start()
        try:
            assert silent.call(silent.wait_connections(1, 20))  # the first replica's run is in flight
            busy = client.post(f"{second}/api/diagnostics", json=config_for(refused_port))
            assert busy.status_code == 503 and busy.json()["error"] == "busy"
        finally:
            waiting.join(60)
        assert [a.status_code for a in answers] == [201]
        # The slot was given back when the first run answered: the second replica may run now.
        assert client.post(f"{second}/api/diagnostics", json=config_for(refused_port)).status_code == 201
