"""A CA file that does not help (issue 10, item 6): the issuing intermediate given instead of the root, and a
CA file from an unrelated CA. Real TLS: FakeSMTP serves a trustme chain (root > intermediate > leaf, the
server sending leaf and intermediate, as servers should) over STARTTLS on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trustme

from diag.report import Status
from diag.runner import run
from fake_smtp import FakeSMTP
from tests import certs
from tests.diag.conftest import assert_failed_at, config_for, tls_server

Start = Callable[..., FakeSMTP]


def chain(tmp: Path) -> tuple[certs.CertFiles, trustme.CA, trustme.CA]:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    files = certs.ca_issued(tmp, ca=intermediate)  # the cert file holds the leaf and then the intermediate
    return files, root, intermediate


def pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode("ascii")


async def test_the_issuing_intermediate_as_the_ca_file_asks_for_the_root(
    fake_smtp_factory: Start, cert_dir: Path
) -> None:
    files, root, intermediate = chain(cert_dir)
    srv = tls_server(fake_smtp_factory, files, tls="starttls")
    report = await run(config_for(srv.port, ca_bundle=pem(intermediate)))
    result = assert_failed_at(report, "tls", "tls.ca_file_not_root")
    assert result.finding is not None
    assert "not a root" in result.finding.cause
    assert "root CA's certificate" in result.finding.fix
    assert "issuing CA's certificate" not in result.finding.fix  # what the user already did
    # The root is what it needed: with it, the same server is trusted.
    fixed = await run(config_for(srv.port, ca_bundle=pem(root)))
    assert fixed.stage("tls").status is Status.PASSED


async def test_a_ca_file_from_an_unrelated_ca_says_it_has_nothing_to_do_with_the_server(
    fake_smtp_factory: Start, cert_dir: Path
) -> None:
    files, _, _ = chain(cert_dir)
    srv = tls_server(fake_smtp_factory, files, tls="starttls")
    unrelated = trustme.CA(organization_name="Unrelated Corp")
    report = await run(config_for(srv.port, ca_bundle=pem(unrelated)))
    result = assert_failed_at(report, "tls", "tls.ca_file_unrelated")
    assert result.finding is not None
    assert "has nothing to do with this server" in result.finding.cause
    assert 'the CA file holds "Unrelated Corp' in result.finding.cause  # what the file holds, named
    assert "the server's certificate was issued by \"trustme" in result.finding.cause  # and the real issuer
    # With Insecure Skip TLS Verify the same reading is a warning, and says what skip-verify hides.
    skipped = await run(config_for(srv.port, ca_bundle=pem(unrelated), insecure_skip_tls_verify=True))
    tls = skipped.stage("tls")
    assert tls.status is Status.WARNING
    assert tls.finding is not None and tls.finding.code == "tls.ca_file_unrelated"
    assert "Insecure Skip TLS Verify hides this" in tls.finding.cause
