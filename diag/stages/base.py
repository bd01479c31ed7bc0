"""What every stage shares: the run context it reads and writes, and the outcome it returns.

A stage is `async def check(ctx: RunContext) -> Outcome`. It never raises for network or protocol
trouble: it maps errors at the I/O boundary into an Outcome with a failure `kind`. The runner times the
stage, slices the transcript and turns `kind` into a Finding (diag.findings) with cause and fix.

Build outcomes with the constructors: `Outcome.failed(summary, kind, reply=reply, **facts)` carries the
SMTP reply that decided it (code and text); `detail=` carries our own words instead (a field name, a
policy reason, a day count) for the finding's {reply}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diag.config import SmtpConfig
from diag.findings import detect_provider
from diag.kinds import Kind
from diag.report import Status
from diag.resolver import Resolver

if TYPE_CHECKING:
    from diag.policy import EgressPolicy
    from diag.probe import Probe, Reply
    from diag.transcript import Transcript


@dataclass(slots=True)
class Outcome:
    status: Status
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    kind: Kind | None = None  # failure or warning kind: its finding (diag.kinds, diag.findings)
    reply_code: int | None = None  # the SMTP reply that decided it, when there was one
    # What decided it, for the finding's {reply}: that reply's text, or our own words (a field name, a
    # policy reason, a day count) when no reply did.
    detail: str | None = None
    also: list[tuple[Kind, str | None]] = field(default_factory=list)  # further (kind, detail) warnings

    @classmethod
    def passed(cls, summary: str, /, **facts: Any) -> Outcome:
        return cls(Status.PASSED, summary, facts)

    @classmethod
    def skipped(cls, summary: str, /, **facts: Any) -> Outcome:
        return cls(Status.SKIPPED, summary, facts)

    @classmethod
    def failed(
        cls, summary: str, kind: Kind, /, *, reply: Reply | None = None, detail: str | None = None, **facts: Any
    ) -> Outcome:
        return cls._judged(Status.FAILED, summary, kind, reply, detail, facts)

    @classmethod
    def warning(
        cls,
        summary: str,
        kind: Kind,
        /,
        *,
        reply: Reply | None = None,
        detail: str | None = None,
        also: list[tuple[Kind, str | None]] | None = None,
        **facts: Any,
    ) -> Outcome:
        return cls._judged(Status.WARNING, summary, kind, reply, detail, facts, also or [])

    @classmethod
    def _judged(
        cls,
        status: Status,
        summary: str,
        kind: Kind,
        reply: Reply | None,
        detail: str | None,
        facts: dict[str, Any],
        also: list[tuple[Kind, str | None]] | None = None,
    ) -> Outcome:
        if reply is not None and detail is not None:
            raise ValueError("give the reply that decided it, or a detail of our own, not both")
        return cls(
            status,
            summary,
            facts,
            kind,
            reply_code=reply.code if reply is not None else None,
            detail=reply.text if reply is not None else detail,
            also=also or [],
        )


@dataclass(slots=True)
class RunContext:
    config: SmtpConfig
    policy: EgressPolicy
    started: float = field(default_factory=time.monotonic)
    run_id: str = ""
    # Name resolution (the test seam for DNS). The runner builds it from the environment once per run; a
    # context built by hand, as tests of a single stage do, gets the same default.
    resolver: Resolver = field(default_factory=Resolver.from_environment)
    # Asked by the dns stage with the addresses it is about to connect to: None to go on, else why not
    # (the service's per-target rate limit, keyed by address so that no spelling of a host escapes it).
    admit_addresses: Callable[[list[str]], str | None] | None = None
    # Filled by the dns stage: vetted addresses in the order to try them.
    addresses: list[str] = field(default_factory=list)
    # Filled by the connect stage: the live SMTP conversation, closed by the runner at the end.
    probe: Probe | None = None
    # Set by the runner before the first stage.
    transcript: Transcript = field(init=False)

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0


def server_provider(ctx: RunContext) -> str | None:
    """The provider by the host name, else by the name and words of the server's greeting (a custom domain
    CNAMEd to Microsoft 365 still greets as *.outlook.office365.com, "Microsoft ESMTP MAIL Service")."""
    greeting = ctx.probe.greeting.text if ctx.probe is not None else ""
    return detect_provider(ctx.config.host, greeting) or detect_provider(greeting.split(" ", 1)[0])
