"""`diag.explain`: every family of log line (docs: /work/shared/LOG-LINES.md) with varied hosts, addresses,
wrappers and noise; the finding comes from the findings table; unknown lines are said to be unknown; secrets
are redacted first. Pure text in, text out: no peer exists for a log line, so no socket is involved.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from diag.explain import (
    MAX_LINES,
    MAX_TEXT_CHARS,
    PATTERNS,
    UNKNOWN_CAUSE,
    ExplainInputError,
    explain_line,
    explain_text,
    redact,
)
from diag.findings import known_codes
from diag.secret import MASK

# (line, expected code, facts the line states). Varied hosts, addresses and wrappers per family.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    # dns
    ("dial tcp: lookup smtp.corp.example on 10.96.0.10:53: no such host", "dns.nxdomain",
     {"host": "smtp.corp.example", "resolver": "10.96.0.10", "family": "go-dns-nxdomain"}),
    ('level=error msg="validate smtp" error="dial tcp: lookup mail.acme.io: no such host"', "dns.nxdomain",
     {"host": "mail.acme.io"}),
    ("dial tcp: lookup relay.local: getaddrinfow: No such host is known.", "dns.nxdomain",
     {"host": "relay.local", "family": "windows-dns-nxdomain"}),
    ("com.sun.mail.util.MailConnectException: Couldn't connect to host, port: smtp.x.org, 25; timeout -1; "
     "nested exception is: java.net.UnknownHostException: smtp.x.org", "dns.nxdomain",
     {"host": "smtp.x.org", "family": "java-unknown-host"}),
    ("Error: getaddrinfo ENOTFOUND smtp.gmial.com", "dns.nxdomain", {"host": "smtp.gmial.com"}),
    ('{"level":"error","error":"dial tcp: lookup smtp.office365.com on 172.20.0.10:53: read udp '
     '10.1.2.3:40000->172.20.0.10:53: i/o timeout"}', "dns.timeout",
     {"host": "smtp.office365.com", "resolver": "172.20.0.10", "family": "go-dns-timeout"}),
    ("dial tcp: lookup smtp.sendgrid.net: Temporary failure in name resolution", "dns.timeout",
     {"family": "dns-temporary-failure"}),
    ("dial tcp: lookup mx.example.net on 10.0.0.2:53: server misbehaving", "dns.servfail",
     {"host": "mx.example.net", "family": "go-dns-servfail"}),
    # connect
    ("E1204 14:38:37.123456       1 mail.go:88] dial tcp 10.0.0.5:587: i/o timeout", "connect.timeout",
     {"address": "10.0.0.5", "port": 587, "family": "go-dial-timeout"}),
    ("t=2026-12-04T10:00:00Z lvl=eror msg=\"Failed to send alert notification email\" logger=alerting.notifier "
     'error="dial tcp 52.96.1.2:25: connect: connection timed out"', "connect.timeout",
     {"address": "52.96.1.2", "port": 25, "product": "Grafana"}),
    ("dial tcp 192.168.1.20:2525: connect: connection refused", "connect.refused",
     {"address": "192.168.1.20", "port": 2525, "family": "go-dial-refused"}),
    ("[ERROR] [/core/api/email.go:113]: failed to ping email server: dial tcp [2001:db8::25]:465: connect: "
     "connection refused", "connect.refused", {"address": "[2001:db8::25]", "port": 465, "product": "Harbor"}),
    ("dial tcp 10.9.8.7:587: getsockopt: no route to host", "connect.unreachable",
     {"address": "10.9.8.7", "port": 587, "family": "go-dial-unreachable"}),
    ("Caused by: java.net.ConnectException: Connection refused (Connection refused)", "connect.refused",
     {"family": "java-connect-refused"}),
    ("java.net.ConnectException: Connection timed out: connect", "connect.timeout",
     {"family": "java-connect-timeout"}),
    ("java.net.NoRouteToHostException: No route to host (Host unreachable)", "connect.unreachable",
     {"family": "java-no-route"}),
    ("Error: connect ECONNREFUSED 127.0.0.1:1025", "connect.refused",
     {"address": "127.0.0.1", "port": 1025, "family": "node-econnrefused"}),
    ("Error: connect ETIMEDOUT 74.125.140.108:587 code: 'ECONNECTION', command: 'CONN'", "connect.timeout",
     {"address": "74.125.140.108", "port": 587, "family": "node-etimedout"}),
    ("Net::OpenTimeout: execution expired", "connect.timeout", {"family": "ruby-open-timeout"}),
    ("read tcp 10.244.1.7:51234->40.99.1.2:587: i/o timeout", "connect.no_greeting",
     {"address": "40.99.1.2", "port": 587, "family": "go-read-timeout"}),
    ("read tcp 10.244.1.7:51234->40.99.1.2:465: i/o timeout", "connect.implicit_tls_expected",
     {"port": 465, "family": "go-read-timeout-465"}),
    ("Net::ReadTimeout with #<TCPSocket:(closed)>", "connect.no_greeting", {"family": "ruby-read-timeout"}),
    ("javax.mail.MessagingException: Could not connect to SMTP host: smtp.zoho.eu, port: 465, response: -1",
     "connect.implicit_tls_expected", {"host": "smtp.zoho.eu", "port": 465, "family": "java-no-greeting-465"}),
    ("javax.mail.MessagingException: Could not connect to SMTP host: relay.corp, port: 25, response: -1",
     "connect.closed_by_server", {"host": "relay.corp", "port": 25, "family": "java-no-greeting"}),
    ("EOF", "connect.implicit_tls_expected", {"family": "go-eof"}),
    ("2026/12/04 10:00:00 Mail Error on smtp dial: EOF", "connect.implicit_tls_expected", {"family": "go-eof"}),
    ("EOFError: end of file reached", "connect.implicit_tls_expected", {"family": "ruby-eof"}),
    ("short response: * OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS] Dovecot ready.", "connect.not_smtp",
     {"family": "go-short-response-imap"}),
    ("short response: +OK Dovecot ready.", "connect.not_smtp", {"family": "go-short-response-pop"}),
    # tls: mode
    ("tls: first record does not look like a TLS handshake", "tls.not_tls", {"family": "go-tls-first-record"}),
    ('{"msg":"failed to send","err":"tls: first record does not look like a TLS handshake"}', "tls.not_tls", {}),
    ("javax.mail.MessagingException: Could not convert socket to TLS; nested exception is: "
     "javax.net.ssl.SSLException: Unrecognized SSL message, plaintext connection?", "tls.not_tls",
     {"family": "java-unrecognized-ssl"}),
    ("OpenSSL::SSL::SSLError: SSL_connect returned=1 errno=0 peeraddr=10.1.1.1:587 state=error: wrong version "
     "number", "tls.not_tls", {"family": "openssl-wrong-version"}),
    ("Error: 140736:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl", "tls.not_tls",
     {"family": "openssl-wrong-version"}),
    ("SSL_connect returned=1 errno=0 state=SSLv2/v3 read server hello A: unknown protocol", "tls.not_tls", {}),
    ("'require_tls' is true (default) but \"mail.example.com:25\" does not advertise the STARTTLS extension",
     "tls.starttls_not_offered", {"family": "starttls-required-not-offered"}),
    ('STARTTLS mode set to: "TLSMandatory", but target host does not support STARTTLS', "tls.starttls_not_offered",
     {}),
    ("gomail: MandatoryStartTLS required, but SMTP server does not support STARTTLS", "tls.starttls_not_offered", {}),
    ("javax.mail.MessagingException: STARTTLS is required but host does not support STARTTLS",
     "tls.starttls_not_offered", {}),
    ("unencrypted connection", "tls.starttls_not_offered", {"family": "go-unencrypted-connection"}),
    ('level=error component=dispatcher msg="Notify for alerts failed" err="*smtp.plainAuth auth failed: '
     'unencrypted connection"', "tls.starttls_not_offered", {"product": "Alertmanager"}),
    ("Connection unsuccessful: SendMail: Failed to authenticate on SMTP server, unencrypted connection",
     "tls.starttls_not_offered", {"product": "Mattermost"}),
    ("454 4.7.0 TLS not available due to local problem", "tls.starttls_rejected",
     {"reply_code": 454, "family": "starttls-454"}),
    # tls: names
    ('{"level":"error","msg":"validate smtp","error":"tls: failed to verify certificate: x509: certificate is '
     'valid for mail.example.com, *.example.com, not smtp.internal.lan"}', "tls.hostname_mismatch",
     {"host": "smtp.internal.lan", "names": "mail.example.com, *.example.com", "family": "go-x509-valid-for"}),
    ("x509: certificate is valid for Alias.xxx.com , not post.xxxx.com", "tls.hostname_mismatch",
     {"host": "post.xxxx.com", "names": "Alias.xxx.com"}),
    ("tls: failed to verify certificate: x509: cannot validate certificate for 10.20.30.40 because it doesn't "
     "contain any IP SANs", "tls.hostname_mismatch", {"host": "10.20.30.40", "family": "go-x509-no-ip-sans"}),
    ("x509: certificate is not valid for any names, but wanted to match smtp.corp", "tls.hostname_mismatch",
     {"host": "smtp.corp", "family": "go-x509-no-names"}),
    ("x509: certificate relies on legacy Common Name field, use SANs instead", "tls.hostname_mismatch",
     {"family": "go-x509-legacy-cn"}),
    ("java.security.cert.CertificateException: No subject alternative DNS name matching smtp.int.example found.",
     "tls.hostname_mismatch", {"host": "smtp.int.example", "family": "java-no-san"}),
    ("CertificateException: No name matching localhost found", "tls.hostname_mismatch", {"host": "localhost"}),
    ("Error: Hostname/IP does not match certificate's altnames: Host: smtp.a.com. is not in the cert's altnames: "
     "DNS:mail.b.com, DNS:b.com", "tls.hostname_mismatch",
     {"host": "smtp.a.com", "names": "DNS:mail.b.com, DNS:b.com", "family": "node-altnames"}),
    # tls: dates and trust
    ("x509: certificate has expired or is not yet valid: current time 2026-12-04T10:00:00Z is after "
     "2026-11-30T23:59:59Z", "tls.expired", {"family": "go-x509-expired"}),
    ("tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time "
     "2026-01-01T00:00:00Z is before 2026-06-01T00:00:00Z", "tls.not_yet_valid", {"family": "go-x509-not-yet-valid"}),
    ("Error: certificate has expired code: 'CERT_HAS_EXPIRED'", "tls.expired", {"family": "node-expired"}),
    ("tls: failed to verify certificate: x509: certificate signed by unknown authority", "tls.unknown_issuer",
     {"family": "go-x509-unknown-authority"}),
    ('I1204 08:01:02.000001    7 smtp.go:41] send failed: x509: certificate signed by unknown authority '
     '(possibly because of "crypto/rsa: verification error" while trying to verify candidate authority '
     'certificate "Corp Root CA")', "tls.unknown_issuer", {}),
    ("x509: failed to load system roots and no roots provided", "tls.unknown_issuer", {"family": "go-x509-no-roots"}),
    ("2026-12-04 10:00:00,123 ERROR [org.keycloak.services] (executor-thread-1) KC-SERVICES0029: Failed to send "
     "email: jakarta.mail.MessagingException: Could not convert socket to TLS; nested exception is: "
     "javax.net.ssl.SSLHandshakeException: PKIX path building failed: sun.security.provider.certpath."
     "SunCertPathBuilderException: unable to find valid certification path to requested target",
     "tls.unknown_issuer", {"product": "Keycloak", "family": "java-pkix"}),
    ("Error: self signed certificate in certificate chain code: 'ESOCKET', command: 'CONN'", "tls.self_signed",
     {"family": "node-self-signed"}),
    ("Error: unable to verify the first certificate", "tls.unknown_issuer", {"family": "node-local-issuer"}),
    ("OpenSSL::SSL::SSLError: SSL_connect returned=1 errno=0 peeraddr=10.0.0.9:587 state=error: certificate "
     "verify failed (unable to get local issuer certificate)", "tls.unknown_issuer", {}),
    ("SSL_connect returned=1 errno=0 state=error: certificate verify failed", "tls.untrusted",
     {"family": "ruby-verify-failed"}),
    ("remote error: tls: handshake failure", "tls.handshake_failed", {"family": "go-tls-handshake"}),
    ("tls: server selected unsupported protocol version 300", "tls.handshake_failed", {}),
    ("javax.net.ssl.SSLHandshakeException: Received fatal alert: protocol_version", "tls.handshake_failed",
     {"family": "java-protocol"}),
    ("javax.net.ssl.SSLHandshakeException: No appropriate protocol (protocol is disabled or cipher suites are "
     "inappropriate)", "tls.handshake_failed", {}),
    # auth
    ("550 5.7.30 Basic authentication is not supported for Client Submission.", "auth.basic_auth_retired",
     {"reply_code": 550, "family": "m365-basic-auth-retired"}),
    ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [DB8PR04CA0001.eurprd04]",
     "auth.smtp_auth_disabled", {"reply_code": 535, "family": "m365-smtp-auth-disabled"}),
    ("Error: Invalid login: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
     "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.", "auth.smtp_auth_disabled", {}),
    ("534-5.7.9 Application-specific password required. Learn more at "
     "https://support.google.com/mail/?p=InvalidSecondFactor x1-20020a gsmtp", "auth.app_password_required",
     {"reply_code": 534, "family": "gmail-app-password"}),
    ("534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1> Please log in via your web browser",
     "auth.app_password_required", {"family": "gmail-web-login"}),
    ("smtp: server doesn't support AUTH", "auth.not_offered", {"family": "go-no-auth"}),
    ("server does not support SMTP AUTH", "auth.not_offered", {}),
    ("server does not support SMTP AUTH type: CRAM-MD5", "auth.mechanism_unsupported",
     {"mechanism": "CRAM-MD5", "family": "wneessen-no-auth-type"}),
    ("failed to ping email server: 504 5.7.4 Unrecognized authentication type", "auth.mechanism_unsupported",
     {"product": "Harbor", "family": "auth-504"}),
    ("javax.mail.AuthenticationFailedException: 334 VXNlcm5hbWU6", "auth.failed",
     {"family": "java-auth-334-username"}),
    ("530 5.7.0 Must issue a STARTTLS command first. d2-20020a05", "auth.tls_required",
     {"reply_code": 530, "family": "auth-tls-required"}),
    ("Net::SMTPAuthenticationError: 530 5.7.0 Must issue a STARTTLS command first", "auth.tls_required", {}),
    ("gomail: could not send email 1: 530 5.7.0 Must issue a STARTTLS command first", "mail_from.tls_required",
     {"family": "auth-tls-required-after-mail"}),
    ("com.sun.mail.smtp.SMTPSendFailedException: 530 5.7.0 Must issue a STARTTLS command first",
     "mail_from.tls_required", {"family": "java-send-530-starttls"}),
    ("535 5.7.8 Error: authentication failed: authentication failure", "auth.bad_credentials",
     {"reply_code": 535, "family": "auth-535"}),
    ("Failed to notify recipient {email ops@acme.io} defined in resource argocd/guestbook: 535 Authentication "
     "Credentials Invalid", "auth.bad_credentials", {"product": "Argo CD", "reply_code": 535}),
    ("javax.mail.AuthenticationFailedException: 535-5.7.8 Username and Password not accepted. For more "
     "information, go to https://support.google.com/mail/?p=BadCredentials a1-20020a gsmtp",
     "auth.bad_credentials", {"reply_code": 535}),
    ("Net::SMTPAuthenticationError: 535 Incorrect authentication data", "auth.bad_credentials", {}),
    ("535 5.7.3 Authentication unsuccessful [SN4PR0501CA0054.namprd05.prod.outlook.com]", "auth.bad_credentials",
     {}),
    ("Error: Invalid login: 454 4.7.0 Too many login attempts", "auth.bad_credentials",
     {"family": "node-invalid-login"}),
    # envelope
    ('logger=ngalert level=error msg="Failed to send alert notification email" error="gomail: could not send '
     'email 1: 554 5.2.252 SendAsDenied; ops@contoso.com not allowed to send as ceo@contoso.com"',
     "send.send_as_denied", {"product": "Grafana", "username": "ops@contoso.com", "from_email": "ceo@contoso.com",
                             "family": "m365-send-as-denied"}),
    ("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", "send.send_as_denied",
     {}),
    ("gomail: could not send email 1: 554 Message rejected: Email address is not verified. The following "
     "identities failed the check in region EU-WEST-1: alerts@acme.io", "send.sender_not_verified",
     {"family": "ses-not-verified"}),
    ("553 Relaying disallowed as @", "config.invalid_from_email", {"family": "empty-from-relaying"}),
    ("gomail: could not send email 1: 530 5.7.1 Client was not authenticated", "mail_from.auth_required",
     {"family": "client-not-authenticated"}),
    ("com.sun.mail.smtp.SMTPSendFailedException: 530 5.7.57 SMTP; Client was not authenticated to send anonymous "
     "mail during MAIL FROM", "mail_from.auth_required", {}),
    ("553 5.7.1 <ceo@acme.io>: Sender address rejected: not logged in", "mail_from.auth_required", {}),
    ("gomail: could not send email 1: 553 5.7.1 <ceo@acme.io>: Sender address rejected: not owned by user "
     "alerts@acme.io", "mail_from.sender_rejected", {"from_email": "ceo@acme.io", "family": "sender-not-owned"}),
    ("553 Mail from must equal authorized user", "mail_from.sender_rejected", {}),
    ("Failed to set the to address: 554 5.7.1 <x@other.org>: Relay access denied", "rcpt_to.relay_denied",
     {"product": "Mattermost", "family": "relay-denied"}),
    ("gomail: could not send email 1: 550 5.1.1 <nobody@acme.io>: Recipient address rejected: User unknown in "
     "virtual mailbox table", "rcpt_to.unknown_recipient", {"family": "unknown-recipient"}),
]


@pytest.mark.parametrize(("line", "code", "facts"), CASES, ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)])
def test_each_family_gives_the_tables_finding_and_the_facts(line: str, code: str, facts: dict[str, Any]) -> None:
    answer = explain_line(line)
    assert answer.code == code, answer.to_dict()
    assert answer.stage == code.split(".")[0]
    assert answer.code in known_codes()
    assert answer.cause and answer.fix
    expected = dict(facts)
    if "family" in expected:
        assert answer.family == expected.pop("family")
    for key, value in expected.items():
        assert answer.facts.get(key) == value, (key, answer.facts)
    assert answer.confirm is not None and answer.confirm["command"].startswith("smtp-diag check --host ")


def test_every_pattern_names_its_source_and_is_exercised_by_a_case() -> None:
    families = {p.family for p in PATTERNS}
    assert len(families) == len(PATTERNS), "two patterns share a family name"
    assert all(p.source.strip() for p in PATTERNS)
    hit = {explain_line(line).family for line, _, _ in CASES}
    assert families - hit == set(), "patterns no case exercises"


def test_the_finding_is_the_engines_own_for_a_config_made_from_the_line() -> None:
    """No second vocabulary: the same words the engine writes for the same config, reply and host."""
    from diag.config import SmtpConfig
    from diag.findings import finding_for
    from diag.kinds import DnsKind

    answer = explain_line("dial tcp: lookup smtp.typo.example on 10.96.0.10:53: no such host")
    same = finding_for("dns", DnsKind.NXDOMAIN, SmtpConfig(host="smtp.typo.example", port=587, from_email="a@b.c"))
    assert (answer.code, answer.cause, answer.fix) == (same.code, same.cause, same.fix)


def test_an_unknown_line_says_so_and_guesses_nothing() -> None:
    for line in ("hello world", "level=info msg=\"reconciled\"", '{"msg": "ok"}', "panic: runtime error"):
        answer = explain_line(line)
        assert (answer.stage, answer.code, answer.fix, answer.confirm) == (None, None, None, None)
        assert answer.cause == UNKNOWN_CAUSE


def test_a_port_or_host_the_line_does_not_say_is_a_placeholder_never_a_guess() -> None:
    answer = explain_line("tls: first record does not look like a TLS handshake")
    assert "<port>" in answer.cause and "587" not in answer.cause
    assert answer.confirm is not None and answer.confirm["missing"] == ["host", "port", "from_email"]
    assert "--host HOST --port PORT" in answer.confirm["command"]


def test_the_465_587_mix_up_says_which_way_it_goes() -> None:
    implicit_on_plain = explain_line("tls: first record does not look like a TLS handshake")
    plain_on_implicit = explain_line("EOF")
    assert any("started TLS at once" in i for i in implicit_on_plain.inferences)
    assert any("plaintext client on an implicit-TLS port" in i for i in plain_on_implicit.inferences)


def test_gomail_prefix_means_connection_tls_and_login_passed() -> None:
    answer = explain_line("gomail: could not send email 1: 550 5.1.1 <x@y.org>: Recipient address rejected")
    assert any("connection, TLS and login succeeded" in i for i in answer.inferences)


def test_unencrypted_connection_means_the_password_was_never_sent_and_confirm_needs_a_login() -> None:
    answer = explain_line("failed to ping email server: unencrypted connection")
    assert any("password never left" in i for i in answer.inferences)
    assert answer.confirm is not None and "--username USERNAME --password-stdin" in answer.confirm["command"]


def test_confirm_is_the_exact_command_with_what_the_line_said() -> None:
    answer = explain_line("dial tcp 10.0.0.5:587: i/o timeout")
    assert answer.confirm == {
        "config": {"host": "10.0.0.5", "port": 587},
        "command": "smtp-diag check --host 10.0.0.5 --port 587 --from-email FROM",
        "missing": ["from_email"],
    }


@pytest.mark.parametrize("line", [
    'level=error msg="smtp" password=S3cr3t-Planted error="535 5.7.8 Error: authentication failed"',
    '{"smtp":{"password":"S3cr3t-Planted"},"error":"535 5.7.8 Error: authentication failed"}',
    "dial smtp://alerts:S3cr3t-Planted@smtp.acme.io:587 failed: 535 Incorrect authentication data",
    "C: AUTH PLAIN AGFsZXJ0cwBTM2NyM3QtUGxhbnRlZA== -> 535 5.7.8 authentication failed",
    "smtp_password: 'S3cr3t-Planted' 535 Authentication Credentials Invalid",
])
def test_a_password_in_the_line_is_redacted_before_anything_else(line: str) -> None:
    answer = explain_line(line)
    text = json.dumps(answer.to_dict())
    assert "S3cr3t-Planted" not in text and "AGFsZXJ0cwBTM2NyM3QtUGxhbnRlZA" not in text
    assert MASK in answer.line
    assert answer.code == "auth.bad_credentials"


def test_redact_leaves_a_line_without_secrets_alone() -> None:
    line = "dial tcp 10.0.0.5:587: i/o timeout"
    assert redact(line) == line


def test_a_block_gives_one_answer_per_non_blank_line() -> None:
    answers = explain_text("\n  EOF\n\nhello\r\nunencrypted connection\n")
    assert [a.code for a in answers] == ["connect.implicit_tls_expected", None, "tls.starttls_not_offered"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "contains no log line"),
    (" \n\t\n", "contains no log line"),
    ("x" * (MAX_TEXT_CHARS + 1), "at most"),
    ("EOF\n" * (MAX_LINES + 1), "at most"),
])
def test_unusable_input_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ExplainInputError) as caught:
        explain_text(text)
    assert caught.value.field == "text" and message in caught.value.message


def test_an_unknown_profile_is_refused_naming_the_field() -> None:
    with pytest.raises(ExplainInputError) as caught:
        explain_text("EOF", profile="nope")
    assert caught.value.field == "profile"


def test_a_long_hostile_line_is_cut_and_answered() -> None:
    answer = explain_line("x509: certificate is valid for " + "a," * 50_000 + " not b")
    assert answer.code is None or answer.code == "tls.hostname_mismatch"
    assert len(answer.line) <= 4096


def test_docs_explain_lists_every_family_and_product() -> None:
    from pathlib import Path

    from diag.explain import WRAPPERS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "explain.md").read_text(encoding="utf-8")
    assert [p.family for p in PATTERNS if f"| `{p.family}` |" not in doc] == []
    assert [w.product for w in WRAPPERS if f"| {w.product} |" not in doc] == []
