"""The `config` stage: is the configuration well-formed and safe, before anything touches the network?

Schema errors (types, ranges, CR/LF/NUL) are stopped earlier by parse_config with a field error. This stage
also re-checks, from the same field table, the text that can reach the SMTP socket (CR/LF/NUL) and the HELO
name's shape, so a config built by hand in Python can never reach a socket with them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from diag.certs import ca_bundle_problem
from diag.config import CONFIG_FIELDS, FIELDS_BY_NAME, SmtpConfig, TlsMode
from diag.fields import FORBIDDEN_CHARACTERS, Text
from diag.kinds import ConfigKind, Kind
from diag.profiles import profile_field_problems
from diag.secret import Secret
from diag.stages.base import Outcome, RunContext

HOST_LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# Deliberately simple: one @, a local part without spaces or angle brackets, a dotted domain (or localhost).
EMAIL: Final = re.compile(r"^[^\s@<>()\[\],;:\"]+@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])$")


def host_problem(host: str) -> str | None:
    """Why `host` is not a host name or IP literal, in words for the person who typed it; None when fine."""
    if not host:
        return "it is empty"
    if "://" in host:
        return "it contains a scheme such as smtp://; enter only the host name"
    if "@" in host:
        return "it looks like an e-mail address; enter the SMTP server's host name"
    if any(c.isspace() for c in host):
        return "it contains spaces"
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[^:]+:\d+", host):
        return "it contains a port; put the port in the port field"
    name = host[:-1] if host.endswith(".") else host
    if not name.isascii():  # an internationalised name (bücher.example) is fine in its ASCII (IDNA) form
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return "it is not a valid internationalised host name"
    if len(name) > 253 or not all(HOST_LABEL.match(label) for label in name.split(".")):
        return "it is not a valid host name (letters, digits, hyphens and dots only)"
    return None


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    facts: dict[str, Any] = {
        "profile": config.profile.value,
        "anonymous": config.anonymous,
        "tls_mode": config.tls_mode.value,
        "effective_tls_mode": config.effective_tls_mode.value,
        "insecure_skip_tls_verify": config.insecure_skip_tls_verify,
    }
    failure = _failure(config)
    if failure is not None:
        kind, detail, summary = failure
        return Outcome.failed(summary, kind, detail=detail, **facts)

    warnings: list[tuple[Kind, str | None]] = []  # (kind, detail), most likely to break things first
    mismatch = (config.port == 465 and config.tls_mode in (TlsMode.STARTTLS, TlsMode.NONE)) or (
        config.port in (25, 587) and config.tls_mode is TlsMode.IMPLICIT
    )
    if mismatch:
        warnings.append((ConfigKind.PORT_TLS_MISMATCH, config.tls_mode.value))
    if config.insecure_skip_tls_verify:
        warnings.append((ConfigKind.INSECURE_SKIP_VERIFY, ""))
    if config.anonymous:
        warnings.append((ConfigKind.ANONYMOUS, ""))
    if not warnings:
        auth = "authenticated" if not config.anonymous else "anonymous"
        return Outcome.passed(
            f"Configuration is well-formed ({auth}, TLS mode {config.tls_mode.value}).", **facts
        )

    first, warning_detail = warnings[0]
    names: dict[Kind, str] = {
        ConfigKind.PORT_TLS_MISMATCH: "TLS mode does not match the port",
        ConfigKind.INSECURE_SKIP_VERIFY: "certificate verification is off",
        ConfigKind.ANONYMOUS: "anonymous SMTP (no username and password)",
    }
    summary = "Configuration works but: " + "; ".join(names[k] for k, _ in warnings) + "."
    return Outcome.warning(summary, first, detail=warning_detail, also=warnings[1:], **facts)


def _failure(config: SmtpConfig) -> tuple[ConfigKind, str, str] | None:
    for f in CONFIG_FIELDS:
        if not f.value.reaches_smtp:
            continue  # PEM text is multi-line by nature and never reaches the SMTP socket
        value = getattr(config, f.name)
        text = value.reveal() if isinstance(value, Secret) else value
        texts = text if isinstance(text, tuple) else (text,)
        if any(isinstance(t, str) and FORBIDDEN_CHARACTERS.search(t) for t in texts):
            return (
                ConfigKind.FORBIDDEN_CHARACTERS,
                f.name,
                f"The {f.name} field contains CR, LF or NUL characters; nothing was sent.",
            )
    # A setting the product's form lacks would make the verdict one the product can never reach.
    lacking = profile_field_problems(config.profile, {f.name: getattr(config, f.name) for f in CONFIG_FIELDS})
    if lacking:
        name, message = next(iter(lacking.items()))
        return (ConfigKind.NOT_IN_PROFILE, FIELDS_BY_NAME[name].label, f"{FIELDS_BY_NAME[name].label} {message}.")
    problem = host_problem(config.host)
    if problem:
        return (ConfigKind.INVALID_HOST, repr(config.host)[:100], f"Outgoing server {config.host!r:.100}: {problem}.")
    if not 1 <= config.port <= 65535:
        return (ConfigKind.INVALID_PORT, str(config.port), f"Port {config.port} is outside 1-65535.")
    if not EMAIL.match(config.from_email):
        return (
            ConfigKind.INVALID_FROM_EMAIL,
            repr(config.from_email)[:100],
            f"From email {config.from_email!r:.100} is not a plain address like name@example.com.",
        )
    if bool(config.username) != bool(config.password):
        given = "username without a password" if config.username else "password without a username"
        return (ConfigKind.PARTIAL_CREDENTIALS, given, f"A {given} is set; give both or neither.")
    if config.send_test_message and not config.recipient:
        return (ConfigKind.INVALID_RECIPIENT, "", "Sending a test message needs a test recipient.")
    if config.recipient and not EMAIL.match(config.recipient):
        return (
            ConfigKind.INVALID_RECIPIENT,
            repr(config.recipient)[:100],
            f"Test recipient {config.recipient!r:.100} is not a plain address.",
        )
    if config.ca_bundle is not None:
        problem = ca_bundle_problem(config.ca_bundle)
        if problem is not None:
            return (ConfigKind.INVALID_CA_BUNDLE, problem, f"The CA bundle cannot be used: {problem}.")
    if config.helo_name and _shape_problem("helo_name", config.helo_name):
        return (
            ConfigKind.INVALID_HELO_NAME,
            repr(config.helo_name)[:100],
            f"HELO name {config.helo_name!r:.100} is not a host name or address literal.",
        )
    return None


def _shape_problem(name: str, value: str) -> bool:
    """Whether `value` breaks the shape its row in the field table asks for (the check parse_config makes)."""
    kind = FIELDS_BY_NAME[name].value
    return isinstance(kind, Text) and kind.pattern is not None and not kind.pattern.match(value)
