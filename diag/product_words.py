"""Findings in a product's own words: under a product profile, a cause or fix names only that form's fields
("Outgoing Port", "Insecure Skip TLS Verify") and actions outside it (the mail server's admin, the cluster's
egress rules, the provider's console); never a CA bundle, a TLS mode or an SSL checkbox, and never skip-verify
on VerteX.

A kind listed here replaces, under the product profiles, all of the generic table's rows for that kind (its
variants included): so a variant added to diag/findings.py for such a kind needs its product wording here too.
A kind not listed keeps the generic rows, which then must not name a field the form lacks:
tests/diag/test_product_words.py renders every row under every profile and fails on one that does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from diag.kinds import STAGE_OF, AnyKind, AuthKind, ConfigKind, ConnectKind, EhloKind, Kind, MailFromKind, TlsKind
from diag.profiles import Profile

if TYPE_CHECKING:
    from diag.findings import Context


@dataclass(frozen=True, slots=True)
class Words:
    kind: Kind
    cause: str
    fix: str
    when: Callable[[Context], bool] | None = None
    # VerteX cannot skip verification: its fix where Palette's names Insecure Skip TLS Verify as a last resort.
    vertex_fix: str | None = None
    only: Profile | None = None  # None: both Palette profiles

    @property
    def key(self) -> tuple[str, Kind]:
        return STAGE_OF[type(self.kind)], self.kind


def _skip_verify(c: Context) -> bool:
    return c.config.insecure_skip_tls_verify



TLS_PORTS = "set the Outgoing Port to the server's TLS port (587 with STARTTLS, 465 for implicit TLS)"
SYSTEM_CAS = "the product trusts the system's CAs only and has no CA setting"
VERTEX_VERIFIES = "VerteX always checks the certificate (FIPS)"
LAST_RESORT = "Insecure Skip TLS Verify is only a last resort."

PALETTE_WORDS: Final[tuple[Words, ...]] = (
    # ---- config: settings the form does not have --------------------------------------------------------
    Words(
        ConfigKind.INVALID_CA_BUNDLE,
        "A CA certificate was given ({reply}), but the product has no such setting: it trusts the system's CAs "
        "only.",
        "Leave it out; have the mail server use a certificate from a CA the system trusts.",
    ),
    Words(
        ConfigKind.INVALID_HELO_NAME,
        "The name to greet the server with, {reply}, is not a host name: servers refuse it in EHLO.",
        "Leave it empty: the product greets as 'localhost', as Go's net/smtp does.",
    ),
    Words(
        ConfigKind.INSECURE_SKIP_VERIFY,
        "Insecure Skip TLS Verify is on: the server's certificate is not checked (neither its chain nor its "
        "name), so anyone in the network path could impersonate the server and read the credentials and mail.",
        f"Turn Insecure Skip TLS Verify off. If the server's certificate is self-signed or from a private CA, have "
        f"the mail server's admin install one from a CA the system trusts: {SYSTEM_CAS}.",
        only=Profile.PALETTE,
    ),
    Words(
        ConfigKind.INSECURE_SKIP_VERIFY,
        "Certificate verification was asked to be skipped, which Palette VerteX does not allow (FIPS): the "
        "product always checks the server's certificate.",
        "Have the mail server use a certificate from a CA the system trusts, for the name in Outgoing Server.",
        only=Profile.PALETTE_VERTEX,
    ),
    Words(
        ConfigKind.PORT_TLS_MISMATCH,
        "The Outgoing Port {port} and the way TLS is spoken on it do not match.",
        "The product speaks implicit TLS on port 465 and STARTTLS on any other port: use 465 only for a server "
        "that expects implicit TLS there, otherwise 587.",
    ),
    # ---- connect / ehlo -----------------------------------------------------------------------------------
    Words(
        ConnectKind.IMPLICIT_TLS_EXPECTED,
        "Port {port} on {host} expects implicit TLS (SMTPS): it stays silent for plaintext clients and answers a "
        "TLS handshake. The product speaks implicit TLS only on port 465, and plaintext/STARTTLS here.",
        "Set the Outgoing Port to 465 if the server speaks implicit TLS there, or to its STARTTLS port (587).",
    ),
    Words(
        EhloKind.REJECTED,
        "The server rejected both EHLO and HELO: {reply}.",
        "The product greets as 'localhost' (Go's net/smtp) and cannot change it: ask the mail server's admin to "
        "accept that greeting from the product's address, and check the server's logs for the reason.",
    ),
    # ---- tls ----------------------------------------------------------------------------------------------
    Words(
        TlsKind.STARTTLS_NOT_OFFERED,
        "The server does not offer STARTTLS on port {port}, so the product's Go client carries on in plaintext: "
        "mail, and the login unless it is CRAM-MD5, travel unencrypted.",
        f"Have the mail server's admin enable STARTTLS, or {TLS_PORTS}.",
        lambda c: not c.config.anonymous,
    ),
    Words(
        TlsKind.STARTTLS_NOT_OFFERED,
        "The server does not offer STARTTLS on port {port}, so the product's Go client carries on in plaintext: "
        "mail to it travels unencrypted.",
        f"Have the mail server's admin enable STARTTLS, or {TLS_PORTS}.",
    ),
    Words(
        TlsKind.PLAINTEXT_CREDENTIALS,
        "The session is plaintext: the username and password travel in clear text and anyone on the network "
        "path can read them.",
        f"Have the mail server's admin enable STARTTLS, or {TLS_PORTS}.",
    ),
    Words(
        TlsKind.NOT_TLS,
        "The product always speaks implicit TLS on port {port}, but {host} answers plaintext there: that port "
        "speaks plain SMTP with STARTTLS.",
        "Set the Outgoing Port to the server's STARTTLS port (usually 587), or have the mail server's admin "
        "enable implicit TLS on port 465.",
    ),
    Words(
        TlsKind.SELF_SIGNED,
        "The server's certificate is self-signed ({reply}). It is not trusted, so the product fails; Insecure "
        "Skip TLS Verify hides this, which is why the check still continued.",
        f"Have the mail server's admin install a certificate from a CA the system trusts ({SYSTEM_CAS}), then "
        "turn Insecure Skip TLS Verify off.",
        _skip_verify,
        only=Profile.PALETTE,
    ),
    Words(
        TlsKind.SELF_SIGNED,
        "The server's certificate is self-signed ({reply}), so nothing vouches for it and it is rejected.",
        f"Have the mail server's admin install a certificate from a public CA or one the system trusts: "
        f"{SYSTEM_CAS}. {LAST_RESORT}",
        vertex_fix=f"Have the mail server's admin install a certificate from a public CA or one the system "
        f"trusts: {SYSTEM_CAS}, and {VERTEX_VERIFIES}.",
    ),
    Words(
        TlsKind.UNKNOWN_ISSUER,
        "The certificate was issued by a CA the system does not trust ({reply}), typically a private/corporate "
        "CA or a server that does not send its intermediate certificate. Insecure Skip TLS Verify hides this, "
        "which is why the check still continued.",
        f"Have the mail server's admin send the full chain or use a certificate from a CA the system trusts "
        f"({SYSTEM_CAS}), then turn Insecure Skip TLS Verify off.",
        _skip_verify,
        only=Profile.PALETTE,
    ),
    Words(
        TlsKind.UNKNOWN_ISSUER,
        "The certificate was issued by a CA the system does not trust ({reply}): typically a private/corporate "
        "CA, or a server that does not send its intermediate certificate.",
        f"Have the mail server's admin send the full chain including intermediates, or use a certificate from a "
        f"CA the system trusts: {SYSTEM_CAS}. {LAST_RESORT}",
        vertex_fix=f"Have the mail server's admin send the full chain including intermediates, or use a "
        f"certificate from a CA the system trusts: {SYSTEM_CAS}, and {VERTEX_VERIFIES}.",
    ),
    Words(
        TlsKind.UNTRUSTED,
        "The certificate failed verification ({reply}).",
        f"Have the mail server's admin fix the certificate (see the facts for it): {SYSTEM_CAS}.",
    ),
    Words(
        TlsKind.HOSTNAME_MISMATCH,
        "The certificate is not valid for the name {host} ({reply}). Insecure Skip TLS Verify hides this, which "
        "is why the check still continued.",
        "Use a host name the certificate is for as the Outgoing Server, then turn Insecure Skip TLS Verify off.",
        _skip_verify,
        only=Profile.PALETTE,
    ),
    Words(
        TlsKind.HOSTNAME_MISMATCH,
        "The certificate is not valid for the name {host} ({reply}).",
        "Use a host name that the certificate lists as the Outgoing Server (connecting by IP address usually "
        "fails this check), or have the certificate reissued with {host}.",
    ),
    Words(
        TlsKind.EXPIRED,
        "The server's certificate has expired ({reply}). Insecure Skip TLS Verify hides this, which is why the "
        "check still continued.",
        "Have the mail server's admin renew the certificate, then turn Insecure Skip TLS Verify off.",
        _skip_verify,
        only=Profile.PALETTE,
    ),
    Words(
        TlsKind.EXPIRED,
        "The server's certificate has expired ({reply}).",
        "Have the mail server's admin renew the certificate (and check its automatic renewal). If the cluster "
        "nodes' clocks are wrong, fix them.",
    ),
    Words(
        TlsKind.NOT_YET_VALID,
        "The server's certificate is not valid yet ({reply}). Insecure Skip TLS Verify hides this.",
        "Check the clocks of the cluster nodes and the mail server; turn Insecure Skip TLS Verify off.",
        _skip_verify,
        only=Profile.PALETTE,
    ),
    Words(
        TlsKind.NOT_YET_VALID,
        "The server's certificate is not valid yet ({reply}): its start date is in the future, usually a clock "
        "problem.",
        "Check the cluster nodes' clocks (NTP) and the certificate's dates.",
    ),
    # ---- auth, mail_from ----------------------------------------------------------------------------------
    Words(
        AuthKind.TLS_REQUIRED,
        "The server refuses AUTH without TLS: {reply}.",
        f"Have the mail server's admin enable STARTTLS on port {{port}}, or {TLS_PORTS}.",
    ),
    Words(
        MailFromKind.TLS_REQUIRED,
        "The server accepts mail only over TLS ({reply}), and this session is plaintext.",
        f"Have the mail server's admin enable STARTTLS on port {{port}}, or {TLS_PORTS}.",
    ),
    # ---- any stage ----------------------------------------------------------------------------------------
    Words(
        AnyKind.TIMEOUT,
        "The server stopped answering during this step (no reply within the timeout).",
        "Retry; if it repeats, the server or a firewall stalls connections (check the server's load, any "
        "TLS-inspecting proxy and the cluster's egress rules). The product's Go client sets no read deadline: "
        "there Validate configuration may hang instead of failing.",
    ),
    Words(
        AnyKind.BUDGET_EXCEEDED,
        "The whole check ran out of its time budget.",
        "The server answers very slowly; retry. The product's Go client waits as long as the server takes.",
    ),
)


# Kinds a product profile cannot meet, because they need a setting its form lacks (a CA file), and the kind
# whose words stand for them should a hand-built config reach one anyway.
WORDED_AS: Final[dict[Kind, Kind]] = {
    TlsKind.CA_FILE_NOT_ROOT: TlsKind.UNKNOWN_ISSUER,
    TlsKind.CA_FILE_UNRELATED: TlsKind.UNKNOWN_ISSUER,
}


def _for(profile: Profile) -> dict[tuple[str, Kind], list[Words]]:
    table: dict[tuple[str, Kind], list[Words]] = {}
    for words in PALETTE_WORDS:
        if profile is Profile.PALETTE_VERTEX and words.vertex_fix is not None:
            words = Words(words.kind, words.cause, words.vertex_fix, words.when)
        if words.only not in (None, profile):
            continue
        table.setdefault(words.key, []).append(words)
    for kind, stand_in in WORDED_AS.items():
        table[STAGE_OF[type(kind)], kind] = table[STAGE_OF[type(stand_in)], stand_in]
    return table


TABLES: Final[dict[Profile, dict[tuple[str, Kind], list[Words]]]] = {
    Profile.PALETTE: _for(Profile.PALETTE),
    Profile.PALETTE_VERTEX: _for(Profile.PALETTE_VERTEX),
}


def rows_for(profile: Profile, key: tuple[str, Kind]) -> list[Words] | None:
    """The product's rows for a (stage, kind), or None: the generic rows apply."""
    table = TABLES.get(profile)
    return None if table is None else table.get(key)


def words_for(profile: Profile, key: tuple[str, Kind], ctx: Context) -> tuple[str, str] | None:
    """(cause, fix) unformatted in the profile's words, or None when the generic row's words stand."""
    rows = rows_for(profile, key)
    if rows is None:
        return None
    words = next(w for w in rows if w.when is None or w.when(ctx))
    return words.cause, words.fix
