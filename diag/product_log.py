"""What the product would log: for a failure under a Go profile, the error text its client (gomail v2 over
net/smtp, crypto/tls, crypto/x509) would write, with this run's host, address, port and reply filled in, so
an engineer can match it with the product's container logs.

The texts are Go's own (sources in /docs/profiles.md: src/net/smtp, src/crypto/x509/verify.go, crypto/tls
common.go, go-gomail/gomail smtp.go and send.go). gomail returns dial, TLS and AUTH errors unwrapped and
wraps MAIL/RCPT/DATA errors as "gomail: could not send email 1: ...". Where Go would write nothing (it sets
no read deadline, so a silent server makes it hang, or the check is smtp-diag's own) there is no line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from diag.config import SmtpConfig

# How every sink introduces the line: it is Go's text as the product would write it, not a quote of its logs.
LEAD: Final = "The product's logs would show something like"
SEND_PREFIX: Final = "gomail: could not send email 1: "
X509: Final = "tls: failed to verify certificate: x509: "
UNKNOWN_AUTHORITY: Final = X509 + "certificate signed by unknown authority"
# Go's errno strings (syscall.Errno.Error) for what the kernel said, by the words Python's strerror uses.
ERRNO_WORDS: Final = (
    ("no route", "no route to host"),
    ("network is unreachable", "network is unreachable"),
    ("permission denied", "permission denied"),
    ("not permitted", "operation not permitted"),
)


def go_address(address: str, port: int) -> str:
    """host:port as Go's net package writes it (IPv6 in brackets)."""
    try:
        bracket = ipaddress.ip_address(address).version == 6
    except ValueError:
        bracket = False
    return f"[{address}]:{port}" if bracket else f"{address}:{port}"


def product_log_line(
    code: str, config: SmtpConfig, facts: Mapping[str, Any], reply_code: int | None, detail: str | None
) -> str | None:
    """The line the product's Go client would log for the finding `code`, or None when it would log none (or
    the profile is not a Go one)."""
    if not config.client.go_client:
        return None
    stage, _, kind = code.partition(".")
    reply = f"{reply_code} {detail or ''}".strip() if reply_code else None
    host = config.host
    if stage == "dns":
        return _dns(kind, host, facts)
    if stage == "connect":
        return _connect(kind, config, facts, detail, reply)
    if stage == "tls":
        return _tls(kind, host, facts, reply)
    if stage in ("ehlo", "auth"):
        if kind == "unencrypted_refused":
            return "unencrypted connection"  # net/smtp PlainAuth, before anything is sent
        if kind == "disconnected":
            return "EOF"
        return reply
    if stage in ("mail_from", "rcpt_to", "send"):
        if kind == "disconnected":
            return SEND_PREFIX + "EOF"
        return SEND_PREFIX + reply if reply else None
    return None  # config: the product's form; timeouts: Go has no read deadline and hangs


def _dns(kind: str, host: str, facts: Mapping[str, Any]) -> str | None:
    resolver = facts.get("resolver")
    on = f" on {go_address(resolver[0], 53)}" if isinstance(resolver, list) and resolver else ""
    words = {
        "nxdomain": "no such host",
        "no_address": "no such host",
        "mail_domain_not_host": "no such host",
        "servfail": "server misbehaving",
        "timeout": "i/o timeout",
    }.get(kind)
    return f"dial tcp: lookup {host}{on}: {words}" if words else None


def _connect(
    kind: str, config: SmtpConfig, facts: Mapping[str, Any], detail: str | None, reply: str | None
) -> str | None:
    attempts = facts.get("attempts")
    address = next(iter(attempts), config.host) if isinstance(attempts, Mapping) and attempts else config.host
    dial = f"dial tcp {go_address(str(address), config.port)}: "
    if kind == "refused":
        return dial + "connect: connection refused"
    if kind == "timeout":
        return dial + "i/o timeout"  # gomail's 10 s DialTimeout
    if kind in ("unreachable", "blocked"):
        said = (detail or "").lower()
        words = next((go for py, go in ERRNO_WORDS if py in said), None)
        return dial + "connect: " + (words or ("permission denied" if kind == "blocked" else "no route to host"))
    if kind in ("closed_by_server", "implicit_tls_expected"):
        # A plaintext client on an implicit-TLS port waits for a greeting until the server gives up on its
        # handshake and closes: the read ends in EOF.
        return "EOF"
    if kind == "greeting_rejected":
        return reply
    return None


def _tls(kind: str, host: str, facts: Mapping[str, Any], reply: str | None) -> str | None:
    if kind == "not_tls":
        return "tls: first record does not look like a TLS handshake"
    if kind in ("self_signed", "unknown_issuer", "untrusted"):
        return UNKNOWN_AUTHORITY
    if kind == "hostname_mismatch":
        return X509 + _hostname_error(host, [str(n) for n in facts.get("certificate_sans") or []])
    if kind in ("expired", "not_yet_valid"):
        bound = facts.get("certificate_not_after" if kind == "expired" else "certificate_not_before")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        relation = "after" if kind == "expired" else "before"
        tail = f": current time {now} is {relation} {bound}" if bound else ""
        return X509 + "certificate has expired or is not yet valid" + tail
    if kind == "starttls_rejected":
        return reply
    if kind == "handshake_failed":
        return "remote error: tls: handshake failure"
    return None


def _hostname_error(host: str, sans: list[str]) -> str:
    """crypto/x509 HostnameError.Error(): IP SANs for an IP host, DNS names otherwise."""
    names = [n.removeprefix("DNS:").removeprefix("IP:").strip() for n in sans]
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    valid = [n for n in names if _is_ip(n) == is_ip]
    if is_ip and not valid:
        return f"cannot validate certificate for {host} because it doesn't contain any IP SANs"
    if not valid:
        return f"certificate is not valid for any names, but wanted to match {host}"
    return f"certificate is valid for {', '.join(valid)}, not {host}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
