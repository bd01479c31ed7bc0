"""Where reports live after a run: the `ReportStore` interface and its SQLite implementation.

The store keeps `Report.to_dict()` as JSON plus the columns a list needs (host, verdict, failed stage...).
Reports never hold a password (the config has `password_set` only), so nothing secret reaches the file.

Two bounds keep the file from growing without limit: each stored report keeps at most `max_transcript_bytes`
of transcript (diag.service.stored_transcript says which lines and notes the cut), and when the bodies of all
reports exceed `max_bytes`, the oldest reports are deleted until they fit again. The total is kept by
triggers in a one-row table, so checking it after a save costs one lookup, whichever worker wrote what.

SQLite runs in WAL mode with a busy timeout, so several uvicorn workers on one machine share one file:
each process opens its own connection lazily (never before a fork) and serialises its threads on a lock.
The calls block: async callers run them in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from diag.logging import get_logger
from diag.report import Report
from diag.service.stored_transcript import DEFAULT_MAX_TRANSCRIPT_BYTES, bound_transcripts

BUSY_TIMEOUT_MS: Final = 5000
PURGE_INTERVAL_S: Final = 3600.0
MAX_LIST_LIMIT: Final = 500
DEFAULT_MAX_BYTES: Final = 512 * 1024 * 1024

log = get_logger("diag.service.store")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    saved_at REAL NOT NULL,
    started_at TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    failed_stage TEXT,
    finding_code TEXT,
    duration_ms REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_started_at ON reports (started_at);
CREATE INDEX IF NOT EXISTS reports_saved_at ON reports (saved_at);
CREATE INDEX IF NOT EXISTS reports_host ON reports (host);
-- The running total of length(body) over all reports (bodies are ASCII JSON: characters are bytes).
-- Filled once from the table when it is created, then kept by the triggers in every worker's writes.
CREATE TABLE IF NOT EXISTS store_size (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body_bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO store_size (id, body_bytes) SELECT 1, COALESCE(SUM(length(body)), 0) FROM reports;
CREATE TRIGGER IF NOT EXISTS reports_size_insert AFTER INSERT ON reports BEGIN
    UPDATE store_size SET body_bytes = body_bytes + length(NEW.body) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS reports_size_delete AFTER DELETE ON reports BEGIN
    UPDATE store_size SET body_bytes = body_bytes - length(OLD.body) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS reports_size_update AFTER UPDATE OF body ON reports BEGIN
    UPDATE store_size SET body_bytes = body_bytes - length(OLD.body) + length(NEW.body) WHERE id = 1;
END;
"""


@dataclass(frozen=True, slots=True)
class ReportSummary:
    id: str
    started_at: str
    host: str
    port: int
    verdict: str
    failed_stage: str | None
    finding_code: str | None
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at,
            "host": self.host,
            "port": self.port,
            "verdict": self.verdict,
            "failed_stage": self.failed_stage,
            "finding_code": self.finding_code,
            "duration_ms": self.duration_ms,
        }


def stored_form(report: Report, max_transcript_bytes: int, encoded: str | None = None) -> tuple[Report, str]:
    """The report as a store keeps it (its transcripts bounded) and its body: compact ASCII JSON. `encoded`,
    that JSON of the whole report when the caller has made it already, is the body when nothing was cut."""
    bounded = bound_transcripts(report, max_transcript_bytes)
    if encoded is not None and bounded is report:
        return bounded, encoded
    return bounded, json.dumps(bounded.to_dict(), separators=(",", ":"))


class ReportStore(Protocol):
    def save(self, report: Report, *, encoded: str | None = None) -> None: ...

    def get(self, report_id: str) -> Report | None: ...

    def list(self, *, host: str | None = None, verdict: str | None = None, limit: int = 50) -> list[ReportSummary]:
        ...

    def purge_expired(self, now: float | None = None) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class SqliteReportStore:
    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: int = 30,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_transcript_bytes: int = DEFAULT_MAX_TRANSCRIPT_BYTES,
    ) -> None:
        self.path = Path(path)
        self.retention_s = retention_days * 86400.0
        self.max_bytes = max_bytes
        self.max_transcript_bytes = max_transcript_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._last_purge = 0.0

    def __repr__(self) -> str:
        return f"SqliteReportStore({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            # One transaction, so no worker writes between the total's first fill and its triggers.
            try:
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def save(self, report: Report, *, encoded: str | None = None) -> None:
        """Store the report (its transcript bounded), then delete the oldest others while over `max_bytes`.
        `encoded`: the report's compact ASCII JSON, when the caller has it (see `stored_form`)."""
        report, body = stored_form(report, self.max_transcript_bytes, encoded)
        failure = report.first_failure
        row = (
            report.id,
            time.time(),
            report.started_at,
            str(report.config.get("host", "")),
            int(report.config.get("port", 0)),
            report.verdict,
            failure.name if failure else None,
            failure.finding.code if failure and failure.finding else None,
            round(report.duration_ms, 1),
            body,
        )
        with self._lock:
            conn = self._connection()
            # IMMEDIATE: the write lock from the start, so two workers never both trim for the same excess.
            conn.execute("BEGIN IMMEDIATE")
            try:
                # An upsert, not INSERT OR REPLACE: REPLACE's implicit delete fires no trigger by default.
                conn.execute(
                    "INSERT INTO reports (id, saved_at, started_at, host, port, verdict, failed_stage,"
                    " finding_code, duration_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET saved_at = excluded.saved_at,"
                    " started_at = excluded.started_at, host = excluded.host, port = excluded.port,"
                    " verdict = excluded.verdict, failed_stage = excluded.failed_stage,"
                    " finding_code = excluded.finding_code, duration_ms = excluded.duration_ms,"
                    " body = excluded.body",
                    row,
                )
                deleted = self._delete_oldest_over_limit(conn, keep=report.id)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                    conn.execute("ROLLBACK")
                raise
        if deleted:
            log.info("store_over_limit", deleted_reports=deleted, max_bytes=self.max_bytes)
        if time.monotonic() - self._last_purge > PURGE_INTERVAL_S:
            self.purge_expired()

    def _delete_oldest_over_limit(self, conn: sqlite3.Connection, *, keep: str) -> int:
        """Delete the oldest reports (never `keep`, the one just saved) until the bodies fit in max_bytes."""
        excess = _body_bytes(conn) - self.max_bytes
        if excess <= 0:
            return 0
        doomed: list[str] = []
        oldest_first = conn.execute(
            "SELECT id, length(body) FROM reports WHERE id != ? ORDER BY saved_at, rowid", (keep,)
        )
        try:
            for report_id, size in oldest_first:
                doomed.append(report_id)
                excess -= size
                if excess <= 0:
                    break
        finally:
            oldest_first.close()
        conn.executemany("DELETE FROM reports WHERE id = ?", [(report_id,) for report_id in doomed])
        return len(doomed)

    def body_bytes(self) -> int:
        """The bytes of all stored report bodies, as the limit counts them."""
        with self._lock:
            return _body_bytes(self._connection())

    def get(self, report_id: str) -> Report | None:
        with self._lock:
            row = self._connection().execute("SELECT body FROM reports WHERE id = ?", (report_id,)).fetchone()
        return Report.from_dict(json.loads(row[0])) if row else None

    def list(self, *, host: str | None = None, verdict: str | None = None, limit: int = 50) -> list[ReportSummary]:
        sql = (
            "SELECT id, started_at, host, port, verdict, failed_stage, finding_code, duration_ms FROM reports"
            " WHERE (?1 IS NULL OR host = ?1 COLLATE NOCASE) AND (?2 IS NULL OR verdict = ?2)"
            " ORDER BY started_at DESC, saved_at DESC LIMIT ?3"
        )
        params = (host or None, verdict or None, max(1, min(limit, MAX_LIST_LIMIT)))
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
        return [ReportSummary(*row) for row in rows]

    def purge_expired(self, now: float | None = None) -> int:
        """Delete reports saved more than the retention period before `now` (epoch seconds)."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._lock:
            deleted = self._connection().execute("DELETE FROM reports WHERE saved_at < ?", (cutoff,)).rowcount
            self._last_purge = time.monotonic()
        return int(deleted)

    def ping(self) -> bool:
        try:
            with self._lock:
                self._connection().execute("SELECT 1 FROM reports LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _body_bytes(conn: sqlite3.Connection) -> int:
    (total,) = conn.execute("SELECT body_bytes FROM store_size WHERE id = 1").fetchone()
    return int(total)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL once. Several workers opening a new file at the same moment can get "database
    is locked" from the switch itself, which does not wait on the busy timeout: retry, bounded by it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # in a worker thread (every store call runs off the event loop)
