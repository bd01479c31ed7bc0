"""The `tls` stage: STARTTLS (or the implicit TLS session from `connect`) and certificate trust.

Trust is judged from a verifying handshake. When only the certificate fails, the session goes on over a
second, non-verifying handshake so the report can describe the certificate (Python 3.11 cannot show an
unverified chain), and so the later stages can run when Insecure Skip TLS Verify is on.
"""

from __future__ import annotations

import ssl
from typing import Any

from diag import certs
from diag.config import TlsMode
from diag.kinds import EhloKind, TlsKind
from diag.probe import Probe, handshake_failure
from diag.stages.base import Outcome, RunContext
from diag.transport import ProbeError

OLD_PROTOCOLS = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    mode = config.effective_tls_mode
    if mode is TlsMode.NONE:
        if config.anonymous:
            return Outcome.skipped("TLS mode is 'none': the session stays plaintext.")
        return Outcome.warning(
            "TLS mode is 'none': the username and password will be sent unencrypted.",
            TlsKind.PLAINTEXT_CREDENTIALS,
            tls=False,
        )
    if mode is TlsMode.IMPLICIT:
        return _judge(ctx, probe, "implicit TLS")

    if "starttls" not in probe.extensions:
        if config.client.go_client:
            # gomail's STARTTLS is opportunistic: the product goes on in plaintext, and the auth stage says what
            # its client then does with the password (refuses PLAIN, or sends it).
            return Outcome.warning(
                "The server does not offer STARTTLS: the product's client goes on in plaintext.",
                TlsKind.STARTTLS_NOT_OFFERED,
                tls=False,
                starttls_offered=False,
            )
        # Credentials never go in clear; anonymous mail in clear is a warning unless STARTTLS was demanded.
        fatal = not config.anonymous or config.tls_mode is TlsMode.STARTTLS
        judged = Outcome.failed if fatal else Outcome.warning
        return judged(
            "The server does not offer STARTTLS.", TlsKind.STARTTLS_NOT_OFFERED, tls=False, starttls_offered=False
        )

    verified = await certs.client_context_async(ca_bundle=config.ca_bundle, verify=True)
    try:
        reply = await probe.starttls(verified)
    except ProbeError as error:
        if error.kind != "tls_verify":
            return _handshake_failure(error)
        assert isinstance(error.cause, ssl.SSLCertVerificationError)
        try:
            probe = await _reopen_unverified(ctx, probe)
        except ProbeError as retry_error:
            return _handshake_failure(retry_error)
        probe.verify_error = error.cause
    else:
        if reply.code != 220:
            return Outcome.failed(
                f"The server refused STARTTLS: {reply}.",
                TlsKind.STARTTLS_REJECTED,
                reply=reply,
                starttls_reply=str(reply),
            )
    try:
        again = await probe.ehlo()
    except ProbeError as error:
        return Outcome.failed(
            f"EHLO after STARTTLS failed: {error.message}.", error.finding_kind, detail=error.message
        )
    if again.code != 250:
        return Outcome.failed(f"The server rejected EHLO after STARTTLS: {again}.", EhloKind.REJECTED, reply=again)
    return _judge(ctx, probe, "STARTTLS")


async def _reopen_unverified(ctx: RunContext, old: Probe) -> Probe:
    """The failed handshake left the session unusable: a fresh one, up to STARTTLS, without verification."""
    ctx.transcript.note("reconnecting without verification to describe the server's certificate")
    await old.close(polite=False)  # the failed handshake left it unusable; abort, do not wait
    probe = await Probe.open(ctx.config, ctx.transcript, old.address)
    ctx.probe = probe
    await probe.ehlo()
    reply = await probe.starttls(await certs.client_context_async(ca_bundle=None, verify=False))
    if reply.code != 220:
        raise ProbeError("tls_handshake", f"the server refused STARTTLS on reconnect: {reply}")
    return probe


def _handshake_failure(error: ProbeError) -> Outcome:
    if error.kind == "tls_handshake":
        kind, detail = handshake_failure(error)
        summary = (
            "The server answered the TLS handshake in plaintext."
            if kind is TlsKind.NOT_TLS
            else f"The TLS handshake failed: {detail}."
        )
        return Outcome.failed(summary, kind, detail=detail)
    return Outcome.failed(f"STARTTLS failed: {error.message}.", error.finding_kind, detail=error.message)


def _judge(ctx: RunContext, probe: Probe, how: str) -> Outcome:
    config = ctx.config
    facts: dict[str, Any] = {"tls": True, "tls_how": how}
    obj = probe.ssl_object
    if obj is not None:
        facts.update(certs.connection_facts(obj))
        der = obj.getpeercert(binary_form=True)
        if der:
            facts.update(
                {f"certificate_{k}": v for k, v in certs.describe_certificate(der).items()}
            )
    if how == "STARTTLS":
        facts.update(probe.capability_facts(prefix="after_tls_"))
    error = probe.verify_error
    facts["verified"] = error is None
    if error is not None:
        kind = certs.trust_kind(error)
        detail = certs.trust_detail(error)
        facts.update(detail)
        judged = Outcome.warning if config.insecure_skip_tls_verify else Outcome.failed
        said = str(detail.get("verify_message") or kind).rstrip(".")  # "... for '127.0.0.1'." ends in a dot
        message = f"OpenSSL: {said}, verify code {detail.get('verify_code')}"
        names = facts.get("certificate_sans")
        if kind is TlsKind.HOSTNAME_MISMATCH and names:
            message += f"; the certificate is for {', '.join(map(str, names[:8]))}"
        tail = (
            " Insecure Skip TLS Verify is on, so the check went on; without it this fails."
            if config.insecure_skip_tls_verify
            else ""
        )
        # A CA file that did not help: say what it holds against what the server shows.
        chain = certs.unverified_chain(obj) if obj is not None else None
        relation = certs.ca_file_relation(error, config.ca_bundle, chain)
        if relation is not None:
            kind, how_related = relation
            message = f"{how_related}; {message}"
        return judged(
            f"TLS is up ({how}) but the certificate is not trusted: {message}.{tail}", kind, detail=message, **facts
        )
    version = facts.get("tls_version", "")
    summary = f"TLS is up ({how}, {version}); the certificate is trusted for {config.host}."
    days_left = facts.get("certificate_days_left")
    if isinstance(days_left, int) and days_left <= certs.expiry_warning_days():
        return Outcome.warning(
            f"{summary} It expires in {days_left} days.",
            TlsKind.EXPIRING_SOON,
            detail=f"{days_left} days left",
            **facts,
        )
    if version in OLD_PROTOCOLS:
        return Outcome.warning(f"{summary} {version} is outdated.", TlsKind.OLD_PROTOCOL, detail=version, **facts)
    return Outcome.passed(summary, **facts)
