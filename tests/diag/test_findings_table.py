"""The findings table itself: well-formed rows, every emitted code covered, every code documented."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from diag.config import SmtpConfig
from diag.findings import ROWS, TABLE, Context, Row, finding_for, known_codes
from diag.kinds import STAGE_OF, AnyKind, Kind
from diag.report import STAGE_NAMES
from diag.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_FIELDS = {"host", "port", "from_email", "username", "reply", "provider"}
STAGE_KINDS = {enum: stage for enum, stage in STAGE_OF.items() if enum is not AnyKind}


def emittable() -> list[tuple[str, Kind]]:
    """Every (stage, kind) a stage can return, by the types (Outcome.kind is a Kind): each stage's own
    kinds under its name, and the kinds any stage can end with under every stage's name."""
    own = [(stage, kind) for enum, stage in STAGE_KINDS.items() for kind in enum]
    return own + [(stage, kind) for stage in STAGE_NAMES for kind in AnyKind]


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
    for code in known_codes():
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
                           (None, "No route to host"), (None, ""))
        for provider in (None, "gmail", "microsoft365", "amazon_ses", "sendgrid", "mailgun")
    ]  # fmt: skip
    assert any(row.when(ctx) for ctx in contexts), row.code


def test_every_kind_has_a_row() -> None:
    """Every kind a stage can return finds its own row (AnyKind: the shared one) under its own code."""
    config = sample_config()
    for stage, kind in emittable():
        finding = finding_for(stage, kind, config, 550, "5.0.0 something")
        owner = STAGE_OF[type(kind)]
        assert finding.code == f"{stage if owner == 'any' else owner}.{kind}"
        assert finding.cause and finding.fix


def test_every_row_is_a_kind_some_stage_returns() -> None:
    """No dead rows: each row is keyed by a member of a stage's kinds, or of the kinds every stage shares."""
    for row in ROWS:
        assert type(row.kind) in STAGE_OF, row
        assert row.key == (STAGE_OF[type(row.kind)], row.kind)
    assert {key for key in TABLE} == {(STAGE_OF[type(k)], k) for _, k in emittable()}


def test_kinds_of_different_stages_sharing_a_name_have_their_own_rows() -> None:
    from diag.kinds import ConnectKind, DnsKind

    config = sample_config()
    assert finding_for("dns", DnsKind.TIMEOUT, config).code == "dns.timeout"
    assert finding_for("connect", ConnectKind.TIMEOUT, config).code == "connect.timeout"
    assert finding_for("ehlo", AnyKind.TIMEOUT, config).code == "ehlo.timeout"
    assert finding_for("dns", DnsKind.TIMEOUT, config).cause != finding_for("ehlo", AnyKind.TIMEOUT, config).cause


def test_finding_texts_for_the_plain_rows_with_a_realistic_config() -> None:
    """Every plain row formatted for a real config: no empty quotes, no dangling '()'."""
    config = sample_config(username="alice@example.com", password=Secret("x"))
    for stage, kind in TABLE:
        finding = finding_for("ehlo" if stage == "any" else stage, kind, config, 550, "5.7.1 Denied")
        for text in (finding.cause, finding.fix):
            assert "()" not in text and '""' not in text, (finding.code, text)


def test_docs_quote_every_row_as_it_is() -> None:
    """docs/stages.md is written by hand from the table: each row's cause and fix must stand there verbatim."""
    doc = (ROOT / "docs" / "stages.md").read_text()
    stale = [row.code for row in ROWS if f"| {row.cause} | {row.fix} |" not in doc]
    assert not stale, f"docs/stages.md is out of date for: {stale}"


def test_every_code_is_documented() -> None:
    doc = (ROOT / "docs" / "stages.md").read_text()
    missing = sorted(code for code in known_codes() if f"`{code}`" not in doc)
    assert not missing, f"docs/stages.md does not mention: {missing}"
