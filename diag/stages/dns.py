"""The dns stage: resolve the host once, vet every address against the egress policy, hand on the vetted ones.

An IP literal (any spelling, see diag.policy.parse_ip_literal) needs no lookup. A name is resolved through
`ctx.resolver` (diag.resolver) for A and AAAA concurrently; with `config.dns_servers` only those servers are
asked, otherwise the hosts file is read first (as the system resolver does), then the system's resolv.conf
is used and, when DNS does not know the name, the system resolver (getaddrinfo: /etc/hosts, "localhost",
search domains) gets the last word, as the application would.

Failure kinds (finding code "dns.<kind>", diag.kinds.DnsKind):
    nxdomain              the name does not exist
    no_address            the name exists but has no A or AAAA record
    mail_domain_not_host  no A or AAAA, but MX records: a mail domain was given instead of a server
    servfail              the resolver failed, refused or answered unusably (SERVFAIL, REFUSED, a
                          malformed response, a socket error: the detail is in the summary)
    timeout               no answer in time
    policy_denied         the port or every address is denied: no connection will be made
                          (the policy's reasons are in Outcome.detail for the finding)
    rate_limited          the service's per-target limit refused the run
and ConfigKind.INVALID_HOST (config.invalid_host) for a name that is not a valid DNS name (empty label,
label over 63 characters...): the config stage catches these first, this is for callers that skip it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from diag.kinds import ConfigKind, DnsKind
from diag.policy import parse_ip_literal
from diag.resolver import Lookup
from diag.stages.base import Outcome, RunContext

if TYPE_CHECKING:  # dnspython is imported only when DNS is asked (start-up time; diag.resolver says why)
    import dns.name

MAX_RECORDS_SHOWN: Final = 8  # in a summary; facts keep them all

# Most specific first: when A and AAAA fail differently, the first kind in this order is reported.
KIND_PRIORITY: Final[tuple[DnsKind | ConfigKind, ...]] = (
    DnsKind.NXDOMAIN, ConfigKind.INVALID_HOST, DnsKind.TIMEOUT, DnsKind.SERVFAIL, DnsKind.NO_ADDRESS
)


def _no_connection(ctx: RunContext, kind: DnsKind, note: str, why: str, detail: str, **facts: Any) -> Outcome:
    """A run this service will not let connect: said in the transcript, and in the summary."""
    ctx.transcript.note(note)
    return Outcome.failed(f"{why}. No connection was made.", kind, detail=detail, **facts)


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    host = config.host.strip()
    port_denied = ctx.policy.vet_port(config.port)
    if port_denied is not None:
        return _no_connection(
            ctx, DnsKind.POLICY_DENIED, f"egress policy: {port_denied}",
            f"This service may not connect to port {config.port}: {port_denied}", port_denied,
            port=config.port, port_denied=port_denied, ip_literal=parse_ip_literal(host) is not None, addresses=[],
        )

    literal = parse_ip_literal(host)
    if literal is not None:
        address = str(literal)
        ctx.transcript.note(f"{host} is an IP address: no DNS lookup")
        facts = _resolution_facts(None, None, [address], t0=None)
        return _vet(ctx, host, [address], facts, literal=True)

    servers = config.dns_servers
    resolver_label: str | list[str] = list(servers) if servers else "system"
    t0 = time.monotonic()
    # The hosts file first, as getaddrinfo does; a name it lists needs no DNS (nor dnspython).
    if not servers:
        listed = ctx.resolver.hosts_file_addresses(host)
        if listed:
            where = ctx.resolver.hosts_path
            ctx.transcript.note(f"{host} -> {', '.join(listed)} ({where}, as the system resolver answers it)")
            facts = _resolution_facts("system", "hosts file", listed, t0=t0)
            return _vet(ctx, host, listed, facts, literal=False)

    import dns.exception
    import dns.name

    try:
        qname = dns.name.from_text(host)
    except dns.exception.DNSException as exc:
        ctx.transcript.note(f"{host} is not a valid DNS name: {exc}")
        return Outcome.failed(
            f"{host!r} is not a valid host name: {exc}",
            ConfigKind.INVALID_HOST,
            detail=repr(host)[:100],
            ip_literal=False,
            resolver=resolver_label,
            error=str(exc),
        )

    a, aaaa = await _lookup(ctx, qname, ("A", "AAAA"), servers)
    addresses = _dedupe(a.records + aaaa.records)
    facts = _resolution_facts(resolver_label, "dns", addresses, t0=t0, a_records=a.records, aaaa_records=aaaa.records)
    for lookup in (a, aaaa):
        if lookup.kind is not None:
            facts[f"{lookup.rdtype.lower()}_error"] = f"{lookup.kind}: {lookup.detail}"
        if lookup.canonical_name and lookup.canonical_name.rstrip(".") != host.rstrip("."):
            facts["canonical_name"] = lookup.canonical_name
    if addresses:
        return _vet(ctx, host, addresses, facts, literal=False)

    kind = _combined_kind(a, aaaa)
    if not servers and kind is not DnsKind.TIMEOUT:
        system = await ctx.resolver.system_addresses(host, config.timeout_s)
        ctx.transcript.note(f"system resolver: {host} -> {system.shown} ({system.elapsed_ms:.0f} ms)")
        if system.records:
            facts.update(_resolution_facts(resolver_label, "system", system.records, t0=t0))
            return _vet(ctx, host, system.records, facts, literal=False)
    return await _failure(ctx, host, qname, kind, a, aaaa, servers, facts)


def _resolution_facts(
    resolver: str | list[str] | None,
    via: str | None,
    addresses: list[str],
    *,
    t0: float | None,
    a_records: list[str] | None = None,
    aaaa_records: list[str] | None = None,
) -> dict[str, Any]:
    """The facts of a resolution, however it was answered (`via` None: an IP literal, no lookup). The A and
    AAAA records default to the addresses split by family."""
    facts: dict[str, Any] = {"ip_literal": via is None, "resolver": resolver}
    if via is not None:
        facts["resolved_via"] = via
    facts["addresses"] = addresses
    facts["a_records"] = a_records if a_records is not None else [a for a in addresses if ":" not in a]
    facts["aaaa_records"] = aaaa_records if aaaa_records is not None else [a for a in addresses if ":" in a]
    facts["lookup_ms"] = round((time.monotonic() - t0) * 1000.0, 1) if t0 is not None else 0.0
    return facts


async def _lookup(
    ctx: RunContext, qname: dns.name.Name, rdtypes: tuple[str, ...], servers: tuple[str, ...]
) -> list[Lookup]:
    """The resolver's lookups, each noted in the transcript."""
    lookups = await ctx.resolver.lookup(qname, rdtypes, servers, ctx.config.timeout_s)
    name = qname.to_text(omit_final_dot=True)
    for lookup in lookups:
        ctx.transcript.note(f"{lookup.rdtype} {name} -> {lookup.shown} ({lookup.elapsed_ms:.0f} ms)")
    return lookups


def _combined_kind(a: Lookup, aaaa: Lookup) -> DnsKind | ConfigKind:
    kinds = {a.kind or DnsKind.NO_ADDRESS, aaaa.kind or DnsKind.NO_ADDRESS}
    return next(k for k in KIND_PRIORITY if k in kinds)


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
        return Outcome.failed(summary, DnsKind.POLICY_DENIED, detail=reasons, **facts)
    refused = ctx.admit_addresses(allowed) if ctx.admit_addresses is not None else None
    if refused is not None:
        return _no_connection(
            ctx, DnsKind.RATE_LIMITED, f"not admitted: {refused}", f"Not run against {host}: {refused}", refused,
            **facts,
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
    kind: DnsKind | ConfigKind,
    a: Lookup,
    aaaa: Lookup,
    servers: tuple[str, ...],
    facts: dict[str, Any],
) -> Outcome:
    asked = ", ".join(servers) if servers else "the system's DNS resolver"
    if kind is DnsKind.NO_ADDRESS:
        mx = await _mx_records(ctx, qname, servers)
        if mx:
            facts["mx_records"] = mx
            shown = ", ".join(r.rstrip(".") for r in mx[:MAX_RECORDS_SHOWN])
            return Outcome.failed(
                f"{host} has no address (A/AAAA) records but has mail exchanger (MX) records: {shown}. "
                "It looks like a mail domain, not the SMTP server's host name.",
                DnsKind.MAIL_DOMAIN_NOT_HOST,
                **facts,
            )
        summary = f"{host} exists in DNS but has no address (A or AAAA) records ({asked} asked)."
    elif kind is DnsKind.NXDOMAIN:
        summary = f"{host} does not exist in DNS (NXDOMAIN from {asked})."
    elif kind is DnsKind.TIMEOUT:
        summary = f"No DNS answer for {host} from {asked} within {ctx.config.timeout_s:g} s."
    else:
        detail = a.detail if a.kind == kind else aaaa.detail
        summary = f"DNS lookup of {host} failed: {detail}."
    return Outcome.failed(summary, kind, **facts)


async def _mx_records(ctx: RunContext, qname: dns.name.Name, servers: tuple[str, ...]) -> list[str]:
    """MX records as "preference exchange", best first; [] on any failure (the hint is optional)."""
    (lookup,) = await _lookup(ctx, qname, ("MX",), servers)
    return sorted(lookup.records, key=lambda r: (int(r.split()[0]) if r.split()[0].isdigit() else 65536, r))
