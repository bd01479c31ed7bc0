"""Where reports live after a run: the `ReportStore` interface and its SQLite implementation.

The store keeps `Report.to_dict()` as JSON plus the columns a list needs (host, verdict, failed stage...).
Reports never hold a password (the config has `password_set` only), so nothing secret reaches the file.

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

from diag.report import Report

BUSY_TIMEOUT_MS: Final = 5000
PURGE_INTERVAL_S: Final = 3600.0
MAX_LIST_LIMIT: Final = 500

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


class ReportStore(Protocol):
    def save(self, report: Report) -> None: ...

    def get(self, report_id: str) -> Report | None: ...

    def list(self, *, host: str | None = None, verdict: str | None = None, limit: int = 50) -> list[ReportSummary]:
        ...

    def purge_expired(self, now: float | None = None) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class SqliteReportStore:
    def __init__(self, path: str | Path, *, retention_days: int = 30) -> None:
        self.path = Path(path)
        self.retention_s = retention_days * 86400.0
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
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def save(self, report: Report) -> None:
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
            json.dumps(report.to_dict(), separators=(",", ":")),
        )
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO reports (id, saved_at, started_at, host, port, verdict, failed_stage,"
                " finding_code, duration_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        if time.monotonic() - self._last_purge > PURGE_INTERVAL_S:
            self.purge_expired()

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
