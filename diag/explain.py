"""Explain a pasted log line: which stage failed, the finding from the findings table, and how to confirm it.

The user already has one thing when a product's *Validate configuration* says "error": the line in the
container logs. `explain_text` reads a pasted block, one explanation per non-blank line:

1. redact passwords, AUTH payloads and tokens first, before anything else sees the line (`redact`);
2. unwrap the line: a JSON log line's error field, a logfmt `error="..."`, a klog prefix, a product's own
   prefix (Grafana, Mattermost, Harbor, Argo CD, Keycloak, Jenkins, GitLab), which becomes a fact;
3. match the inner error against `PATTERNS`, a data table in which each row names its source (the
   library's code or the issue where the text was reported; /work/shared/LOG-LINES.md lists them);
4. answer with the finding the engine itself would give: `finding_for` on a config made from what the line
   says (host, port, addresses). There is no second vocabulary: the code, cause and fix are the table's.

A line no row knows is said to be unknown, with `stage` and `code` null: it never guesses. No network, no
I/O: the input is bounded (`MAX_TEXT_CHARS`, `MAX_LINES`, `MAX_LINE_CHARS`) and the patterns have no nested
quantifiers, so a hostile paste costs linear time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from diag.config import SmtpConfig
from diag.findings import finding_for
from diag.kinds import (
    STAGE_OF,
    AuthKind,
    ConfigKind,
    ConnectKind,
    DnsKind,
    Kind,
    MailFromKind,
    RcptToKind,
    SendKind,
    TlsKind,
)
from diag.profiles import Profile
from diag.report import Finding
from diag.secret import MASK

MAX_TEXT_CHARS: Final = 32 * 1024
MAX_LINES: Final = 200
MAX_LINE_CHARS: Final = 4096  # longer lines are cut: the error sits at the start of what the unwrapping leaves
DEFAULT_PROFILE: Final = "generic"
# The profiles that exist today. The product profiles (palette, palette-vertex) arrive with issue 10 item 1
# as a `profile` field of the config; `_finding` is the one place that will pass it on.
PROFILES: Final = tuple(p.value for p in Profile)

UNKNOWN_CAUSE: Final = (
    "smtp-diag does not recognise this line, so it does not guess what it means. Paste the line with the "
    "error itself (the text after 'error=' or 'err:'), or run a diagnosis of the configuration."
)


class ExplainInputError(ValueError):
    """The pasted text is unusable (too long, too many lines, nothing in it). `field` names the input."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# ---- redaction ---------------------------------------------------------------------------------------------

_SENSITIVE_KEYS = r"(?:password|passwd|pwd|pass|secret|token|api[_-]?key|client[_-]?secret|smtp[_-]?pass(?:word)?)"
_REDACTIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # "password": "x" in a JSON log line (the escaped quote may be part of the value)
    (re.compile(rf'("{_SENSITIVE_KEYS}"\s*:\s*")(?:[^"\\]|\\.)*(")', re.I), rf"\g<1>{MASK}\g<2>"),
    # password="x y" / password='x' / password=x / password: x (logfmt, key: value, Java properties)
    (re.compile(rf'(\b{_SENSITIVE_KEYS}\b\s*[=:]\s*)(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\s,;&}}\]]+)', re.I),
     rf"\g<1>{MASK}"),
    # smtp://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,256}:)[^\s@/]{1,512}(@)", re.I), rf"\g<1>{MASK}\g<2>"),
    # AUTH PLAIN <base64> / AUTH LOGIN <base64> / AUTH XOAUTH2 <base64>: the payload carries the password
    (re.compile(r"(\bAUTH\s+[A-Z0-9-]{1,20}\s+)[A-Za-z0-9+/=]{4,}", re.I), rf"\g<1>{MASK}"),
    # Authorization: Bearer <token>, Basic <base64>
    (re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\g<1>{MASK}"),
)


def redact(line: str) -> str:
    """The line with every password, AUTH payload and token masked: done first, so nothing downstream (the
    answer, a log, a store) ever holds the secret."""
    for pattern, replacement in _REDACTIONS:
        line = pattern.sub(replacement, line)
    return line


# ---- unwrapping --------------------------------------------------------------------------------------------

# JSON log lines: the fields that hold the error, most specific first.
_JSON_ERROR_KEYS: Final = ("error", "err", "error.message", "exception", "cause", "msg", "message", "log")
_LOGFMT_ERROR = re.compile(r'\b(?:error|err)="((?:[^"\\]|\\.)*)"')
_LOGFMT_ERROR_BARE = re.compile(r"\b(?:error|err)=([^\s\"]\S*(?: \S+)*)$")
_KLOG = re.compile(r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [\w.-]+:\d+\]\s*")
_TIMESTAMP = re.compile(
    r"^\[?\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"
)
_LEVEL = re.compile(r"^\[?(?:ERROR|ERRO|WARN|WARNING|INFO|SEVERE|FATAL|error|warn)\]?:?\s+")


@dataclass(frozen=True, slots=True)
class Wrapper:
    product: str
    pattern: re.Pattern[str]  # matches the product's prefix; what follows is the inner error
    source: str


WRAPPERS: Final[tuple[Wrapper, ...]] = (
    Wrapper("Grafana", re.compile(r"Failed to send alert notification email\W*"), "grafana/grafana#8867"),
    Wrapper("Grafana", re.compile(r"Async sent email \d+ succeed, not send emails: \S+ err: "),
            "grafana/grafana#19599"),
    Wrapper("Grafana", re.compile(r"failed to send notification to email addresses: [^:]*: "),
            "grafana/grafana#79962"),
    Wrapper("Mattermost", re.compile(
        r"(?:Connection unsuccessful: )?SendMail: |Failed to (?:open TLS connection|authenticate on SMTP server),? |"
        r"Failed to open a connection to SMTP server:? |Failed to close connection to SMTP server,? |"
        r"Failed to set the to address: |Failed to add to email address - "
    ), "mattermost/mattermost#11850, #11326, #6464; mattermost/docs#7678"),
    Wrapper("Harbor", re.compile(r"failed to ping email server:? "), "goharbor/harbor#13355"),
    Wrapper("Argo CD", re.compile(r"Failed to notify recipient \{[^}]*\} defined in resource \S+: "),
            "argoproj-labs/argocd-notifications#114"),
    Wrapper("Keycloak", re.compile(r"KC-SERVICES\d+: Failed to send email:? "), "keycloak/keycloak#26304"),
    Wrapper("Jenkins", re.compile(r"Failed to send out e-mail:? "), "nodejs/build#1805"),
    Wrapper("Alertmanager", re.compile(r"\*smtp\.plainAuth (?:auth )?failed: "), "prometheus/alertmanager#1358"),
    Wrapper("GitLab", re.compile(r"(?:Notify\.test_email|ActionMailer)\S*\s+"), "gitlab-foss#48026"),
)


@dataclass(frozen=True, slots=True)
class Unwrapped:
    inner: str
    product: str | None


def unwrap(line: str) -> Unwrapped:
    """The error inside a log line: JSON field, logfmt error="...", klog and timestamp prefixes, a product's
    own prefix. What cannot be unwrapped stays as it is: the patterns search, they do not anchor."""
    text = line.strip()
    if text.startswith("{"):
        text = _from_json(text)
    match = _LOGFMT_ERROR.search(text)
    if match:
        context = text[: match.start()]
        text = match.group(1).replace('\\"', '"')
        product = _product_of(context)
    else:
        bare = _LOGFMT_ERROR_BARE.search(text)
        product = None
        if bare:
            product = _product_of(text[: bare.start()])
            text = bare.group(1)
    for prefix in (_KLOG, _TIMESTAMP, _LEVEL):
        text = prefix.sub("", text, count=1)
    for wrapper in WRAPPERS:
        found = wrapper.pattern.search(text)
        if found:
            return Unwrapped(text[found.end():].strip() or text, wrapper.product)
    return Unwrapped(text, product)


def _product_of(context: str) -> str | None:
    for wrapper in WRAPPERS:
        if wrapper.pattern.search(context + " "):
            return wrapper.product
    if "ngalert" in context or "logger=alerting" in context:
        return "Grafana"
    return None


def _from_json(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    flat = _flatten(data)
    for key in _JSON_ERROR_KEYS:
        value = flat.get(key)
        if isinstance(value, str) and value.strip():
            # The message often says what failed and the error why: keep both, the error first.
            message = next((flat[k] for k in ("msg", "message") if isinstance(flat.get(k), str) and k != key), "")
            return f"{value} ({message})" if message else value
    return text


def _flatten(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 3:
            out.update(_flatten(value, f"{name}.", depth + 1))
        else:
            out[name] = value
    return out


# ---- the table ---------------------------------------------------------------------------------------------

HOST = r"(?P<host>[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
ADDR = r"(?P<address>(?:\d{1,3}\.){3}\d{1,3}|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>\d{1,5})"
REPLY = r"(?:(?P<code>[2-5]\d\d)[ -])?"  # an SMTP reply's code, when the line has it before the text

GOMAIL_PREFIX = re.compile(r"gomail: could not send email \d+: ")


@dataclass(frozen=True, slots=True)
class Pattern:
    """One known message: the regex over the inner error, the kind it means, and where the text comes from.

    Named groups become facts: host, address, port, resolver, code, enhanced, names (a certificate's names),
    from_email, username. `inferences` are what a person would conclude from the line beyond the finding.
    """

    family: str
    regex: re.Pattern[str]
    kind: Kind
    source: str
    inferences: tuple[str, ...] = ()
    anonymous: bool = False  # the line says no login was made (the finding's text depends on it)
    with_username: bool = False  # the line says a username was set, even when it does not name it
    when: Callable[[re.Match[str], str], bool] | None = None


def _p(family: str, regex: str, kind: Kind, source: str, *inferences: str, anonymous: bool = False,
       with_username: bool = False, when: Callable[[re.Match[str], str], bool] | None = None) -> Pattern:
    return Pattern(family, re.compile(regex, re.I), kind, source, inferences, anonymous, with_username, when)


def _port_is(*ports: int) -> Callable[[re.Match[str], str], bool]:
    def check(match: re.Match[str], text: str) -> bool:
        port = _port_in(match, text)
        return port is not None and port in ports
    return check


IMPLICIT_TLS_INFERENCE: Final = (
    "The client spoke plaintext SMTP and the server closed the connection without a word: a plaintext "
    "client on an implicit-TLS port (465), where the server waits for a TLS handshake and then gives up."
)
NOT_TLS_INFERENCE: Final = (
    "The client started TLS at once (implicit TLS: Go clients do this on port 465, others when 'SSL' or "
    "'secure' is set) and the server answered in plaintext: this port speaks plain SMTP with STARTTLS."
)
NOTHING_SENT_INFERENCE: Final = (
    "The client itself refused to send the password over a connection without TLS: the password never left, "
    "and the server saw no login attempt."
)

PATTERNS: Final[tuple[Pattern, ...]] = (
    # ---- dns: Go net (golang/go src/net), Windows, Java, Node --------------------------------------------
    _p("go-dns-nxdomain", rf"lookup {HOST}(?: on (?P<resolver>[0-9A-Fa-f:.\[\]]+?)(?::53)?)?: no such host",
       DnsKind.NXDOMAIN, "gophish/gophish#887; prometheus/prometheus#5446; ccfos/nightingale#1050",
       "The resolver answered and says the name does not exist: a typo, or a name only an internal DNS "
       "server knows (the resolver named in the line is the one the product asked)."),
    _p("windows-dns-nxdomain", rf"lookup {HOST}: getaddrinfow: No such host is known", DnsKind.NXDOMAIN,
       "gophish/gophish#570"),
    _p("java-unknown-host", rf"UnknownHostException: {HOST}", DnsKind.NXDOMAIN, "jhipster/generator-jhipster#4329"),
    _p("node-enotfound", rf"getaddrinfo ENOTFOUND {HOST}", DnsKind.NXDOMAIN, "Node.js dns (getaddrinfo ENOTFOUND)"),
    _p("go-dns-timeout", rf"lookup {HOST}(?: on (?P<resolver>[0-9A-Fa-f:.\[\]]+?)(?::53)?)?: (?:read udp \S+: )?"
       r"i/o timeout", DnsKind.TIMEOUT, "grafana/grafana#79962; knadh/listmonk#1859",
       "No DNS answer came: the resolver is unreachable from the pod (an egress NetworkPolicy blocking port "
       "53 is a common reason)."),
    _p("dns-temporary-failure", rf"(?:lookup {HOST}: )?Temporary failure in name resolution", DnsKind.TIMEOUT,
       "mattermost/mattermost#11850"),
    _p("go-dns-servfail", rf"lookup {HOST}(?: on (?P<resolver>[0-9A-Fa-f:.\[\]]+?)(?::53)?)?: server misbehaving",
       DnsKind.SERVFAIL, "golang/go src/net/dnsclient_unix.go (errServerMisbehaving)"),
    # ---- connect: Go, Java, Node, Ruby ------------------------------------------------------------------
    _p("go-dial-refused", rf"dial tcp {ADDR}: connect: connection refused", ConnectKind.REFUSED,
       "badoux/checkmail#8; golang/go syscall ECONNREFUSED",
       "The address answered with a reset: the host is up, but nothing listens on that port (or a firewall "
       "rejects it)."),
    _p("go-dial-unreachable", rf"dial tcp {ADDR}: (?:connect|getsockopt): no route to host",
       ConnectKind.UNREACHABLE, "badoux/checkmail#8",
       "No route to the address: the network is unreachable from the pod, or a firewall on the way rejects "
       "the connection with an ICMP 'host prohibited'."),
    _p("go-dial-timeout", rf"dial tcp {ADDR}: (?:i/o timeout|connect: connection timed out)", ConnectKind.TIMEOUT,
       "grafana/grafana#8867, #9804, #12062, #13358; tinode/chat#213",
       "DNS worked (the product had an address to dial), but no answer came to the connection attempt: a "
       "firewall, an egress policy or a cloud provider's block of the port drops it silently."),
    _p("java-connect-refused", r"ConnectException: Connection refused", ConnectKind.REFUSED,
       "jhipster/generator-jhipster#4329; nodejs/build#1805"),
    _p("java-connect-timeout", r"ConnectException: Connection timed out|SocketTimeoutException: connect timed out",
       ConnectKind.TIMEOUT, "travis-ci/travis-ci#5910"),
    _p("java-no-route", r"NoRouteToHostException|ENETUNREACH", ConnectKind.UNREACHABLE,
       "brandonjenniges/JavaMail-API-Android#3"),
    _p("node-econnrefused", rf"connect ECONNREFUSED {ADDR}", ConnectKind.REFUSED, "nodemailer/nodemailer#918"),
    _p("node-etimedout", rf"connect ETIMEDOUT {ADDR}", ConnectKind.TIMEOUT, "louislam/uptime-kuma#757"),
    _p("ruby-open-timeout", r"Net::OpenTimeout", ConnectKind.TIMEOUT, "gitlab-org/gitlab-foss#48026"),
    # ---- connect: no greeting, closed, not SMTP ---------------------------------------------------------
    _p("go-read-timeout-465", rf"read tcp \S+->{ADDR}: i/o timeout", ConnectKind.IMPLICIT_TLS_EXPECTED,
       "grafana/grafana#12314", IMPLICIT_TLS_INFERENCE, when=_port_is(465)),
    _p("go-read-timeout", rf"read tcp \S+->{ADDR}: i/o timeout", ConnectKind.NO_GREETING, "grafana/grafana#12314",
       "The TCP connection opened, then no reply came in time: a tarpit, a middlebox, or a plaintext client "
       "on an implicit-TLS port."),
    _p("ruby-read-timeout", r"Net::ReadTimeout", ConnectKind.NO_GREETING, "gitlab-org/gitlab-foss#48026"),
    _p("java-no-greeting-465", rf"Could not connect to SMTP host: {HOST}, port: (?P<port>\d{{1,5}}), response: -1",
       ConnectKind.IMPLICIT_TLS_EXPECTED, "nodejs/build#1805, #350", IMPLICIT_TLS_INFERENCE, when=_port_is(465)),
    _p("java-no-greeting", rf"Could not connect to SMTP host: {HOST}, port: (?P<port>\d{{1,5}}), response: -1",
       ConnectKind.CLOSED_BY_SERVER, "nodejs/build#1805, #350; mikeberger/borg_calendar#143",
       "'response: -1' means the connection closed before any greeting: a TLS mode that does not match the "
       "port, or a server that refuses this client."),
    _p("go-eof", r"(?:^|: )(?:unexpected )?EOF$", ConnectKind.IMPLICIT_TLS_EXPECTED,
       "gophish/gophish#253, #159; xhit/go-simple-mail#115; argoproj/argo-cd#12894", IMPLICIT_TLS_INFERENCE),
    _p("ruby-eof", r"EOFError: end of file reached", ConnectKind.IMPLICIT_TLS_EXPECTED, "mastodon/mastodon#14290",
       IMPLICIT_TLS_INFERENCE),
    _p("go-short-response-imap", r"short response: (?P<banner>\* OK.{0,200})", ConnectKind.NOT_SMTP,
       "mattermost/mattermost-docker#455",
       "The greeting is an IMAP server's ('* OK'): the Outgoing Port is the mail server's IMAP port, not SMTP."),
    _p("go-short-response-pop", r"short response: (?P<banner>\+OK.{0,200})", ConnectKind.NOT_SMTP,
       "golang/go src/net/textproto (short response)", "The greeting is a POP3 server's ('+OK'), not SMTP."),
    # ---- tls: mode ---------------------------------------------------------------------------------------
    _p("go-tls-first-record", r"tls: first record does not look like a TLS handshake", TlsKind.NOT_TLS,
       "ovh/cds#4696; knadh/listmonk#779; grafana/grafana#8071; goharbor/harbor#14480", NOT_TLS_INFERENCE),
    _p("java-unrecognized-ssl", r"Unrecognized SSL message, plaintext connection\?", TlsKind.NOT_TLS,
       "gravitee-io/issues#2721", NOT_TLS_INFERENCE),
    _p("openssl-wrong-version", r"wrong version number|SSLv2/v3 read server hello A: unknown protocol",
       TlsKind.NOT_TLS, "autolab/Autolab#2258; chatwoot/chatwoot#5581; louislam/uptime-kuma#6300",
       NOT_TLS_INFERENCE),
    _p("starttls-required-not-offered",
       r"does not advertise the STARTTLS extension|but target host does not support STARTTLS|"
       r"MandatoryStartTLS required, but SMTP server does not support STARTTLS|"
       r"STARTTLS is required but host does not support STARTTLS",
       TlsKind.STARTTLS_NOT_OFFERED,
       "prometheus/alertmanager notify/email; wneessen/go-mail client.go; go-mail/mail; jakartaee/mail-api#392",
       "The client requires STARTTLS and the server did not offer it: a relay without a certificate, or a "
       "box on the way that strips STARTTLS from the EHLO reply."),
    _p("go-unencrypted-connection", r"\bunencrypted connection\b", TlsKind.STARTTLS_NOT_OFFERED,
       "golang/go src/net/smtp/auth.go (PlainAuth); grafana/grafana#12633; goharbor/harbor#4268",
       NOTHING_SENT_INFERENCE,
       "A Username is set, the server offered no STARTTLS on this port (or TLS was not used), and the server "
       "is not localhost.", with_username=True),
    _p("starttls-454", rf"{REPLY}.{{0,40}}TLS not available", TlsKind.STARTTLS_REJECTED, "grafana/grafana#24563",
       "The server advertises STARTTLS but its own TLS set-up is broken (certificate or key missing)."),
    # ---- tls: trust, names, dates, versions -----------------------------------------------------------------
    _p("go-x509-valid-for", rf"x509: certificate is valid for (?P<names>.{{1,1000}}?), not {HOST}",
       TlsKind.HOSTNAME_MISMATCH, "golang/go src/crypto/x509/verify.go; grafana/grafana#7189",
       "The product reached the server under a name the certificate does not list (an alias, an internal "
       "name or an IP address)."),
    _p("go-x509-no-ip-sans", rf"x509: cannot validate certificate for {HOST} because it doesn't contain any IP "
       r"SANs", TlsKind.HOSTNAME_MISMATCH, "golang/go src/crypto/x509/verify.go",
       "An IP address was entered as the Outgoing Server; the certificate names host names only."),
    _p("go-x509-no-names", rf"x509: certificate is not valid for any names, but wanted to match {HOST}",
       TlsKind.HOSTNAME_MISMATCH, "golang/go src/crypto/x509/verify.go"),
    _p("go-x509-legacy-cn", r"x509: certificate relies on legacy Common Name field", TlsKind.HOSTNAME_MISMATCH,
       "golang/go src/crypto/x509/verify.go",
       "The certificate names the server only in its Common Name; Go (1.15 and later) requires a Subject "
       "Alternative Name."),
    _p("java-no-san", rf"No (?:subject alternative DNS name|name) matching {HOST} found|"
       r"No subject alternative names present", TlsKind.HOSTNAME_MISMATCH,
       "eclipse-ee4j/angus-mail#187; greenmail-mail-test/greenmail#853"),
    _p("node-altnames", rf"Hostname/IP does not match certificate's altnames: (?:Host|IP): {HOST}\.? is not "
       r"(?:in the cert's altnames|in the cert's list): (?P<names>.{1,1000})", TlsKind.HOSTNAME_MISMATCH,
       "nodejs/node lib/tls.js (checkServerIdentity)"),
    _p("go-x509-expired", r"x509: certificate has expired or is not yet valid:? (?P<validity>current time \S+ is "
       r"after \S+)", TlsKind.EXPIRED, "golang/go src/crypto/x509/verify.go; goharbor/harbor#266",
       "'is after' the certificate's end date: expired (or the node's clock runs far ahead)."),
    _p("go-x509-not-yet-valid", r"x509: certificate has expired or is not yet valid:? (?P<validity>current time "
       r"\S+ is before \S+)", TlsKind.NOT_YET_VALID, "golang/go src/crypto/x509/verify.go",
       "'is before' the certificate's start date: the node's clock is behind, or the certificate was just "
       "issued with a future start."),
    _p("node-expired", r"certificate has expired|CERT_HAS_EXPIRED", TlsKind.EXPIRED, "nodejs/node (OpenSSL "
       "X509_V_ERR_CERT_HAS_EXPIRED)"),
    _p("go-x509-unknown-authority", r"x509: certificate signed by unknown authority", TlsKind.UNKNOWN_ISSUER,
       "golang/go src/crypto/x509/verify.go; grafana/grafana#7189",
       "The chain does not lead to a CA in the container's trust store: a private or corporate CA, a server "
       "that does not send its intermediate, or a TLS-inspecting proxy."),
    _p("go-x509-no-roots", r"x509: failed to load system roots and no roots provided", TlsKind.UNKNOWN_ISSUER,
       "golang/go src/crypto/x509/verify.go",
       "The container has no system CA certificates at all (a scratch or distroless image without "
       "ca-certificates): no certificate can be trusted."),
    _p("java-pkix", r"PKIX path building failed|unable to find valid certification path", TlsKind.UNKNOWN_ISSUER,
       "jakartaee/mail-api#392; keycloak/keycloak#27756, #44624",
       "Java's trust store (cacerts) has no CA for this chain; Keycloak's container trust store can be "
       "outdated."),
    _p("node-self-signed", r"self[- ]signed certificate|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN",
       TlsKind.SELF_SIGNED, "louislam/uptime-kuma#757"),
    _p("node-local-issuer", r"unable to (?:get local issuer certificate|verify the first certificate)",
       TlsKind.UNKNOWN_ISSUER, "nodejs/node (OpenSSL X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"),
    _p("ruby-verify-failed", r"SSL_connect returned=1 errno=0 .{0,120}certificate verify failed",
       TlsKind.UNTRUSTED, "gitlab-org/omnibus-gitlab#2546; sameersbn/docker-gitlab#282",
       "OpenSSL rejected the certificate; the line does not say why (its text in brackets, when present, does)."),
    _p("go-tls-handshake", r"remote error: tls: (?:handshake failure|protocol version not supported)|"
       r"tls: server selected unsupported protocol version \w+|tls: no supported versions",
       TlsKind.HANDSHAKE_FAILED, "grafana/grafana#7779, #8385; wneessen/go-mail client.go",
       "Client and server share no TLS version or cipher: usually an old server offering only SSLv3 or TLS "
       "1.0 (Go clients require TLS 1.2 by default since Go 1.18 for clients)."),
    _p("java-protocol", r"Received fatal alert: (?:protocol_version|handshake_failure)|No appropriate protocol",
       TlsKind.HANDSHAKE_FAILED, "SeunMatt/mysql-backup4j#18; convertigo/convertigo#514"),
    # ---- auth ----------------------------------------------------------------------------------------------
    _p("m365-basic-auth-retired", rf"{REPLY}5\.7\.30\b.{{0,200}}", AuthKind.BASIC_AUTH_RETIRED,
       "techcommunity.microsoft.com exchange-team-blog ba-p/4114750"),
    _p("m365-smtp-auth-disabled", rf"{REPLY}5\.7\.139\b", AuthKind.SMTP_AUTH_DISABLED,
       "rpremraj/mailR#107; nodemailer/nodemailer#1484, #1714",
       "Microsoft 365 refused SMTP AUTH for the mailbox or tenant as a policy: the password may well be right."),
    _p("gmail-app-password", rf"{REPLY}5\.7\.9\b.{{0,80}}Application-specific password required|"
       r"InvalidSecondFactor", AuthKind.APP_PASSWORD_REQUIRED, "PHPMailer/PHPMailer#1708"),
    _p("gmail-web-login", r"534[ -]5\.7\.14\b", AuthKind.APP_PASSWORD_REQUIRED, "Gmail 534 5.7.14 replies"),
    _p("go-no-auth", r"smtp: server doesn't support AUTH|server does not support SMTP AUTH$",
       AuthKind.NOT_OFFERED, "golang/go src/net/smtp/smtp.go; wneessen/go-mail client.go",
       "A Username is set, and the server's EHLO reply lists no AUTH: often AUTH is offered only after "
       "STARTTLS, or on the submission port (587) rather than 25."),
    _p("wneessen-no-auth-type", r"server does not support SMTP AUTH type: (?P<mechanism>[\w-]+)",
       AuthKind.MECHANISM_UNSUPPORTED, "wneessen/go-mail client.go"),
    _p("auth-504", r"504[ -](?:5\.7\.4 )?Unrecognized authentication type", AuthKind.MECHANISM_UNSUPPORTED,
       "goharbor/harbor#5757, #15182, #10964",
       "The mechanism the client chose is not offered: an Exchange receive connector without Basic, or AUTH "
       "sent before TLS."),
    _p("java-auth-334-username", r"AuthenticationFailedException: 334 VXNlcm5hbWU6", AuthKind.FAILED,
       "scm-manager/scm-manager#302",
       "'334 VXNlcm5hbWU6' is the server's 'Username:' prompt: AUTH LOGIN was started with an empty username."),
    _p("auth-tls-required-after-mail", r"gomail: could not send email \d+: 530[ -](?:5\.7\.0 )?Must issue a "
       r"STARTTLS command first", MailFromKind.TLS_REQUIRED, "go-gomail/gomail send.go; jetmore/swaks#15"),
    _p("java-send-530-starttls", r"SMTPSendFailedException: 530[ -](?:5\.7\.0 )?Must issue a STARTTLS",
       MailFromKind.TLS_REQUIRED, "keycloak/keycloak#12175"),
    _p("auth-tls-required", rf"{REPLY}Must issue a STARTTLS command first", AuthKind.TLS_REQUIRED,
       "jetmore/swaks#15; virtualzone/tubewarder#29; mlandauer/cuttlefish#415"),
    _p("auth-535", r"(?:^|\D)535[ -]", AuthKind.BAD_CREDENTIALS,
       "mesutpiskin/keycloak-2fa-email-authenticator#23; argoproj-labs/argocd-notifications#114; "
       "akka/akka-core#30200; nodemailer/nodemailer#1484"),
    # ---- mail_from / rcpt_to / send: replies, best with the step they came back at ------------------------------
    _p("m365-send-as-denied", r"5\.2\.252|SendAsDenied", SendKind.SEND_AS_DENIED,
       "gophish/gophish#2900; MicrosoftDocs/OfficeDocs-Support#1187",
       "Microsoft 365 checks the From against the mailbox only after the message: sender and recipient "
       "were accepted first."),
    _p("ses-not-verified", r"Email address is not verified", SendKind.SENDER_NOT_VERIFIED,
       "GoogleCloudPlatform/cloud-build-notifiers#87; aws/amazon-ecs-agent#533"),
    _p("empty-from-relaying", r"553[ -]Relaying disallowed as @\s*$", ConfigKind.INVALID_FROM_EMAIL,
       "mattermost/mattermost#13224", "The From address was empty: From Email is not set."),
    _p("client-not-authenticated", r"5\.7\.57|Client was not authenticated|\b530[ -](?:5\.7\.[01] )?"
       r"Authentication required|Sender address rejected: not logged in", MailFromKind.AUTH_REQUIRED,
       "grafana/grafana#6425; keycloak/keycloak#12175", anonymous=True),
    _p("sender-not-owned", r"Mail from must equal authorized user|Sender address rejected: not owned by|"
       r"SMTPSenderFailedException: 5\d\d", MailFromKind.SENDER_REJECTED,
       "jenkinsci/mailer-plugin#23; jenkinsci/docker#1395; keycloak/keycloak#27456"),
    _p("relay-denied", r"Relay access denied|Relaying denied|Unable to relay|not permitted to relay|"
       r"relay not permitted", RcptToKind.RELAY_DENIED, "Postfix/Exim/Exchange RCPT replies (RFC 5321 550/554)"),
    _p("unknown-recipient", r"5\.1\.1\b|User unknown|Recipient address rejected: User unknown|"
       r"mailbox unavailable|No such user", RcptToKind.UNKNOWN_RECIPIENT, "Postfix/Exchange 550 5.1.1 replies"),
    _p("node-invalid-login", r"Invalid login: ", AuthKind.BAD_CREDENTIALS, "nodemailer/nodemailer#918"),
)


# ---- the answer --------------------------------------------------------------------------------------------


class _UnsaidPort(int):
    """The port when the line does not name one: an int for the config, "<port>" in the finding's words,
    so the explanation never states a port the line did not say."""

    def __format__(self, spec: str) -> str:
        return "<port>"

    def __str__(self) -> str:
        return "<port>"

    __repr__ = __str__


UNSAID_HOST: Final = "<host>"


@dataclass(frozen=True, slots=True)
class Explanation:
    line: str  # as redacted
    stage: str | None
    code: str | None
    cause: str
    fix: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    inferences: list[str] = field(default_factory=list)
    confirm: dict[str, Any] | None = None
    family: str | None = None  # the PATTERNS row that matched (not in to_dict: the JSON shape is the issue's)
    source: str | None = None  # where that message is documented

    @property
    def known(self) -> bool:
        return self.code is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line, "stage": self.stage, "code": self.code, "cause": self.cause, "fix": self.fix,
            "facts": self.facts, "inferences": self.inferences, "confirm": self.confirm,
        }


def split_lines(text: str) -> list[str]:
    """The non-blank lines of a paste, within the limits (an `ExplainInputError` names what is too much)."""
    if len(text) > MAX_TEXT_CHARS:
        raise ExplainInputError("text", f"must be at most {MAX_TEXT_CHARS} characters")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ExplainInputError("text", "contains no log line: paste the error from the product's logs")
    if len(lines) > MAX_LINES:
        raise ExplainInputError("text", f"must have at most {MAX_LINES} non-blank lines")
    return lines


def explain_text(text: str, profile: str = DEFAULT_PROFILE) -> list[Explanation]:
    """One explanation per non-blank line of a pasted block."""
    if profile not in PROFILES:
        raise ExplainInputError("profile", f"must be one of: {', '.join(PROFILES)}")
    return [explain_line(line, profile) for line in split_lines(text)]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _printable(line: str) -> str:
    """The line as every sink can show it: no control or bidi characters (a terminal's escape sequences),
    no lone surrogates (which no JSON encoder or log line can write)."""
    line = line.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", line)


def explain_line(line: str, profile: str = DEFAULT_PROFILE) -> Explanation:
    redacted = redact(_printable(line[:MAX_LINE_CHARS]).strip())
    unwrapped = unwrap(redacted)
    inner = unwrapped.inner
    facts: dict[str, Any] = {}
    if unwrapped.product:
        facts["product"] = unwrapped.product
    inferences: list[str] = []
    gomail = GOMAIL_PREFIX.search(inner)
    if gomail:
        inferences.append(
            "The 'gomail: could not send email' prefix is added only after the connection, TLS and login "
            "succeeded: the failure is in the envelope (MAIL FROM, RCPT TO or the message)."
        )
    for pattern in PATTERNS:
        match = pattern.regex.search(inner)
        if match is None or (pattern.when is not None and not pattern.when(match, inner)):
            continue
        facts.update(_facts(match, inner))
        inferences.extend(pattern.inferences)
        if "timeout -1" in inner:
            inferences.append("'timeout -1' means the product set no timeout: a silent server makes it hang.")
        config = _config(facts, pattern)
        finding = _finding(pattern.kind, config, facts, inner, profile)
        stage = finding.code.split(".", 1)[0]
        return Explanation(redacted, stage, finding.code, finding.cause, finding.fix, facts, inferences,
                           _confirm(facts, pattern), pattern.family, pattern.source)
    return Explanation(redacted, None, None, UNKNOWN_CAUSE, None, facts, inferences, None)


def _finding(kind: Kind, config: SmtpConfig, facts: Mapping[str, Any], inner: str, profile: str) -> Finding:
    """The table's finding for this kind, worded for `profile` (finding_for reads it from the config)."""
    worded = dataclasses.replace(config, profile=Profile(profile))
    return finding_for(STAGE_OF[type(kind)], kind, worded, facts.get("reply_code"), _detail(facts, inner))


def _detail(facts: Mapping[str, Any], inner: str) -> str:
    """What the finding quotes as {reply}: the server's reply text, a certificate's names, else the error."""
    if "names" in facts:
        return f"valid for {facts['names']}"
    if "validity" in facts:
        return str(facts["validity"])
    text = GOMAIL_PREFIX.sub("", inner)
    if "reply_code" in facts:  # quote the reply from its code on, without the code (the finding adds it)
        reply = re.search(rf"\b{facts['reply_code']}[ -](.*)", text)
        if reply:
            return reply.group(1)
    return text


_EMAIL = re.compile(r"<?([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63})>?")


def _facts(match: re.Match[str], inner: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    groups = {k: v for k, v in match.groupdict().items() if v}
    for name in ("host", "address", "resolver", "names", "validity", "mechanism", "banner"):
        if name in groups:
            facts[name] = groups[name].strip().rstrip(".")
    port = _port_in(match, inner)
    if port is not None:
        facts["port"] = port
    code = groups.get("code") or _reply_code(inner)
    if code:
        facts["reply_code"] = int(code)
    send_as = re.search(rf"{_EMAIL.pattern} not allowed to send as {_EMAIL.pattern}", inner)
    if send_as:
        facts["username"], facts["from_email"] = send_as.group(1), send_as.group(2)
    elif "from_email" not in facts:
        owner = re.search(rf"{_EMAIL.pattern}: Sender address rejected", inner)
        if owner:
            facts["from_email"] = owner.group(1)
    return facts


def _reply_code(text: str) -> str | None:
    found = re.search(r"(?:^|[\s:(\[])([245]\d\d)[ -](?:[245]\.\d{1,3}\.\d{1,3}\b|[A-Z<])", text)
    return found.group(1) if found else None


def _port_in(match: re.Match[str], text: str) -> int | None:
    value = match.groupdict().get("port")
    if value is None:
        java = re.search(r"port:? (\d{1,5})\b", text)
        value = java.group(1) if java else None
    if value is None:
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


def _config(facts: Mapping[str, Any], pattern: Pattern) -> SmtpConfig:
    host = facts.get("host") or facts.get("address") or UNSAID_HOST
    port: int = facts.get("port") or _UnsaidPort(0)
    username = None if pattern.anonymous else facts.get("username", "<Username>" if pattern.with_username else None)
    return SmtpConfig(host=str(host), port=port, from_email=str(facts.get("from_email", "<From Email>")),
                      username=username)


def _confirm(facts: Mapping[str, Any], pattern: Pattern) -> dict[str, Any]:
    """The diagnosis that would confirm the explanation: the config it can fill in (the page fills its form
    with it) and the exact command, with a placeholder for what the line did not say."""
    config: dict[str, Any] = {}
    host = facts.get("host") or facts.get("address")
    if host:
        config["host"] = str(host).strip("[]")
    if facts.get("port"):
        config["port"] = facts["port"]
    if facts.get("from_email"):
        config["from_email"] = facts["from_email"]
    if facts.get("username") and not pattern.anonymous:
        config["username"] = facts["username"]
    argv = ["smtp-diag", "check", "--host", config.get("host", "HOST"), "--port", str(config.get("port", "PORT")),
            "--from-email", config.get("from_email", "FROM")]
    if "username" in config or pattern.with_username:
        argv += ["--username", config.get("username", "USERNAME"), "--password-stdin"]
    missing = [name for name in ("host", "port", "from_email") if name not in config]
    return {"config": config, "command": shlex.join(argv), "missing": missing}
