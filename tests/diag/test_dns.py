"""The dns stage against a real DNS server on loopback (tests.dns_responder), over real UDP.

The runs' resolvers read two developer knobs from the environment (diag.resolver docstring): the DNS port, so
the responder can listen on an ephemeral port, and the resolv.conf path, so "system resolver" tests ask
the responder instead of the machine's DNS servers (tests stay on loopback).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from diag import resolver
from diag.config import SmtpConfig
from diag.findings import finding_for
from diag.kinds import ConfigKind, DnsKind
from diag.policy import EgressPolicy
from diag.report import Status
from diag.stages import dns as dns_stage
from diag.stages.base import Outcome, RunContext
from diag.transcript import Transcript
from tests.dns_responder import DnsResponder, point_dns_stage_at

ZONE = {
    "smtp.test.": {"A": ["127.0.0.3", "127.0.0.2"], "AAAA": ["::1"]},
    "v4only.test.": {"A": ["127.0.0.1"]},
    "maildomain.test.": {"MX": ["20 mx2.maildomain.test.", "10 mx1.maildomain.test."]},
    "txtonly.test.": {"TXT": ['"v=spf1 -all"']},
    "metadata.test.": {"A": ["169.254.169.254"], "AAAA": ["fd00:ec2::254"]},
    "mixed.test.": {"A": ["169.254.169.254", "127.0.0.1"], "AAAA": ["fe80::1", "::1"]},
    "mapped.test.": {"AAAA": ["::ffff:169.254.169.254", "::ffff:127.0.0.9", "::1"]},
    # What a DNS64 resolver on the local-use NAT64 prefix answers for 169.254.169.254 (RFC 6052 /48 layout).
    "dns64.test.": {"AAAA": ["64:ff9b:1:a9fe:a9:fe00::", "::1"]},
    "alias.test.": {"CNAME": ["v4only.test."]},
    "half.test.": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "refused.test.": {"A": ["127.0.0.1"]},
}
SERVFAIL = {"broken.test."}
REFUSED = {"refused.test."}
DROP = {"slow.test.", "half.test. AAAA"}
SHORT_TIMEOUT_S = 0.5
# A hard bound for a stage whose lookups time out: the timeout, dnspython's backoff step, our guard.
STAGE_BOUND_S = SHORT_TIMEOUT_S + resolver.RESOLVER_GRACE_S + 1.0


@pytest.fixture(scope="module")
def responder() -> Iterator[DnsResponder]:
    with DnsResponder(ZONE, servfail=SERVFAIL, refused=REFUSED, drop=DROP) as server:
        yield server


@pytest.fixture
def dns_server(responder: DnsResponder, monkeypatch: pytest.MonkeyPatch) -> DnsResponder:
    """The responder, with the stage pointed at its port and its query log cleared for this test."""
    point_dns_stage_at(responder, monkeypatch)
    responder.queries.clear()
    return responder


@pytest.fixture
def system_resolv_conf(dns_server: DnsResponder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A resolv.conf naming the responder, used as "the system's" configuration."""
    point_dns_stage_at(dns_server, monkeypatch, tmp_path)
    return tmp_path / "resolv.conf"


def make_ctx(
    host: str,
    *,
    port: int = 587,
    servers: tuple[str, ...] = ("127.0.0.1",),
    timeout_s: float = 5.0,
    policy: EgressPolicy | None = None,
) -> RunContext:
    config = SmtpConfig(
        host=host, port=port, from_email="app@example.com", dns_servers=servers, timeout_s=timeout_s
    )
    ctx = RunContext(config=config, policy=policy or EgressPolicy.default())
    ctx.transcript = Transcript(ctx.started)
    return ctx


async def run_check(ctx: RunContext) -> Outcome:
    async with asyncio.timeout(ctx.config.timeout_s * 2 + 5):  # the stage must be bounded on its own
        outcome = await dns_stage.check(ctx)
    json.dumps(outcome.facts)  # facts must be JSON-serialisable
    if outcome.kind is not None:  # every failure kind has a row in the findings table
        finding = finding_for("dns", outcome.kind, ctx.config, outcome.reply_code, outcome.detail)
        assert not finding.cause.startswith("Unclassified"), outcome.kind
    return outcome


def notes(ctx: RunContext) -> list[str]:
    return [line.text for line in ctx.transcript.since(0)]


# -- IP literals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1"), ("2130706433", "127.0.0.1")],
)
async def test_ip_literal_needs_no_lookup(dns_server: DnsResponder, host: str, expected: str) -> None:
    ctx = make_ctx(host)
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.facts["ip_literal"] is True
    assert outcome.facts["addresses"] == [expected]
    assert ctx.addresses == [expected]
    assert dns_server.queries == []
    assert "no DNS lookup" in outcome.summary


@pytest.mark.parametrize("host", ["169.254.169.254", "0xA9FEA9FE", "2852039166", "[::ffff:169.254.169.254]"])
async def test_ip_literal_metadata_is_denied_in_any_spelling(dns_server: DnsResponder, host: str) -> None:
    ctx = make_ctx(host)
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "policy_denied"
    assert ctx.addresses == []
    assert "cloud metadata" in outcome.summary
    assert dns_server.queries == []


# -- names that resolve --------------------------------------------------------------------------


async def test_name_with_a_and_aaaa(dns_server: DnsResponder) -> None:
    ctx = make_ctx("smtp.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.kind is None
    assert ctx.addresses == ["127.0.0.3", "127.0.0.2", "::1"]  # IPv4 first, DNS order kept
    facts = outcome.facts
    assert facts["a_records"] == ["127.0.0.3", "127.0.0.2"]
    assert facts["aaaa_records"] == ["::1"]
    assert facts["addresses"] == ["127.0.0.3", "127.0.0.2", "::1"]
    assert facts["allowed_addresses"] == ["127.0.0.3", "127.0.0.2", "::1"]
    assert facts["denied_addresses"] == {}
    assert facts["resolver"] == ["127.0.0.1"]
    assert facts["ip_literal"] is False
    assert facts["lookup_ms"] >= 0
    assert outcome.summary == "smtp.test resolved to 3 addresses: 127.0.0.3, 127.0.0.2, ::1."
    assert sorted(dns_server.asked("smtp.test")) == ["A", "AAAA"]  # once each
    lines = notes(ctx)
    assert any(line.startswith("A smtp.test -> 127.0.0.3, 127.0.0.2 (") for line in lines)
    assert any(line.startswith("AAAA smtp.test -> ::1 (") for line in lines)


async def test_ipv4_only_name(dns_server: DnsResponder) -> None:
    ctx = make_ctx("v4only.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.1"]
    assert outcome.facts["aaaa_records"] == []
    assert outcome.summary == "v4only.test resolved to 1 address: 127.0.0.1."


async def test_cname_is_followed(dns_server: DnsResponder) -> None:
    ctx = make_ctx("alias.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.1"]
    assert outcome.facts["canonical_name"] == "v4only.test."


async def test_one_family_timing_out_still_passes_with_the_other(dns_server: DnsResponder) -> None:
    ctx = make_ctx("half.test", timeout_s=SHORT_TIMEOUT_S)
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.1"]
    assert outcome.facts["aaaa_error"].startswith("timeout")


# -- names that do not resolve -------------------------------------------------------------------


async def test_nxdomain(dns_server: DnsResponder) -> None:
    ctx = make_ctx("nope.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "nxdomain"
    assert ctx.addresses == []
    assert outcome.summary == "nope.test does not exist in DNS (NXDOMAIN from 127.0.0.1)."


async def test_no_address_records(dns_server: DnsResponder) -> None:
    ctx = make_ctx("txtonly.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "no_address"
    assert "mx_records" not in outcome.facts
    assert "MX" in dns_server.asked("txtonly.test")  # the mail-domain hint was looked for


async def test_mail_domain_instead_of_host(dns_server: DnsResponder) -> None:
    ctx = make_ctx("maildomain.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "mail_domain_not_host"
    assert outcome.facts["mx_records"] == ["10 mx1.maildomain.test.", "20 mx2.maildomain.test."]
    assert "mx1.maildomain.test" in outcome.summary
    assert "mail domain" in outcome.summary
    assert ctx.addresses == []


async def test_servfail(dns_server: DnsResponder) -> None:
    ctx = make_ctx("broken.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "servfail"
    assert "SERVFAIL" in outcome.summary
    assert f"127.0.0.1@{dns_server.port}" in outcome.summary  # which server said it


async def test_refused_counts_as_servfail_and_says_refused(dns_server: DnsResponder) -> None:
    ctx = make_ctx("refused.test")
    outcome = await run_check(ctx)
    assert outcome.kind == "servfail"
    assert "REFUSED" in outcome.summary


async def test_timeout_is_bounded(dns_server: DnsResponder) -> None:
    ctx = make_ctx("slow.test", timeout_s=SHORT_TIMEOUT_S)
    async with asyncio.timeout(STAGE_BOUND_S):
        outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "timeout"
    assert outcome.summary == "No DNS answer for slow.test from 127.0.0.1 within 0.5 s."
    assert set(dns_server.asked("slow.test")) == {"A", "AAAA"}


@pytest.mark.parametrize("host", ["a..b.test", "x" * 64 + ".test"])
async def test_invalid_name(dns_server: DnsResponder, host: str) -> None:
    ctx = make_ctx(host)
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == ConfigKind.INVALID_HOST
    assert dns_server.queries == []


# -- egress policy -------------------------------------------------------------------------------


async def test_every_address_denied(dns_server: DnsResponder) -> None:
    ctx = make_ctx("metadata.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "policy_denied"
    assert ctx.addresses == []
    assert outcome.facts["allowed_addresses"] == []
    assert set(outcome.facts["denied_addresses"]) == {"169.254.169.254", "fd00:ec2::254"}
    assert "cloud metadata" in outcome.summary
    assert "No connection was made" in outcome.summary
    finding = finding_for("dns", DnsKind.POLICY_DENIED, ctx.config, None, outcome.detail)
    assert "169.254.169.254 is link-local (cloud metadata service)" in finding.cause


async def test_some_addresses_denied_still_passes(dns_server: DnsResponder) -> None:
    ctx = make_ctx("mixed.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.1", "::1"]
    assert set(outcome.facts["denied_addresses"]) == {"169.254.169.254", "fe80::1"}
    assert "Skipped by the egress policy" in outcome.summary
    assert any(line.startswith("egress policy: 169.254.169.254") for line in notes(ctx))


async def test_ipv4_mapped_aaaa_records_are_vetted_as_ipv4(dns_server: DnsResponder) -> None:
    ctx = make_ctx("mapped.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.9", "::1"]  # the mapped one connects as IPv4, so it goes first
    assert list(outcome.facts["denied_addresses"]) == ["::ffff:169.254.169.254"]


async def test_local_use_nat64_aaaa_records_are_vetted_by_their_ipv4(dns_server: DnsResponder) -> None:
    ctx = make_ctx("dns64.test")
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["::1"]
    assert outcome.facts["denied_addresses"] == {
        "64:ff9b:1:a9fe:a9:fe00::": "64:ff9b:1:a9fe:a9:fe00:: embeds 169.254.169.254, which is link-local"
        " (cloud metadata service)"
    }


async def test_allow_list_from_the_policy(dns_server: DnsResponder) -> None:
    ctx = make_ctx("smtp.test", policy=EgressPolicy(allow_networks=["127.0.0.2/32"]))
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert ctx.addresses == ["127.0.0.2"]


async def test_port_denied_makes_no_lookup(dns_server: DnsResponder) -> None:
    ctx = make_ctx("smtp.test", port=22, policy=EgressPolicy(allowed_ports=[25, 465, 587]))
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "policy_denied"
    assert "port 22" in outcome.summary
    assert ctx.addresses == []
    assert dns_server.queries == []


# -- the system resolver -------------------------------------------------------------------------


async def test_localhost_resolves_via_the_system(dns_server: DnsResponder, system_resolv_conf: Path) -> None:
    ctx = make_ctx("localhost", servers=())
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.facts["resolver"] == "system"
    assert outcome.facts["resolved_via"] == "hosts file"
    assert "127.0.0.1" in ctx.addresses
    assert dns_server.asked("localhost") == []  # the hosts file answers first, as getaddrinfo does


async def test_name_unknown_to_dns_falls_back_to_the_system_resolver(
    dns_server: DnsResponder, system_resolv_conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an empty hosts file for our own lookup, DNS says NXDOMAIN and getaddrinfo gets the last word."""
    empty = tmp_path / "hosts"
    empty.write_text("")
    monkeypatch.setattr(resolver, "HOSTS_FILE", str(empty))
    ctx = make_ctx("localhost", servers=())
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.facts["resolved_via"] == "system"
    assert sorted(dns_server.asked("localhost")) == ["A", "AAAA"]  # DNS was asked first, said NXDOMAIN


def test_hosts_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.5 mail.corp\n")
    assert resolver.hosts_file_addresses("mail.corp", str(hosts)) == ["10.0.0.5"]
    hosts.write_text("10.0.0.6 mail.corp\n10.0.0.7 mail.corp\n")  # another size: a change the stat sees
    assert resolver.hosts_file_addresses("mail.corp", str(hosts)) == ["10.0.0.6", "10.0.0.7"]
    hosts.unlink()
    assert resolver.hosts_file_addresses("mail.corp", str(hosts)) == []


def test_hosts_file_parsing(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n127.0.0.1 localhost\n10.0.0.5 mail.corp mail # inline\n::1 mail.corp\nbad line\n")
    assert resolver.hosts_file_addresses("MAIL.corp.", str(hosts)) == ["10.0.0.5", "::1"]
    assert resolver.hosts_file_addresses("mail", str(hosts)) == ["10.0.0.5"]
    assert resolver.hosts_file_addresses("other", str(hosts)) == []
    assert resolver.hosts_file_addresses("x", str(tmp_path / "missing")) == []


async def test_system_resolv_conf_servers_are_used(
    dns_server: DnsResponder, system_resolv_conf: Path
) -> None:
    ctx = make_ctx("smtp.test", servers=())
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.facts["resolved_via"] == "dns"
    assert outcome.facts["resolver"] == "system"
    assert ctx.addresses == ["127.0.0.3", "127.0.0.2", "::1"]


async def test_localhost_with_explicit_dns_servers_is_dns_only(dns_server: DnsResponder) -> None:
    ctx = make_ctx("localhost")
    outcome = await run_check(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.kind == "nxdomain"
    assert ctx.addresses == []


async def test_missing_resolv_conf_still_finds_localhost(
    dns_server: DnsResponder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(resolver.RESOLV_CONF_ENV, str(tmp_path / "absent.conf"))
    monkeypatch.setattr(resolver, "HOSTS_FILE", str(tmp_path / "absent-hosts"))
    ctx = make_ctx("localhost", servers=())
    outcome = await run_check(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.facts["resolved_via"] == "system"
    assert "no DNS resolver configured" in outcome.facts["a_error"]


async def test_runner_never_connects_to_a_denied_address(dns_server: DnsResponder) -> None:
    """Through the whole runner: the dns stage fails on policy, so the connect stage never runs."""
    from diag.runner import run

    config = SmtpConfig(
        host="metadata.test", port=587, from_email="app@example.com", dns_servers=("127.0.0.1",), timeout_s=2.0
    )
    report = await run(config)
    stages = {stage.name: stage for stage in report.stages}
    assert stages["dns"].status is Status.FAILED
    assert stages["dns"].finding is not None
    assert stages["dns"].finding.code == "dns.policy_denied"
    assert stages["connect"].status is Status.SKIPPED
    assert any("egress policy" in line.text for line in stages["dns"].transcript)
