"""Placeholder: being written."""

from __future__ import annotations

from diag.stages.base import Outcome, RunContext


async def check(ctx: RunContext) -> Outcome:
    return Outcome.passed("not implemented yet")
