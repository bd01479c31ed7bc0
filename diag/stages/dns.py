"""The dns stage: resolve the host once, vet every address against the egress policy, hand on the vetted ones.

An IP literal (any spelling, see diag.policy.parse_ip_literal) needs no lookup. A name is resolved for A
and AAAA concurrently with dnspython; with `config.dns_servers` only those servers are asked, otherwise
the hosts file is read first (as the system resolver does), then the system's resolv.conf is used and,
when DNS does not know the name, the system resolver
(getaddrinfo: /etc/hosts, "localhost", search domains) gets the last word, as the application would.

Failure kinds (finding code "dns.<kind>"):
    nxdomain              the name does not exist
    no_address            the name exists but has no A or AAAA record
    mail_domain_not_host  no A or AAAA, but MX records: a mail domain was given instead of a server
    servfail              the resolver failed, refused or answered unusably (SERVFAIL, REFUSED, a
                          malformed response, a socket error: the detail is in the summary)
    timeout               no answer in time
    config.invalid_host   not a valid DNS name (empty label, label over 63 characters...); the config
                          stage catches these first, this is for callers that skip it
    policy_denied         the port or every address is denied: no connection will be made
                          (the policy's reasons are in Outcome.server_text for the finding)

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from diag.policy import parse_ip_literal
from diag.report import Status
from diag.stages.base import Outcome, RunContext

DNS_PORT_ENV: Final = "SMTP_DIAG_DNS_PORT"
RESOLV_CONF_ENV: Final = "SMTP_DIAG_RESOLV_CONF"
DEFAULT_DNS_PORT: Final = 53
DEFAULT_RESOLV_CONF: Final = "/etc/resolv.conf"
RESOLVER_GRACE_S: Final = 1.0
HOSTS_FILE: Final = "/etc/hosts"
HOSTS_FILE_LIMIT: Final = 1024 * 1024
MAX_RECORDS_SHOWN: Final = 8  # in a summary; facts keep them all

# Most specific first: when A and AAAA fail differently, the first kind in this order is reported.
INVALID_NAME: Final = "config.invalid_host"  # a full code: the finding is the config stage's
KIND_PRIORITY: Final = ("nxdomain", INVALID_NAME, "timeout", "servfail", "no_address")


@dataclass(slots=True)
class Lookup:
    """One query's result: records, or a failure kind with a detail for people."""

    rdtype: str
    records: list[str] = field(default_factory=list)
    kind: str | None = None  # None when the query was answered (possibly with no records)
    detail: str = ""
    elapsed_ms: float = 0.0
    canonical_name: str | None = None


def make_resolver(
    servers: tuple[str, ...],
    timeout: float,
    port: int = DEFAULT_DNS_PORT,
    resolv_conf: str = DEFAULT_RESOLV_CONF,
) -> dns.asyncresolver.Resolver:
    """A resolver that asks `servers` on `port`, or the servers in `resolv_conf` when none are given.

    Raises dns.resolver.NoResolverConfiguration when there are no servers and no usable resolv.conf.
    """
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(s, port) for s in servers]
    else:
        resolver = dns.asyncresolver.Resolver(filename=resolv_conf, configure=True)
        resolver.port = port  # the port for resolv.conf's plain addresses
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None  # one diagnosis, one fresh answer
    return resolver


def resolver_from_env(servers: tuple[str, ...], timeout: float) -> dns.asyncresolver.Resolver:
    """make_resolver with the developer knobs applied (see the module docstring)."""
    raw_port = os.environ.get(DNS_PORT_ENV, "").strip()
    port = int(raw_port) if raw_port.isdigit() and 1 <= int(raw_port) <= 65535 else DEFAULT_DNS_PORT
    resolv_conf = os.environ.get(RESOLV_CONF_ENV) or DEFAULT_RESOLV_CONF
    return make_resolver(servers, timeout, port, resolv_conf)


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    host = config.host.strip()
    port_denied = ctx.policy.vet_port(config.port)
    if port_denied is not None:
        ctx.transcript.note(f"egress policy: {port_denied}")
        return Outcome(
            Status.FAILED,
            f"This service may not connect to port {config.port}: {port_denied}. No connection was made.",
            {
                "port": config.port,
                "port_denied": port_denied,
                "ip_literal": parse_ip_literal(host) is not None,
                "addresses": [],
            },
            kind="policy_denied",
            server_text=port_denied,
        )

    literal = parse_ip_literal(host)
    if literal is not None:
        address = str(literal)
        ctx.transcript.note(f"{host} is an IP address: no DNS lookup")
        facts: dict[str, Any] = {
            "ip_literal": True,
            "addresses": [address],
            "a_records": [address] if isinstance(literal, IPv4Address) else [],
            "aaaa_records": [] if isinstance(literal, IPv4Address) else [address],
            "resolver": None,
            "lookup_ms": 0.0,
        }
        return _vet(ctx, host, [address], facts, literal=True)

    servers = config.dns_servers
    resolver_label: str | list[str] = list(servers) if servers else "system"
    t0 = time.monotonic()
    try:
        qname = dns.name.from_text(host)
    except dns.exception.DNSException as exc:
        ctx.transcript.note(f"{host} is not a valid DNS name: {exc}")
        return Outcome(
            Status.FAILED,
            f"{host!r} is not a valid host name: {exc}",
            {"ip_literal": False, "resolver": resolver_label, "error": str(exc)},
            kind=INVALID_NAME,
            server_text=repr(host)[:100],
        )

    if not servers:
        listed = hosts_file_addresses(host)
        if listed:
            ctx.transcript.note(f"{host} -> {', '.join(listed)} ({HOSTS_FILE}, as the system resolver answers it)")
            facts = {
                "ip_literal": False,
                "resolver": "system",
                "resolved_via": "hosts file",
                "addresses": listed,
                "a_records": [a for a in listed if ":" not in a],
                "aaaa_records": [a for a in listed if ":" in a],
                "lookup_ms": round((time.monotonic() - t0) * 1000.0, 1),
            }
            return _vet(ctx, host, listed, facts, literal=False)

    a, aaaa = await _resolve_both(ctx, qname, servers)
    lookup_ms = (time.monotonic() - t0) * 1000.0
    facts = {
        "ip_literal": False,
        "resolver": resolver_label,
        "resolved_via": "dns",
        "a_records": a.records,
        "aaaa_records": aaaa.records,
        "lookup_ms": round(lookup_ms, 1),
    }
    for lookup in (a, aaaa):
        if lookup.kind is not None:
            facts[f"{lookup.rdtype.lower()}_error"] = f"{lookup.kind}: {lookup.detail}"
        if lookup.canonical_name and lookup.canonical_name.rstrip(".") != host.rstrip("."):
            facts["canonical_name"] = lookup.canonical_name

    if a.records or aaaa.records:
        addresses = _dedupe(a.records + aaaa.records)
        facts["addresses"] = addresses
        return _vet(ctx, host, addresses, facts, literal=False)

    kind = _combined_kind(a, aaaa)
    if not servers and kind != "timeout":
        system = await _system_lookup(ctx, host)
        if system:
            facts.update(
                resolved_via="system",
                addresses=system,
                a_records=[s for s in system if ":" not in s],
                aaaa_records=[s for s in system if ":" in s],
                lookup_ms=round((time.monotonic() - t0) * 1000.0, 1),
            )
            return _vet(ctx, host, system, facts, literal=False)
    facts["addresses"] = []
    return await _failure(ctx, host, qname, kind, a, aaaa, servers, facts)


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


async def _resolve_both(
    ctx: RunContext, qname: dns.name.Name, servers: tuple[str, ...]
) -> tuple[Lookup, Lookup]:
    try:
        resolver = resolver_from_env(servers, ctx.config.timeout_s)
    except dns.exception.DNSException as exc:  # no resolv.conf: the system fallback may still know it
        detail = f"no DNS resolver configured ({exc})"
        ctx.transcript.note(detail)
        return Lookup("A", kind="servfail", detail=detail), Lookup("AAAA", kind="servfail", detail=detail)
    a, aaaa = await asyncio.gather(
        _query(ctx, resolver, qname, "A"), _query(ctx, resolver, qname, "AAAA")
    )
    return a, aaaa


async def _query(
    ctx: RunContext, resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, rdtype: str
) -> Lookup:
    """One query, every dnspython error mapped to a kind; notes the result in the transcript."""
    lookup = Lookup(rdtype)
    t0 = time.monotonic()
    try:
        # dnspython honours the lifetime give or take a backoff step; the guard makes the bound hard.
        async with asyncio.timeout(ctx.config.timeout_s + RESOLVER_GRACE_S):
            answer = await resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, lifetime=ctx.config.timeout_s
            )
        if answer.rrset is not None:
            lookup.records = [_record_text(rdata) for rdata in answer.rrset]
        lookup.canonical_name = answer.canonical_name.to_text()
    except dns.resolver.NXDOMAIN:
        lookup.kind, lookup.detail = "nxdomain", "the name does not exist (NXDOMAIN)"
    except dns.resolver.NoAnswer:  # raise_on_no_answer=False makes this rare; same meaning
        pass
    except (dns.exception.Timeout, TimeoutError):  # LifetimeTimeout included
        lookup.kind, lookup.detail = "timeout", f"no answer within {ctx.config.timeout_s:g} s"
    except dns.resolver.NoNameservers as exc:
        lookup.kind, lookup.detail = "servfail", _nameserver_errors(exc)
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
        lookup.kind, lookup.detail = INVALID_NAME, str(exc)
    except (dns.exception.DNSException, OSError) as exc:  # an unusable answer, a socket error
        lookup.kind, lookup.detail = "servfail", f"{type(exc).__name__}: {exc}"
    lookup.elapsed_ms = (time.monotonic() - t0) * 1000.0
    shown = ", ".join(lookup.records) if lookup.records else lookup.detail or "no records"
    name = qname.to_text(omit_final_dot=True)
    ctx.transcript.note(f"{rdtype} {name} -> {shown} ({lookup.elapsed_ms:.0f} ms)")
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


def _combined_kind(a: Lookup, aaaa: Lookup) -> str:
    kinds = {a.kind or "no_address", aaaa.kind or "no_address"}
    return next(k for k in KIND_PRIORITY if k in kinds)


async def _system_lookup(ctx: RunContext, host: str) -> list[str]:
    """Addresses from getaddrinfo (hosts file, search domains), IPv4 first; [] when it knows nothing.

    Bounded by the timeout; the resolver thread may outlive it, but the stage does not wait for it.
    """
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(ctx.config.timeout_s):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, TimeoutError, UnicodeError) as exc:
        ctx.transcript.note(f"system resolver: {host} -> {type(exc).__name__}: {exc}")
        return []
    found = _dedupe([str(info[4][0]).split("%", 1)[0] for info in infos])
    ordered = [a for a in found if ":" not in a] + [a for a in found if ":" in a]
    elapsed = (time.monotonic() - t0) * 1000.0
    ctx.transcript.note(f"system resolver: {host} -> {', '.join(ordered) or 'nothing'} ({elapsed:.0f} ms)")
    return ordered


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _vet(
    ctx: RunContext, host: str, addresses: list[str], facts: dict[str, Any], *, literal: bool
) -> Outcome:
    """Vet every address; keep the allowed ones, IPv4 first, in DNS order within each family."""
    allowed_v4: list[str] = []
    allowed_v6: list[str] = []
    denied: dict[str, str] = {}
    for address in addresses:
        reason = ctx.policy.vet_address(address)
        if reason is not None:
            denied[address] = reason
            ctx.transcript.note(f"egress policy: {reason}")
            continue
        normal = str(parse_ip_literal(address))  # "::ffff:a.b.c.d" connects as IPv4
        (allowed_v6 if ":" in normal else allowed_v4).append(normal)
    allowed = _dedupe(allowed_v4 + allowed_v6)
    facts["allowed_addresses"] = allowed
    facts["denied_addresses"] = denied
    if not allowed:
        reasons = "; ".join(denied.values())
        what = host if literal else f"{host} resolved only to addresses this service may not connect to"
        summary = (
            f"{what}: {reasons}. No connection was made."
            if not literal
            else f"{what} may not be contacted: {reasons}. No connection was made."
        )
        return Outcome(Status.FAILED, summary, facts, kind="policy_denied", server_text=reasons)
    refused = ctx.admit_addresses(allowed) if ctx.admit_addresses is not None else None
    if refused is not None:
        ctx.transcript.note(f"not admitted: {refused}")
        return Outcome(
            Status.FAILED, f"Not run against {host}: {refused}. No connection was made.", facts,
            kind="rate_limited", server_text=refused,
        )
    ctx.addresses = allowed
    if literal:
        summary = f"{host} is an IP address ({allowed[0]}); no DNS lookup needed."
    else:
        count = len(addresses)
        noun = "address" if count == 1 else "addresses"
        shown = ", ".join(addresses[:MAX_RECORDS_SHOWN]) + (", ..." if count > MAX_RECORDS_SHOWN else "")
        via = " (system resolver)" if facts.get("resolved_via") == "system" else ""
        summary = f"{host} resolved{via} to {count} {noun}: {shown}."
    if denied:
        summary += f" Skipped by the egress policy: {'; '.join(denied.values())}."
    return Outcome.passed(summary, **facts)


async def _failure(
    ctx: RunContext,
    host: str,
    qname: dns.name.Name,
    kind: str,
    a: Lookup,
    aaaa: Lookup,
    servers: tuple[str, ...],
    facts: dict[str, Any],
) -> Outcome:
    asked = ", ".join(servers) if servers else "the system's DNS resolver"
    if kind == "no_address":
        mx = await _mx_records(ctx, qname, servers)
        if mx:
            facts["mx_records"] = mx
            shown = ", ".join(r.rstrip(".") for r in mx[:MAX_RECORDS_SHOWN])
            return Outcome(
                Status.FAILED,
                f"{host} has no address (A/AAAA) records but has mail exchanger (MX) records: {shown}. "
                "It looks like a mail domain, not the SMTP server's host name.",
                facts,
                kind="mail_domain_not_host",
            )
        summary = f"{host} exists in DNS but has no address (A or AAAA) records ({asked} asked)."
    elif kind == "nxdomain":
        summary = f"{host} does not exist in DNS (NXDOMAIN from {asked})."
    elif kind == "timeout":
        summary = f"No DNS answer for {host} from {asked} within {ctx.config.timeout_s:g} s."
    else:
        detail = a.detail if a.kind == kind else aaaa.detail
        summary = f"DNS lookup of {host} failed: {detail}."
    return Outcome(Status.FAILED, summary, facts, kind=kind)


async def _mx_records(ctx: RunContext, qname: dns.name.Name, servers: tuple[str, ...]) -> list[str]:
    """MX records as "preference exchange", best first; [] on any failure (the hint is optional)."""
    try:
        resolver = resolver_from_env(servers, ctx.config.timeout_s)
    except dns.exception.DNSException:
        return []
    lookup = await _query(ctx, resolver, qname, "MX")
    return sorted(lookup.records, key=lambda r: (int(r.split()[0]) if r.split()[0].isdigit() else 65536, r))
