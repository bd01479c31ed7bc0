"""The app factory: routes, middleware, error handlers and the store's lifecycle.

`create_app(settings)` is what serve.py and the tests use; `app_from_env()` is for uvicorn itself
(`uvicorn --factory diag.service.app:app_from_env --workers 4`): each worker builds its own app, store
connection and limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from diag.logging import get_logger
from diag.service import api, explain_api, page
from diag.service.hosts import HostAllowList, default_allowed_hosts
from diag.service.logs import configure_service_logging
from diag.service.middleware import AllowedHostsMiddleware, BearerTokenMiddleware, RequestContextMiddleware
from diag.service.openapi import openapi_document
from diag.service.settings import Settings, SettingsError
from diag.service.state import Services
from diag.service.store import ReportStore, SqliteReportStore

if TYPE_CHECKING:  # psycopg is the [postgres] extra
    from diag.service.pg_admission import SharedAdmission

log = get_logger("diag.service")
MB = 1024 * 1024


def create_app(
    settings: Settings,
    *,
    store: ReportStore | None = None,
    presets: list[dict[str, Any]] | None = None,
) -> Starlette:
    if store is None:
        store = store_from_settings(settings)
    services = Services.build(settings, store, presets, shared_admission=shared_admission_for(settings, store))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        purged = await run_in_threadpool(services.store.purge_expired)
        log.info("service_started", purged_reports=purged, retention_days=settings.retention_days)
        try:
            yield
        finally:
            await run_in_threadpool(services.store.close)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if await run_in_threadpool(services.store.ping):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "reason": "the report store does not answer"}, 503)

    document = openapi_document(token_required=settings.api_token is not None)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    app = Starlette(
        routes=[
            *api.routes,
            *explain_api.routes,
            *page.routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/openapi.json", openapi),
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(AllowedHostsMiddleware, allowed=allowed_hosts(settings)),
            Middleware(BearerTokenMiddleware, token=settings.api_token),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    # An API answers a path it does not serve with a JSON 404, not a redirect: "/api/diagnostics/%2F"
    # (an id of "/") was redirected to the list (found by tests/security/test_api_fuzz.py).
    app.router.redirect_slashes = False
    app.state.services = services
    return app


def store_from_settings(settings: Settings) -> ReportStore:
    """PostgreSQL when DIAG_DB_URL is set (replicas share it), else the SQLite file (one machine)."""
    if settings.db_url is not None:
        try:
            from diag.service.pg_store import PostgresReportStore  # psycopg: the [postgres] extra
        except ImportError:
            raise SettingsError(
                "DIAG_DB_URL needs psycopg: install smtp-diag with the postgres extra (smtp-diag[postgres])"
            ) from None
        return PostgresReportStore(
            settings.db_url, retention_days=settings.retention_days,
            max_bytes=settings.store_max_mb * MB,
        )
    return SqliteReportStore(
        settings.db_path, retention_days=settings.retention_days, max_bytes=settings.store_max_mb * MB
    )


def shared_admission_for(settings: Settings, store: ReportStore) -> SharedAdmission | None:
    """With PostgreSQL, the rate limits and run slots are counted there, across every replica."""
    if settings.db_url is None:
        return None
    from diag.service.pg_admission import SharedAdmission
    from diag.service.pg_store import PostgresReportStore

    if not isinstance(store, PostgresReportStore):
        return None
    return SharedAdmission(store, max_runs=settings.max_concurrent_runs,
                           max_runs_per_client=settings.max_runs_per_client, max_run_s=settings.max_run_s)


def allowed_hosts(settings: Settings) -> HostAllowList:
    """DIAG_ALLOWED_HOSTS, else the default for the address the service listens on (settings.host)."""
    hosts = settings.allowed_hosts if settings.allowed_hosts is not None else default_allowed_hosts(settings.host)
    return HostAllowList(hosts)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": code, "message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    # Only the type: an exception's text or locals could hold what a client sent.
    log.error("internal_error", error_type=type(exc).__name__)
    return JSONResponse({"error": "internal_error", "message": "Something went wrong on our side."}, 500)


def app_from_env() -> Starlette:
    settings = Settings.from_env()
    configure_service_logging(settings.log_level)
    return create_app(settings)
