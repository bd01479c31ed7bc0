"""One SMTP configuration to diagnose, and the schema that turns untrusted input into it.

`parse_config` is the single entry for the CLI, the HTTP API and Python callers: it checks types and
ranges and rejects CR, LF and NUL in every text field (SMTP command injection) before anything reaches a
socket. Problems come back all at once as a `ConfigError` naming each field.

What is well-formed but wrong (a host with a port in it, a malformed From address, a username without a
password, TLS mode against the port) is not a schema error: the runner's `config` stage reports it as a
finding with a cause and a fix, so people see it in the report beside everything else. `SmtpConfig` does
not validate either, so a Python caller that builds one by hand still gets the injection check there.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from diag.secret import Secret

FORBIDDEN_CHARACTERS: Final = re.compile(r"[\r\n\x00]")
MAX_FIELD_LENGTH: Final = 1024
MAX_CA_BUNDLE_LENGTH: Final = 256 * 1024
DEFAULT_TIMEOUT_S: Final = 10.0
# What EHLO says when no name is configured: the name Go's net/smtp sends by default (so the products it
# serves are diagnosed as they greet), and unlike the machine's host name it tells the server nothing.
DEFAULT_HELO_NAME: Final = "localhost"
MAX_TIMEOUT_S: Final = 120.0
# What EHLO may carry (RFC 5321 Domain / address-literal): anything else is refused by servers or libraries.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HELO_NAME: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$|^\[[0-9A-Fa-f:.]{{2,45}}\]$")


class TlsMode(StrEnum):
    AUTO = "auto"  # implicit TLS on 465, otherwise STARTTLS when offered
    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    from_email: str
    username: str | None = None
    password: Secret | None = None
    insecure_skip_tls_verify: bool = False
    tls_mode: TlsMode = TlsMode.AUTO
    ca_bundle: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    dns_servers: tuple[str, ...] = ()
    recipient: str | None = None
    send_test_message: bool = False
    helo_name: str | None = None

    def __post_init__(self) -> None:
        # Python callers build configs by hand (the README shows it): take the plain values they naturally
        # write ("none", a str password, a list of DNS servers) and refuse what no stage could use, rather
        # than let a stage crash on it. parse_config has already done this for the CLI and the API.
        if not isinstance(self.tls_mode, TlsMode):
            try:
                object.__setattr__(self, "tls_mode", TlsMode(self.tls_mode))
            except ValueError:
                allowed = ", ".join(m.value for m in TlsMode)
                raise ValueError(f"tls_mode must be one of: {allowed}; got {str(self.tls_mode)[:40]!r}") from None
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        if not isinstance(self.dns_servers, tuple):
            object.__setattr__(self, "dns_servers", tuple(self.dns_servers))

    @property
    def anonymous(self) -> bool:
        return not self.username and not self.password

    @property
    def effective_tls_mode(self) -> TlsMode:
        """What `auto` means for this port: implicit TLS on 465, STARTTLS elsewhere."""
        if self.tls_mode is TlsMode.AUTO:
            return TlsMode.IMPLICIT if self.port == 465 else TlsMode.STARTTLS
        return self.tls_mode

    def public_dict(self) -> dict[str, Any]:
        """The config as reports show it: the password never, only whether one was given."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "password":
                out["password_set"] = bool(value)
            elif f.name == "ca_bundle":
                out["ca_bundle_set"] = bool(value)
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif isinstance(value, TlsMode):
                out[f.name] = value.value
            else:
                out[f.name] = value
        return out


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


TEXT_FIELDS: Final = ("host", "from_email", "username", "password", "ca_bundle", "recipient", "helo_name")
KNOWN_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(SmtpConfig))


def parse_config(data: Mapping[str, Any]) -> SmtpConfig:
    """Build a config from untrusted input (JSON body, CLI flags). Raises ConfigError naming every bad field."""
    errors: list[FieldError] = []

    def bad(name: str, message: str) -> None:
        errors.append(FieldError(name, message))

    for name in sorted(set(data) - KNOWN_FIELDS, key=str):
        bad(_printable_name(name), "unknown field")

    def text(name: str, *, required: bool = False, limit: int = MAX_FIELD_LENGTH) -> str | None:
        value = data.get(name)
        if value is None or value == "":
            if required:
                bad(name, "is required")
            return None
        if not isinstance(value, str):
            bad(name, "must be a string")
            return None
        if FORBIDDEN_CHARACTERS.search(value):
            bad(name, "must not contain CR, LF or NUL characters (SMTP command injection)")
            return None
        if len(value) > limit:
            bad(name, f"must be at most {limit} characters")
            return None
        if not _encodable(value):
            bad(name, "must be valid Unicode text (it contains a lone surrogate)")
            return None
        return value

    def flag(name: str) -> bool:
        value = data.get(name, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            bad(name, "must be true or false")
            return False
        return value

    host = text("host", required=True)
    from_email = text("from_email", required=True)
    username = text("username")
    password = text("password")
    # A PEM bundle is multi-line by nature; it never reaches the SMTP socket, only the TLS context.
    ca_bundle = _ca_bundle(data.get("ca_bundle"), bad)
    recipient = text("recipient")
    helo_name = text("helo_name")
    if helo_name is not None and not HELO_NAME.match(helo_name):
        bad("helo_name", "must be a host name (ASCII letters, digits, hyphens, dots) or an address literal like "
            "[192.0.2.1]")
        helo_name = None

    port = data.get("port")
    if port is None:
        bad("port", "is required")
    elif isinstance(port, bool) or not isinstance(port, int):
        if isinstance(port, str) and port.strip().isascii() and port.strip().isdigit():
            port = int(port.strip())
        else:
            bad("port", "must be a whole number from 1 to 65535")
            port = None
    if isinstance(port, int) and not 1 <= port <= 65535:
        bad("port", "must be a whole number from 1 to 65535")

    tls_raw = data.get("tls_mode", TlsMode.AUTO.value)
    tls_mode = TlsMode.AUTO
    if tls_raw is not None:
        try:
            tls_mode = TlsMode(tls_raw)
        except ValueError:
            bad("tls_mode", "must be one of: " + ", ".join(m.value for m in TlsMode))

    timeout_raw = data.get("timeout_s", DEFAULT_TIMEOUT_S)
    timeout_s = DEFAULT_TIMEOUT_S
    if timeout_raw is not None:
        if isinstance(timeout_raw, bool) or not isinstance(timeout_raw, int | float):
            bad("timeout_s", "must be a number of seconds")
        elif not 0.1 <= timeout_raw <= MAX_TIMEOUT_S:
            bad("timeout_s", f"must be between 0.1 and {MAX_TIMEOUT_S:g} seconds")
        else:
            timeout_s = float(timeout_raw)

    dns_servers = _dns_servers(data.get("dns_servers"), bad)

    insecure = flag("insecure_skip_tls_verify")
    send = flag("send_test_message")
    if send and recipient is None and "recipient" not in {e.field for e in errors}:
        bad("recipient", "is required to send a test message")

    if errors:
        raise ConfigError(errors)
    assert host is not None and from_email is not None and isinstance(port, int)
    return SmtpConfig(
        host=host.strip(),
        port=port,
        from_email=from_email.strip(),
        username=username,
        password=Secret(password) if password is not None else None,
        insecure_skip_tls_verify=insecure,
        tls_mode=tls_mode,
        ca_bundle=ca_bundle,
        timeout_s=timeout_s,
        dns_servers=dns_servers,
        recipient=recipient.strip() if recipient else None,
        send_test_message=send,
        helo_name=helo_name,
    )


def _printable_name(name: object) -> str:
    """An unknown field's name as an error can show it: bounded, and never a lone surrogate (which no JSON
    encoder or log line can write: such a name made the API answer 500)."""
    text = str(name)[:64]
    return text if _encodable(text) else text.encode("utf-8", "backslashreplace").decode("ascii")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ca_bundle(value: Any, bad: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        bad("ca_bundle", "must be PEM text")
        return None
    if "\x00" in value:
        bad("ca_bundle", "must not contain NUL characters")
        return None
    if len(value) > MAX_CA_BUNDLE_LENGTH:
        bad("ca_bundle", f"must be at most {MAX_CA_BUNDLE_LENGTH} characters")
        return None
    if "-----BEGIN CERTIFICATE-----" not in value:
        bad("ca_bundle", "must contain at least one PEM certificate (-----BEGIN CERTIFICATE-----)")
        return None
    from diag.certs import ca_bundle_problem  # cryptography: loaded only when a bundle is given

    problem = ca_bundle_problem(value)
    if problem is not None:
        bad("ca_bundle", f"is not a usable CA bundle: {problem}")
        return None
    return value


def _dns_servers(value: Any, bad: Any) -> tuple[str, ...]:
    import ipaddress

    if value is None or value == []:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > 8:
        bad("dns_servers", "must be a list of at most 8 IP addresses")
        return ()
    servers: list[str] = []
    for item in value:
        # Strings only: ip_address(2130706433) is 127.0.0.1, and a JSON number is no address anyone typed.
        try:
            if not isinstance(item, str):
                raise TypeError
            servers.append(str(ipaddress.ip_address(item.strip())))
        except (ValueError, TypeError):
            bad("dns_servers", f"{str(item)[:64]!r} is not an IP address (give it as a string like \"192.0.2.53\")")
            return ()
    return tuple(servers)
