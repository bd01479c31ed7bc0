"""Egress policy: which addresses and ports a diagnosis may connect to (the SSRF guard).

The service lets anyone name a host, so the engine resolves once, vets every address here, and connects
only to vetted addresses (the hostname is kept for SNI and certificate checks, never re-resolved).

Some destinations are denied whatever the allow list says: link-local (cloud metadata at 169.254.169.254,
fe80::/10), the metadata services that live elsewhere (AWS IMDS over IPv6, Alibaba, Azure's wire
server), multicast, unspecified, "this network" and broadcast. An IPv6 address that embeds an IPv4 one
(IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 well-known and local-use, 6to4, Teredo) is judged
by the embedded address too, because the network may deliver it there. Private and loopback networks are
allowed by default: on-premises SMTP servers live there; a deployment that must not reach them passes
`deny_networks` or `allow_networks`.
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# (network, why it is never a destination). Checked in order; the first match gives the reason.
ALWAYS_DENIED: Final[tuple[tuple[IPNetwork, str], ...]] = (
    (ip_network("169.254.169.254/32"), "link-local (cloud metadata service)"),
    (ip_network("169.254.0.0/16"), "link-local"),
    (ip_network("fd00:ec2::254/128"), "the AWS instance metadata service (IPv6)"),
    (ip_network("100.100.100.200/32"), "the Alibaba Cloud metadata service"),
    (ip_network("168.63.129.16/32"), "the Azure platform wire server (metadata)"),
    (ip_network("fe80::/10"), "link-local"),
    (ip_network("0.0.0.0/32"), "unspecified (it means this host, not a server)"),
    (ip_network("0.0.0.0/8"), 'in "this network" (0.0.0.0/8), never a destination'),
    (ip_network("::/128"), "unspecified (it means this host, not a server)"),
    (ip_network("255.255.255.255/32"), "the broadcast address"),
    (ip_network("224.0.0.0/4"), "multicast"),
    (ip_network("ff00::/8"), "multicast"),
)

# IPv6 prefixes whose low 32 bits are an IPv4 address the packet may end up at.
IPV4_COMPATIBLE: Final = ip_network("::/96")
# RFC 2765 (SIIT) IPv4-translated: ::ffff:0:a.b.c.d, i.e. ::ffff:0:0:0/96 (::ffff:0:0/96 is IPv4-mapped).
IPV4_TRANSLATED: Final = ip_network("::ffff:0:0:0/96")

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use) and where each puts the IPv4 address. The
# local-use /48 is often split into /96s; an address in its first /96 is read that way, because its
# /48 reading (0.0.0.0 plus non-zero suffix bits) is no valid RFC 6052 address at all. Checked in order.
NAT64_PREFIXES: Final[tuple[IPv6Network, ...]] = (
    IPv6Network("64:ff9b::/96"),
    IPv6Network("64:ff9b:1::/96"),
    IPv6Network("64:ff9b:1::/48"),
)
RFC6052_PREFIX_LENGTHS: Final = frozenset({32, 40, 48, 56, 64, 96})

# What inet_aton can accept: digits, hex digits, "x" and dots. The guard matters because glibc's
# inet_aton also accepts "1.2.3.4 anything" (it stops at whitespace).
_INET_ATON_CHARS: Final = re.compile(r"[0-9a-fA-FxX.]+")


# Cached: every run asks it of its host (the dns stage, the service's per-server limit key), and for a name
# ipaddress raises and catches two exceptions before saying no (~1 % of the event loop under load, py-spy).
# A pure function of the text; the addresses it returns are immutable.
@functools.lru_cache(maxsize=1024)
def parse_ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal in any spelling, else None (it is a name).

    Accepts dotted quads, bracketed or bare IPv6 (with a zone), and every form inet_aton accepts:
    a decimal integer ("2852039166"), hex ("0xA9FEA9FE"), octal parts ("0251.0376.0251.0376") and short
    forms ("127.1"). One trailing dot is ignored, as resolvers and browsers do. IPv4-mapped IPv6 comes back
    as IPv4, so policy and connection see the address the packets go to.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        try:
            return _unmap(IPv6Address(text))
        except ValueError:
            return None
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if not text:
        return None
    try:
        return _unmap(ip_address(text))
    except ValueError:
        pass
    if _INET_ATON_CHARS.fullmatch(text) is None:
        return None
    try:
        return IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def normalise_address(text: str) -> IPAddress:
    """Parse an address in any spelling; IPv4-mapped IPv6 becomes IPv4. Raises ValueError for a name."""
    address = parse_ip_literal(text)
    if address is None:
        raise ValueError(f"{text[:100]!r} is not an IP address")
    return address


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one may be delivered to, if any: NAT64 (well-known and local-use),
    IPv4-compatible, IPv4-translated, 6to4 or Teredo."""
    for prefix in NAT64_PREFIXES:
        if address in prefix:
            return rfc6052_ipv4(address, prefix.prefixlen)
    if address in IPV4_TRANSLATED or (address in IPV4_COMPATIBLE and int(address) > 1):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        # (server, client): packets to a Teredo address are relayed to the client's public (NAT) address,
        # which the address carries obfuscated and Python has already de-obfuscated. The server only
        # helps the client qualify; our packets never go there.
        return address.teredo[1]
    return address.sixtofour


def rfc6052_ipv4(address: IPv6Address, prefix_length: int) -> IPv4Address:
    """The IPv4 address in an IPv4-embedded IPv6 address with a prefix of this length (RFC 6052 2.2).

    For prefixes shorter than /96 the address bytes follow the prefix but skip bits 64-71 (the "u" octet),
    so for a /48 the first two bytes sit in bits 48-63 and the last two in bits 72-87. Dropping byte 8
    first puts the four bytes right after the prefix for every length up to /64; a /96 holds them in
    the last four bytes.
    """
    if prefix_length not in RFC6052_PREFIX_LENGTHS:
        raise ValueError(f"RFC 6052 allows prefix lengths 32, 40, 48, 56, 64 and 96, not {prefix_length}")
    packed = address.packed
    if prefix_length == 96:
        return IPv4Address(packed[12:])
    without_u = packed[:8] + packed[9:]
    start = prefix_length // 8
    return IPv4Address(without_u[start : start + 4])


def _network(value: str | IPNetwork) -> IPNetwork:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    return ip_network(value.strip(), strict=False)


class EgressPolicy:
    """Vets destinations. `vet_*` return None when allowed, else a reason a person can read."""

    def __init__(
        self,
        *,
        allow_networks: Iterable[str | IPNetwork] = (),
        deny_networks: Iterable[str | IPNetwork] = (),
        allowed_ports: Iterable[int] | None = None,
    ) -> None:
        self.allow_networks: tuple[IPNetwork, ...] = tuple(_network(n) for n in allow_networks)
        self.deny_networks: tuple[IPNetwork, ...] = tuple(_network(n) for n in deny_networks)
        self.allowed_ports: frozenset[int] | None = (
            None if allowed_ports is None else frozenset(int(p) for p in allowed_ports)
        )

    @classmethod
    def default(cls) -> EgressPolicy:
        """Every address except the always-denied ones, any port."""
        return cls()

    def __repr__(self) -> str:
        return (
            f"EgressPolicy(allow_networks={[str(n) for n in self.allow_networks]}, "
            f"deny_networks={[str(n) for n in self.deny_networks]}, "
            f"allowed_ports={sorted(self.allowed_ports) if self.allowed_ports is not None else None})"
        )

    def vet_address(self, address: str) -> str | None:
        try:
            parsed = normalise_address(address)
        except ValueError:
            return f"{address[:100]!r} is not an IP address"
        spelled = address.strip()[:64]
        # Name the address as given and as parsed, so "0xA9FEA9FE" is recognisable in a report.
        shown = str(parsed) if spelled == str(parsed) else f"{spelled} ({parsed})"
        candidates: list[IPAddress] = [parsed]
        if isinstance(parsed, IPv6Address):
            embedded = _embedded_ipv4(parsed)
            if embedded is not None:
                candidates.append(embedded)
        for candidate in candidates:
            via = "" if candidate is parsed else f" (it embeds {candidate})"
            for network, why in ALWAYS_DENIED:
                if candidate in network:
                    subject = shown if candidate is parsed else f"{shown} embeds {candidate}, which"
                    return f"{subject} is {why}"
            for network in self.deny_networks:
                if candidate in network:
                    return f"{shown} is in the denied network {network}{via}"
        if self.allow_networks and not any(parsed in n for n in self.allow_networks):
            allowed = ", ".join(str(n) for n in self.allow_networks)
            return f"{shown} is not in the allowed networks ({allowed})"
        return None

    def vet_port(self, port: int) -> str | None:
        if not 1 <= port <= 65535:
            return f"port {port} is not a valid TCP port (1-65535)"
        if self.allowed_ports is not None and port not in self.allowed_ports:
            allowed = ", ".join(str(p) for p in sorted(self.allowed_ports)) or "none"
            return f"port {port} is not in the allowed ports ({allowed})"
        return None
