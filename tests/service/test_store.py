"""One store test suite for both back ends: the SQLite file and a real PostgreSQL server (tests/postgres_server.py).

A test taking `backend` runs on each; `backend.open()` is one more worker's store on the same database, and
`backend.sum_of_bodies()` measures the bodies with a connection of its own, not through the store's total.
The tests at the end are about one back end only (a file, a URL).
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from diag.report import Finding, Report, StageResult, Status, TranscriptLine
from diag.secret import MASK, Secret
from diag.service.app import create_app
from diag.service.pg_store import MIGRATIONS, PostgresReportStore
from diag.service.settings import Settings, SettingsError
from diag.service.store import SqliteReportStore
from diag.service.stored_transcript import DEFAULT_MAX_TRANSCRIPT_BYTES
from tests.postgres_server import PASSWORD
from tests.service.helpers import api_client, make_settings

AnyStore = SqliteReportStore | PostgresReportStore


@dataclasses.dataclass
class Backend:
    name: str
    open: Callable[..., AnyStore]
    sum_of_bodies: Callable[[], int]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[AnyStore] = []
    if request.param == "sqlite":
        path = tmp_path / "r.sqlite3"

        def open_sqlite(**options: Any) -> AnyStore:
            opened.append(SqliteReportStore(path, **options))
            return opened[-1]

        backend = Backend("sqlite", open_sqlite, lambda: sum_of_bodies(path))
    else:
        url: str = request.getfixturevalue("postgres_url")

        def open_postgres(**options: Any) -> AnyStore:
            opened.append(PostgresReportStore(Secret(url), **options))
            return opened[-1]

        def pg_sum_of_bodies() -> int:
            with psycopg.connect(url, connect_timeout=10) as conn:
                row = conn.execute("SELECT COALESCE(SUM(octet_length(body)), 0) FROM reports").fetchone()
            assert row is not None
            return int(row[0])

        backend = Backend("postgres", open_postgres, pg_sum_of_bodies)
    try:
        yield backend
    finally:
        for store in opened:
            store.close()


def report(report_id: str, *, host: str = "smtp.example.test", failed: bool = False, started: str = "") -> Report:
    stages = [StageResult("config", Status.PASSED, 0.1, "ok")]
    if failed:
        stages.append(StageResult("auth", Status.FAILED, 3.0, "refused",
                                  finding=Finding("auth.bad_credentials", "wrong", "fix it")))
    return Report(
        id=report_id,
        started_at=started or f"2026-01-01T00:00:{len(report_id) % 60:02d}.000Z",
        duration_ms=12.5,
        config={"host": host, "port": 587, "from_email": "a@b.test", "password_set": True},
        stages=tuple(stages),
    )


def test_save_get_list(backend: Backend) -> None:
    store = backend.open()
    store.save(report("one", started="2026-01-01T00:00:01.000Z"))
    store.save(report("two", host="mail.other.test", failed=True, started="2026-01-01T00:00:02.000Z"))
    got = store.get("two")
    assert got is not None and got.to_dict() == report("two", host="mail.other.test", failed=True,
                                                        started="2026-01-01T00:00:02.000Z").to_dict()
    assert store.get("missing") is None
    assert [s.id for s in store.list()] == ["two", "one"]  # newest first
    [summary] = store.list(verdict="invalid")
    assert summary.to_dict() == {
        "id": "two", "started_at": "2026-01-01T00:00:02.000Z", "host": "mail.other.test", "port": 587,
        "verdict": "invalid", "failed_stage": "auth", "finding_code": "auth.bad_credentials", "duration_ms": 12.5,
    }
    assert [s.id for s in store.list(host="SMTP.example.test")] == ["one"]
    assert [s.id for s in store.list(limit=1)] == ["two"]


def test_reports_survive_a_restart(backend: Backend) -> None:
    first = backend.open()
    first.save(report("kept"))
    first.close()
    second = backend.open()
    got = second.get("kept")
    assert got is not None and got.id == "kept"
    assert second.ping()


def test_retention_purges_old_reports(backend: Backend) -> None:
    store = backend.open(retention_days=30)
    store.save(report("old"))
    assert store.purge_expired(now=time.time() + 29 * 86400) == 0
    assert store.purge_expired(now=time.time() + 31 * 86400) == 1
    assert store.get("old") is None


def test_two_processes_worth_of_connections_share_the_database(backend: Backend) -> None:
    """Each worker has its own connection (SQLite: WAL and the busy timeout; PostgreSQL: a pool each)."""
    stores = [backend.open() for _ in range(4)]
    assert save_at_once(stores, lambda n, i: report(f"w{n}-{i}")) == []
    assert len(stores[0].list(limit=500)) == 100


def save_at_once(stores: list[AnyStore], make: Callable[[int, int], Report]) -> list[BaseException]:
    """Each store in a thread of its own saves 25 reports at the same time as the others; what they raised."""
    errors: list[BaseException] = []

    def write(store: AnyStore, n: int) -> None:
        try:
            for i in range(25):
                store.save(make(n, i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    store = SqliteReportStore(tmp_path / "nested" / "dir" / "r.sqlite3")
    store.save(report("kept"))
    assert store.get("kept") is not None
    store.close()


def test_ping_fails_when_the_store_cannot_open(tmp_path: Path) -> None:
    assert not SqliteReportStore(tmp_path).ping()  # a directory is not a database


# -- size bounds (issue 8, item 13) ------------------------------------------------------------------


def chatty(report_id: str, lines: int = 10, width: int = 100, stage: str = "ehlo") -> Report:
    """A report whose `stage` has a transcript of `lines` lines of `width` characters, numbered."""
    transcript = tuple(TranscriptLine(float(i), "S", f"250-line {i:05d} " + "x" * width) for i in range(lines))
    base = report(report_id)
    return dataclasses.replace(base, stages=(*base.stages, StageResult(stage, Status.PASSED, 1.0, "ok",
                                                                       transcript=transcript)))


def sum_of_bodies(path: Path) -> int:
    """Measured by a connection of its own, not through the store's running total."""
    with sqlite3.connect(path) as conn:
        (total,) = conn.execute("SELECT COALESCE(SUM(length(body)), 0) FROM reports").fetchone()
    return int(total)


def test_total_is_bounded_and_the_oldest_reports_go_first(backend: Backend) -> None:
    store = backend.open(max_bytes=20_000)
    one_body = len(json.dumps(chatty("r000").to_dict(), separators=(",", ":")))
    ids = [f"r{i:03d}" for i in range(60)]  # ~1.5 KB each: ~90 KB in all
    for report_id in ids:
        store.save(chatty(report_id))
    store.save(chatty(ids[-1], lines=12))  # saved again, bigger: the total follows the update

    kept = [s.id for s in store.list(limit=500)]
    assert ids[0] not in kept and store.get(ids[0]) is None
    assert sorted(kept) == ids[-len(kept):]  # exactly the newest ones
    total = backend.sum_of_bodies()
    assert store.body_bytes() == total
    assert 20_000 - 2 * one_body < total <= 20_000  # under the limit, and no more deleted than needed


def test_total_stays_bounded_with_several_workers_on_one_database(backend: Backend) -> None:
    """Each store is a worker's connection; the running total and the trimming stay right when they race."""
    stores = [backend.open(max_bytes=30_000) for _ in range(4)]
    assert save_at_once(stores, lambda n, i: chatty(f"w{n}-{i:02d}")) == []
    total = backend.sum_of_bodies()
    assert all(store.body_bytes() == total for store in stores)
    assert 0 < total <= 30_000


def test_a_file_from_before_the_bound_gets_its_total_on_open(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    first = SqliteReportStore(path)
    for i in range(3):
        first.save(chatty(f"old{i}"))
    first.close()
    with sqlite3.connect(path) as conn:  # what a file written before the bound looks like: reports only
        conn.executescript(
            "DROP TRIGGER reports_size_insert; DROP TRIGGER reports_size_delete; DROP TRIGGER reports_size_update;"
            " DROP TABLE store_size;"
        )
    limit = sum_of_bodies(path) + 100
    store = SqliteReportStore(path, max_bytes=limit)
    assert store.body_bytes() == sum_of_bodies(path)
    store.save(chatty("new"))  # over the limit now: the oldest report makes room
    assert store.get("old0") is None and store.get("new") is not None
    assert store.body_bytes() == sum_of_bodies(path) <= limit


def test_a_huge_transcript_is_stored_bounded_and_says_what_was_left_out(backend: Backend) -> None:
    store = backend.open()
    huge = chatty("huge", lines=3000, width=300)  # ~1 MB of EHLO
    small_auth = (TranscriptLine(5000.0, "C", "AUTH PLAIN ********"), TranscriptLine(5001.0, "S", "235 2.7.0 ok"))
    huge = dataclasses.replace(huge, stages=(*huge.stages, StageResult("auth", Status.PASSED, 1.0, "ok",
                                                                       transcript=small_auth)))
    store.save(huge)
    stored = store.get("huge")
    assert stored is not None
    original = huge.stage("ehlo").transcript
    kept = stored.stage("ehlo").transcript
    [note] = [line for line in kept if line.direction == "*"]
    at = kept.index(note)
    head, tail = kept[:at], kept[at + 1:]
    assert head == original[: len(head)] and tail == original[len(original) - len(tail):]
    assert len(head) > len(tail) > 0  # the start and the end of the conversation, more of the start
    left_out = len(original) - len(head) - len(tail)
    assert note.text.startswith(f"… {left_out} of 3000 lines (")
    assert f"the first {len(head)} and last {len(tail)} lines of this stage are kept" in note.text
    assert stored.stage("auth").transcript == small_auth  # a small stage beside it is kept whole
    stored_transcripts = [line.to_dict() for s in stored.stages for line in s.transcript]
    assert len(json.dumps(stored_transcripts, separators=(",", ":"))) <= DEFAULT_MAX_TRANSCRIPT_BYTES
    assert stored.to_dict() | {"stages": None} == huge.to_dict() | {"stages": None}  # nothing else changed


def test_an_ordinary_transcript_is_stored_as_it_is(backend: Backend) -> None:
    store = backend.open(max_transcript_bytes=4000)
    ordinary = chatty("ordinary", lines=20, width=60)  # ~2.5 KB
    store.save(ordinary)
    got = store.get("ordinary")
    assert got is not None and got.to_dict() == ordinary.to_dict()
    store.save(chatty("bigger", lines=40, width=60))  # the same store cuts a report over its budget
    bigger = store.get("bigger")
    assert bigger is not None and len(bigger.stage("ehlo").transcript) < 40


def test_the_service_store_uses_the_setting(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, store_max_mb=3))
    assert app.state.services.store.max_bytes == 3 * 1024 * 1024


# -- PostgreSQL only (issue 12, item 4) ---------------------------------------------------------------


async def test_the_service_keeps_reports_in_postgresql_when_DIAG_DB_URL_is_set(
    tmp_path: Path, postgres_url: str, refused_port: int
) -> None:
    settings = Settings.from_env({"DIAG_DB_URL": postgres_url})
    app = create_app(dataclasses.replace(make_settings(tmp_path), db_url=settings.db_url))
    assert isinstance(app.state.services.store, PostgresReportStore)
    async with api_client(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        run = await client.post("/api/diagnostics", json={
            "host": "127.0.0.1", "port": refused_port, "from_email": "app@example.test", "tls_mode": "none"})
        assert run.status_code == 201
        report_id = run.json()["id"]
    app.state.services.store.close()
    again = PostgresReportStore(Secret(postgres_url))  # another replica, on the same database
    try:
        got = again.get(report_id)
        assert got is not None and got.verdict == run.json()["verdict"]
    finally:
        again.close()
    assert sqlite_files(tmp_path) == []  # DIAG_DB_PATH is not used beside it


def sqlite_files(directory: Path) -> list[Path]:
    return list(directory.glob("*.sqlite3*"))


def test_replicas_starting_together_migrate_the_schema_once(postgres_url: str) -> None:
    stores = [PostgresReportStore(Secret(postgres_url)) for _ in range(4)]
    errors: list[BaseException] = []

    def start(store: PostgresReportStore) -> None:
        try:
            assert store.ping()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert errors == []
    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_the_database_password_never_shows(postgres_url: str, json_logs: io.StringIO) -> None:
    assert PASSWORD in postgres_url
    settings = Settings.from_env({"DIAG_DB_URL": postgres_url})
    store = PostgresReportStore(Secret(postgres_url))
    wrong = PostgresReportStore(Secret(postgres_url.replace(PASSWORD, "not-" + PASSWORD)))
    try:
        assert store.ping() and not wrong.ping()  # a wrong password: not ready, and the log says why
        shown = [repr(settings), str(settings.db_url), repr(store), repr(wrong), json_logs.getvalue()]
    finally:
        store.close()
        wrong.close()
    assert "store_unavailable" in json_logs.getvalue()
    assert MASK in repr(settings)
    assert all(PASSWORD not in text for text in shown)
    assert "127.0.0.1" in repr(store)  # the repr still says which server


def test_ping_fails_when_no_server_answers(refused_port: int) -> None:
    store = PostgresReportStore(Secret(f"postgresql://diag:{PASSWORD}@127.0.0.1:{refused_port}/postgres"))
    assert not store.ping()
    store.close()


def test_DIAG_DB_URL_must_be_a_postgresql_url() -> None:
    with pytest.raises(SettingsError, match="DIAG_DB_URL must be a postgresql:// URL") as caught:
        Settings.from_env({"DIAG_DB_URL": "mysql://root:hunter2-secret@db/x"})
    assert "hunter2-secret" not in str(caught.value)
