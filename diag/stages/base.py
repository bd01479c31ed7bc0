"""What every stage shares: the run context it reads and writes, and the outcome it returns.

A stage is `async def check(ctx: RunContext) -> Outcome`. It never raises for network or protocol
trouble: it maps errors at the I/O boundary into an Outcome with a failure `kind`. The runner times the
stage, slices the transcript and turns `kind` into a Finding (diag.findings) with cause and fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diag.config import SmtpConfig
from diag.report import Status

if TYPE_CHECKING:
    from diag.policy import EgressPolicy
    from diag.probe import Probe
    from diag.transcript import Transcript


@dataclass(slots=True)
class Outcome:
    status: Status
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None  # failure or warning kind: the finding code is "<stage>.<kind>"
    reply_code: int | None = None  # the SMTP reply that decided it, when there was one
    server_text: str | None = None  # that reply's text, for provider-specific findings
    also: list[tuple[str, str | None]] = field(default_factory=list)  # further (kind, server_text) warnings

    @classmethod
    def passed(cls, summary: str, **facts: Any) -> Outcome:
        return cls(Status.PASSED, summary, facts)

    @classmethod
    def skipped(cls, summary: str, **facts: Any) -> Outcome:
        return cls(Status.SKIPPED, summary, facts)


@dataclass(slots=True)
class RunContext:
    config: SmtpConfig
    policy: EgressPolicy
    started: float = field(default_factory=time.monotonic)
    run_id: str = ""
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
