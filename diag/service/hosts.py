"""Which Host headers the service answers: the allow list and its default for the address it listens on.

A page on evil.example whose name is rebound to 127.0.0.1 reaches a loopback service from the victim's
browser, same-origin as far as the browser knows; only the Host header (evil.example) gives it away. So the
service answers only Host names it knows it is called by. Ports do not matter: they carry no origin the
attacker could not also use.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Final

from diag.service.settings import is_loopback_host, normalize_host_name

LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
_PORT: Final = re.compile(r"^[0-9]{1,5}$")


class HostAllowList:
    """Exact names and addresses, `*.example.com` for any subdomain, or `*` for anything."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.hosts = tuple(hosts)
        self.any = "*" in self.hosts
        self._exact = frozenset(h for h in self.hosts if not h.startswith("*"))
        self._suffixes = tuple(h[1:] for h in self.hosts if h.startswith("*."))

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        host = host_name_of(host_header) if host_header is not None else None
        if host is None:
            return False
        return host in self._exact or host.endswith(self._suffixes)


def host_name_of(header: str) -> str | None:
    """The host of a Host header value (`name`, `name:port`, `[v6]:port`), normalized; None when malformed."""
    header = header.strip()
    if header.startswith("["):
        name, bracket, rest = header.partition("]")
        if not bracket:
            return None
        name += "]"
    elif header.count(":") == 1:
        name, _, port = header.partition(":")
        rest = ":" + port
    else:
        name, rest = header, ""
    if rest and not (rest.startswith(":") and _PORT.match(rest[1:])):
        return None
    host = normalize_host_name(name)
    return None if host is None or host.startswith("*") else host


def default_allowed_hosts(bind_host: str, machine_name: str | None = None) -> tuple[str, ...]:
    """Without DIAG_ALLOWED_HOSTS: the loopback names, plus, off loopback, the address listened on and this
    machine's host name. A wildcard bind (0.0.0.0, ::) adds no address: any other name (a DNS name, a
    Kubernetes Service) must be listed in DIAG_ALLOWED_HOSTS."""
    hosts = list(LOOPBACK_HOSTS)
    bound = normalize_host_name(bind_host)
    if bound is not None and not _is_unspecified(bound):
        hosts.append(bound)
    if not is_loopback_host(bind_host):
        name = normalize_host_name(machine_name if machine_name is not None else socket.gethostname())
        if name is not None:
            hosts.append(name)
    return tuple(dict.fromkeys(hosts))


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
