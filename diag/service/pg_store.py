"""The PostgreSQL `ReportStore`: reports shared by every replica of the service (DIAG_DB_URL).

It keeps what the SQLite store keeps, the same way: `Report.to_dict()` as JSON text plus the columns a list
needs, each report's transcript bounded (diag.service.stored_transcript), and the bodies' total under
`max_bytes`, kept by triggers in a one-row table that every save locks first, so two replicas never both
trim for the same excess.

The schema is the service's own: numbered migrations, applied at the first use under an advisory lock, so
replicas starting together neither race on CREATE nor apply one twice. Each process opens its own pool
lazily (never before a fork). Every connection has a connect timeout and a statement timeout. The calls
block: async callers run them in a worker thread, as with SQLite.

The URL holds the database password: it stays a `Secret`, and the repr names host, port and database only.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from diag.logging import get_logger
from diag.report import Report
from diag.secret import Secret
from diag.service.store import DEFAULT_MAX_BYTES, MAX_LIST_LIMIT, PURGE_INTERVAL_S, ReportSummary, stored_form
from diag.service.stored_transcript import DEFAULT_MAX_TRANSCRIPT_BYTES

CONNECT_TIMEOUT_S: Final = 5
STATEMENT_TIMEOUT_MS: Final = 10_000
POOL_MAX_SIZE: Final = 8
# Any fixed number: replicas serialise their migrations on it (pg_advisory_xact_lock), and only they use it.
MIGRATION_LOCK: Final = 0x5D1A6_0001

log = get_logger("diag.service.pg_store")

# Applied in order, each once; their number is the row count of schema_migrations. Never edit one that has
# shipped: add the next.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE reports (
        id TEXT PRIMARY KEY,
        saved_at DOUBLE PRECISION NOT NULL,
        started_at TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        verdict TEXT NOT NULL,
        failed_stage TEXT,
        finding_code TEXT,
        duration_ms DOUBLE PRECISION NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX reports_started_at ON reports (started_at);
    CREATE INDEX reports_saved_at ON reports (saved_at);
    CREATE INDEX reports_host ON reports (lower(host));
    -- The running total of octet_length(body) over all reports, kept by the triggers below.
    CREATE TABLE store_size (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        body_bytes BIGINT NOT NULL
    );
    INSERT INTO store_size (id, body_bytes) VALUES (1, 0);
    CREATE FUNCTION reports_size_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE store_size SET body_bytes = body_bytes + octet_length(NEW.body) WHERE id = 1;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE store_size SET body_bytes = body_bytes - octet_length(OLD.body) WHERE id = 1;
        ELSE
            UPDATE store_size SET body_bytes = body_bytes - octet_length(OLD.body) + octet_length(NEW.body)
                WHERE id = 1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER reports_size AFTER INSERT OR DELETE OR UPDATE OF body ON reports
        FOR EACH ROW EXECUTE FUNCTION reports_size_track();
    """,
    # 2: admission shared by the replicas (diag.service.pg_admission): token buckets and runs in flight.
    """
    CREATE TABLE rate_buckets (
        limiter TEXT NOT NULL,
        key TEXT NOT NULL,
        tokens DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        full_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (limiter, key)
    );
    CREATE INDEX rate_buckets_full_at ON rate_buckets (full_at);
    CREATE TABLE run_slots (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX run_slots_expires_at ON run_slots (expires_at);
    """,
)


class PostgresReportStore:
    def __init__(
        self,
        url: Secret,  # the postgresql:// URL: it may hold the database password
        *,
        retention_days: int = 30,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_transcript_bytes: int = DEFAULT_MAX_TRANSCRIPT_BYTES,
        pool_max_size: int = POOL_MAX_SIZE,
    ) -> None:
        self._url = url
        self.retention_s = retention_days * 86400.0
        self.max_bytes = max_bytes
        self.max_transcript_bytes = max_transcript_bytes
        self._pool_max_size = pool_max_size
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._last_purge = 0.0

    def __repr__(self) -> str:
        where = _where(self._url)
        return f"PostgresReportStore({where!r})"

    def _connections(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                # One connection of our own first: a server that is down fails here at once, with its own
                # error, rather than after the pool's retries; and the schema is ready before the pool opens.
                with psycopg.connect(self._url.reveal(), **self._connect_options()) as conn:
                    _migrate(conn)
                pool = ConnectionPool(
                    self._url.reveal(),
                    min_size=1,
                    max_size=self._pool_max_size,
                    open=False,
                    timeout=CONNECT_TIMEOUT_S * 2,  # waiting for a free connection of the pool
                    kwargs=self._connect_options(),
                )
                pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
                self._pool = pool
            return self._pool

    @staticmethod
    def _connect_options() -> dict[str, Any]:
        return {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            "application_name": "smtp-diag",
        }

    def connection(self) -> AbstractContextManager[psycopg.Connection[TupleRow]]:
        """A connection of the pool, for others sharing the database (diag.service.pg_admission)."""
        return self._connections().connection()

    def save(self, report: Report, *, encoded: str | None = None) -> None:
        """Store the report (its transcript bounded), then delete the oldest others while over `max_bytes`.
        `encoded`: the report's compact ASCII JSON, when the caller has it (see `stored_form`)."""
        report, body = stored_form(report, self.max_transcript_bytes, encoded)
        failure = report.first_failure
        row = {
            "id": report.id,
            "saved_at": time.time(),
            "started_at": report.started_at,
            "host": str(report.config.get("host", "")),
            "port": int(report.config.get("port", 0)),
            "verdict": report.verdict,
            "failed_stage": failure.name if failure else None,
            "finding_code": failure.finding.code if failure and failure.finding else None,
            "duration_ms": round(report.duration_ms, 1),
            "body": body,
        }
        with self._connections().connection() as conn, conn.transaction():
            # The total's row first: saves queue here, so each trims against the total the last one left.
            conn.execute("SELECT body_bytes FROM store_size WHERE id = 1 FOR UPDATE")
            conn.execute(
                "INSERT INTO reports (id, saved_at, started_at, host, port, verdict, failed_stage, finding_code,"
                " duration_ms, body) VALUES (%(id)s, %(saved_at)s, %(started_at)s, %(host)s, %(port)s,"
                " %(verdict)s, %(failed_stage)s, %(finding_code)s, %(duration_ms)s, %(body)s)"
                " ON CONFLICT (id) DO UPDATE SET saved_at = excluded.saved_at, started_at = excluded.started_at,"
                " host = excluded.host, port = excluded.port, verdict = excluded.verdict,"
                " failed_stage = excluded.failed_stage, finding_code = excluded.finding_code,"
                " duration_ms = excluded.duration_ms, body = excluded.body",
                row,
            )
            deleted = self._delete_oldest_over_limit(conn, keep=report.id)
        if deleted:
            log.info("store_over_limit", deleted_reports=deleted, max_bytes=self.max_bytes)
        if time.monotonic() - self._last_purge > PURGE_INTERVAL_S:
            self.purge_expired()

    def _delete_oldest_over_limit(self, conn: psycopg.Connection[TupleRow], *, keep: str) -> int:
        """Delete the oldest reports (never `keep`, the one just saved) until the bodies fit in max_bytes."""
        excess = _body_bytes(conn) - self.max_bytes
        if excess <= 0:
            return 0
        # Oldest first, each deleted while the ones before it did not yet cover the excess.
        cursor = conn.execute(
            "DELETE FROM reports WHERE id IN (SELECT id FROM ("
            " SELECT id, octet_length(body) AS size,"
            " sum(octet_length(body)) OVER (ORDER BY saved_at, id) AS running"
            " FROM reports WHERE id <> %s) AS oldest WHERE running - size < %s)",
            (keep, excess),
        )
        return cursor.rowcount

    def body_bytes(self) -> int:
        """The bytes of all stored report bodies, as the limit counts them."""
        with self._connections().connection() as conn:
            return _body_bytes(conn)

    def get(self, report_id: str) -> Report | None:
        with self._connections().connection() as conn:
            row = conn.execute("SELECT body FROM reports WHERE id = %s", (report_id,)).fetchone()
        return Report.from_dict(json.loads(row[0])) if row else None

    def list(self, *, host: str | None = None, verdict: str | None = None, limit: int = 50) -> list[ReportSummary]:
        sql = (
            "SELECT id, started_at, host, port, verdict, failed_stage, finding_code, duration_ms FROM reports"
            " WHERE (%(host)s::text IS NULL OR lower(host) = lower(%(host)s))"
            " AND (%(verdict)s::text IS NULL OR verdict = %(verdict)s)"
            " ORDER BY started_at DESC, saved_at DESC LIMIT %(limit)s"
        )
        params = {"host": host or None, "verdict": verdict or None, "limit": max(1, min(limit, MAX_LIST_LIMIT))}
        with self._connections().connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [ReportSummary(*row) for row in rows]

    def purge_expired(self, now: float | None = None) -> int:
        """Delete reports saved more than the retention period before `now` (epoch seconds)."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._connections().connection() as conn:
            deleted = conn.execute("DELETE FROM reports WHERE saved_at < %s", (cutoff,)).rowcount
        self._last_purge = time.monotonic()
        return int(deleted)

    def ping(self) -> bool:
        try:
            with self._connections().connection() as conn:
                conn.execute("SELECT 1 FROM reports LIMIT 1").fetchall()
        except (psycopg.Error, TimeoutError) as exc:  # the pool's timeouts are TimeoutErrors
            log.warning("store_unavailable", error_type=type(exc).__name__)
            return False
        return True

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _migrate(conn: psycopg.Connection[TupleRow]) -> None:
    """Bring the schema to the last migration, in one transaction that replicas take one at a time."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at"
                     " TIMESTAMPTZ NOT NULL DEFAULT now())")
        row = conn.execute("SELECT COALESCE(max(version), 0) FROM schema_migrations").fetchone()
        applied = int(row[0]) if row else 0
        for version, sql in enumerate(MIGRATIONS[applied:], start=applied + 1):
            conn.execute(sql.encode())  # bytes: several statements in one simple query, no parameters
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            log.info("store_migrated", version=version)


def _body_bytes(conn: psycopg.Connection[TupleRow]) -> int:
    row = conn.execute("SELECT body_bytes FROM store_size WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def _where(url: Secret) -> str:
    """host:port/dbname of the URL, for reprs and logs: never its user's password."""
    try:
        parts = conninfo_to_dict(url.reveal())
    except psycopg.Error:
        return "an unreadable URL"
    return f"{parts.get('host', '')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"
