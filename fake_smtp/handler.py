"""The fake server's behaviour through aiosmtpd's public handler hooks.

aiosmtpd parses each command and runs its own checks (syntax, EHLO first, TLS before AUTH), then asks the
handler: the hooks below apply the fault rules of the step, the STARTTLS and login policy, the envelope
policies, hide extensions from EHLO, and capture accepted messages. What no hook reaches (the greeting,
the STARTTLS and DATA commands before their reply) stays in `protocol.FakeSMTPProtocol`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from fake_smtp.auth import AUTH_NOT_ENABLED, ENCRYPTION_REQUIRED, cram_md5
from fake_smtp.dispatch import HANDLER_PREFIXES, dispatch_names
from fake_smtp.logs import logger
from fake_smtp.policies import Envelope as PolicyEnvelope
from fake_smtp.protocol import INTERNAL_ERROR, FakeSMTPProtocol, Runtime


class Handler:
    """aiosmtpd handler: one per server, shared by its sessions (session state lives on the protocol)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        # aiosmtpd reads the EHLO hook's signature on every new connection (to tell its deprecated 4-argument
        # form from this one). A bound method's signature is rebuilt on each call of inspect.signature; this
        # hook is bound once per server and carries its signature, returned as it is (issue 13).
        self.__dict__["handle_EHLO"] = _PresignedHook(self.handle_EHLO)

    # aiosmtpd lists the handler's members on every connection to find its hooks and AUTH mechanisms;
    # answering with those alone makes each connection's set-up cheaper (fake_smtp/dispatch.py says why).
    def __dir__(self) -> Iterable[str]:
        return dispatch_names(type(self), HANDLER_PREFIXES)

    async def handle_EHLO(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        reply = await server.apply_faults("ehlo")  # may also hide STARTTLS or AUTH from what follows
        if reply is not None:
            return [reply]
        session.host_name = hostname  # the 5-argument hook must do this itself
        return server.advertised(responses)

    async def handle_HELO(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        reply = await server.apply_faults("helo")
        if reply is not None:
            return reply
        session.host_name = hostname  # the hook replaces aiosmtpd's default, which sets it
        return f"250 {server.hostname}"

    def handle_STARTTLS(self, server: FakeSMTPProtocol, session: Session, envelope: Envelope) -> bool:
        """After the STARTTLS handshake (aiosmtpd calls this one synchronously): accept the client."""
        server.log.info("tls established", via="starttls")
        return True

    async def handle_AUTH(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, args: list[str]
    ) -> object:  # a reply line, or MISSING
        """A reply refusing this AUTH, or MISSING to let aiosmtpd run the mechanism as if there were no hook
        (aiosmtpd has already refused AUTH before EHLO, after a login, without a mechanism or an unknown one)."""
        reply = await server.apply_faults("auth") or server.starttls_refusal()
        if reply is not None:
            return reply
        if server.hide_auth:
            return AUTH_NOT_ENABLED
        return ENCRYPTION_REQUIRED if server.login_waits_for_tls() else MISSING

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> Any:
        assert self._runtime.credentials is not None  # AUTH is refused earlier in anonymous mode
        return await cram_md5(server, self._runtime.credentials, self._runtime.auth_replies)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> Any:
        assert self._runtime.xoauth2 is not None  # excluded from the mechanisms otherwise
        return await self._runtime.xoauth2.authenticate(server, args)

    # handle_MAIL / handle_RCPT: accepting means updating the envelope ourselves.
    async def handle_MAIL(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._refusal(server, "mail_from", policy_envelope(session, address))
        if reply is None:
            envelope.mail_from, reply = address, "250 OK"
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        view = policy_envelope(session, envelope.mail_from or "", rcpt=address)
        reply = await self._refusal(server, "rcpt_to", view)
        if reply is None:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply or "250 OK"

    async def _refusal(self, server: FakeSMTPProtocol, step: str, view: PolicyEnvelope) -> str | None:
        """MAIL or RCPT refused by a fault rule, the STARTTLS or login policy, or an envelope policy."""
        reply = await server.transaction_refusal(step)
        if reply is not None:
            return reply
        policies = self._runtime.policies
        verdict = policies.on_mail(view) if step == "mail_from" else policies.on_rcpt(view)
        return None if verdict is None else server.refuse(verdict, step)

    async def handle_DATA(self, server: FakeSMTPProtocol, session: Session, envelope: Envelope) -> str:
        """At the final dot (the DATA command itself, before 354, is `FakeSMTPProtocol.smtp_DATA`)."""
        outcome = await server.apply_faults("end_of_data")
        if outcome is not None:
            return outcome
        view = policy_envelope(session, envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos))
        verdict = self._runtime.policies.on_data(view)
        if verdict is not None:
            return server.refuse(verdict, "end_of_data")
        message = self._runtime.mailbox.add(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.original_content or b"",
            auth_user=session.auth_data if isinstance(session.auth_data, str) else None,
            tls=session.ssl is not None,
            # aiosmtpd's peer is a socket address tuple (host, port[, flow, scope]); kept as fields, not its repr.
            peer=str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer),
            peer_port=int(session.peer[1]) if isinstance(session.peer, tuple) else None,
        )
        server.log.info("message accepted", id=message.id, mail_from=message.mail_from,
                        rcpt_tos=list(message.rcpt_tos), size=message.size)
        self._runtime.policies.on_accepted(view)
        return f"250 2.0.0 Ok: queued as {message.id}"

    async def handle_exception(self, error: Exception) -> str:
        # No traceback: structlog could render locals, and a local may hold AUTH data.
        logger().error("session error", error_type=type(error).__name__)
        return INTERNAL_ERROR


class _PresignedHook:
    """A bound handler hook with its signature worked out once: inspect.signature returns `__signature__` of
    anything that is not a method without looking further."""

    def __init__(self, hook: Callable[..., Awaitable[Any]]) -> None:
        self._hook = hook
        self.__signature__ = inspect.signature(hook)

    def __call__(self, *args: Any) -> Awaitable[Any]:
        return self._hook(*args)


def policy_envelope(
    session: Session, mail_from: str, *, rcpt: str | None = None, rcpt_tos: tuple[str, ...] = ()
) -> PolicyEnvelope:
    peer = session.peer
    peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    login = session.auth_data if isinstance(session.auth_data, str) else None
    return PolicyEnvelope(peer_ip, login, mail_from, rcpt, rcpt_tos)
