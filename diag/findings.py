"""Failure classification: (stage, kind, reply, config) -> Finding(code, cause, fix). One data table.

Each row is one known failure, keyed by its kind (diag.kinds: the kind's enum names the stage). Rows
with a `when` are variants (a provider, Insecure Skip TLS Verify) and are tried before the plain row of
the same code. Texts are written for a support engineer to paste into a
ticket: the cause says what is wrong in this configuration, the fix says what to change. They may use
{host}, {port}, {from_email}, {username} ("the SMTP account" when none is set), {reply} (the outcome's
detail: the server's reply, quoted, or our own words such as a field name or a policy reason) and {provider}.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from diag.config import SmtpConfig
from diag.kinds import (
    STAGE_OF,
    AnyKind,
    AuthKind,
    ConfigKind,
    ConnectKind,
    DnsKind,
    EhloKind,
    Kind,
    MailFromKind,
    RcptToKind,
    SendKind,
    TlsKind,
    code_of,
)
from diag.product_words import words_for
from diag.report import Finding


@dataclass(frozen=True, slots=True)
class Context:
    config: SmtpConfig
    reply_code: int | None
    detail: str  # the server's reply text, or our own words (a field name, a policy reason, a day count)
    provider: str | None

    def text_has(self, *needles: str) -> bool:
        low = self.detail.lower()
        return any(n.lower() in low for n in needles)


@dataclass(frozen=True, slots=True)
class Row:
    kind: Kind
    cause: str
    fix: str
    when: Callable[[Context], bool] | None = None

    @property
    def key(self) -> tuple[str, Kind]:
        """(stage, kind): kinds of different stages may share a name ("timeout")."""
        return STAGE_OF[type(self.kind)], self.kind

    @property
    def code(self) -> str:
        return code_of("any", self.kind)


def _provider(name: str) -> Callable[[Context], bool]:
    return lambda c: c.provider == name


def _skip_verify(c: Context) -> bool:
    return c.config.insecure_skip_tls_verify


def _probed(c: Context) -> bool:
    """No test recipient: the rcpt_to stage asked RCPT TO with the From address itself."""
    return not c.config.recipient


PROVIDERS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("gmail", re.compile(r"(^|\.)(gmail|googlemail|google)\.com$|gsmtp", re.I)),
    ("microsoft365", re.compile(r"(^|\.)(office365|outlook)\.com$|protection\.outlook|microsoft", re.I)),
    ("amazon_ses", re.compile(r"^email-smtp\.[a-z0-9-]+\.amazonaws\.com$|amazon ses", re.I)),
    ("sendgrid", re.compile(r"(^|\.)sendgrid\.net$", re.I)),
    ("mailgun", re.compile(r"(^|\.)mailgun\.org$", re.I)),
)


def detect_provider(host: str, detail: str = "") -> str | None:
    for name, pattern in PROVIDERS:
        if pattern.search(host) or (detail and pattern.search(detail)):
            return name
    return None


TLS_MODES_FIX = (
    "Use STARTTLS on port 587 (or 25), or implicit TLS (SMTPS) on port 465: in smtp-diag set the TLS mode to "
    "match the port, and in the product tick 'SSL/TLS' only for port 465."
)

ROWS: Final[tuple[Row, ...]] = (
    # ---- config -------------------------------------------------------------------------------------------
    Row(
        ConfigKind.INVALID_HOST,
        "The Outgoing Server value {reply} is not a valid host name or IP address.",
        "Enter only the server's host name (e.g. smtp.example.com) or IP address: no scheme (smtp://), no port "
        "(put the port in Outgoing Port), no spaces or '@'.",
    ),
    Row(
        ConfigKind.INVALID_PORT,
        "The Outgoing Port {port} is not a valid TCP port.",
        "Use the port your provider documents: 587 (STARTTLS, the usual choice), 465 (implicit TLS) or 25.",
    ),
    Row(
        ConfigKind.INVALID_FROM_EMAIL,
        "The From Email {reply} is not a plain e-mail address.",
        "Enter a bare address such as alerts@example.com (no display name, no angle brackets). Use an address "
        "the SMTP account is allowed to send as.",
    ),
    Row(
        ConfigKind.PARTIAL_CREDENTIALS,
        "Only one of username and password is set ({reply}).",
        "Enter both the username and the password for authenticated SMTP, or clear both for anonymous SMTP.",
    ),
    Row(
        ConfigKind.INVALID_RECIPIENT,
        "The test recipient {reply} is missing or not a plain e-mail address.",
        "Enter a bare address such as you@example.com as the test recipient, or turn off the test message.",
    ),
    Row(
        ConfigKind.INVALID_CA_BUNDLE,
        "The CA bundle cannot be used: {reply}.",
        "Paste the CA certificate(s) as PEM text: one or more blocks from -----BEGIN CERTIFICATE----- to "
        "-----END CERTIFICATE-----, e.g. the output of `openssl s_client -starttls smtp -showcerts`.",
    ),
    Row(
        ConfigKind.INVALID_HELO_NAME,
        "The HELO name {reply} is not a host name: servers refuse it in EHLO.",
        "Leave the HELO name empty (this machine's name is used) or give a fully qualified host name such as "
        "app.example.com.",
    ),
    Row(
        ConfigKind.FORBIDDEN_CHARACTERS,
        "The field {reply} contains a line break or NUL character. Sent to the "
        "server it would end the SMTP command early and inject another one (SMTP command injection).",
        "Remove line breaks and control characters from {reply}; they are never valid in SMTP settings.",
    ),
    Row(
        ConfigKind.ANONYMOUS,
        "No username and password are set: this is anonymous SMTP. It works only where the "
        "server relays for your network without login, and then anyone who can reach that server from your "
        "network can send mail as you (a security risk).",
        "Prefer authenticated SMTP: create an SMTP account or app password for this product and enter its "
        "username and password. Keep anonymous relay only on a server restricted to this product's address.",
    ),
    Row(
        ConfigKind.INSECURE_SKIP_VERIFY,
        "Insecure Skip TLS Verify is on: the server's certificate is not checked, "
        "so anyone in the network path could impersonate the server and read the credentials and mail.",
        "Turn Insecure Skip TLS Verify off. If the server uses a private CA or a self-signed certificate, give "
        "that CA's certificate as the CA bundle instead.",
    ),
    Row(
        ConfigKind.PORT_TLS_MISMATCH,
        "Port 465 expects implicit TLS (SMTPS) from the first byte, but the TLS mode is {reply}.",
        TLS_MODES_FIX,
        lambda c: c.config.port == 465,
    ),
    Row(
        ConfigKind.PORT_TLS_MISMATCH,
        "Implicit TLS (SMTPS) is configured on port {port}, which normally speaks "
        "plaintext SMTP with STARTTLS.",
        TLS_MODES_FIX,
    ),
    Row(
        ConfigKind.NOT_IN_PROFILE,
        "{reply} is set, but the product's form under this profile has no such setting, so the product cannot "
        "be configured this way.",
        "Leave it out to diagnose as the product works, or choose the generic profile to try it with smtp-diag.",
    ),
    # ---- dns ----------------------------------------------------------------------------------------------
    Row(
        DnsKind.NXDOMAIN,
        "The host name {host} does not exist in DNS (NXDOMAIN).",
        "Check the Outgoing Server for typos against your provider's documentation; from this machine, "
        "`nslookup {host}` must return an address.",
    ),
    Row(
        DnsKind.NO_ADDRESS,
        "The name {host} exists but has no A or AAAA record, so there is no address to connect to.",
        "Use the SMTP server's host name from your provider's documentation, not a name "
        "without addresses; ask your DNS administrator to add an A record if this name should work.",
    ),
    Row(
        DnsKind.MAIL_DOMAIN_NOT_HOST,
        "{host} is a mail domain (it has MX records) but not itself a server with "
        "an address. MX hosts receive mail for the domain; they are not the submission server.",
        "Enter the provider's SMTP submission host (e.g. smtp.{host}, smtp.gmail.com, smtp.office365.com) "
        "as the Outgoing Server, not the e-mail domain.",
    ),
    Row(
        DnsKind.SERVFAIL,
        "The DNS resolver failed to answer for {host} (SERVFAIL or refused): the resolver or "
        "the domain's name servers are broken or unreachable.",
        "Retry; if it persists check this machine's DNS resolver (/etc/resolv.conf or the container's DNS) "
        "and whether the domain's name servers respond.",
    ),
    Row(
        DnsKind.TIMEOUT,
        "No DNS answer for {host} in time: the resolver is unreachable or blocked.",
        "Check that this machine can reach its DNS resolver (UDP/TCP 53); in containers check the DNS "
        "settings of the network; or give a reachable resolver.",
    ),
    Row(
        DnsKind.POLICY_DENIED,
        "The address of {host} ({reply}) is not allowed by this service's egress policy, so "
        "no connection was made.",
        "Use an SMTP server on an allowed network and port; an operator can change "
        "DIAG_ALLOW_NETWORKS, DIAG_DENY_NETWORKS and DIAG_ALLOWED_PORTS (link-local and metadata addresses are "
        "always denied).",
    ),
    Row(
        DnsKind.RATE_LIMITED,
        "This service has run too many diagnoses against the server {host} resolves to ({reply}). The limit "
        "counts every name and address that reaches one server together, so that the service cannot be "
        "used to try passwords against it.",
        "Wait a minute and run the check again. An operator can raise DIAG_RATE_LIMIT_PER_TARGET if many "
        "people legitimately check the same server.",
    ),
    # ---- connect ------------------------------------------------------------------------------------------
    Row(
        ConnectKind.REFUSED,
        "{host} actively refused the connection on port {port}: nothing listens there, or a "
        "firewall rejects it.",
        "Check the port against your provider's documentation (587 for STARTTLS, 465 for "
        "implicit TLS); Mailgun and SendGrid also accept 2525 where 587 is blocked.",
        lambda c: c.provider in ("sendgrid", "mailgun"),
    ),
    Row(
        ConnectKind.REFUSED,
        "{host} actively refused the connection on port {port}: nothing listens on that "
        "port, or a firewall rejects it.",
        "Check the port against the server's documentation (587 for STARTTLS, "
        "465 for implicit TLS, 25 for relay) and that the SMTP service is running.",
    ),
    Row(
        ConnectKind.TIMEOUT,
        "No answer to the TCP connection on port {port}: packets are silently dropped, "
        "typically by an egress firewall. Cloud providers (AWS, Azure, GCP) block outbound port 25 by default.",
        "Use the submission port 587 (or 465) instead of 25, or ask the network team to allow outbound TCP "
        "to {host}:{port} from this machine; test with `nc -vz {host} {port}` from here.",
        lambda c: c.config.port == 25,
    ),
    Row(
        ConnectKind.TIMEOUT,
        "No answer to the TCP connection on port {port}: it is blocked on the way, its packets silently "
        "dropped, typically by a firewall between this machine and {host}.",
        "Ask the network team to allow outbound TCP to {host}:{port} from where this runs: security groups, "
        "proxies and, in a cluster, its egress rules (the pod's NetworkPolicy, the cluster's egress firewall); "
        "test with `nc -vz {host} {port}` from there, or run this check in the product's own pod.",
    ),
    Row(
        ConnectKind.UNREACHABLE,
        "The connection to {host} on port {port} was rejected on the way (the system says \"{reply}\"): "
        "a firewall between this machine and {host} most likely rejects it (firewalld's default answer, an "
        "iptables/nftables REJECT rule with icmp-host-prohibited or admin-prohibited), or {host} is down.",
        "Ask the network team whether a firewall on the way (on the mail server: `firewall-cmd --list-all`; the "
        "cluster's egress rules; a cloud network ACL) rejects TCP to {host}:{port}, and allow it; check that "
        "{host} is up. `nc -vz {host} {port}` from here shows the same system error.",
        lambda c: c.text_has("no route to host"),  # EHOSTUNREACH: ICMP host unreachable or prohibited
    ),
    Row(
        ConnectKind.UNREACHABLE,
        "There is no network route from this machine to {host} ({reply}).",
        "Check this machine's network: default route, IPv6 availability, VPN, and the container's network.",
    ),
    Row(
        ConnectKind.BLOCKED,
        "The connection to {host} on port {port} was blocked on this machine: permission denied by a local "
        "firewall or security policy ({reply}). Nothing was sent to the network.",
        "Check the egress rules of where this runs: the host firewall (iptables/nftables, firewalld), the "
        "container's or pod's NetworkPolicy, and any security policy (SELinux, AppArmor, seccomp) that limits "
        "outbound connections; allow outbound TCP to {host}:{port}.",
    ),
    Row(
        ConnectKind.NO_GREETING,
        "The TCP connection to port {port} opened but the server sent no SMTP greeting "
        "and did not answer TLS either: it is not a working SMTP server, or it is overloaded.",
        "Check that {host}:{port} is the SMTP service (not a proxy or another service) and that it is healthy.",
    ),
    Row(
        ConnectKind.IMPLICIT_TLS_EXPECTED,
        "Port {port} on {host} expects implicit TLS (SMTPS): it stays silent for "
        "plaintext clients and answers a TLS handshake. The configuration speaks plaintext/STARTTLS to it.",
        "Set the TLS mode to implicit TLS (in most products: tick 'SSL/TLS'), or use port 587 with STARTTLS.",
    ),
    Row(
        ConnectKind.NOT_SMTP,
        "The service on {host}:{port} is not SMTP: it answered {reply}.",
        "Use the SMTP port of the mail server (587, 465 or 25); this port belongs to another service.",
    ),
    Row(
        ConnectKind.CLOSED_BY_SERVER,
        "The server accepted the TCP connection and closed it before greeting: it "
        "may limit connections, block this machine's address, or expect TLS.",
        "Check the server's connection limits and IP allow lists for this machine's address; try port 465 with "
        "implicit TLS if the port is TLS-only.",
    ),
    Row(
        ConnectKind.GREETING_REJECTED,
        "The server greeted with {reply}: it refuses sessions from this client "
        "right now (421: temporarily, e.g. overloaded; 554: this address is blocked or not allowed to relay).",
        "For 421 retry later; for 554 ask the mail server's administrator to allow this machine's address, or "
        "check whether it is on a block list.",
    ),
    # ---- ehlo ---------------------------------------------------------------------------------------------
    Row(
        EhloKind.REJECTED,
        "The server rejected both EHLO and HELO: {reply}.",
        "Set a valid fully qualified HELO name (helo_name) for this machine; some servers reject bare or "
        "unresolvable names. Check the server's logs for the reason.",
    ),
    Row(
        EhloKind.HELO_ONLY,
        "The server refused EHLO ({reply}) and accepted only the old HELO: it speaks no ESMTP, so it "
        "offers neither STARTTLS nor AUTH.",
        "Use the provider's submission server and port (587 or 465), which speak ESMTP; a HELO-only server "
        "can only relay anonymous mail in clear text.",
    ),
    # ---- tls ----------------------------------------------------------------------------------------------
    Row(
        TlsKind.STARTTLS_NOT_OFFERED,
        "The server does not offer STARTTLS, and credentials must never travel in "
        "clear text, so the check stopped before AUTH.",
        "Use the provider's TLS port (587 with STARTTLS or 465 with implicit TLS), or enable STARTTLS on the "
        "server. Only on a trusted network set the TLS mode to 'none' explicitly to allow plaintext AUTH.",
        lambda c: not c.config.anonymous,
    ),
    Row(
        TlsKind.STARTTLS_NOT_OFFERED,
        "The server does not offer STARTTLS: mail to it travels unencrypted.",
        "Enable STARTTLS on the server or use its TLS port; set TLS mode 'none' only if plaintext is intended.",
    ),
    Row(
        TlsKind.STARTTLS_REJECTED,
        "The server offered STARTTLS but refused it: {reply}.",
        "Check the server's TLS configuration (certificate and key installed, TLS enabled); retry if the reply "
        "is temporary (454).",
    ),
    Row(
        TlsKind.PLAINTEXT_CREDENTIALS,
        "TLS is off (TLS mode 'none'): the username and password are sent in clear "
        "text and anyone on the network path can read them.",
        "Use STARTTLS (port 587) or implicit TLS (port 465) whenever credentials are used.",
    ),
    Row(
        TlsKind.NOT_TLS,
        "The server answered the TLS handshake in plaintext: port {port} speaks plain SMTP "
        "(use STARTTLS there), not implicit TLS.",
        "Set the TLS mode to STARTTLS for port {port} (in most products: untick 'SSL/TLS' and keep STARTTLS), or "
        "use port 465 for implicit TLS.",
    ),
    Row(
        TlsKind.HANDSHAKE_FAILED,
        "The TLS handshake with {host} failed: {reply}. Typical reasons: no common TLS "
        "version or cipher (a very old server), or a middlebox interfering.",
        "Check the server's TLS settings (TLS 1.2 or newer, modern ciphers) and that nothing intercepts port "
        "{port}.",
    ),
    Row(
        TlsKind.SELF_SIGNED,
        "The server's certificate is self-signed ({reply}). It is not trusted, so the product "
        "fails; Insecure Skip TLS Verify hides this, which is why the check still continued.",
        "Give the server's certificate (or its CA) as the CA bundle and turn Insecure Skip TLS Verify off; "
        "better, install a certificate from a public CA on the server.",
        _skip_verify,
    ),
    Row(
        TlsKind.SELF_SIGNED,
        "The server's certificate is self-signed ({reply}), so nothing vouches for it and it is rejected.",
        "Give the server's certificate (or the CA that signed it) as the CA bundle, or install a "
        "certificate from a public CA on the server. Insecure Skip TLS Verify is only a last resort.",
    ),
    Row(
        TlsKind.UNKNOWN_ISSUER,
        "The certificate was issued by a CA this machine does not trust ({reply}), "
        "typically a private/corporate CA or a server that does not send its intermediate certificate. Insecure "
        "Skip TLS Verify hides this, which is why the check still continued.",
        "Give the issuing CA's certificate as the CA bundle and turn Insecure Skip TLS Verify off; or configure "
        "the server to send its full chain.",
        _skip_verify,
    ),
    Row(
        TlsKind.UNKNOWN_ISSUER,
        "The certificate was issued by a CA this machine does not trust ({reply}): "
        "typically a private/corporate CA, or a server that does not send its intermediate certificate.",
        "Give the issuing CA's certificate (PEM) as the CA bundle, or configure the server to send the full "
        "chain including intermediates. Insecure Skip TLS Verify is only a last resort.",
    ),
    Row(
        TlsKind.CA_FILE_NOT_ROOT,
        "The CA file holds the certificate that issued the server's certificate, but that one is an "
        "intermediate CA, not a root ({reply}): verification must end at a self-signed root CA, so the "
        "issuing certificate alone is not enough. Insecure Skip TLS Verify hides this, which is why the check "
        "still continued.",
        "Turn Insecure Skip TLS Verify off once this is fixed. "
        "Add the root CA's certificate (the self-signed one at the top of the chain) to the CA bundle; the "
        "intermediate may stay beside it. The mail server's administrator or the CA has it; `openssl s_client "
        "-starttls smtp -showcerts -connect {host}:{port}` shows the chain's issuers.",
        _skip_verify,
    ),
    Row(
        TlsKind.CA_FILE_NOT_ROOT,
        "The CA file holds the certificate that issued the server's certificate, but that one is an "
        "intermediate CA, not a root ({reply}): verification must end at a self-signed root CA, so the "
        "issuing certificate alone is not enough.",
        "Add the root CA's certificate (the self-signed one at the top of the chain) to the CA bundle; the "
        "intermediate may stay beside it. The mail server's administrator or the CA has it; `openssl s_client "
        "-starttls smtp -showcerts -connect {host}:{port}` shows the chain's issuers.",
    ),
    Row(
        TlsKind.CA_FILE_UNRELATED,
        "The CA file has nothing to do with this server ({reply}): none of its certificates issued the "
        "server's certificate. Insecure Skip TLS Verify hides this, which is why the check "
        "still continued.",
        "Turn Insecure Skip TLS Verify off once this is fixed. "
        "Give the certificate of the CA that issued this server's certificate (the mail server's administrator "
        "has it, and `openssl s_client -starttls smtp -showcerts -connect {host}:{port}` shows the chain). If "
        "the file is the right root, the server does not send its intermediate certificate: configure it to "
        "send the full chain.",
        _skip_verify,
    ),
    Row(
        TlsKind.CA_FILE_UNRELATED,
        "The CA file has nothing to do with this server ({reply}): none of its certificates issued the "
        "server's certificate.",
        "Give the certificate of the CA that issued this server's certificate (the mail server's administrator "
        "has it, and `openssl s_client -starttls smtp -showcerts -connect {host}:{port}` shows the chain). If "
        "the file is the right root, the server does not send its intermediate certificate: configure it to "
        "send the full chain.",
    ),
    Row(
        TlsKind.HOSTNAME_MISMATCH,
        "The certificate is not valid for the name {host} ({reply}). Insecure Skip TLS "
        "Verify hides this, which is why the check still continued.",
        "Use a host name the certificate is for as the Outgoing Server, then turn "
        "Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        TlsKind.HOSTNAME_MISMATCH,
        "The certificate is not valid for the name {host} ({reply}).",
        "Use a host name that the certificate lists as the Outgoing Server "
        "(connecting by IP address usually fails this check), or have the certificate reissued with {host}.",
    ),
    Row(
        TlsKind.EXPIRED,
        "The server's certificate has expired ({reply}). Insecure Skip TLS Verify hides this, "
        "which is why the check still continued.",
        "Renew the server's certificate, then turn Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        TlsKind.EXPIRED,
        "The server's certificate has expired ({reply}).",
        "Renew the certificate on the mail server (and check its automatic renewal). If this machine's clock "
        "is wrong, fix the clock.",
    ),
    Row(
        TlsKind.NOT_YET_VALID,
        "The server's certificate is not valid yet ({reply}). Insecure Skip TLS Verify hides this.",
        "Check the clocks of this machine and the server; turn Insecure Skip TLS Verify off.",
        _skip_verify,
    ),
    Row(
        TlsKind.NOT_YET_VALID,
        "The server's certificate is not valid yet ({reply}): its start date is in the "
        "future, usually a clock problem.",
        "Check this machine's clock (NTP) and the certificate's dates.",
    ),
    Row(
        TlsKind.UNTRUSTED,
        "The certificate failed verification ({reply}).",
        "Give the correct CA bundle or fix the server's certificate; see the facts for the certificate.",
    ),
    Row(
        TlsKind.EXPIRING_SOON,
        "The server's certificate expires soon ({reply}); mail will fail when it does.",
        "Renew the certificate on the mail server before it expires and check its automatic renewal.",
    ),
    Row(
        TlsKind.OLD_PROTOCOL,
        "The server negotiated an outdated TLS version ({reply}).",
        "Enable TLS 1.2 or 1.3 on the mail server; old versions are being disabled by clients.",
    ),
    # ---- auth ---------------------------------------------------------------------------------------------
    Row(
        AuthKind.NOT_OFFERED,
        "Credentials are configured but the server does not offer AUTH{reply}.",
        "If the server relays without login for this network, clear username and password (anonymous); "
        "otherwise use the provider's submission port (587/465) where AUTH is offered.",
    ),
    Row(
        AuthKind.UNENCRYPTED_REFUSED,
        "The connection to {host} is not encrypted (no STARTTLS offered on port {port}), and the product's Go "
        "client would log in with AUTH PLAIN, which Go refuses over plaintext to any host but localhost "
        "({reply}): the password is never sent and the product fails.",
        "Have the mail server's admin enable STARTTLS, or set the Outgoing Port to the server's TLS port "
        "(587 with STARTTLS, 465 for implicit TLS).",
    ),
    Row(
        AuthKind.USERNAME_IGNORED,
        "The server offers no AUTH, so the product's Go client sends none: the Username and Password are "
        "silently ignored and mail goes out unauthenticated, accepted only where the server relays for this "
        "address.",
        "If the server relays for the product without login, clear Username and Password (anonymous SMTP); "
        "otherwise set the Outgoing Port to the server's submission port (587 or 465), where AUTH is offered.",
    ),
    Row(
        AuthKind.TLS_REQUIRED,
        "The server refuses AUTH without TLS: {reply}.",
        "Turn on STARTTLS (TLS mode auto or starttls, port 587) or implicit TLS (port 465).",
    ),
    Row(
        AuthKind.BAD_CREDENTIALS,
        "Gmail rejected the username or password ({reply}). Google accounts need an "
        "App Password for SMTP; the normal account password does not work.",
        "Create an App Password (Google Account > Security > 2-Step Verification > App passwords) and use it "
        "with the full Gmail address as the username.",
        _provider("gmail"),
    ),
    Row(
        AuthKind.BAD_CREDENTIALS,
        "Amazon SES rejected the credentials ({reply}). SES needs SMTP credentials, "
        "which differ from IAM access keys.",
        "Create SMTP credentials in the SES console (SMTP settings > "
        "Create SMTP credentials) for the same region as {host} and use those.",
        _provider("amazon_ses"),
    ),
    Row(
        AuthKind.BAD_CREDENTIALS,
        "The server rejected the username or password ({reply}).",
        "Check the username (often the full e-mail address) and password; if the account uses multi-factor "
        "authentication, create an app password for SMTP.",
    ),
    Row(
        AuthKind.APP_PASSWORD_REQUIRED,
        "The provider blocked this sign-in and wants the account to log in through a web browser first "
        "({reply}): a new location or a security check stopped the SMTP login.",
        "Sign in to the account in a web browser, confirm the security alert (for Google: the 'Critical "
        "security alert' mail), then retry; for Google use an App Password for SMTP.",
        lambda c: c.text_has("5.7.14", "web browser"),
    ),
    Row(
        AuthKind.APP_PASSWORD_REQUIRED,
        "The server requires an application-specific password ({reply}): the "
        "account has 2-step verification and refuses its normal password for SMTP.",
        "Create an App Password for this product (for Google: Google Account > Security > App passwords) and "
        "use it as the password.",
    ),
    Row(
        AuthKind.MECHANISM_UNSUPPORTED,
        "The server and smtp-diag share no usable AUTH mechanism ({reply}); smtp-diag and most "
        "products speak PLAIN, LOGIN and CRAM-MD5.",
        "Enable AUTH PLAIN or LOGIN (over TLS) on the server; XOAUTH2-only servers need OAuth, which this "
        "product's SMTP settings cannot do.",
    ),
    Row(
        AuthKind.TEMPORARY,
        "The server could not authenticate right now ({reply}).",
        "Retry in a few minutes; if it persists the provider's authentication service has a problem.",
    ),
    Row(
        AuthKind.SMTP_AUTH_DISABLED,
        "Microsoft 365 refused SMTP AUTH ({reply}). The password may well be right: SMTP AUTH (a username and "
        "password over SMTP) is turned off for this mailbox or the whole tenant, by security defaults, "
        "Conditional Access or the tenant setting. Microsoft turns it off by default for existing tenants at "
        "the end of December 2026.",
        "An Exchange admin enables Authenticated SMTP for {username} (Microsoft 365 admin center > Users > "
        "Active users > Mail > Manage email apps) and checks that the tenant allows it "
        "(Set-TransportConfig -SmtpClientAuthenticationDisabled $false; security defaults off or an exception); "
        "or send through an SMTP relay that accepts this product.",
    ),
    Row(
        AuthKind.BASIC_AUTH_RETIRED,
        "Microsoft 365 no longer accepts a username and password over SMTP for this tenant ({reply}): basic "
        "authentication for client submission is retired, so no password will work.",
        "Use OAuth 2.0 (XOAUTH2) if the product supports it; otherwise set the Outgoing Server to a relay that "
        "accepts the product's credentials or address (an Exchange Online connector, an on-premises relay, "
        "or a mail service such as Azure Communication Services or Amazon SES).",
    ),
    Row(
        AuthKind.BASIC_AUTH_ENDING,
        "Microsoft 365 accepted the password of {username} over SMTP ({reply}), but Microsoft turns basic SMTP "
        "AUTH off by default for existing tenants at the end of December 2026. Admins can turn it back on; its "
        "final removal is to be announced in 2027, and after it every login gets 550 5.7.30. This configuration "
        "works today and will stop working without any change on your side.",
        "Plan for it now: an Exchange admin keeps SMTP AUTH on for the tenant or for {username} (Microsoft 365 "
        "admin center > Users > Active users > Mail > Manage email apps > Authenticated SMTP; tenant-wide "
        "Set-TransportConfig -SmtpClientAuthenticationDisabled $false), which lasts only until the removal; or "
        "set the Outgoing Server to a relay the product's username and password fields can use (an SMTP relay "
        "service such as Azure Communication Services Email or Amazon SES, or an on-premises relay that "
        "forwards to Exchange Online through a connector).",
    ),
    Row(AuthKind.FAILED, "Authentication failed: {reply}.", "Check the credentials and the server's logs."),
    # ---- mail_from ----------------------------------------------------------------------------------------
    Row(
        MailFromKind.AUTH_REQUIRED,
        "The server requires authentication before it accepts mail ({reply}), but no "
        "username and password are configured.",
        "Enter the SMTP account's username and password.",
        lambda c: c.config.anonymous,
    ),
    Row(
        MailFromKind.AUTH_REQUIRED,
        "The server still wants authentication at MAIL FROM ({reply}).",
        "Check that the account is allowed to send over SMTP (for Microsoft 365: 5.7.57 means the client was "
        "not authenticated; enable Authenticated SMTP for the mailbox).",
    ),
    Row(
        MailFromKind.TLS_REQUIRED,
        "The server accepts mail only over TLS ({reply}), and this session is plaintext (TLS mode 'none').",
        "Set the TLS mode to auto or STARTTLS (port 587), or implicit TLS on port 465.",
    ),
    Row(
        MailFromKind.SENDER_REJECTED,
        "Microsoft 365 refused the From address {from_email} for this account "
        "({reply}): {username} has no Send As permission for it.",
        "Use the mailbox's own address as From Email, or grant {username} 'Send As' on {from_email}.",
        lambda c: c.text_has("5.7.60", "SendAsDenied"),
    ),
    Row(
        MailFromKind.SENDER_REJECTED,
        "Amazon SES refused {from_email} ({reply}): the address or its domain is "
        "not verified in this SES region (or the account is in the sandbox).",
        "Verify {from_email} or its domain in the SES console for the region of {host}; in the sandbox also "
        "verify recipients or request production access.",
        lambda c: c.provider == "amazon_ses" or c.text_has("not verified"),
    ),
    Row(
        MailFromKind.SENDER_REJECTED,
        "The server refused the sender {from_email} ({reply}) from this client, which does not log in.",
        "Set From Email to an address this server accepts from this machine without a login, or enter the "
        "Username and Password of an account that may send as {from_email}.",
        lambda c: c.config.anonymous,
    ),
    Row(
        MailFromKind.SENDER_REJECTED,
        "The server refused the sender {from_email} ({reply}): this account is not "
        "allowed to send as that address.",
        "Set From Email to an address the SMTP account owns or may send "
        "as (often the username itself), or ask the mail admin to allow {from_email}.",
    ),
    Row(
        MailFromKind.CLIENT_REJECTED,
        "The server refuses mail from this machine's address ({reply}), whatever the sender: its policy "
        "does not list this client.",
        "Ask the mail server's administrator to allow this machine's address (for Postfix: mynetworks or the "
        "client access list), or use the server's submission port (587) with a username and password.",
    ),
    Row(
        MailFromKind.SEND_AS_UNPROVEN,
        "Microsoft 365 accepted MAIL FROM {from_email}, but it decides whether {username} may send as that "
        "address only after the message itself (554 5.2.252 SendAsDenied at DATA): no check that stops before "
        "sending can prove it, and the product's first real mail may fail.",
        "Send a test message (a test recipient and the test message) to prove it, or set From Email to the "
        "mailbox you log in with ({username}); otherwise an Exchange admin gives {username} Send As on "
        "{from_email} (Exchange admin center > Mailboxes > {from_email} > Delegation > Send as).",
    ),
    Row(
        MailFromKind.SYNTAX,
        "The server rejected the MAIL FROM syntax for {from_email} ({reply}).",
        "Use a plain address (user@example.com) as From Email; some servers reject non-ASCII addresses "
        "unless they offer SMTPUTF8.",
    ),
    Row(
        MailFromKind.TEMPORARY,
        "The server temporarily refused the sender ({reply}).",
        "Retry later; persistent 4xx replies mean rate limits or server trouble on the provider's side.",
    ),
    Row(
        MailFromKind.REJECTED,
        "The server refused MAIL FROM: {reply}.",
        "See the server's reply; check the account's sending permissions.",
    ),
    # ---- rcpt_to ------------------------------------------------------------------------------------------
    Row(
        RcptToKind.RELAY_DENIED,
        "No test recipient is set, so smtp-diag asked RCPT TO with the From address {from_email}, and the "
        "server refused to relay to it ({reply}): it takes mail for other domains only from authenticated or "
        "allowed clients.",
        "Use authenticated SMTP (username and password), or ask the admin to allow relaying from this "
        "machine's address.",
        _probed,
    ),
    Row(
        RcptToKind.RELAY_DENIED,
        "The server refuses to relay to the test recipient ({reply}): it accepts mail "
        "for other domains only from authenticated or allowed clients.",
        "Use authenticated SMTP (username and password), or ask the admin to allow relaying from this "
        "machine's address.",
    ),
    Row(
        RcptToKind.UNKNOWN_RECIPIENT,
        "No test recipient is set, so smtp-diag asked RCPT TO with the From address {from_email}, which the "
        "server does not take as a recipient ({reply}). It refused neither the sender nor this client, but "
        "only a real recipient proves the envelope.",
        "Set a test recipient (an address the product will mail) to check the envelope end to end.",
        _probed,
    ),
    Row(
        RcptToKind.UNKNOWN_RECIPIENT,
        "The recipient does not exist ({reply}).",
        "Check the test recipient address for typos.",
    ),
    Row(
        RcptToKind.TEMPORARY,
        "No test recipient is set, so smtp-diag asked RCPT TO with the From address {from_email}, and the "
        "server refused it for now ({reply}), e.g. greylisting or a rate limit: the envelope is not proven.",
        "Retry in a few minutes, or set a test recipient to check the envelope with a real one.",
        _probed,
    ),
    Row(
        RcptToKind.TEMPORARY,
        "The recipient was temporarily refused ({reply}), e.g. greylisting or a rate limit.",
        "Retry in a few minutes; greylisting accepts the retry.",
    ),
    Row(
        RcptToKind.REJECTED,
        "No test recipient is set, so smtp-diag asked RCPT TO with the From address {from_email}, and the "
        "server refused it ({reply}) in words that blame neither the sender nor this client: the envelope is "
        "not proven.",
        "Read the server's reply, and set a test recipient to check the envelope with a real one.",
        _probed,
    ),
    Row(RcptToKind.REJECTED, "The server refused the recipient ({reply}).", "See the server's reply."),
    # ---- send ---------------------------------------------------------------------------------------------
    Row(
        SendKind.TOO_LARGE,
        "The message is larger than the server accepts ({reply}).",
        "Lower the product's attachment/report size, or raise the server's message size limit.",
    ),
    Row(
        SendKind.SEND_AS_DENIED,
        "The server took the sender and recipient but refused the message because {username} may not send "
        "as {from_email} ({reply}). Microsoft 365 checks this only at the end of the message, so checks that "
        "stop at MAIL FROM pass and real mail fails.",
        "Set From Email to the mailbox you log in with ({username}), or give that account Send As permission "
        "for {from_email} (Exchange admin center > Mailboxes > {from_email} > Delegation > Send as).",
    ),
    Row(
        SendKind.SENDER_NOT_VERIFIED,
        "Amazon SES rejected the message ({reply}): the From address or recipient is not verified.",
        "Verify {from_email} (and, in the sandbox, the recipient) in the SES console.",
    ),
    Row(
        SendKind.REJECTED,
        "The server refused the test message ({reply}): content policy, the sender's domain "
        "policy (SPF/DMARC), or a spam filter.",
        "Read the server's reply for the reason; check SPF and DKIM for "
        "the From domain and the provider's sending policies.",
    ),
    Row(SendKind.TEMPORARY, "The server temporarily refused the test message ({reply}).", "Retry later."),
    # ---- any stage ----------------------------------------------------------------------------------------
    Row(
        AnyKind.TIMEOUT,
        "The server stopped answering during this step (no reply within the timeout).",
        "Retry; if it repeats, the server or a firewall stalls connections (check the server's load and any "
        "TLS-inspecting proxy), or raise the timeout.",
    ),
    Row(
        AnyKind.DISCONNECTED,
        "The server closed the connection during this step, without an SMTP reply.",
        "Check the server's logs for why it drops the session (limits, blocked address, policy).",
    ),
    Row(
        AnyKind.PROTOCOL_ERROR,
        "The server's reply was not valid SMTP: {reply}.",
        "Check that {host}:{port} is a standards-conforming SMTP server.",
    ),
    Row(
        AnyKind.BUDGET_EXCEEDED,
        "The whole check ran out of its time budget.",
        "The server answers very slowly; retry, or raise the per-step timeout.",
    ),
    Row(
        AnyKind.INTERNAL_ERROR,
        "smtp-diag hit an unexpected error in this stage: a bug in smtp-diag, not "
        "necessarily in the configuration.",
        "Retry; if it repeats, report it with this report's JSON.",
    ),
)

def _index(rows: tuple[Row, ...]) -> dict[tuple[str, Kind], list[Row]]:
    table: dict[tuple[str, Kind], list[Row]] = {}
    for row in rows:
        table.setdefault(row.key, []).append(row)
    return table


TABLE: Final = _index(ROWS)


def known_codes() -> frozenset[str]:
    return frozenset(row.code for row in ROWS)


def finding_for(
    stage: str, kind: Kind, config: SmtpConfig, reply_code: int | None = None, detail: str | None = None
) -> Finding:
    """The finding for a stage's failure or warning: the kind's own row, or for an AnyKind the shared row
    under the code of the stage it ended ("ehlo.timeout")."""
    rows = TABLE[STAGE_OF[type(kind)], kind]  # every kind has a row: tests/diag/test_findings_table.py
    ctx = Context(config, reply_code, detail or "", detect_provider(config.host, detail or ""))
    row = next(r for r in rows if r.when is None or r.when(ctx))
    cause, fix = words_for(config.profile, row.key, ctx) or (row.cause, row.fix)  # a product's own words
    values = {
        "host": config.host,
        "port": config.port,
        "from_email": config.from_email,
        "username": config.username or "the SMTP account",
        "provider": ctx.provider or "",
        "reply": _quote(reply_code, detail),
    }
    return Finding(code_of(stage, kind), cause.format(**values), fix.format(**values))


def _quote(reply_code: int | None, detail: str | None) -> str:
    text = " ".join((detail or "").split())
    if len(text) > 200:
        text = text[:200] + "…"
    if reply_code is not None and reply_code > 0:
        return f'"{reply_code} {text}"' if text else f'"{reply_code}"'
    return text
