"""Placeholder: being written."""

from __future__ import annotations

from diag.stages.base import Outcome, RunContext


async def check_mail_from(ctx: RunContext) -> Outcome:
    return Outcome.passed("not implemented yet")


async def check_rcpt_to(ctx: RunContext) -> Outcome:
    return Outcome.skipped("not implemented yet")


async def check_send(ctx: RunContext) -> Outcome:
    return Outcome.skipped("not implemented yet")
