"""Service settings from DIAG_* environment variables, checked once at start.

A bad value stops the service with a `SettingsError` that names the variable and says what it expects;
nothing falls back silently. The API token is an `ApiToken`, masked in repr and str like a password.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from diag.config import DEFAULT_HELO_NAME, HELO_NAME
from diag.secret import Secret

DEFAULT_DB_PATH: Final = Path("var/smtp-diag.sqlite3")
DEFAULT_ALLOWED_PORTS: Final = frozenset({25, 465, 587, 2525})
MAX_BODY_BYTES: Final = 64 * 1024
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$", re.IGNORECASE)
_PERIODS: Final = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
                   "h": 3600.0, "hour": 3600.0}
_MIN_TOKEN_LENGTH: Final = 16

T = TypeVar("T")


class SettingsError(ValueError):
    """A DIAG_* variable holds a value the service cannot use; the message names the variable."""


class ApiToken(Secret):
    """The bearer token: a Secret (never printed, never pickled), compared in constant time."""

    __slots__ = ()

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.reveal().encode(), presented.encode())


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` requests per `period_s` seconds."""

    count: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


@dataclass(frozen=True, slots=True)
class Settings:
    db_path: Path = DEFAULT_DB_PATH
    # PostgreSQL instead of the SQLite file, for more than one replica; a Secret (it may hold a password).
    db_url: Secret | None = None
    retention_days: int = 30
    store_max_mb: int = 512  # the report bodies' total in the store; the oldest go first
    api_token: ApiToken | None = None
    allow_networks: tuple[str, ...] = ()
    deny_networks: tuple[str, ...] = ()
    allowed_ports: frozenset[int] | None = DEFAULT_ALLOWED_PORTS  # None: every port
    rate_limit_per_client: Rate = field(default_factory=lambda: Rate(30, 60.0))
    rate_limit_per_target: Rate = field(default_factory=lambda: Rate(10, 60.0))
    max_concurrent_runs: int = 16
    max_runs_per_client: int = 4
    # Past the cap, requests wait FIFO for a slot (at most this many, each this long) before a 503 busy.
    max_queued_runs: int = 64  # 0: no queue, a 503 at once
    run_queue_wait_s: float = 15.0
    max_run_s: float = 120.0  # a run's wall time through the service, whatever the timeouts add up to
    # Sending a real message makes the service a mail relay for whoever reaches it: off unless enabled.
    allow_send: bool = False
    rate_limit_per_recipient_domain: Rate = field(default_factory=lambda: Rate(5, 3600.0))
    # The EHLO name is the operator's; a client-chosen one only when allowed (it is what servers log).
    helo_name: str = DEFAULT_HELO_NAME
    allow_custom_helo: bool = False
    # Client-chosen DNS servers: None means "on for a loopback bind, off otherwise" (custom_dns_allowed).
    allow_custom_dns: bool | None = None
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8025
    max_body_bytes: int = MAX_BODY_BYTES
    # None: derived from the address the service listens on (diag.service.hosts.default_allowed_hosts).
    allowed_hosts: tuple[str, ...] | None = None
    max_connections: int = 1000
    keep_alive_s: int = 5
    header_timeout_s: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                return default
            return parse(name, raw.strip())

        defaults = cls()
        return cls(
            db_path=get("DIAG_DB_PATH", lambda _n, v: Path(v), defaults.db_path),
            db_url=get("DIAG_DB_URL", _db_url, None),
            retention_days=get("DIAG_RETENTION_DAYS", _int_range(1, 36500), defaults.retention_days),
            store_max_mb=get("DIAG_STORE_MAX_MB", _int_range(1, 1_000_000), defaults.store_max_mb),
            api_token=get("DIAG_API_TOKEN", _token, None),
            allow_networks=get("DIAG_ALLOW_NETWORKS", _networks, ()),
            deny_networks=get("DIAG_DENY_NETWORKS", _networks, ()),
            allowed_ports=get("DIAG_ALLOWED_PORTS", _ports, defaults.allowed_ports),
            rate_limit_per_client=get("DIAG_RATE_LIMIT_PER_CLIENT", _rate, defaults.rate_limit_per_client),
            rate_limit_per_target=get("DIAG_RATE_LIMIT_PER_TARGET", _rate, defaults.rate_limit_per_target),
            max_concurrent_runs=get("DIAG_MAX_CONCURRENT_RUNS", _int_range(1, 10_000), 16),
            max_runs_per_client=get("DIAG_MAX_RUNS_PER_CLIENT", _int_range(1, 10_000), defaults.max_runs_per_client),
            max_queued_runs=get("DIAG_MAX_QUEUED_RUNS", _int_range(0, 10_000), defaults.max_queued_runs),
            run_queue_wait_s=float(get("DIAG_RUN_QUEUE_WAIT_S", _int_range(1, 600), int(defaults.run_queue_wait_s))),
            max_run_s=float(get("DIAG_MAX_RUN_S", _int_range(5, 3600), int(defaults.max_run_s))),
            allow_send=get("DIAG_ALLOW_SEND", _bool, defaults.allow_send),
            rate_limit_per_recipient_domain=get(
                "DIAG_RATE_LIMIT_PER_RECIPIENT_DOMAIN", _rate, defaults.rate_limit_per_recipient_domain
            ),
            helo_name=get("DIAG_HELO_NAME", _helo_name, defaults.helo_name),
            allow_custom_helo=get("DIAG_ALLOW_CUSTOM_HELO", _bool, defaults.allow_custom_helo),
            allow_custom_dns=get("DIAG_ALLOW_CUSTOM_DNS", _bool, None),
            log_level=get("DIAG_LOG_LEVEL", _log_level, defaults.log_level),
            host=get("DIAG_HOST", _host, defaults.host),
            port=get("DIAG_PORT", _int_range(0, 65535), defaults.port),
            allowed_hosts=get("DIAG_ALLOWED_HOSTS", _allowed_hosts, None),
            max_connections=get("DIAG_MAX_CONNECTIONS", _int_range(1, 1_000_000), defaults.max_connections),
            keep_alive_s=get("DIAG_KEEP_ALIVE_S", _int_range(1, 3600), defaults.keep_alive_s),
            header_timeout_s=get("DIAG_HEADER_TIMEOUT_S", _int_range(1, 3600), defaults.header_timeout_s),
        )


    @property
    def custom_dns_allowed(self) -> bool:
        """Whether a run may name its own DNS servers: as set, else only on a loopback bind (the operator
        is then the only user, and the DNS servers are vetted by the egress policy either way)."""
        return is_loopback_host(self.host) if self.allow_custom_dns is None else self.allow_custom_dns


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _bool(name: str, raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be one of 1, true, yes, on or 0, false, no, off, got {raw[:20]!r}")


def _helo_name(name: str, raw: str) -> str:
    if not HELO_NAME.match(raw):
        raise SettingsError(f"{name} must be a host name or an address literal like [192.0.2.1], got {raw[:60]!r}")
    return raw


def _int_range(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {value}")
        return value

    return parse


def _token(name: str, raw: str) -> ApiToken:
    # The value itself is never echoed in the error: it is a secret even when it is a bad one.
    if len(raw) < _MIN_TOKEN_LENGTH:
        raise SettingsError(f"{name} must be at least {_MIN_TOKEN_LENGTH} characters long")
    if not raw.isprintable() or " " in raw:
        raise SettingsError(f"{name} must be printable characters without spaces")
    return ApiToken(raw)


def _db_url(name: str, raw: str) -> Secret:
    # Never echoed: the URL may hold the database password.
    if not raw.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{name} must be a postgresql:// URL (postgresql://user:password@host:5432/dbname)")
    return Secret(raw)


def _items(raw: str) -> list[str]:
    """A comma-separated list's items, trimmed, empty ones dropped ("a, b," is a and b)."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def _networks(name: str, raw: str) -> tuple[str, ...]:
    networks: list[str] = []
    for item in _items(raw):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name} must be a comma-separated list of networks (CIDR), {item[:60]!r} is not one"
            ) from None
    return tuple(networks)


def _ports(name: str, raw: str) -> frozenset[int] | None:
    if raw in ("*", "any"):
        return None
    ports: set[int] = set()
    for item in _items(raw):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise SettingsError(
                f"{name} must be a comma-separated list of ports from 1 to 65535 (or *), {item[:20]!r} is not one"
            )
        ports.add(int(item))
    if not ports:
        raise SettingsError(f"{name} must name at least one port (or * for any)")
    return frozenset(ports)


def _rate(name: str, raw: str) -> Rate:
    match = _RATE.match(raw)
    if match is None or int(match.group(1)) < 1:
        raise SettingsError(f"{name} must look like 30/min (a positive count per s, min or hour), got {raw[:40]!r}")
    period = _PERIODS[(match.group(2) or "min").lower()]
    return Rate(int(match.group(1)), period)


def _log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {raw[:20]!r}")
    assert isinstance(logging.getLevelName(level), int)
    return level


def _host(name: str, raw: str) -> str:
    if any(c.isspace() for c in raw) or len(raw) > 253:
        raise SettingsError(f"{name} must be a host name or IP address to listen on, got {raw[:40]!r}")
    return raw


def _allowed_hosts(name: str, raw: str) -> tuple[str, ...]:
    hosts: list[str] = []
    for item in _items(raw):
        host = normalize_host_name(item)
        if host is None:
            raise SettingsError(
                f"{name} must be a comma-separated list of host names or IP addresses without a port "
                f"(*, or *.example.com for subdomains), {item[:60]!r} is not one"
            )
        hosts.append(host)
    if not hosts:
        raise SettingsError(f"{name} must name at least one host (or * for any)")
    return tuple(hosts)


_HOST_NAME: Final = re.compile(r"^(\*|(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*)$")


def normalize_host_name(host: str) -> str | None:
    """One spelling per host, as the Host header check compares them: lower case, no trailing dot, IPv6
    without brackets and compressed ("[0:0::1]" is "::1"). None for what is not a host name or address
    (a port, a path, spaces): Host headers and DIAG_ALLOWED_HOSTS are both read through here."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return None
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return None
    host = host.removesuffix(".")
    if len(host) > 253 or not _HOST_NAME.match(host):
        return None
    return host


def is_loopback_host(host: str) -> bool:
    """Whether listening on `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
