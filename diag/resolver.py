"""Name resolution for the dns stage, behind one object: DNS with dnspython, the hosts file, getaddrinfo.

The stage decides what to ask and what the answers mean; the `Resolver` asks and maps every dnspython and
socket error into a `Lookup` kind (the I/O boundary for names, as diag.transport is for sockets). It is
built once per run, where the environment is read (`Resolver.from_environment`, by the runner), and passed
through `RunContext`: tests give it a DNS server on loopback the way httpx tests give a transport.

Developer/test knobs (environment variables), so tests can run a DNS server on loopback:
    SMTP_DIAG_DNS_PORT    the port of every DNS server asked (default 53)
    SMTP_DIAG_RESOLV_CONF the resolv.conf read when no dns_servers are given (default /etc/resolv.conf)
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from diag.kinds import ConfigKind, DnsKind
from diag.policy import parse_ip_literal

# dnspython is imported where a DNS query is made, not here: a name the hosts file answers (or an IP
# literal) needs none of it, and importing it costs a `smtp-diag check` ~20 ms of start-up (issue 13).
if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.name
    import dns.resolver

DNS_PORT_ENV: Final = "SMTP_DIAG_DNS_PORT"
RESOLV_CONF_ENV: Final = "SMTP_DIAG_RESOLV_CONF"
DEFAULT_DNS_PORT: Final = 53
DEFAULT_RESOLV_CONF: Final = "/etc/resolv.conf"
RESOLVER_GRACE_S: Final = 1.0
HOSTS_FILE: Final = "/etc/hosts"
HOSTS_FILE_LIMIT: Final = 1024 * 1024


@dataclass(slots=True)
class Lookup:
    """One query's result: records, or a failure kind with a detail for people."""

    rdtype: str
    records: list[str] = field(default_factory=list)
    kind: DnsKind | ConfigKind | None = None  # None when the query was answered (possibly with no records)
    detail: str = ""
    elapsed_ms: float = 0.0
    canonical_name: str | None = None

    @property
    def shown(self) -> str:
        return ", ".join(self.records) if self.records else self.detail or "no records"


@dataclass(frozen=True, slots=True)
class Resolver:
    dns_port: int = DEFAULT_DNS_PORT
    resolv_conf: str = DEFAULT_RESOLV_CONF
    hosts_file: str | None = None  # None: HOSTS_FILE, looked up when asked

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Resolver:
        """The resolver with the developer knobs applied (see the module docstring)."""
        env = os.environ if environ is None else environ
        raw_port = env.get(DNS_PORT_ENV, "").strip()
        port = int(raw_port) if raw_port.isdigit() and 1 <= int(raw_port) <= 65535 else DEFAULT_DNS_PORT
        return cls(dns_port=port, resolv_conf=env.get(RESOLV_CONF_ENV) or DEFAULT_RESOLV_CONF)

    @property
    def hosts_path(self) -> str:
        return self.hosts_file or HOSTS_FILE

    def hosts_file_addresses(self, host: str) -> list[str]:
        return hosts_file_addresses(host, self.hosts_path)

    async def lookup(
        self, qname: dns.name.Name, rdtypes: Sequence[str], servers: tuple[str, ...], timeout_s: float
    ) -> list[Lookup]:
        """One query per record type, concurrently: `servers` on our DNS port, or the resolv.conf's."""
        import dns.exception

        try:
            resolver = self._dns_resolver(servers, timeout_s)
        except dns.exception.DNSException as exc:  # no resolv.conf: the system fallback may still know it
            detail = f"no DNS resolver configured ({exc})"
            return [Lookup(rdtype, kind=DnsKind.SERVFAIL, detail=detail) for rdtype in rdtypes]
        return list(await asyncio.gather(*(_query(resolver, qname, rdtype, timeout_s) for rdtype in rdtypes)))

    async def system_addresses(self, host: str, timeout_s: float) -> Lookup:
        """What getaddrinfo (hosts file, search domains) says, IPv4 first, as a Lookup of type "system".

        Bounded by the timeout; the resolver thread may outlive it, but the caller does not wait for it.
        """
        lookup = Lookup("system")
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, TimeoutError, UnicodeError) as exc:
            lookup.detail = f"{type(exc).__name__}: {exc}"
        else:
            found = _dedupe([str(info[4][0]).split("%", 1)[0] for info in infos])
            lookup.records = [a for a in found if ":" not in a] + [a for a in found if ":" in a]
            lookup.detail = "nothing"
        lookup.elapsed_ms = (time.monotonic() - t0) * 1000.0
        return lookup

    def _dns_resolver(self, servers: tuple[str, ...], timeout_s: float) -> dns.asyncresolver.Resolver:
        """Raises dns.resolver.NoResolverConfiguration when there are no servers and no usable resolv.conf."""
        import dns.asyncresolver
        import dns.nameserver

        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(s, self.dns_port) for s in servers]
        else:
            resolver = dns.asyncresolver.Resolver(filename=self.resolv_conf, configure=True)
            resolver.port = self.dns_port  # the port for resolv.conf's plain addresses
        resolver.timeout = timeout_s
        resolver.lifetime = timeout_s
        resolver.cache = None  # one diagnosis, one fresh answer
        return resolver


async def _query(resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, rdtype: str, timeout_s: float) -> Lookup:
    """One query, every dnspython error mapped to a kind."""
    import dns.exception
    import dns.name
    import dns.resolver

    lookup = Lookup(rdtype)
    t0 = time.monotonic()
    try:
        # dnspython honours the lifetime give or take a backoff step; the guard makes the bound hard.
        async with asyncio.timeout(timeout_s + RESOLVER_GRACE_S):
            answer = await resolver.resolve(qname, rdtype, raise_on_no_answer=False, lifetime=timeout_s)
        if answer.rrset is not None:
            lookup.records = [_record_text(rdata) for rdata in answer.rrset]
        lookup.canonical_name = answer.canonical_name.to_text()
    except dns.resolver.NXDOMAIN:
        lookup.kind, lookup.detail = DnsKind.NXDOMAIN, "the name does not exist (NXDOMAIN)"
    except dns.resolver.NoAnswer:  # raise_on_no_answer=False makes this rare; same meaning
        pass
    except (dns.exception.Timeout, TimeoutError):  # LifetimeTimeout included
        lookup.kind, lookup.detail = DnsKind.TIMEOUT, f"no answer within {timeout_s:g} s"
    except dns.resolver.NoNameservers as exc:
        lookup.kind, lookup.detail = DnsKind.SERVFAIL, _nameserver_errors(exc)
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
        lookup.kind, lookup.detail = ConfigKind.INVALID_HOST, str(exc)
    except (dns.exception.DNSException, OSError) as exc:  # an unusable answer, a socket error
        lookup.kind, lookup.detail = DnsKind.SERVFAIL, f"{type(exc).__name__}: {exc}"
    lookup.elapsed_ms = (time.monotonic() - t0) * 1000.0
    return lookup


def _record_text(rdata: Any) -> str:
    """An address record as a canonical address string; other records as DNS text."""
    address = getattr(rdata, "address", None)
    return str(address) if isinstance(address, str) else str(rdata.to_text())


def _nameserver_errors(exc: dns.resolver.NoNameservers) -> str:
    """What each server said: "127.0.0.1 answered SERVFAIL" rather than the exception's long text."""
    errors: Sequence[Any] = exc.kwargs.get("errors") or ()
    parts = []
    for server, _tcp, _port, error, _response in errors:
        said = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        parts.append(f"{_server_label(str(server))} answered {said}")
    return "; ".join(parts) or "every DNS server failed"


def _server_label(server: str) -> str:
    """ "Do53:127.0.0.1@53" as "127.0.0.1"; a port other than 53 stays visible."""
    label = server.removeprefix("Do53:")
    return label.removesuffix(f"@{DEFAULT_DNS_PORT}")


def hosts_file_addresses(host: str, path: str | None = None) -> list[str]:
    """The addresses the hosts file gives `host`, in file order: the system resolver (and so the product
    being diagnosed) answers from it before DNS, and "localhost" must never be asked of a DNS server."""
    return list(_hosts_table(path or HOSTS_FILE).get(host.rstrip(".").lower(), ()))


def _hosts_table(path: str) -> dict[str, tuple[str, ...]]:
    """The hosts file as name -> addresses, read again only when the file changes (a stat per run instead
    of a read and parse on the event loop)."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    return _parse_hosts_file(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parse_hosts_file(path: str, mtime_ns: int, size: int) -> dict[str, tuple[str, ...]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(HOSTS_FILE_LIMIT)
    except OSError:
        return {}
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        literal = parse_ip_literal(fields[0]) if len(fields) >= 2 else None
        if literal is None:
            continue
        for name in fields[1:]:
            addresses = table.setdefault(name.rstrip(".").lower(), [])
            if str(literal) not in addresses:
                addresses.append(str(literal))
    return {name: tuple(addresses) for name, addresses in table.items()}


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
