"""EgressPolicy and IP literal parsing: the SSRF guard, in every spelling an attacker might use."""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diag.policy import EgressPolicy, normalise_address, parse_ip_literal, rfc6052_ipv4

ALWAYS_DENIED = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "[::ffff:169.254.169.254]",
    "fd00:ec2::254",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "fe80::1",
    "fe80::1%eth0",
    "169.254.1.1",
    "2852039166",  # decimal integer
    "0xA9FEA9FE",  # hex integer
    "0251.0376.0251.0376",  # octal parts
    "169.254.43518",  # short form: the last part fills the remaining bytes
    "::ffff:0.0.0.0",
    "::ffff:255.255.255.255",
    "::ffff:224.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "0.1.2.3",  # "this network"
]

ALLOWED = ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.10", "203.0.113.5", "172.16.0.1", "2001:db8::1"]


@pytest.mark.parametrize("address", ALWAYS_DENIED)
def test_always_denied_by_default(address: str) -> None:
    reason = EgressPolicy.default().vet_address(address)
    assert reason is not None
    assert "not an IP address" not in reason


@pytest.mark.parametrize("address", ALWAYS_DENIED)
def test_always_denied_even_when_allow_list_covers_everything(address: str) -> None:
    policy = EgressPolicy(allow_networks=["0.0.0.0/0", "::/0"])
    assert policy.vet_address(address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_private_loopback_and_public_are_allowed_by_default(address: str) -> None:
    assert EgressPolicy.default().vet_address(address) is None


def test_metadata_reason_names_the_metadata_service() -> None:
    assert EgressPolicy.default().vet_address("169.254.169.254") == (
        "169.254.169.254 is link-local (cloud metadata service)"
    )


def test_reason_shows_the_spelling_and_the_address() -> None:
    reason = EgressPolicy.default().vet_address("0xA9FEA9FE")
    assert reason is not None
    assert reason.startswith("0xA9FEA9FE (169.254.169.254) is link-local")


def test_aws_ipv6_metadata_reason() -> None:
    reason = EgressPolicy.default().vet_address("fd00:ec2::254")
    assert reason is not None
    assert "AWS" in reason
    # The rest of fd00::/8 is ordinary private space.
    assert EgressPolicy.default().vet_address("fd00:ec2::253") is None


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        (" 10.0.0.5 ", "10.0.0.5"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::ffff:a9fe:a9fe", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ],
)
def test_parse_ip_literal_spellings(spelling: str, expected: str) -> None:
    assert parse_ip_literal(spelling) == ip_address(expected)
    assert normalise_address(spelling) == ip_address(expected)


@pytest.mark.parametrize(
    "name",
    [
        "smtp.example.com",
        "localhost",
        "example",
        "deadbeef",
        "0x1.example.com",
        "1.2.3.4 extra",  # glibc's inet_aton stops at whitespace; we must not
        "1.2.3.4\textra",
        "1.2.3.4.5",
        "256.1.1.1.1",
        "[smtp.example.com]",
        "[127.0.0.1]",  # brackets are for IPv6 only
        "",
        "..",
        "4294967296",  # one past 255.255.255.255
    ],
)
def test_parse_ip_literal_names_are_not_literals(name: str) -> None:
    assert parse_ip_literal(name) is None
    with pytest.raises(ValueError):
        normalise_address(name)


def test_vet_address_rejects_a_name() -> None:
    reason = EgressPolicy.default().vet_address("smtp.example.com")
    assert reason is not None
    assert "not an IP address" in reason


def test_allow_list_restricts_to_its_networks() -> None:
    policy = EgressPolicy(allow_networks=["10.0.0.0/8", ip_network("2001:db8::/32")])
    assert policy.vet_address("10.1.2.3") is None
    assert policy.vet_address("2001:db8::25") is None
    assert policy.vet_address("::ffff:10.1.2.3") is None  # mapped form of an allowed address
    reason = policy.vet_address("192.168.1.10")
    assert reason == "192.168.1.10 is not in the allowed networks (10.0.0.0/8, 2001:db8::/32)"
    assert policy.vet_address("127.0.0.1") is not None
    assert policy.vet_address("::1") is not None


def test_deny_list_adds_denials_in_every_spelling() -> None:
    policy = EgressPolicy(deny_networks=["127.0.0.0/8", "10.0.0.0/8"])
    spellings = ("127.0.0.1", "2130706433", "0x7f000001", "::ffff:127.0.0.1", "10.0.0.5", "64:ff9b::a00:5")
    for spelling in spellings:
        reason = policy.vet_address(spelling)
        assert reason is not None, spelling
        assert "denied network" in reason, spelling
    assert policy.vet_address("192.168.1.10") is None
    assert policy.vet_address("::1") is None


def test_deny_beats_allow() -> None:
    policy = EgressPolicy(allow_networks=["10.0.0.0/8"], deny_networks=["10.9.0.0/16"])
    assert policy.vet_address("10.1.0.1") is None
    assert policy.vet_address("10.9.0.1") is not None


def test_bad_network_in_configuration_is_an_error() -> None:
    with pytest.raises(ValueError):
        EgressPolicy(allow_networks=["not-a-network"])


def test_ports_any_by_default() -> None:
    policy = EgressPolicy.default()
    for port in (25, 465, 587, 2525, 22, 65535, 1):
        assert policy.vet_port(port) is None


def test_ports_restricted_when_given() -> None:
    policy = EgressPolicy(allowed_ports=[25, 465, 587, 2525])
    for port in (25, 465, 587, 2525):
        assert policy.vet_port(port) is None
    assert policy.vet_port(22) == "port 22 is not in the allowed ports (25, 465, 587, 2525)"
    assert policy.vet_port(6379) is not None


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_out_of_range_are_denied(port: int) -> None:
    assert EgressPolicy.default().vet_port(port) is not None


def test_repr_shows_the_rules() -> None:
    text = repr(EgressPolicy(allow_networks=["10.0.0.0/8"], allowed_ports=[25]))
    assert "10.0.0.0/8" in text
    assert "[25]" in text


link_local_v4 = st.integers(
    min_value=int(IPv4Address("169.254.0.0")), max_value=int(IPv4Address("169.254.255.255"))
)


@given(link_local_v4)
def test_every_link_local_address_is_denied_in_every_spelling(value: int) -> None:
    address = IPv4Address(value)
    spellings = [
        str(address),
        str(value),
        hex(value),
        hex(value).upper().replace("X", "x"),
        ".".join(f"0{int(octet):o}" for octet in str(address).split(".")),
        f"::ffff:{address}",
        str(IPv6Address(f"::ffff:{address}")),  # the hex spelling ::ffff:a9fe:xxxx
        f"[::ffff:{address}]",
    ]
    policy = EgressPolicy(allow_networks=["0.0.0.0/0", "::/0"])
    for spelling in spellings:
        assert parse_ip_literal(spelling) == address, spelling
        assert policy.vet_address(spelling) is not None, spelling


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_integer_spellings_agree_with_inet_aton(value: int) -> None:
    """Our parse of decimal and hex integers matches the C library that a connect() would use."""
    expected = IPv4Address(socket.inet_aton(str(value)))
    assert parse_ip_literal(str(value)) == expected
    assert parse_ip_literal(hex(value)) == expected


# -- IPv6 translation forms (issue 8, item 11) ---------------------------------------------------
# Each form is built here from the IPv4 address by the layout its RFC draws, not by diag.policy's code.


def local_use_nat64(v4: str) -> str:
    """RFC 8215's 64:ff9b:1::/48 with the RFC 6052 /48 layout: bytes 1-2 in bits 48-63, the zero "u" octet
    in bits 64-71, bytes 3-4 in bits 72-87, a zero suffix."""
    a, b, c, d = IPv4Address(v4).packed
    return f"64:ff9b:1:{a:02x}{b:02x}:{c:02x}:{d:02x}00::"


def teredo(v4_client: str, server: str = "65.54.227.120") -> str:
    """RFC 4380: 2001::/32, the server's IPv4, flags, the port and the client's IPv4 both inverted."""
    s = IPv4Address(server).packed.hex()
    c = (int(IPv4Address(v4_client)) ^ 0xFFFFFFFF).to_bytes(4, "big").hex()
    return f"2001:0:{s[:4]}:{s[4:]}:8000:63bf:{c[:4]}:{c[4:]}"


def ipv4_translated(v4: str) -> str:
    """RFC 2765 (SIIT): ::ffff:0:a.b.c.d (not ::ffff:a.b.c.d, the IPv4-mapped form)."""
    return f"::ffff:0:{v4}"


TRANSLATIONS = [local_use_nat64, teredo, ipv4_translated]
DENYING = EgressPolicy(deny_networks=["127.0.0.0/8", "10.0.0.0/8"])


def check_the_helpers() -> None:
    """The helpers spell RFC 6052's own /48 example (section 2.4) and the usual Teredo example."""
    rfc6052_example = local_use_nat64("192.0.2.33").replace("64:ff9b:1:", "2001:db8:122:")
    assert ip_address(rfc6052_example) == ip_address("2001:db8:122:c000:2:2100::")
    assert ip_address(teredo("192.0.2.45")) == ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert ip_address(ipv4_translated("1.2.3.4")) == ip_address("::ffff:0:102:304")


@pytest.mark.parametrize("form", TRANSLATIONS)
def test_translated_metadata_address_is_always_denied(form: Callable[[str], str]) -> None:
    check_the_helpers()
    address = form("169.254.169.254")
    for policy in (EgressPolicy.default(), EgressPolicy(allow_networks=["0.0.0.0/0", "::/0"])):
        reason = policy.vet_address(address)
        assert reason is not None, address
        assert reason.startswith(address), reason
        assert reason.endswith("embeds 169.254.169.254, which is link-local (cloud metadata service)"), reason


@pytest.mark.parametrize("form", TRANSLATIONS)
@pytest.mark.parametrize(("v4", "network"), [("127.0.0.1", "127.0.0.0/8"), ("10.20.30.40", "10.0.0.0/8")])
def test_translated_address_in_a_denied_network_is_denied(form: Callable[[str], str], v4: str, network: str) -> None:
    address = form(v4)
    reason = DENYING.vet_address(address)
    assert reason is not None, address
    assert reason.endswith(f"is in the denied network {network} (it embeds {v4})"), reason
    # The control: the same form of addresses outside the denied networks stays allowed.
    for harmless in ("203.0.113.5", "192.0.2.33", "8.8.8.8"):
        assert DENYING.vet_address(form(harmless)) is None, form(harmless)


def test_local_use_nat64_96_subprefix_is_read_as_a_96() -> None:
    """64:ff9b:1::/96 is the usual split of the /48; its addresses are no valid /48 encoding."""
    assert DENYING.vet_address("64:ff9b:1::10.1.2.3") == (
        "64:ff9b:1::10.1.2.3 (64:ff9b:1::a01:203) is in the denied network 10.0.0.0/8 (it embeds 10.1.2.3)"
    )
    assert DENYING.vet_address("64:ff9b:1::203.0.113.5") is None


@pytest.mark.parametrize(
    ("address", "length"),
    [  # RFC 6052 section 2.4: 192.0.2.33 under a prefix of every length the RFC allows
        ("2001:db8:c000:221::", 32),
        ("2001:db8:1c0:2:21::", 40),
        ("2001:db8:122:c000:2:2100::", 48),
        ("2001:db8:122:3c0:0:221::", 56),
        ("2001:db8:122:344:c0:2:2100:0", 64),
        ("2001:db8:122:344::192.0.2.33", 96),
    ],
)
def test_rfc6052_ipv4_reads_every_prefix_length(address: str, length: int) -> None:
    assert rfc6052_ipv4(IPv6Address(address), length) == IPv4Address("192.0.2.33")


def test_rfc6052_ipv4_refuses_other_lengths() -> None:
    with pytest.raises(ValueError, match="not 80"):
        rfc6052_ipv4(IPv6Address("2001:db8::"), 80)
