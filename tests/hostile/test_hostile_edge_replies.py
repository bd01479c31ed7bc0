"""Hostile peers the engine once classified wrong: reply codes that are no SMTP codes (999 was read as a
refused session, or a timeout after the HELO fallback), and a 220 to STARTTLS that the TLS handshake never
follows (was a bare "no reply" timeout)."""

from __future__ import annotations

import pytest

from diag.config import TlsMode
from fake_smtp import FakeSMTP
from tests import peer as hostile
from tests.hostile.test_hostile_servers import Case, assert_stopped_at, check_bounds, healthy, run_against

EDGE_REPLIES: dict[str, Case] = {
    # 999 is no SMTP reply code (the first digit is 2 to 5): a broken peer, not a refusal of the session.
    "greeting 999": Case(hostile.says(b"999 what\r\n"), "connect", "connect.protocol_error", 1),
    "EHLO reply 999": Case(hostile.invalid_ehlo_reply(b"999 what"), "ehlo", "ehlo.protocol_error", 2),
}

# A server that sends plaintext in the same packet as its 220 to STARTTLS: either TLS finding is right;
# "no reply to STARTTLS within the timeout" is not, as the reply did come (and so did data before TLS).
INJECTED = Case(
    hostile.starttls_220_and_plaintext_at_once, "tls", "tls.not_tls", 3, {"tls_mode": TlsMode.STARTTLS}
)


@pytest.mark.parametrize("name", list(EDGE_REPLIES))
async def test_reply_codes_outside_2xx_5xx_are_protocol_errors(name: str, fake_smtp: FakeSMTP) -> None:
    case = EDGE_REPLIES[name]
    report, _, _ = await run_against(case)
    assert_stopped_at(report, case.stage, {case.code})
    check_bounds(case, report)
    await healthy(fake_smtp)


async def test_plaintext_in_the_starttls_reply_packet_is_not_a_timeout(fake_smtp: FakeSMTP) -> None:
    report, _, _ = await run_against(INJECTED)
    assert_stopped_at(report, "tls", {"tls.not_tls", "tls.handshake_failed"})
    check_bounds(INJECTED, report)
    await healthy(fake_smtp)
