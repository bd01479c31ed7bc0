"""Runs the stages in order and streams events; the Report is their fold.

A stage runs only when the stages it needs have not failed; otherwise it is skipped with the reason.
Every stage is bounded by the run's budget, and an unexpected exception in a stage becomes a failed
stage with a finding (logged without its message or locals), never a crash of the run.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypedDict, Unpack

from diag import certs
from diag.config import SmtpConfig, TlsMode
from diag.findings import finding_for
from diag.kinds import AnyKind
from diag.logging import LibraryLogger, get_logger
from diag.policy import EgressPolicy
from diag.product_log import product_log_line
from diag.report import Event, Report, RunFinished, StageFinished, StageResult, StageStarted, Status
from diag.resolver import Resolver
from diag.server_text import ServerText
from diag.stages import auth, config_check, connect, dns, ehlo, envelope, tls
from diag.stages.base import Outcome, RunContext
from diag.transcript import Transcript

log = get_logger("diag.runner")

Check = Callable[[RunContext], Awaitable[Outcome]]

# name, check, the stages that must have run without failing for this one to run (a stage skipped by
# choice, such as auth for anonymous SMTP, does not block the next)
STAGES: Final[tuple[tuple[str, Check, tuple[str, ...]], ...]] = (
    ("config", config_check.check, ()),
    ("dns", dns.check, ("config",)),
    ("connect", connect.check, ("dns",)),
    ("ehlo", ehlo.check, ("connect",)),
    ("tls", tls.check, ("ehlo",)),
    ("auth", auth.check, ("tls",)),
    ("mail_from", envelope.check_mail_from, ("auth",)),
    ("rcpt_to", envelope.check_rcpt_to, ("mail_from",)),
    ("send", envelope.check_send, ("rcpt_to",)),
)


def budget_for(config: SmtpConfig) -> float:
    """The whole run's budget: generous enough for every step's timeout, never unbounded."""
    return config.timeout_s * 8 + 5.0


class RunOptions(TypedDict, total=False):
    """What a caller may say about a run besides the config (`run_events` and `run` take the same)."""

    policy: EgressPolicy | None
    run_id: str | None
    admit_addresses: Callable[[list[str]], str | None] | None
    max_duration_s: float | None
    resolver: Resolver | None


async def run_events(
    config: SmtpConfig,
    *,
    policy: EgressPolicy | None = None,
    run_id: str | None = None,
    admit_addresses: Callable[[list[str]], str | None] | None = None,
    max_duration_s: float | None = None,
    resolver: Resolver | None = None,
) -> AsyncGenerator[Event, None]:
    """The run's events. `admit_addresses` is asked before connecting (see RunContext); `max_duration_s`
    caps the budget the timeouts add up to (the service's bound on a run's wall time); `resolver` answers
    the dns stage's questions (by default the system's, with the environment's developer knobs)."""
    # 128 bits from the OS, as 32 hex digits (the shape of uuid4().hex): the uuid module imports `platform`,
    # ~3 ms of a `smtp-diag check`'s start-up (issue 13), for an id nobody parses as a UUID.
    run_id = run_id or os.urandom(16).hex()
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ctx = RunContext(
        config=config,
        policy=policy or EgressPolicy.default(),
        run_id=run_id,
        admit_addresses=admit_addresses,
        resolver=resolver or Resolver.from_environment(),
    )
    transcript = Transcript(ctx.started, server_text=ServerText.for_config(config))
    ctx.transcript = transcript
    if config.effective_tls_mode is not TlsMode.NONE:
        certs.prepare(config.ca_bundle)  # in a thread: ready by STARTTLS, the round trips before hide it
    budget = budget_for(config) if max_duration_s is None else min(budget_for(config), max_duration_s)
    deadline = ctx.started + budget
    bound = log.bind(run_id=run_id, host=config.host, port=config.port)
    results: dict[str, StageResult] = {}
    blocked_by: dict[str, str] = {}  # stage that could not run -> the failed stage at the root of it
    try:
        for name, check, needs in STAGES:
            yield StageStarted(run_id, name)
            root = next(
                (blocked_by.get(n, n) for n in needs if n in blocked_by or results[n].status is Status.FAILED), None
            )
            if root is not None:
                blocked_by[name] = root
                result = StageResult(name, Status.SKIPPED, 0.0, f"Not run: the {root} stage failed.")
            else:
                result = await _run_stage(name, check, ctx, transcript, deadline, bound)
            results[name] = result
            bound.info(
                "stage_finished",
                stage=name,
                status=result.status.value,
                duration_ms=round(result.duration_ms, 1),
                finding=result.finding.code if result.finding else None,
            )
            yield StageFinished(run_id, result)
    finally:
        if ctx.probe is not None:
            await ctx.probe.close(polite=time.monotonic() < deadline)
    report = Report(
        id=run_id,
        started_at=started_at,
        duration_ms=ctx.elapsed_ms(),
        config=config.public_dict(),
        stages=tuple(results[name] for name, _, _ in STAGES),
        transcript_lines_dropped=transcript.dropped,
    )
    failure = report.first_failure
    bound.info(
        "run_finished",
        verdict=report.verdict,
        duration_ms=round(report.duration_ms, 1),
        failed_stage=failure.name if failure else None,
        finding=failure.finding.code if failure and failure.finding else None,
    )
    yield RunFinished(report)


async def run(config: SmtpConfig, **options: Unpack[RunOptions]) -> Report:
    """The run's Report (its last event), with the same options as `run_events`."""
    async for event in run_events(config, **options):
        if isinstance(event, RunFinished):
            return event.report
    raise AssertionError("run_events ended without RunFinished")  # pragma: no cover


def run_sync(config: SmtpConfig, *, policy: EgressPolicy | None = None) -> Report:
    return asyncio.run(run(config, policy=policy))


async def _run_stage(
    name: str,
    check: Check,
    ctx: RunContext,
    transcript: Transcript,
    deadline: float,
    log: LibraryLogger,
) -> StageResult:
    mark = len(transcript)
    t0 = time.monotonic()
    remaining = deadline - t0
    try:
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            outcome = await check(ctx)
    except TimeoutError:
        transcript.note("the run's overall time budget ran out")
        outcome = Outcome.failed("The run's overall time budget ran out.", AnyKind.BUDGET_EXCEEDED)
    except Exception as exc:  # a bug of ours must not crash the run or lose the report
        # Neither the message nor locals: a bug's message may quote the password. Where it broke is enough.
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        log.error(
            "stage_crashed",
            stage=name,
            error_type=type(exc).__name__,
            at=[f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames],
        )
        outcome = Outcome.failed(
            f"The {name} check stopped on an unexpected error ({type(exc).__name__}).", AnyKind.INTERNAL_ERROR
        )
    duration_ms = (time.monotonic() - t0) * 1000.0
    finding = None
    if outcome.status in (Status.FAILED, Status.WARNING) and outcome.kind is not None:
        finding = finding_for(name, outcome.kind, ctx.config, outcome.reply_code, outcome.detail)
    additional = tuple(finding_for(name, kind, ctx.config, None, text) for kind, text in outcome.also)
    product_log = None
    if outcome.status is Status.FAILED and finding is not None:
        product_log = product_log_line(finding.code, ctx.config, outcome.facts, outcome.reply_code, outcome.detail)
    return StageResult(
        name=name,
        status=outcome.status,
        duration_ms=duration_ms,
        summary=outcome.summary,
        facts=outcome.facts,
        finding=finding,
        additional_findings=additional,
        product_log=product_log,
        transcript=transcript.since(mark),
    )
