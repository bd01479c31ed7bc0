"""What can go wrong, as types: each stage's failure and warning kinds, one enum per stage.

A stage's `Outcome.kind` is a member of one of these enums, and the enum names the finding's stage: the
connect stage returns `TlsKind.NOT_TLS` for a plaintext answer to implicit TLS, and the finding is
`tls.not_tls`, because a finding is about what is wrong, not about where it was noticed. `AnyKind` is the
exception: its kinds can end any stage and take the name of the stage they end (`ehlo.timeout`), sharing
one row of the findings table (`any.timeout`).

The findings table (diag.findings) is keyed by these members; tests iterate the enums to prove that every
kind has a row and every row a kind, and docs/stages.md documents every code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ConfigKind(StrEnum):
    INVALID_HOST = "invalid_host"
    INVALID_PORT = "invalid_port"
    INVALID_FROM_EMAIL = "invalid_from_email"
    PARTIAL_CREDENTIALS = "partial_credentials"
    INVALID_RECIPIENT = "invalid_recipient"
    INVALID_CA_BUNDLE = "invalid_ca_bundle"
    INVALID_HELO_NAME = "invalid_helo_name"
    FORBIDDEN_CHARACTERS = "forbidden_characters"
    ANONYMOUS = "anonymous"
    INSECURE_SKIP_VERIFY = "insecure_skip_verify"
    PORT_TLS_MISMATCH = "port_tls_mismatch"
    NOT_IN_PROFILE = "not_in_profile"  # a setting the product's form lacks (diag/profiles.py)


class DnsKind(StrEnum):
    NXDOMAIN = "nxdomain"
    NO_ADDRESS = "no_address"
    MAIL_DOMAIN_NOT_HOST = "mail_domain_not_host"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    POLICY_DENIED = "policy_denied"
    RATE_LIMITED = "rate_limited"


class ConnectKind(StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BLOCKED = "blocked"  # EACCES/EPERM: a firewall or security policy on this machine said no
    NO_GREETING = "no_greeting"
    IMPLICIT_TLS_EXPECTED = "implicit_tls_expected"
    NOT_SMTP = "not_smtp"
    CLOSED_BY_SERVER = "closed_by_server"
    GREETING_REJECTED = "greeting_rejected"


class EhloKind(StrEnum):
    REJECTED = "rejected"
    HELO_ONLY = "helo_only"


class TlsKind(StrEnum):
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    STARTTLS_REJECTED = "starttls_rejected"
    PLAINTEXT_CREDENTIALS = "plaintext_credentials"
    NOT_TLS = "not_tls"
    HANDSHAKE_FAILED = "handshake_failed"
    SELF_SIGNED = "self_signed"
    UNKNOWN_ISSUER = "unknown_issuer"
    CA_FILE_NOT_ROOT = "ca_file_not_root"  # the CA file holds the issuing intermediate, not a root
    CA_FILE_UNRELATED = "ca_file_unrelated"  # nothing in the CA file issued the server's certificate
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNTRUSTED = "untrusted"
    EXPIRING_SOON = "expiring_soon"
    OLD_PROTOCOL = "old_protocol"


class AuthKind(StrEnum):
    NOT_OFFERED = "not_offered"
    TLS_REQUIRED = "tls_required"
    BAD_CREDENTIALS = "bad_credentials"
    APP_PASSWORD_REQUIRED = "app_password_required"  # noqa: S105 - a kind's name, not a password
    MECHANISM_UNSUPPORTED = "mechanism_unsupported"
    SMTP_AUTH_DISABLED = "smtp_auth_disabled"  # Microsoft 365: 535 5.7.139
    BASIC_AUTH_RETIRED = "basic_auth_retired"  # Microsoft 365: 550 5.7.30
    # Go profiles (diag/profiles.py): net/smtp's PLAIN refuses a plaintext connection before sending anything,
    # and gomail sends no AUTH at all when the server offers none.
    UNENCRYPTED_REFUSED = "unencrypted_refused"
    USERNAME_IGNORED = "username_ignored"
    BASIC_AUTH_ENDING = "basic_auth_ending"  # a warning: Microsoft 365 took the password, for now
    TEMPORARY = "temporary"
    FAILED = "failed"


class MailFromKind(StrEnum):
    """What is wrong with the sender or the client sending, whether MAIL FROM or RCPT TO says it (Postfix
    checks senders and clients at RCPT TO by default)."""

    AUTH_REQUIRED = "auth_required"
    TLS_REQUIRED = "tls_required"
    SENDER_REJECTED = "sender_rejected"
    CLIENT_REJECTED = "client_rejected"  # "Client host rejected": this machine's address, not the sender
    SEND_AS_UNPROVEN = "send_as_unproven"  # a warning: Microsoft 365 judges Send As only after DATA
    SYNTAX = "syntax"
    TEMPORARY = "temporary"
    REJECTED = "rejected"


class RcptToKind(StrEnum):
    RELAY_DENIED = "relay_denied"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    TEMPORARY = "temporary"
    REJECTED = "rejected"


class SendKind(StrEnum):
    TOO_LARGE = "too_large"
    SEND_AS_DENIED = "send_as_denied"  # the login may not send as the From (Microsoft 365: 554 5.2.252)
    SENDER_NOT_VERIFIED = "sender_not_verified"  # Amazon SES: the From is not a verified identity
    REJECTED = "rejected"
    TEMPORARY = "temporary"


class AnyKind(StrEnum):
    """Kinds that can end any stage: a session that stops answering, closes, or speaks no SMTP; the run's
    budget; a bug of ours."""

    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    PROTOCOL_ERROR = "protocol_error"
    BUDGET_EXCEEDED = "budget_exceeded"
    INTERNAL_ERROR = "internal_error"


Kind = (
    ConfigKind | DnsKind | ConnectKind | EhloKind | TlsKind | AuthKind | MailFromKind | RcptToKind | SendKind
    | AnyKind
)

# The stage whose vocabulary each enum is; "any" for the kinds every stage shares.
STAGE_OF: Final[dict[type[Kind], str]] = {
    ConfigKind: "config",
    DnsKind: "dns",
    ConnectKind: "connect",
    EhloKind: "ehlo",
    TlsKind: "tls",
    AuthKind: "auth",
    MailFromKind: "mail_from",
    RcptToKind: "rcpt_to",
    SendKind: "send",
    AnyKind: "any",
}


def code_of(stage: str, kind: Kind) -> str:
    """The finding code "<stage>.<kind>": the kind's own stage, or the stage it ended for AnyKind."""
    owner = STAGE_OF[type(kind)]
    return f"{stage if owner == 'any' else owner}.{kind.value}"
