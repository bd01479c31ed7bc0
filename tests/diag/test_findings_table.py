"""The findings table itself: well-formed rows, every emitted code covered, every code documented."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import get_args

import pytest

from diag import certs
from diag.config import SmtpConfig
from diag.findings import GENERIC_KINDS, ROWS, TABLE, Context, Row, finding_for, known_codes
from diag.report import STAGE_NAMES
from diag.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
STAGES_DIR = ROOT / "diag" / "stages"
DOCUMENTED_FIELDS = {"host", "port", "from_email", "username", "reply", "provider"}
# The generic kinds every conversation stage can end with (diag.probe's ProbeError kinds after a session
# is up, and the runner's own), emitted as "<stage>.<kind>".
CONVERSATION_STAGES = ("ehlo", "tls", "auth", "mail_from", "rcpt_to", "send")

# Every code the engine can emit, stage by stage. test_every_kind_in_the_stage_sources_is_listed keeps
# this honest against the sources.
EMITTED = {
    "config": {"invalid_host", "invalid_port", "invalid_from_email", "partial_credentials", "invalid_recipient",
               "invalid_helo_name", "invalid_ca_bundle", "forbidden_characters", "anonymous", "insecure_skip_verify",
               "port_tls_mismatch"},
    "dns": {"nxdomain", "no_address", "mail_domain_not_host", "servfail", "timeout", "policy_denied",
            "rate_limited"},
    "connect": {"refused", "timeout", "unreachable", "no_greeting", "implicit_tls_expected", "not_smtp",
                "closed_by_server", "greeting_rejected", "protocol_error"},
    "ehlo": {"rejected", "helo_only"},
    "tls": {"starttls_not_offered", "starttls_rejected", "plaintext_credentials", "expiring_soon",
            "old_protocol", *get_args(certs.TrustKind), *get_args(certs.HandshakeKind)},
    "auth": {"not_offered", "tls_required", "bad_credentials", "app_password_required",
             "mechanism_unsupported", "temporary", "failed"},
    "mail_from": {"auth_required", "tls_required", "sender_rejected", "syntax", "temporary", "rejected"},
    "rcpt_to": {"relay_denied", "unknown_recipient", "temporary", "rejected"},
    "send": {"too_large", "rejected", "temporary"},
}  # fmt: skip
# Codes one stage emits under another stage's name: the implicit TLS handshake happens in connect, an
# invalid DNS name is a config problem, and the tls stage repeats EHLO after STARTTLS.
CROSS_STAGE = {"tls.not_tls", "tls.handshake_failed", "config.invalid_host", "ehlo.rejected"}


def emitted_codes() -> set[str]:
    codes = {f"{stage}.{kind}" for stage, kinds in EMITTED.items() for kind in kinds}
    codes |= {f"{stage}.{kind}" for stage in CONVERSATION_STAGES for kind in GENERIC_KINDS}
    codes |= {f"{stage}.{kind}" for stage in ("config", "dns", "connect") for kind in ("budget_exceeded",
                                                                                         "internal_error")}
    return codes


def sample_config(**more: object) -> SmtpConfig:
    values: dict[str, object] = {"host": "smtp.example.com", "port": 587, "from_email": "alerts@example.com"}
    values.update(more)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_code_ends_with_a_plain_row() -> None:
    for code, rows in TABLE.items():
        assert rows[-1].when is None, f"{code}: the last row must be unconditional"
        assert all(row.when is not None for row in rows[:-1]), f"{code}: only the last row may be plain"


def test_rows_of_one_code_are_together() -> None:
    order = [row.code for row in ROWS]
    for code in TABLE:
        first, last = order.index(code), len(order) - 1 - order[::-1].index(code)
        assert set(order[first : last + 1]) == {code}, code


def test_codes_are_stage_dot_kind() -> None:
    stages = set(STAGE_NAMES) | {"any"}
    for code in known_codes():
        stage, _, kind = code.partition(".")
        assert stage in stages and re.fullmatch(r"[a-z][a-z0-9_]*", kind), code


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.code)
def test_every_row_uses_only_documented_fields(row: Row) -> None:
    for text in (row.cause, row.fix):
        assert placeholders(text) <= DOCUMENTED_FIELDS, (row.code, placeholders(text) - DOCUMENTED_FIELDS)
        formatted = text.format(
            host="h", port=1, from_email="f@e.example", username="u", reply='"550 x"', provider="p"
        )
        assert "{" not in formatted and "}" not in formatted, row.code
        assert formatted.strip() == formatted and formatted.endswith("."), row.code
        assert "  " not in formatted, row.code


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.code)
def test_every_conditional_row_can_be_chosen(row: Row) -> None:
    """A variant's condition must be reachable with some config or reply text, or the row is dead."""
    if row.when is None:
        return
    contexts = [
        Context(sample_config(port=port, insecure_skip_tls_verify=skip, **user), code, text, provider)
        for user in ({}, {"username": "alice", "password": Secret("x")})
        for port in (25, 465, 587)
        for skip in (False, True)
        for code, text in ((535, "5.7.139 SmtpClientAuthentication"), (550, "5.7.60 SendAsDenied"),
                           (554, "Email address is not verified"), (534, "5.7.14 Please log in via your web browser"),
                           (None, ""))
        for provider in (None, "gmail", "microsoft365", "amazon_ses", "sendgrid", "mailgun")
    ]  # fmt: skip
    assert any(row.when(ctx) for ctx in contexts), row.code


def test_every_emitted_code_has_a_row() -> None:
    config = sample_config()
    for code in sorted(emitted_codes() | CROSS_STAGE):
        stage, _, kind = code.partition(".")
        # Stages pass bare kinds for their own codes (generic ones included), full codes across stages.
        finding = finding_for(stage, code if code in CROSS_STAGE else kind, config, 550, "5.0.0 something")
        assert finding.code == code
        assert not finding.cause.startswith("Unclassified"), code


def test_generic_kinds_resolve_given_bare_or_as_full_codes() -> None:
    config = sample_config()
    for kind in GENERIC_KINDS:
        bare = finding_for("ehlo", kind, config)
        full = finding_for("tls", f"ehlo.{kind}", config)
        assert bare.code == full.code == f"ehlo.{kind}"
        assert bare.cause == full.cause and not bare.cause.startswith("Unclassified")


def test_unknown_codes_say_so() -> None:
    finding = finding_for("auth", "no_such_kind", sample_config(), 599, "x")
    assert finding.code == "auth.no_such_kind" and finding.cause.startswith("Unclassified failure")


def test_every_table_code_is_emitted_or_generic() -> None:
    """No dead rows: each code is emitted by some stage, or is the template for a generic kind."""
    emitted = emitted_codes() | CROSS_STAGE
    for code in known_codes():
        stage, _, kind = code.partition(".")
        if stage == "any":
            assert kind in GENERIC_KINDS, code
        else:
            assert code in emitted, f"{code} is in the table but no stage emits it"


def test_every_kind_in_the_stage_sources_is_listed() -> None:
    """Grep the stages for kind="..." and the kind functions' return values: each must be in EMITTED."""
    listed = {kind for kinds in EMITTED.values() for kind in kinds} | set(GENERIC_KINDS) | CROSS_STAGE
    found: set[str] = set()
    for source in STAGES_DIR.glob("*.py"):
        text = source.read_text()
        found |= set(re.findall(r'kind="([a-z_.]+)"', text))
        found |= set(re.findall(r'\breturn "([a-z_]+)"\s*$', text, flags=re.M))
        found |= set(re.findall(r'lookup\.kind, lookup\.detail = "([a-z_]+)"', text))
        for line in re.findall(r"^\s*kind = (.*)$", text, flags=re.M):  # kind = "a" if ... else "b"
            found |= set(re.findall(r'"([a-z_]+)"', line))
    found -= {"connect_error"}  # mapped to "unreachable" before it leaves the connect stage
    # The patterns still see each way the stages spell a kind (a direct kind=, a kind function, dns lookups).
    assert {"helo_only", "too_large", "sender_rejected", "app_password_required", "nxdomain"} <= found
    assert found <= listed, found - listed


def test_finding_texts_for_the_plain_rows_with_a_realistic_config() -> None:
    """Every plain row formatted for a real config: no empty quotes, no dangling '()'."""
    config = sample_config(username="alice@example.com", password=Secret("x"))
    for code in TABLE:
        stage = code.split(".", 1)[0]
        finding = finding_for(stage, code, config, 550, "5.7.1 Denied")
        for text in (finding.cause, finding.fix):
            assert "()" not in text and '""' not in text, (code, text)


def test_docs_quote_every_row_as_it_is() -> None:
    """docs/stages.md is written by hand from the table: each row's cause and fix must stand there verbatim."""
    doc = (ROOT / "docs" / "stages.md").read_text()
    stale = [row.code for row in ROWS if f"| {row.cause} | {row.fix} |" not in doc]
    assert not stale, f"docs/stages.md is out of date for: {stale}"


def test_every_code_is_documented() -> None:
    doc = (ROOT / "docs" / "stages.md").read_text()
    missing = sorted(code for code in known_codes() if f"`{code}`" not in doc)
    assert not missing, f"docs/stages.md does not mention: {missing}"
