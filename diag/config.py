"""One SMTP configuration to diagnose, and the schema that turns untrusted input into it.

`parse_config` is the single entry for the CLI, the HTTP API and Python callers: it checks types and
ranges and rejects CR, LF and NUL in every text field (SMTP command injection) before anything reaches a
socket. Problems come back all at once as a `ConfigError` naming each field.

What is well-formed but wrong (a host with a port in it, a malformed From address, a username without a
password, TLS mode against the port) is not a schema error: the runner's `config` stage reports it as a
finding with a cause and a fix, so people see it in the report beside everything else. `SmtpConfig` does
not validate either, so a Python caller that builds one by hand still gets the injection check there.

The schema is one table: each `SmtpConfig` field carries its row (type, limits, words, CLI flag, form
control) in its metadata; see diag/fields.py for what a row holds and who reads it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from diag.fields import (
    SCHEMA_KEY,
    Addresses,
    Choice,
    Cli,
    Field,
    Flag,
    Form,
    Needs,
    Pem,
    Port,
    Seconds,
    Text,
    encodable,
    row,
)
from diag.profiles import Profile, ProfileSpec, profile_of
from diag.secret import Secret

DEFAULT_TIMEOUT_S: Final = 10.0
MIN_TIMEOUT_S: Final = 0.1
MAX_TIMEOUT_S: Final = 120.0
MAX_DNS_SERVERS: Final = 8
# What EHLO says when no name is configured: the name Go's net/smtp sends by default (so the products it
# serves are diagnosed as they greet), and unlike the machine's host name it tells the server nothing.
DEFAULT_HELO_NAME: Final = "localhost"
# What EHLO may carry (RFC 5321 Domain / address-literal): anything else is refused by servers or libraries.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HELO_NAME: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$|^\[[0-9A-Fa-f:.]{{2,45}}\]$")


class TlsMode(StrEnum):
    AUTO = "auto"  # implicit TLS on 465, otherwise STARTTLS when offered
    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"


# The table: each field's metadata is its row (diag/fields.py says what a row holds). Adding a config field is
# one entry here plus the stage that reads it; parse_config, the OpenAPI document, the CLI's flags, the page's
# form and the config stage's re-check all follow from the row.
@dataclass(frozen=True, slots=True)
class SmtpConfig:
    # First on the form (kw_only lets a defaulted field come first). Python callers get `generic` (every knob,
    # today's behaviour); the page and the CLI default to `palette`, the product their users stand in front of
    # (diag/profiles.py says what each profile models).
    profile: Profile = field(default=Profile.GENERIC, kw_only=True, metadata=row(
        Choice(Profile), "Diagnose as",
        "Client profile: which product's form and SMTP client to diagnose as. palette and palette-vertex have "
        "only that form's fields (no TLS mode, no CA bundle) and behave as its Go client; generic has every "
        "setting.",
        people_default=Profile.PALETTE,
        cli=Cli("--profile", "diagnose as this client: palette (default), palette-vertex, or generic (every "
                "setting, needed for --tls-mode and --ca-file)", "server"),
        form=Form("select", row="profile", width="grow", options={
            Profile.PALETTE: "Palette",
            Profile.PALETTE_VERTEX: "Palette VerteX",
            Profile.GENERIC: "Generic SMTP client (every setting)",
        }),
    ))
    host: str = field(metadata=row(
        Text(strip=True), "Outgoing Server", "Outgoing server: a host name or IP address, without a port.",
        required=True,
        cli=Cli("--host", "SMTP server host name or IP address", "server"),
        form=Form("text", placeholder="smtp.example.com", row="server", width="grow"),
    ))
    port: int = field(metadata=row(
        Port(), "Outgoing Port", "Outgoing port (a whole number; a string of digits is accepted too).",
        required=True,
        cli=Cli("--port", "SMTP port (25, 465, 587, 2525...)", "server"),
        form=Form("number", placeholder="587", row="server", width="port"),
    ))
    from_email: str = field(metadata=row(
        Text(strip=True), "From Email", "The From address the application sends as.",
        required=True,
        cli=Cli("--from-email", "the From address the application sends as", "server"),
        form=Form("email", placeholder="noreply@example.com"),
    ))
    username: str | None = field(default=None, metadata=row(
        Text(), "Username", "SMTP username; leave out for anonymous SMTP.",
        cli=Cli("--username", "SMTP AUTH user name", "authentication"),
        form=Form("text", row="credentials", width="grow"),
    ))
    # No flag: a password on the command line ends up in shell history and `ps` (--password-stdin/-env).
    password: Secret | None = field(default=None, metadata=row(
        Text(secret=True), "Password", "SMTP password; never stored, logged or returned.",
        public=False,
        form=Form("password", row="credentials", width="grow", autocomplete="new-password", pair="username"),
    ))
    insecure_skip_tls_verify: bool = field(default=False, metadata=row(
        Flag(), "Insecure Skip TLS Verify", "Report certificate problems as warnings instead of failures.",
        cli=Cli("--insecure-skip-tls-verify",
                "do not fail on certificate problems (they are still checked and reported as warnings)", "TLS"),
        form=Form("checkbox", hint="Certificate problems become warnings. Prefer a CA bundle."),
    ))
    tls_mode: TlsMode = field(default=TlsMode.AUTO, metadata=row(
        Choice(TlsMode), "TLS mode", "auto: implicit TLS on 465, STARTTLS elsewhere.",
        cli=Cli("--tls-mode", "auto: implicit TLS on 465, STARTTLS elsewhere (default: auto)", "TLS"),
        form=Form("select", advanced=True, row="transport", width="grow", options={
            TlsMode.AUTO: "Auto (implicit TLS on 465, STARTTLS otherwise)",
            TlsMode.STARTTLS: "STARTTLS",
            TlsMode.IMPLICIT: "Implicit TLS (SMTPS)",
            TlsMode.NONE: "None (plaintext)",
        }),
    ))
    ca_bundle: str | None = field(default=None, metadata=row(
        Pem(), "CA bundle (PEM)", "PEM certificates to trust for this server (a private CA or a self-signed one).",
        public=False,
        cli=Cli("--ca-file", "PEM CA bundle to trust instead of the system CAs", "TLS", metavar="FILE",
                from_file=True),
        form=Form("textarea", placeholder="-----BEGIN CERTIFICATE-----", advanced=True),
    ))
    timeout_s: float = field(default=DEFAULT_TIMEOUT_S, metadata=row(
        Seconds(MIN_TIMEOUT_S, MAX_TIMEOUT_S, step=0.1), "Timeout (s)", "Timeout of each network step, in seconds.",
        cli=Cli("--timeout", f"per-step timeout in seconds (default: {DEFAULT_TIMEOUT_S:g})", "server"),
        form=Form("number", placeholder=f"{DEFAULT_TIMEOUT_S:g}", advanced=True, row="transport", width="port"),
    ))
    dns_servers: tuple[str, ...] = field(default=(), metadata=row(
        Addresses(MAX_DNS_SERVERS), "DNS servers",
        "Resolvers to ask instead of the system's (addresses as strings); each is vetted by the egress policy, "
        "and the field is refused unless the operator allows it (DIAG_ALLOW_CUSTOM_DNS).",
        cli=Cli("--dns-server", "resolver to ask (repeatable)", "server"),
    ))
    recipient: str | None = field(default=None, metadata=row(
        Text(strip=True), "Test recipient", "A test recipient for RCPT TO.",
        cli=Cli("--recipient", "test RCPT TO with this address", "envelope", metavar="R"),
        form=Form("email", placeholder="you@example.com", advanced=True),
    ))
    send_test_message: bool = field(default=False, metadata=row(
        Flag(), "Send a test message to the recipient",
        "Send a real test message (fixed text) to the recipient; refused unless the operator allows it "
        "(DIAG_ALLOW_SEND).",
        needs=Needs("recipient", "is required to send a test message"),
        cli=Cli("--send", "also send a real test message to --recipient", "envelope"),
        form=Form("checkbox", advanced=True, gate="allow_send", gate_env="DIAG_ALLOW_SEND",
                  denied_hint="Sending is off on this service: it would let anyone who can reach it send mail "
                  "through your SMTP servers. The recipient is still checked (RCPT TO) without sending. An "
                  "operator can turn sending on with"),
    ))
    helo_name: str | None = field(default=None, metadata=row(
        Text(pattern=HELO_NAME, pattern_message="must be a host name (ASCII letters, digits, hyphens, dots) or an "
             "address literal like [192.0.2.1]"),
        "HELO name",
        "The name to greet with in EHLO; refused unless the operator allows it (DIAG_ALLOW_CUSTOM_HELO).",
        cli=Cli("--helo-name", "name to send in EHLO (default: localhost, as Go's net/smtp sends)", "server"),
    ))

    def __post_init__(self) -> None:
        # Python callers build configs by hand (the README shows it): take the plain values they naturally
        # write ("none", a str password, a list of DNS servers) and refuse what no stage could use, rather
        # than let a stage crash on it. parse_config has already done this for the CLI and the API.
        for name, choices in (("tls_mode", TlsMode), ("profile", Profile)):
            value = getattr(self, name)
            if isinstance(value, choices):
                continue
            try:
                object.__setattr__(self, name, choices(value))
            except ValueError:
                allowed = ", ".join(c.value for c in choices)
                raise ValueError(f"{name} must be one of: {allowed}; got {str(value)[:40]!r}") from None
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        if not isinstance(self.dns_servers, tuple):
            object.__setattr__(self, "dns_servers", tuple(self.dns_servers))

    @property
    def anonymous(self) -> bool:
        return not self.username and not self.password

    @property
    def client(self) -> ProfileSpec:
        """The client profile's model: the product's fields and its client's behaviour."""
        return profile_of(self.profile)

    @property
    def effective_tls_mode(self) -> TlsMode:
        """What `auto` means for this port: implicit TLS on 465, STARTTLS elsewhere. A product profile has no
        TLS mode: its client picks by port as `auto` does (and goes plaintext when STARTTLS is not offered)."""
        if self.tls_mode is TlsMode.AUTO or self.client.is_product:
            return TlsMode.IMPLICIT if self.port == 465 else TlsMode.STARTTLS
        return self.tls_mode

    def public_dict(self) -> dict[str, Any]:
        """The config as reports show it: a field that is not public (the password) only as whether it was given."""
        out: dict[str, Any] = {}
        for f in CONFIG_FIELDS:
            value = getattr(self, f.name)
            if not f.public:
                out[f"{f.name}_set"] = bool(value)
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif isinstance(value, StrEnum):
                out[f.name] = value.value
            else:
                out[f.name] = value
        return out


def _table() -> tuple[Field, ...]:
    rows = []
    for f in dataclasses.fields(SmtpConfig):
        default = None if f.default is dataclasses.MISSING else f.default
        rows.append(dataclasses.replace(f.metadata[SCHEMA_KEY], name=f.name, default=default))
    return tuple(rows)


CONFIG_FIELDS: Final = _table()
FIELDS_BY_NAME: Final = {f.name: f for f in CONFIG_FIELDS}


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(slots=True)
class ConfigError(ValueError):
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)


TEXT_FIELDS: Final = tuple(f.name for f in CONFIG_FIELDS if isinstance(f.value, Text | Pem))
KNOWN_FIELDS: Final = frozenset(FIELDS_BY_NAME)


def parse_config(data: Mapping[str, Any]) -> SmtpConfig:
    """Build a config from untrusted input (JSON body, CLI flags). Raises ConfigError naming every bad field."""
    errors: list[FieldError] = []

    def bad(name: str, message: str) -> None:
        errors.append(FieldError(name, message))

    for name in sorted(set(data) - KNOWN_FIELDS, key=str):
        bad(_printable_name(name), "unknown field")

    values = {f.name: f.parse(data.get(f.name), bad) for f in CONFIG_FIELDS}
    for f in CONFIG_FIELDS:  # a flag that needs another field (send_test_message: recipient)
        needs = f.needs
        if needs and values[f.name] and values[needs.other] is None and needs.other not in {e.field for e in errors}:
            bad(needs.other, needs.message)

    if errors:
        raise ConfigError(errors)
    return SmtpConfig(**values)


def _printable_name(name: object) -> str:
    """An unknown field's name as an error can show it: bounded, and never a lone surrogate (which no JSON
    encoder or log line can write: such a name made the API answer 500)."""
    text = str(name)[:64]
    return text if encodable(text) else text.encode("utf-8", "backslashreplace").decode("ascii")


