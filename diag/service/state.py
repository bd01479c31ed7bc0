"""What the routes share, built once per process by the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diag.policy import EgressPolicy
from diag.service.limits import RateLimiter, RunGate
from diag.service.settings import Settings
from diag.service.store import ReportStore

if TYPE_CHECKING:  # psycopg is the [postgres] extra
    from diag.service.pg_admission import SharedAdmission


@dataclass(slots=True)
class Services:
    settings: Settings
    store: ReportStore
    policy: EgressPolicy
    client_limiter: RateLimiter
    target_limiter: RateLimiter
    recipient_limiter: RateLimiter  # test messages per recipient domain
    gate: RunGate
    presets: list[dict[str, Any]] = field(default_factory=list)  # demo servers offered on the page
    # With DIAG_DB_URL: the rate limits and run slots counted across replicas, in place of the two above.
    shared_admission: SharedAdmission | None = None

    @classmethod
    def build(cls, settings: Settings, store: ReportStore, presets: list[dict[str, Any]] | None = None,
              shared_admission: SharedAdmission | None = None) -> Services:
        return cls(
            settings=settings,
            store=store,
            policy=EgressPolicy(
                allow_networks=settings.allow_networks,
                deny_networks=settings.deny_networks,
                allowed_ports=settings.allowed_ports,
            ),
            client_limiter=RateLimiter(settings.rate_limit_per_client),
            target_limiter=RateLimiter(settings.rate_limit_per_target),
            recipient_limiter=RateLimiter(settings.rate_limit_per_recipient_domain),
            gate=RunGate(settings.max_concurrent_runs, settings.max_runs_per_client,
                         max_queued=settings.max_queued_runs, queue_wait_s=settings.run_queue_wait_s),
            presets=list(presets or []),
            shared_admission=shared_admission,
        )
