"""Fixes in the product's own words: every finding row rendered under every profile names only settings the
profile's form has (issue 10, item 2). No peer is needed: these are the table's texts, rendered as a run
renders them (diag.findings.finding_for), for every row and every variant."""

from __future__ import annotations

import re

import pytest

from diag.config import SmtpConfig
from diag.findings import TABLE
from diag.kinds import Kind
from diag.product_words import PALETTE_WORDS, rows_for
from diag.profiles import Profile

# What a product profile's form does not have, and how texts name it.
NOT_ON_THE_FORM = re.compile(
    r"CA bundle|CA file|TLS mode|SSL/TLS|'SSL|\btick|HELO name|helo_name|tls_mode|ca_bundle|in smtp-diag set|"
    r"(raise|increase|set) the (per-step )?timeout",
    re.I,
)
SKIP_VERIFY = re.compile(r"skip[ -]?(tls[ -]?)?verif|InsecureSkipVerify", re.I)
VALUES = {"host": "smtp.example.com", "port": 587, "from_email": "alerts@example.com", "username": "alerts",
          "reply": '"550 5.7.1 denied"', "provider": "gmail"}  # fmt: skip


def rendered(profile: Profile) -> list[tuple[str, str, str]]:
    """(code, cause, fix) of every row, every variant, as the profile shows them."""
    out = []
    for key, generic in TABLE.items():
        rows = rows_for(profile, key) or generic
        for row in rows:
            code = f"{key[0]}.{key[1]}"
            out.append((code, row.cause.format(**VALUES), row.fix.format(**VALUES)))
    return out


@pytest.mark.parametrize("profile", [Profile.PALETTE, Profile.PALETTE_VERTEX])
def test_no_row_names_a_setting_the_product_form_lacks(profile: Profile) -> None:
    bad = [
        (code, match.group(0))
        for code, cause, fix in rendered(profile)
        for match in (NOT_ON_THE_FORM.search(cause + " " + fix),)
        if match and code != "config.not_in_profile"  # the one finding about such a setting names it
    ]
    assert not bad, f"under {profile}: {bad}"


def test_no_row_offers_skip_verify_under_vertex() -> None:
    bad = [code for code, cause, fix in rendered(Profile.PALETTE_VERTEX) if SKIP_VERIFY.search(cause + " " + fix)]
    assert not bad, bad


def test_generic_keeps_every_knob() -> None:
    """The generic profile keeps the generic table's words: CA bundle and TLS mode are its settings."""
    texts = " ".join(cause + fix for _, cause, fix in rendered(Profile.GENERIC))
    assert "CA bundle" in texts and "TLS mode" in texts


@pytest.mark.parametrize("profile", [Profile.PALETTE, Profile.PALETTE_VERTEX])
def test_every_product_kind_ends_with_a_plain_row(profile: Profile) -> None:
    for words in PALETTE_WORDS:
        rows = rows_for(profile, words.key)
        assert rows is not None and rows[-1].when is None, words.key
        assert all(r.when is not None for r in rows[:-1]), words.key


def _finding(profile: Profile, kind: Kind, stage: str, **config: object) -> tuple[str, str]:
    from diag.findings import finding_for

    values: dict[str, object] = {"host": "smtp.example.com", "port": 587, "from_email": "a@example.com"}
    values.update(config)
    finding = finding_for(stage, kind, SmtpConfig(profile=profile, **values), None, "x")  # type: ignore[arg-type]
    return finding.cause, finding.fix


def test_a_run_uses_the_profile_words() -> None:
    from diag.kinds import TlsKind

    generic = _finding(Profile.GENERIC, TlsKind.UNKNOWN_ISSUER, "tls")
    palette = _finding(Profile.PALETTE, TlsKind.UNKNOWN_ISSUER, "tls")
    assert "CA bundle" in generic[1] and "CA bundle" not in palette[1]
    assert "Insecure Skip TLS Verify" in palette[1]
    assert not SKIP_VERIFY.search(" ".join(_finding(Profile.PALETTE_VERTEX, TlsKind.UNKNOWN_ISSUER, "tls")))


def test_docs_quote_every_product_row_as_it_is() -> None:
    """docs/profiles.md quotes the product rows verbatim, as docs/stages.md quotes the generic ones."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text()
    stale = [
        (profile.value, words.key)
        for profile in (Profile.PALETTE, Profile.PALETTE_VERTEX)
        for words in PALETTE_WORDS
        for row in rows_for(profile, words.key) or []
        if f"| {profile.value} |" not in doc or f"| {row.cause} | {row.fix} |" not in doc
    ]
    assert not stale, f"docs/profiles.md is out of date for: {stale}"
