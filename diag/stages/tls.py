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
from diag.probe import Probe, ProbeError, handshake_failure
from diag.report import Status
from diag.stages.base import Outcome, RunContext

OLD_PROTOCOLS = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    mode = config.effective_tls_mode
    if mode is TlsMode.NONE:
        if config.anonymous:
            return Outcome.skipped("TLS mode is 'none': the session stays plaintext.")
        return Outcome(
            Status.WARNING,
            "TLS mode is 'none': the username and password will be sent unencrypted.",
            {"tls": False},
            kind="plaintext_credentials",
        )
    if mode is TlsMode.IMPLICIT:
        return _judge(ctx, probe, "implicit TLS")

    if "starttls" not in probe.extensions:
        facts: dict[str, Any] = {"tls": False, "starttls_offered": False}
        # Credentials never go in clear; anonymous mail in clear is a warning unless STARTTLS was demanded.
        status = (
            Status.FAILED if (not config.anonymous or config.tls_mode is TlsMode.STARTTLS) else Status.WARNING
        )
        return Outcome(status, "The server does not offer STARTTLS.", facts, kind="starttls_not_offered")

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
            return Outcome(
                Status.FAILED,
                f"The server refused STARTTLS: {reply}.",
                {"starttls_reply": str(reply)},
                kind="starttls_rejected",
                reply_code=reply.code,
                server_text=reply.text,
            )
    try:
        again = await probe.ehlo()
    except ProbeError as error:
        return Outcome(
            Status.FAILED,
            f"EHLO after STARTTLS failed: {error.message}.",
            kind=error.kind,
            server_text=error.message,
        )
    if again.code != 250:
        return Outcome(
            Status.FAILED,
            f"The server rejected EHLO after STARTTLS: {again}.",
            kind="ehlo.rejected",
            reply_code=again.code,
            server_text=again.text,
        )
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
            if kind == "not_tls"
            else f"The TLS handshake failed: {detail}."
        )
        return Outcome(Status.FAILED, summary, kind=kind, server_text=detail)
    return Outcome(
        Status.FAILED, f"STARTTLS failed: {error.message}.", kind=error.kind, server_text=error.message
    )


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
        status = Status.WARNING if config.insecure_skip_tls_verify else Status.FAILED
        said = str(detail.get("verify_message") or kind).rstrip(".")  # "... for '127.0.0.1'." ends in a dot
        message = f"OpenSSL: {said}, verify code {detail.get('verify_code')}"
        names = facts.get("certificate_sans")
        if kind == "hostname_mismatch" and names:
            message += f"; the certificate is for {', '.join(map(str, names[:8]))}"
        tail = (
            " Insecure Skip TLS Verify is on, so the check went on; without it this fails."
            if config.insecure_skip_tls_verify
            else ""
        )
        return Outcome(
            status,
            f"TLS is up ({how}) but the certificate is not trusted: {message}.{tail}",
            facts,
            kind=kind,
            server_text=message,
        )
    version = facts.get("tls_version", "")
    summary = f"TLS is up ({how}, {version}); the certificate is trusted for {config.host}."
    days_left = facts.get("certificate_days_left")
    if isinstance(days_left, int) and days_left <= certs.expiry_warning_days():
        return Outcome(
            Status.WARNING,
            f"{summary} It expires in {days_left} days.",
            facts,
            kind="expiring_soon",
            server_text=f"{days_left} days left",
        )
    if version in OLD_PROTOCOLS:
        return Outcome(
            Status.WARNING,
            f"{summary} {version} is outdated.",
            facts,
            kind="old_protocol",
            server_text=version,
        )
    return Outcome(Status.PASSED, summary, facts)
