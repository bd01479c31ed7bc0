"""Client profiles: which settings a product's form has, and how its SMTP client behaves.

`generic` is smtp-diag with every knob (TLS mode, CA bundle...). `palette` and `palette-vertex` diagnose as
Palette's system console validates: its form has only Outgoing Server, Outgoing Port, From Email, Username,
Password and (not on VerteX) Insecure Skip TLS Verify, and its client is a Go one. Palette's mail library is
not public; we model the common Go path, gomail v2 over net/smtp (facts and sources: docs/profiles.md):

- port 465: implicit TLS; any other port: STARTTLS when the server offers it, plaintext when it does not;
- the system's trust store; Insecure Skip TLS Verify is Go's InsecureSkipVerify (VerteX: cannot be on, FIPS);
- AUTH only when a username is set, and only when the server offers AUTH (else silently none); the mechanism
  CRAM-MD5 when offered, else LOGIN when offered without PLAIN, else PLAIN; net/smtp's PLAIN refuses a
  plaintext connection to a host other than localhost ("unencrypted connection"), before sending anything;
- a 10 s dial timeout (net.DialTimeout in gomail's Dialer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Profile(StrEnum):
    GENERIC = "generic"
    PALETTE = "palette"
    PALETTE_VERTEX = "palette-vertex"


# The fields of smtp-diag's own (not the product's): what the check does, not how the product is set up.
DIAGNOSTIC_FIELDS: Final = frozenset(
    {"profile", "timeout_s", "dns_servers", "recipient", "send_test_message", "helo_name"}
)
PALETTE_FORM: Final = ("host", "port", "from_email", "username", "password", "insecure_skip_tls_verify")
# What net/smtp's PlainAuth accepts as "local" (src/net/smtp/auth.go isLocalhost): PLAIN in clear is allowed there.
GO_LOCALHOST_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
GO_DIAL_TIMEOUT_S: Final = 10.0  # gomail v2 Dialer.Dial: net.DialTimeout("tcp", addr, 10*time.Second)


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    name: Profile
    title: str  # how the report and the docs name it
    form_name: str  # the product's settings screen, as its users call it
    form: tuple[str, ...] | None  # the product form's fields (config field names); None: every field (generic)
    go_client: bool  # gomail v2 over net/smtp: TLS by port, its AUTH pick, its refusals, its error texts
    skip_verify_allowed: bool = True

    @property
    def is_product(self) -> bool:
        return self.form is not None

    def has_field(self, name: str) -> bool:
        return self.form is None or name in self.form or name in DIAGNOSTIC_FIELDS

    @property
    def dial_timeout_s(self) -> float | None:
        return GO_DIAL_TIMEOUT_S if self.go_client else None


PROFILES: Final[dict[Profile, ProfileSpec]] = {
    Profile.GENERIC: ProfileSpec(
        Profile.GENERIC, "generic SMTP client (every smtp-diag setting)", "smtp-diag", None, False
    ),
    Profile.PALETTE: ProfileSpec(
        Profile.PALETTE, "Palette (Go client: gomail v2 over net/smtp)", "Palette's SMTP settings", PALETTE_FORM, True
    ),
    Profile.PALETTE_VERTEX: ProfileSpec(
        Profile.PALETTE_VERTEX,
        "Palette VerteX (Go client: gomail v2 over net/smtp; TLS verification cannot be skipped, FIPS)",
        "Palette VerteX's SMTP settings",
        PALETTE_FORM[:-1],
        True,
        skip_verify_allowed=False,
    ),
}


def profile_of(name: Profile | str) -> ProfileSpec:
    return PROFILES[Profile(name)]


def gomail_auth_pick(offered: Sequence[str]) -> str | None:
    """The mechanism gomail v2 picks from the server's AUTH list (smtp.go, Dialer.Dial); None: no AUTH offered,
    so gomail sends none and says nothing."""
    upper = {m.upper() for m in offered}
    if not upper:
        return None
    if "CRAM-MD5" in upper:
        return "CRAM-MD5"
    if "LOGIN" in upper and "PLAIN" not in upper:
        return "LOGIN"
    return "PLAIN"


def go_refuses_plain(host: str, tls_active: bool) -> bool:
    """net/smtp's PlainAuth: "unencrypted connection" when not TLS and the server name is not localhost."""
    return not tls_active and host.lower() not in GO_LOCALHOST_NAMES


# Why a field the profile lacks cannot be set, in words for the person who set it (the input problem and the
# config stage's finding say the same).
_MISSING_WHY: Final = {
    "tls_mode": "its client picks TLS by port (465: implicit TLS; otherwise STARTTLS when the server offers it)",
    "ca_bundle": "its client trusts the system's CAs only",
    "insecure_skip_tls_verify": "TLS verification cannot be skipped there (FIPS)",
}


def profile_field_problems(profile: Profile | str, given: dict[str, object]) -> dict[str, str]:
    """Fields set in `given` that the profile's form lacks, each with why: {field name: message}. A value
    counts as set when it is neither empty nor the field's neutral value (TLS mode auto, a flag off)."""
    spec = profile_of(profile)
    problems: dict[str, str] = {}
    for name, value in given.items():
        if spec.has_field(name) or value in (None, "", False, "auto"):
            continue
        why = _MISSING_WHY.get(name, "the form has no such field")
        problems[name] = f"is not a setting of {spec.form_name}: {why}; choose the generic profile to set it"
    return problems
