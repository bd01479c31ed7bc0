"""The SMTP session: aiosmtpd's protocol with fault rules, auth modes and STARTTLS policy on top.

One `FakeSMTPProtocol` per connection; all connections of a server share one `Runtime`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from fake_smtp.auth import AUTH_NOT_ENABLED, Authenticator, AuthReplies, Credentials, cram_md5
from fake_smtp.faults import FaultPlan
from fake_smtp.mailbox import Mailbox
from fake_smtp.policies import Envelope as PolicyEnvelope
from fake_smtp.policies import Policies, Verdict
from fake_smtp.xoauth2 import MECHANISM as XOAUTH2
from fake_smtp.xoauth2 import XOAuth2

MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
STARTTLS_NOT_OFFERED = "502 5.5.2 Error: command not recognized"
INTERNAL_ERROR = "451 4.3.0 Error: internal server error"

log = structlog.get_logger("fake_smtp")


@dataclass
class Runtime:
    """State shared by every session of one server."""

    faults: FaultPlan
    mailbox: Mailbox
    credentials: Credentials | None  # None: anonymous mode, AUTH neither advertised nor accepted
    require_starttls: bool
    policies: Policies = field(default_factory=Policies)
    auth_replies: AuthReplies = field(default_factory=AuthReplies)
    xoauth2: XOAuth2 | None = None  # None: XOAUTH2 neither advertised nor accepted
    connections: set[FakeSMTPProtocol] = field(default_factory=set)
    session_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class _QuietSession(Session):
    """aiosmtpd's Session logs a deprecation warning each time smtp_AUTH sets login_data; we never read it."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class Handler:
    """aiosmtpd handler: EHLO advertising, CRAM-MD5, capture of accepted messages."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def handle_EHLO(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do this itself
        return server.advertised(responses)

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> Any:
        assert self._runtime.credentials is not None  # AUTH is refused earlier in anonymous mode
        return await cram_md5(server, self._runtime.credentials, self._runtime.auth_replies)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> Any:
        assert self._runtime.xoauth2 is not None  # excluded from the mechanisms otherwise
        return await self._runtime.xoauth2.authenticate(server, args)

    # handle_MAIL / handle_RCPT: aiosmtpd's public hooks; accepting means updating the envelope ourselves.
    async def handle_MAIL(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        verdict = self._runtime.policies.on_mail(policy_envelope(session, address))
        if verdict is not None:
            return server.refuse(verdict, "mail_from")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: FakeSMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        view = policy_envelope(session, envelope.mail_from or "", rcpt=address)
        verdict = self._runtime.policies.on_rcpt(view)
        if verdict is not None:
            return server.refuse(verdict, "rcpt_to")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: FakeSMTPProtocol, session: Session, envelope: Envelope) -> str:
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
            tls=server.uses_tls,
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
        log.error("session error", error_type=type(error).__name__)
        return INTERNAL_ERROR


def policy_envelope(
    session: Session, mail_from: str, *, rcpt: str | None = None, rcpt_tos: tuple[str, ...] = ()
) -> PolicyEnvelope:
    peer = session.peer
    peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    login = session.auth_data if isinstance(session.auth_data, str) else None
    return PolicyEnvelope(peer_ip, login, mail_from, rcpt, rcpt_tos)


class FakeSMTPProtocol(SMTP):
    """aiosmtpd's SMTP session with fault rules applied before each step.

    `implicit_tls`: this listener wraps the socket in TLS before the greeting; aiosmtpd does not know
    that and would treat the session as plaintext for AUTH, so AUTH is allowed without STARTTLS here.
    """

    def __init__(
        self, runtime: Runtime, *, implicit_tls: bool, auth_require_tls: bool, **kwargs: Any
    ) -> None:
        credentials = runtime.credentials
        super().__init__(
            Handler(runtime),
            auth_required=credentials is not None,
            authenticator=None if credentials is None else Authenticator(credentials, runtime.auth_replies),
            auth_exclude_mechanism=[XOAUTH2] if runtime.xoauth2 is None else [],
            **kwargs,
        )
        # Set after construction: passing auth_require_tls=False with auth_required=True makes aiosmtpd
        # emit a UserWarning per connection, and warnings are errors in our test runs.
        self._auth_require_tls = auth_require_tls
        self._runtime = runtime
        self.implicit_tls = implicit_tls
        self.log: Any = log
        self._hide_starttls = False
        self._hide_auth = runtime.credentials is None
        self._close_after_reply = False

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    @property
    def uses_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls_done = self._original_transport is not None
        super().connection_made(transport)
        if starttls_done:
            self.log.info("tls established", via="starttls")
            return
        self._runtime.connections.add(self)
        assert self.session is not None
        self.log = log.bind(session=next(self._runtime.session_ids), peer=str(self.session.peer))
        self.log.info("connect", implicit_tls=self.implicit_tls)

    def connection_lost(self, error: Exception | None) -> None:
        self._runtime.connections.discard(self)
        self.log.info("disconnect")
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection at once (server stop): no TLS close_notify round trip to wait for."""
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    def advertised(self, responses: list[str]) -> list[str]:
        """EHLO lines without the extensions this session must not offer."""
        kept = []
        for line in responses:
            keyword = line[4:].split(" ", 1)[0].upper()
            if keyword == "STARTTLS" and self._hide_starttls:
                continue
            if keyword == "AUTH" and self._hide_auth:
                continue
            kept.append(line)
        return kept

    def refuse(self, verdict: Verdict, step: str) -> str:
        """The reply line for a policy's verdict; a closing verdict (421) drops the session after it."""
        self.log.info("policy", step=step, code=verdict.reply[:3], close=verdict.close)
        self._close_after_reply = verdict.close
        return verdict.reply

    def _close_if_asked(self) -> None:
        if self._close_after_reply and self.transport is not None:
            self.transport.close()

    async def apply_faults(self, step: str) -> str | None:
        """Apply the rules for this step: delays first, then at most one reply, disconnect or stall.

        Returns a reply line for the caller to send instead of the normal one, or None to proceed.
        Disconnect and stall never return: the pending task is cancelled when the connection closes.
        """
        faults = self._runtime.faults.take(step)
        for fault in faults:
            if fault.action == "delay":
                assert fault.seconds is not None
                self.log.info("fault", step=step, action="delay", seconds=fault.seconds)
                await asyncio.sleep(fault.seconds)
            elif fault.action == "no-starttls":
                self._hide_starttls = True
            elif fault.action == "no-auth":
                self._hide_auth = True
        for fault in faults:
            if fault.action == "reply":
                self.log.info("fault", step=step, action="reply", code=fault.code)
                return fault.reply_line()
            if fault.action in ("disconnect", "stall"):
                self.log.info("fault", step=step, action=fault.action)
                if fault.action == "disconnect":
                    self.abort()
                await asyncio.get_running_loop().create_future()  # until connection_lost cancels us
        return None

    async def _replied_by_fault(self, step: str) -> bool:
        reply = await self.apply_faults(step)
        if reply is None:
            return False
        await self.push(reply)
        return True

    async def _refused_before_starttls(self) -> bool:
        if self._runtime.require_starttls and self.tls_context is not None and self._tls_protocol is None:
            await self.push(MUST_STARTTLS)
            return True
        return False

    async def _handle_client(self) -> None:
        reply = await self.apply_faults("greeting")
        if reply is not None:
            await self.push(reply)
            self.log.info("greeting refused", code=reply[:3])
            self.abort()
            return
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._replied_by_fault("ehlo"):
            await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._replied_by_fault("helo"):
            await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if await self._replied_by_fault("starttls"):
            return
        if self._hide_starttls or self.tls_context is None:
            await self.push(STARTTLS_NOT_OFFERED)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if await self._replied_by_fault("auth") or await self._refused_before_starttls():
            return
        if self._hide_auth:
            await self.push(AUTH_NOT_ENABLED)
            return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not (await self._replied_by_fault("mail_from") or await self._refused_before_starttls()):
            await super().smtp_MAIL(arg)
            self._close_if_asked()

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not (await self._replied_by_fault("rcpt_to") or await self._refused_before_starttls()):
            await super().smtp_RCPT(arg)
            self._close_if_asked()

    async def smtp_DATA(self, arg: str) -> None:
        if not (await self._replied_by_fault("data") or await self._refused_before_starttls()):
            await super().smtp_DATA(arg)
