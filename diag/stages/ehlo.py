"""The `ehlo` stage: EHLO (HELO when EHLO is refused) and the capabilities the server offers."""

from __future__ import annotations

from diag.kinds import EhloKind
from diag.stages.base import Outcome, RunContext
from diag.transport import ProbeError

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
        return Outcome.failed(f"EHLO failed: {error.message}.", error.finding_kind, detail=error.message)
    if reply.code != 250:
        if esmtp:
            return Outcome.failed(
                f"The server answered EHLO with {reply}.", EhloKind.REJECTED, reply=reply, ehlo_reply=str(reply)
            )
        return Outcome.failed(
            f"The server rejected EHLO ({ehlo_reply}) and HELO ({reply}).",
            EhloKind.REJECTED,
            reply=reply,
            ehlo_reply=str(ehlo_reply),
            helo_reply=str(reply),
        )
    facts = probe.capability_facts()
    facts["esmtp"] = esmtp
    facts["server_name"] = reply.text.splitlines()[0].split(" ", 1)[0] if reply.text else ""
    if not esmtp:
        return Outcome.warning(
            f"The server refused EHLO ({ehlo_reply}) and only speaks HELO (no ESMTP): no STARTTLS, no AUTH.",
            EhloKind.HELO_ONLY,
            reply=ehlo_reply,
            **facts,
        )
    offered = ", ".join(facts["capabilities"]) or "no extensions"
    return Outcome.passed(f"EHLO accepted; the server offers {offered}.", **facts)
