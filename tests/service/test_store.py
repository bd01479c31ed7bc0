from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from pathlib import Path

from diag.report import Finding, Report, StageResult, Status, TranscriptLine
from diag.service.app import create_app
from diag.service.store import SqliteReportStore
from diag.service.stored_transcript import DEFAULT_MAX_TRANSCRIPT_BYTES
from tests.service.helpers import make_settings


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


def test_total_is_bounded_and_the_oldest_reports_go_first(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteReportStore(path, max_bytes=20_000)
    one_body = len(json.dumps(chatty("r000").to_dict(), separators=(",", ":")))
    ids = [f"r{i:03d}" for i in range(60)]  # ~1.5 KB each: ~90 KB in all
    for report_id in ids:
        store.save(chatty(report_id))
    store.save(chatty(ids[-1], lines=12))  # saved again, bigger: the total follows the update

    kept = [s.id for s in store.list(limit=500)]
    assert ids[0] not in kept and store.get(ids[0]) is None
    assert sorted(kept) == ids[-len(kept):]  # exactly the newest ones
    total = sum_of_bodies(path)
    assert store.body_bytes() == total
    assert 20_000 - 2 * one_body < total <= 20_000  # under the limit, and no more deleted than needed


def test_total_stays_bounded_with_several_workers_on_one_file(tmp_path: Path) -> None:
    """Each store is a worker's connection; the running total and the trimming stay right when they race."""
    path = tmp_path / "r.sqlite3"
    stores = [SqliteReportStore(path, max_bytes=30_000) for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: SqliteReportStore, n: int) -> None:
        try:
            for i in range(25):
                store.save(chatty(f"w{n}-{i:02d}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = sum_of_bodies(path)
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


def test_a_huge_transcript_is_stored_bounded_and_says_what_was_left_out(tmp_path: Path) -> None:
    store = SqliteReportStore(tmp_path / "r.sqlite3")
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


def test_an_ordinary_transcript_is_stored_as_it_is(tmp_path: Path) -> None:
    store = SqliteReportStore(tmp_path / "r.sqlite3", max_transcript_bytes=4000)
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
