"""The `ehlo` stage: EHLO (HELO when EHLO is refused) and the capabilities the server offers."""

from __future__ import annotations

from diag.probe import ProbeError
from diag.report import Status
from diag.stages.base import Outcome, RunContext

INTERESTING: tuple[str, ...] = ("starttls", "auth", "size", "8bitmime", "smtputf8", "pipelining", "chunking")


async def check(ctx: RunContext) -> Outcome:
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    try:
        reply = ehlo_reply = await probe.ehlo()
        esmtp = True
        if reply.code >= 400:
            reply = await probe.helo()
            esmtp = False
    except ProbeError as error:
        return Outcome(
            Status.FAILED, f"EHLO failed: {error.message}.", kind=error.kind, server_text=error.message
        )
    if reply.code != 250:
        if esmtp:
            return Outcome(
                Status.FAILED,
                f"The server answered EHLO with {reply}.",
                {"ehlo_reply": str(reply)},
                kind="rejected",
                reply_code=reply.code,
                server_text=reply.text,
            )
        return Outcome(
            Status.FAILED,
            f"The server rejected EHLO ({ehlo_reply}) and HELO ({reply}).",
            {"ehlo_reply": str(ehlo_reply), "helo_reply": str(reply)},
            kind="rejected",
            reply_code=reply.code,
            server_text=reply.text,
        )
    facts = probe.capability_facts()
    facts["esmtp"] = esmtp
    facts["server_name"] = reply.text.splitlines()[0].split(" ", 1)[0] if reply.text else ""
    if not esmtp:
        return Outcome(
            Status.WARNING,
            f"The server refused EHLO ({ehlo_reply}) and only speaks HELO (no ESMTP): no STARTTLS, no AUTH.",
            facts,
            kind="helo_only",
            reply_code=ehlo_reply.code,
            server_text=ehlo_reply.text,
        )
    offered = ", ".join(facts["capabilities"]) or "no extensions"
    return Outcome(Status.PASSED, f"EHLO accepted; the server offers {offered}.", facts)
