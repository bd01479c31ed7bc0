"""Failure classification: (stage, kind, reply, config) -> Finding(code, cause, fix). One data table.

Each row is one known failure. Rows with a `when` are variants (a provider, Insecure Skip TLS Verify) and
are tried before the plain row of the same code. Texts are written for a support engineer to paste into a
ticket: the cause says what is wrong in this configuration, the fix says what to change. They may use
{host}, {port}, {from_email}, {username} ("the SMTP account" when none is set), {reply} (the server's
reply, quoted) and {provider}.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from diag.config import SmtpConfig
from diag.report import Finding


@dataclass(frozen=True, slots=True)
class Context:
    config: SmtpConfig
    reply_code: int | None
    server_text: str
    provider: str | None

    def text_has(self, *needles: str) -> bool:
        low = self.server_text.lower()
        return any(n.lower() in low for n in needles)


@dataclass(frozen=True, slots=True)
class Row:
    code: str
    cause: str
    fix: str
    when: Callable[[Context], bool] | None = None


def _provider(name: str) -> Callable[[Context], bool]:
    return lambda c: c.provider == name


def _skip_verify(c: Context) -> bool:
    return c.config.insecure_skip_tls_verify


PROVIDERS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("gmail", re.compile(r"(^|\.)(gmail|googlemail|google)\.com$|gsmtp", re.I)),
    ("microsoft365", re.compile(r"(^|\.)(office365|outlook)\.com$|protection\.outlook|microsoft", re.I)),
    ("amazon_ses", re.compile(r"^email-smtp\.[a-z0-9-]+\.amazonaws\.com$|amazon ses", re.I)),
    ("sendgrid", re.compile(r"(^|\.)sendgrid\.net$", re.I)),
    ("mailgun", re.compile(r"(^|\.)mailgun\.org$", re.I)),
)


def detect_provider(host: str, server_text: str = "") -> str | None:
    for name, pattern in PROVIDERS:
        if pattern.search(host) or (server_text and pattern.search(server_text)):
            return name
    return None


TLS_MODES_FIX = (
    "Use STARTTLS on port 587 (or 25), or implicit TLS (SMTPS) on port 465: in smtp-diag set the TLS mode to "
    "match the port, and in the product tick 'SSL/TLS' only for port 465."
)

ROWS: Final[tuple[Row, ...]] = (
    # ---- config -------------------------------------------------------------------------------------------
    Row(
        "config.invalid_host",
        "The Outgoing Server value {reply} is not a valid host name or IP address.",
        "Enter only the server's host name (e.g. smtp.example.com) or IP address: no scheme (smtp://), no port "
        "(put the port in Outgoing Port), no spaces or '@'.",
    ),
    Row(
        "config.invalid_port",
        "The Outgoing Port {port} is not a valid TCP port.",
        "Use the port your provider documents: 587 (STARTTLS, the usual choice), 465 (implicit TLS) or 25.",
    ),
    Row(
        "config.invalid_from_email",
        "The From Email {reply} is not a plain e-mail address.",
        "Enter a bare address such as alerts@example.com (no display name, no angle brackets). Use an address "
        "the SMTP account is allowed to send as.",
    ),
    Row(
        "config.partial_credentials",
        "Only one of username and password is set ({reply}).",
        "Enter both the username and the password for authenticated SMTP, or clear both for anonymous SMTP.",
    ),
    Row(
        "config.invalid_recipient",
        "The test recipient {reply} is missing or not a plain e-mail address.",
        "Enter a bare address such as you@example.com as the test recipient, or turn off the test message.",
    ),
    Row(
        "config.invalid_ca_bundle",
        "The CA bundle cannot be used: {reply}.",
        "Paste the CA certificate(s) as PEM text: one or more blocks from -----BEGIN CERTIFICATE----- to "
        "-----END CERTIFICATE-----, e.g. the output of `openssl s_client -starttls smtp -showcerts`.",
    ),
    Row(
        "config.invalid_helo_name",
        "The HELO name {reply} is not a host name: servers refuse it in EHLO.",
        "Leave the HELO name empty (this machine's name is used) or give a fully qualified host name such as "
        "app.example.com.",
    ),
    Row(
        "config.forbidden_characters",
        "The field {reply} contains a line break or NUL character. Sent to the "
        "server it would end the SMTP command early and inject another one (SMTP command injection).",
        "Remove line breaks and control characters from {reply}; they are never valid in SMTP settings.",
    ),
    Row(
        "config.anonymous",
        "No username and password are set: this is anonymous SMTP. It works only where the "
        "server relays for your network without login, and then anyone who can reach that server from your "
        "network can send mail as you (a security risk).",
        "Prefer authenticated SMTP: create an SMTP account or app password for this product and enter its "
        "username and password. Keep anonymous relay only on a server restricted to this product's address.",
    ),
    Row(
        "config.insecure_skip_verify",
        "Insecure Skip TLS Verify is on: the server's certificate is not checked, "
        "so anyone in the network path could impersonate the server and read the credentials and mail.",
        "Turn Insecure Skip TLS Verify off. If the server uses a private CA or a self-signed certificate, give "
        "that CA's certificate as the CA bundle instead.",
    ),
    Row(
        "config.port_tls_mismatch",
        "Port 465 expects implicit TLS (SMTPS) from the first byte, but the TLS mode is {reply}.",
        TLS_MODES_FIX,
        lambda c: c.config.port == 465,
    ),
    Row(
        "config.port_tls_mismatch",
        "Implicit TLS (SMTPS) is configured on port {port}, which normally speaks "
        "plaintext SMTP with STARTTLS.",
        TLS_MODES_FIX,
    ),
    # ---- dns ----------------------------------------------------------------------------------------------
    Row(
        "dns.nxdomain",
        "The host name {host} does not exist in DNS (NXDOMAIN).",
        "Check the Outgoing Server for typos against your provider's documentation; from this machine, "
        "`nslookup {host}` must return an address.",
    ),
    Row(
        "dns.no_address",
        "The name {host} exists but has no A or AAAA record, so there is no address to connect to.",
        "Use the SMTP server's host name from your provider's documentation, not a name "
        "without addresses; ask your DNS administrator to add an A record if this name should work.",
    ),
    Row(
        "dns.mail_domain_not_host",
        "{host} is a mail domain (it has MX records) but not itself a server with "
        "an address. MX hosts receive mail for the domain; they are not the submission server.",
        "Enter the provider's SMTP submission host (e.g. smtp.{host}, smtp.gmail.com, smtp.office365.com) "
        "as the Outgoing Server, not the e-mail domain.",
    ),
    Row(
        "dns.servfail",
        "The DNS resolver failed to answer for {host} (SERVFAIL or refused): the resolver or "
        "the domain's name servers are broken or unreachable.",
        "Retry; if it persists check this machine's DNS resolver (/etc/resolv.conf or the container's DNS) "
        "and whether the domain's name servers respond.",
    ),
    Row(
        "dns.timeout",
        "No DNS answer for {host} in time: the resolver is unreachable or blocked.",
        "Check that this machine can reach its DNS resolver (UDP/TCP 53); in containers check the DNS "
        "settings of the network; or give a reachable resolver.",
    ),
    Row(
        "dns.policy_denied",
        "The address of {host} ({reply}) is not allowed by this service's egress policy, so "
        "no connection was made.",
        "Use an SMTP server on an allowed network and port; an operator can change "
        "DIAG_ALLOW_NETWORKS, DIAG_DENY_NETWORKS and DIAG_ALLOWED_PORTS (link-local and metadata addresses are "
        "always denied).",
    ),
    Row(
        "dns.rate_limited",
        "This service has run too many diagnoses against the server {host} resolves to ({reply}). The limit "
        "counts every name and address that reaches one server together, so that the service cannot be "
        "used to try passwords against it.",
        "Wait a minute and run the check again. An operator can raise DIAG_RATE_LIMIT_PER_TARGET if many "
        "people legitimately check the same server.",
    ),
    # ---- connect ------------------------------------------------------------------------------------------
    Row(
        "connect.refused",
        "{host} actively refused the connection on port {port}: nothing listens there, or a "
        "firewall rejects it.",
        "Check the port against your provider's documentation (587 for STARTTLS, 465 for "
        "implicit TLS); Mailgun and SendGrid also accept 2525 where 587 is blocked.",
        lambda c: c.provider in ("sendgrid", "mailgun"),
    ),
    Row(
        "connect.refused",
        "{host} actively refused the connection on port {port}: nothing listens on that "
        "port, or a firewall rejects it.",
        "Check the port against the server's documentation (587 for STARTTLS, "
        "465 for implicit TLS, 25 for relay) and that the SMTP service is running.",
    ),
    Row(
        "connect.timeout",
        "No answer to the TCP connection on port {port}: packets are silently dropped, "
        "typically by an egress firewall. Cloud providers (AWS, Azure, GCP) block outbound port 25 by default.",
        "Use the submission port 587 (or 465) instead of 25, or ask the network team to allow outbound TCP "
        "to {host}:{port} from this machine; test with `nc -vz {host} {port}` from here.",
        lambda c: c.config.port == 25,
    ),
    Row(
        "connect.timeout",
        "No answer to the TCP connection on port {port}: packets are silently dropped, "
        "typically by a firewall between this machine and {host}.",
        "Ask the network team to allow outbound TCP to {host}:{port} from this machine (check security "
        "groups, proxies and the container network); test with `nc -vz {host} {port}` from here.",
    ),
    Row(
        "connect.unreachable",
        "There is no network route from this machine to {host} ({reply}).",
        "Check this machine's network: default route, IPv6 availability, VPN, and the container's network.",
    ),
    Row(
        "connect.no_greeting",
        "The TCP connection to port {port} opened but the server sent no SMTP greeting "
        "and did not answer TLS either: it is not a working SMTP server, or it is overloaded.",
        "Check that {host}:{port} is the SMTP service (not a proxy or another service) and that it is healthy.",
    ),
    Row(
        "connect.implicit_tls_expected",
        "Port {port} on {host} expects implicit TLS (SMTPS): it stays silent for "
        "plaintext clients and answers a TLS handshake. The configuration speaks plaintext/STARTTLS to it.",
        "Set the TLS mode to implicit TLS (in most products: tick 'SSL/TLS'), or use port 587 with STARTTLS.",
    ),
    Row(
        "connect.not_smtp",
        "The service on {host}:{port} is not SMTP: it answered {reply}.",
        "Use the SMTP port of the mail server (587, 465 or 25); this port belongs to another service.",
    ),
    Row(
        "connect.closed_by_server",
        "The server accepted the TCP connection and closed it before greeting: it "
        "may limit connections, block this machine's address, or expect TLS.",
        "Check the server's connection limits and IP allow lists for this machine's address; try port 465 with "
        "implicit TLS if the port is TLS-only.",
    ),
    Row(
        "connect.greeting_rejected",
        "The server greeted with {reply}: it refuses sessions from this client "
        "right now (421: temporarily, e.g. overloaded; 554: this address is blocked or not allowed to relay).",
        "For 421 retry later; for 554 ask the mail server's administrator to allow this machine's address, or "
        "check whether it is on a block list.",
    ),
    # ---- ehlo ---------------------------------------------------------------------------------------------
    Row(
        "ehlo.rejected",
        "The server rejected both EHLO and HELO: {reply}.",
        "Set a valid fully qualified HELO name (helo_name) for this machine; some servers reject bare or "
        "unresolvable names. Check the server's logs for the reason.",
    ),
    Row(
        "ehlo.helo_only",
        "The server refused EHLO ({reply}) and accepted only the old HELO: it speaks no ESMTP, so it "
        "offers neither STARTTLS nor AUTH.",
        "Use the provider's submission server and port (587 or 465), which speak ESMTP; a HELO-only server "
        "can only relay anonymous mail in clear text.",
    ),
    # ---- tls ----------------------------------------------------------------------------------------------
    Row(
        "tls.starttls_not_offered",
        "The server does not offer STARTTLS, and credentials must never travel in "
        "clear text, so the check stopped before AUTH.",
        "Use the provider's TLS port (587 with STARTTLS or 465 with implicit TLS), or enable STARTTLS on the "
        "server. Only on a trusted network set the TLS mode to 'none' explicitly to allow plaintext AUTH.",
        lambda c: not c.config.anonymous,
    ),
    Row(
        "tls.starttls_not_offered",
        "The server does not offer STARTTLS: mail to it travels unencrypted.",
        "Enable STARTTLS on the server or use its TLS port; set TLS mode 'none' only if plaintext is intended.",
    ),
    Row(
        "tls.starttls_rejected",
        "The server offered STARTTLS but refused it: {reply}.",
        "Check the server's TLS configuration (certificate and key installed, TLS enabled); retry if the reply "
        "is temporary (454).",
    ),
    Row(
        "tls.plaintext_credentials",
        "TLS is off (TLS mode 'none'): the username and password are sent in clear "
        "text and anyone on the network path can read them.",
        "Use STARTTLS (port 587) or implicit TLS (port 465) whenever credentials are used.",
    ),
    Row(
        "tls.not_tls",
        "The server answered the TLS handshake in plaintext: port {port} speaks plain SMTP "
        "(use STARTTLS there), not implicit TLS.",
        "Set the TLS mode to STARTTLS for port {port} (in most products: untick 'SSL/TLS' and keep STARTTLS), or "
        "use port 465 for implicit TLS.",
    ),
    Row(
        "tls.handshake_failed",
        "The TLS handshake with {host} failed: {reply}. Typical reasons: no common TLS "
        "version or cipher (a very old server), or a middlebox interfering.",
        "Check the server's TLS settings (TLS 1.2 or newer, modern ciphers) and that nothing intercepts port "
        "{port}.",
    ),
    Row(
        "tls.self_signed",
        "The server's certificate is self-signed ({reply}). It is not trusted, so the product "
        "fails; Insecure Skip TLS Verify hides this, which is why the check still continued.",
        "Give the server's certificate (or its CA) as the CA bundle and turn Insecure Skip TLS Verify off; "
        "better, install a certificate from a public CA on the server.",
        _skip_verify,
    ),
    Row(
        "tls.self_signed",
        "The server's certificate is self-signed ({reply}), so nothing vouches for it and it is rejected.",
        "Give the server's certificate (or the CA that signed it) as the CA bundle, or install a "
        "certificate from a public CA on the server. Insecure Skip TLS Verify is only a last resort.",
    ),
    Row(
        "tls.unknown_issuer",
        "The certificate was issued by a CA this machine does not trust ({reply}), "
        "typically a private/corporate CA or a server that does not send its intermediate certificate. Insecure "
        "Skip TLS Verify hides this, which is why the check still continued.",
        "Give the issuing CA's certificate as the CA bundle and turn Insecure Skip TLS Verify off; or configure "
        "the server to send its full chain.",
        _skip_verify,
    ),
    Row(
        "tls.unknown_issuer",
        "The certificate was issued by a CA this machine does not trust ({reply}): "
        "typically a private/corporate CA, or a server that does not send its intermediate certificate.",
        "Give the issuing CA's certificate (PEM) as the CA bundle, or configure the server to send the full "
        "chain including intermediates. Insecure Skip TLS Verify is only a last resort.",
    ),
    Row(
        "tls.hostname_mismatch",
        "The certificate is not valid for the name {host} ({reply}). Insecure Skip TLS "
        "Verify hides this, which is why the check still continued.",
        "Use a host name the certificate is for as the Outgoing Server, then turn "
        "Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        "tls.hostname_mismatch",
        "The certificate is not valid for the name {host} ({reply}).",
        "Use a host name that the certificate lists as the Outgoing Server "
        "(connecting by IP address usually fails this check), or have the certificate reissued with {host}.",
    ),
    Row(
        "tls.expired",
        "The server's certificate has expired ({reply}). Insecure Skip TLS Verify hides this, "
        "which is why the check still continued.",
        "Renew the server's certificate, then turn Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        "tls.expired",
        "The server's certificate has expired ({reply}).",
        "Renew the certificate on the mail server (and check its automatic renewal). If this machine's clock "
        "is wrong, fix the clock.",
    ),
    Row(
        "tls.not_yet_valid",
        "The server's certificate is not valid yet ({reply}). Insecure Skip TLS Verify hides this.",
        "Check the clocks of this machine and the server; turn Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        "tls.not_yet_valid",
        "The server's certificate is not valid yet ({reply}): its start date is in the "
        "future, usually a clock problem.",
        "Check this machine's clock (NTP) and the certificate's dates.",
    ),
    Row(
        "tls.untrusted",
        "The certificate failed verification ({reply}).",
        "Give the correct CA bundle or fix the server's certificate; see the facts for the certificate.",
    ),
    Row(
        "tls.expiring_soon",
        "The server's certificate expires soon ({reply}); mail will fail when it does.",
        "Renew the certificate on the mail server before it expires and check its automatic renewal.",
    ),
    Row(
        "tls.old_protocol",
        "The server negotiated an outdated TLS version ({reply}).",
        "Enable TLS 1.2 or 1.3 on the mail server; old versions are being disabled by clients.",
    ),
    # ---- auth ---------------------------------------------------------------------------------------------
    Row(
        "auth.not_offered",
        "Credentials are configured but the server does not offer AUTH{reply}.",
        "If the server relays without login for this network, clear username and password (anonymous); "
        "otherwise use the provider's submission port (587/465) where AUTH is offered.",
    ),
    Row(
        "auth.tls_required",
        "The server refuses AUTH without TLS: {reply}.",
        "Turn on STARTTLS (TLS mode auto or starttls, port 587) or implicit TLS (port 465).",
    ),
    Row(
        "auth.bad_credentials",
        "Gmail rejected the username or password ({reply}). Google accounts need an "
        "App Password for SMTP; the normal account password does not work.",
        "Create an App Password (Google Account > Security > 2-Step Verification > App passwords) and use it "
        "with the full Gmail address as the username.",
        _provider("gmail"),
    ),
    Row(
        "auth.bad_credentials",
        "Microsoft 365 refused SMTP AUTH for this mailbox ({reply}): authenticated SMTP "
        "is disabled by security defaults, Conditional Access, or for the mailbox itself.",
        "In the Microsoft 365 admin center enable 'Authenticated SMTP' for the mailbox (and check Security "
        "defaults / Conditional Access), or use an app password if MFA is on.",
        lambda c: c.text_has("5.7.139", "SmtpClientAuthentication"),
    ),
    Row(
        "auth.bad_credentials",
        "Amazon SES rejected the credentials ({reply}). SES needs SMTP credentials, "
        "which differ from IAM access keys.",
        "Create SMTP credentials in the SES console (SMTP settings > "
        "Create SMTP credentials) for the same region as {host} and use those.",
        _provider("amazon_ses"),
    ),
    Row(
        "auth.bad_credentials",
        "The server rejected the username or password ({reply}).",
        "Check the username (often the full e-mail address) and password; if the account uses multi-factor "
        "authentication, create an app password for SMTP.",
    ),
    Row(
        "auth.app_password_required",
        "The provider blocked this sign-in and wants the account to log in through a web browser first "
        "({reply}): a new location or a security check stopped the SMTP login.",
        "Sign in to the account in a web browser, confirm the security alert (for Google: the 'Critical "
        "security alert' mail), then retry; for Google use an App Password for SMTP.",
        lambda c: c.text_has("5.7.14", "web browser"),
    ),
    Row(
        "auth.app_password_required",
        "The server requires an application-specific password ({reply}): the "
        "account has 2-step verification and refuses its normal password for SMTP.",
        "Create an App Password for this product (for Google: Google Account > Security > App passwords) and "
        "use it as the password.",
    ),
    Row(
        "auth.mechanism_unsupported",
        "The server and smtp-diag share no usable AUTH mechanism ({reply}); smtp-diag and most "
        "products speak PLAIN, LOGIN and CRAM-MD5.",
        "Enable AUTH PLAIN or LOGIN (over TLS) on the server; XOAUTH2-only servers need OAuth, which this "
        "product's SMTP settings cannot do.",
    ),
    Row(
        "auth.temporary",
        "The server could not authenticate right now ({reply}).",
        "Retry in a few minutes; if it persists the provider's authentication service has a problem.",
    ),
    Row("auth.failed", "Authentication failed: {reply}.", "Check the credentials and the server's logs."),
    # ---- mail_from ----------------------------------------------------------------------------------------
    Row(
        "mail_from.auth_required",
        "The server requires authentication before it accepts mail ({reply}), but no "
        "username and password are configured.",
        "Enter the SMTP account's username and password.",
        lambda c: c.config.anonymous,
    ),
    Row(
        "mail_from.auth_required",
        "The server still wants authentication at MAIL FROM ({reply}).",
        "Check that the account is allowed to send over SMTP (for Microsoft 365: 5.7.57 means the client was "
        "not authenticated; enable Authenticated SMTP for the mailbox).",
    ),
    Row(
        "mail_from.tls_required",
        "The server accepts mail only over TLS ({reply}), and this session is plaintext (TLS mode 'none').",
        "Set the TLS mode to auto or STARTTLS (port 587), or implicit TLS on port 465.",
    ),
    Row(
        "mail_from.sender_rejected",
        "Microsoft 365 refused the From address {from_email} for this account "
        "({reply}): {username} has no Send As permission for it.",
        "Use the mailbox's own address as From Email, or grant {username} 'Send As' on {from_email}.",
        lambda c: c.text_has("5.7.60", "SendAsDenied"),
    ),
    Row(
        "mail_from.sender_rejected",
        "Amazon SES refused {from_email} ({reply}): the address or its domain is "
        "not verified in this SES region (or the account is in the sandbox).",
        "Verify {from_email} or its domain in the SES console for the region of {host}; in the sandbox also "
        "verify recipients or request production access.",
        lambda c: c.provider == "amazon_ses" or c.text_has("not verified"),
    ),
    Row(
        "mail_from.sender_rejected",
        "The server refused the sender {from_email} ({reply}): this account is not "
        "allowed to send as that address.",
        "Set From Email to an address the SMTP account owns or may send "
        "as (often the username itself), or ask the mail admin to allow {from_email}.",
    ),
    Row(
        "mail_from.syntax",
        "The server rejected the MAIL FROM syntax for {from_email} ({reply}).",
        "Use a plain address (user@example.com) as From Email; some servers reject non-ASCII addresses "
        "unless they offer SMTPUTF8.",
    ),
    Row(
        "mail_from.temporary",
        "The server temporarily refused the sender ({reply}).",
        "Retry later; persistent 4xx replies mean rate limits or server trouble on the provider's side.",
    ),
    Row(
        "mail_from.rejected",
        "The server refused MAIL FROM: {reply}.",
        "See the server's reply; check the account's sending permissions.",
    ),
    # ---- rcpt_to ------------------------------------------------------------------------------------------
    Row(
        "rcpt_to.relay_denied",
        "The server refuses to relay to the test recipient ({reply}): it accepts mail "
        "for other domains only from authenticated or allowed clients.",
        "Use authenticated SMTP (username and password), or ask the admin to allow relaying from this "
        "machine's address.",
    ),
    Row(
        "rcpt_to.unknown_recipient",
        "The recipient does not exist ({reply}).",
        "Check the test recipient address for typos.",
    ),
    Row(
        "rcpt_to.temporary",
        "The recipient was temporarily refused ({reply}), e.g. greylisting or a rate limit.",
        "Retry in a few minutes; greylisting accepts the retry.",
    ),
    Row("rcpt_to.rejected", "The server refused the recipient ({reply}).", "See the server's reply."),
    # ---- send ---------------------------------------------------------------------------------------------
    Row(
        "send.too_large",
        "The message is larger than the server accepts ({reply}).",
        "Lower the product's attachment/report size, or raise the server's message size limit.",
    ),
    Row(
        "send.rejected",
        "Amazon SES rejected the message ({reply}): the From address or recipient is not verified.",
        "Verify {from_email} (and, in the sandbox, the recipient) in the SES console.",
        lambda c: c.text_has("not verified"),
    ),
    Row(
        "send.rejected",
        "The server refused the test message ({reply}): content policy, the sender's domain "
        "policy (SPF/DMARC), or a spam filter.",
        "Read the server's reply for the reason; check SPF and DKIM for "
        "the From domain and the provider's sending policies.",
    ),
    Row("send.temporary", "The server temporarily refused the test message ({reply}).", "Retry later."),
    # ---- any stage ----------------------------------------------------------------------------------------
    Row(
        "any.timeout",
        "The server stopped answering during this step (no reply within the timeout).",
        "Retry; if it repeats, the server or a firewall stalls connections (check the server's load and any "
        "TLS-inspecting proxy), or raise the timeout.",
    ),
    Row(
        "any.disconnected",
        "The server closed the connection during this step, without an SMTP reply.",
        "Check the server's logs for why it drops the session (limits, blocked address, policy).",
    ),
    Row(
        "any.protocol_error",
        "The server's reply was not valid SMTP: {reply}.",
        "Check that {host}:{port} is a standards-conforming SMTP server.",
    ),
    Row(
        "any.budget_exceeded",
        "The whole check ran out of its time budget.",
        "The server answers very slowly; retry, or raise the per-step timeout.",
    ),
    Row(
        "any.internal_error",
        "smtp-diag hit an unexpected error in this stage: a bug in smtp-diag, not "
        "necessarily in the configuration.",
        "Retry; if it repeats, report it with this report's JSON.",
    ),
)

GENERIC_KINDS: Final = ("timeout", "disconnected", "protocol_error", "budget_exceeded", "internal_error")


def _index(rows: tuple[Row, ...]) -> dict[str, list[Row]]:
    table: dict[str, list[Row]] = {}
    for row in rows:
        table.setdefault(row.code, []).append(row)
    return table


TABLE: Final = _index(ROWS)


def known_codes() -> frozenset[str]:
    return frozenset(TABLE)


def finding_for(
    stage: str, kind: str, config: SmtpConfig, reply_code: int | None = None, server_text: str | None = None
) -> Finding:
    """The finding for a stage's failure or warning. `kind` may be a full code ("tls.not_tls")."""
    code = kind if "." in kind else f"{stage}.{kind}"
    rows = TABLE.get(code)
    generic = code.partition(".")[2]
    if rows is None and generic in GENERIC_KINDS:  # "<stage>.timeout" and friends share one row each
        rows = TABLE[f"any.{generic}"]
    if rows is None:
        return Finding(
            code, f"Unclassified failure: {_quote(reply_code, server_text)}.", "See the transcript."
        )
    ctx = Context(config, reply_code, server_text or "", detect_provider(config.host, server_text or ""))
    row = next(r for r in rows if r.when is None or r.when(ctx))
    values = {
        "host": config.host,
        "port": config.port,
        "from_email": config.from_email,
        "username": config.username or "the SMTP account",
        "provider": ctx.provider or "",
        "reply": _quote(reply_code, server_text),
    }
    return Finding(code, row.cause.format(**values), row.fix.format(**values))


def _quote(reply_code: int | None, server_text: str | None) -> str:
    text = " ".join((server_text or "").split())
    if len(text) > 200:
        text = text[:200] + "…"
    if reply_code is not None and reply_code > 0:
        return f'"{reply_code} {text}"' if text else f'"{reply_code}"'
    return text
