from __future__ import annotations

import threading
import time
from pathlib import Path

from diag.report import Finding, Report, StageResult, Status
from diag.store import SqliteReportStore


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


def test_save_get_list(tmp_path: Path) -> None:
    store = SqliteReportStore(tmp_path / "r.sqlite3")
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


def test_reports_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "r.sqlite3"  # created when missing
    first = SqliteReportStore(path)
    first.save(report("kept"))
    first.close()
    second = SqliteReportStore(path)
    got = second.get("kept")
    assert got is not None and got.id == "kept"
    assert second.ping()


def test_retention_purges_old_reports(tmp_path: Path) -> None:
    store = SqliteReportStore(tmp_path / "r.sqlite3", retention_days=30)
    store.save(report("old"))
    assert store.purge_expired(now=time.time() + 29 * 86400) == 0
    assert store.purge_expired(now=time.time() + 31 * 86400) == 1
    assert store.get("old") is None


def test_two_processes_worth_of_connections_share_the_file(tmp_path: Path) -> None:
    """Each worker has its own connection; WAL and the busy timeout let them write at once."""
    path = tmp_path / "r.sqlite3"
    stores = [SqliteReportStore(path) for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: SqliteReportStore, n: int) -> None:
        try:
            for i in range(25):
                store.save(report(f"w{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores[0].list(limit=500)) == 100


def test_ping_fails_when_the_store_cannot_open(tmp_path: Path) -> None:
    assert not SqliteReportStore(tmp_path).ping()  # a directory is not a database
