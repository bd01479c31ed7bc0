"""The SMTP session: aiosmtpd's protocol, with the per-session state the handler's hooks use.

One `FakeSMTPProtocol` per connection; all connections of a server share one `Runtime`. The behaviour lives
in `handler.Handler` (aiosmtpd's public hooks); this class overrides aiosmtpd only where no hook exists,
each override saying why.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Session

from fake_smtp.auth import LOGIN_REQUIRED, Authenticator, AuthReplies, Credentials
from fake_smtp.dispatch import PROTOCOL_PREFIXES, dispatch_names
from fake_smtp.faults import FaultPlan
from fake_smtp.logs import logger
from fake_smtp.mailbox import Mailbox
from fake_smtp.policies import Policies, Verdict
from fake_smtp.xoauth2 import MECHANISM as XOAUTH2
from fake_smtp.xoauth2 import XOAuth2

MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
STARTTLS_NOT_OFFERED = "502 5.5.2 Error: command not recognized"
INTERNAL_ERROR = "451 4.3.0 Error: internal server error"
# What asyncio's SSL transport tells about the TLS session: the keys aiosmtpd puts in Session.ssl after STARTTLS.
TLS_INFO_KEYS = ("sslcontext", "peercert", "cipher", "compression", "ssl_object")



@dataclass
class Runtime:
    """State shared by every session of one server."""

    faults: FaultPlan
    mailbox: Mailbox
    credentials: Credentials | None  # None: anonymous mode, AUTH neither advertised nor accepted
    require_login: bool  # MAIL, RCPT and DATA refused (530) before a login; False: AUTH is only offered
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


class FakeSMTPProtocol(SMTP):
    """aiosmtpd's SMTP session with what the handler's hooks need per session: fault rules, what EHLO
    hides, the TLS and login policy, the session's log.

    aiosmtpd's own `auth_required` and `auth_require_tls` stay off: it cannot see the TLS of an implicit
    TLS listener (it only knows STARTTLS), and turning `auth_required` on without `auth_require_tls`
    warns on every connection. The handler decides both from `Session.ssl`, which is set for either TLS.
    `auth_needs_tls`: AUTH waits for TLS (false only when the server runs without TLS altogether).
    """

    def __init__(self, handler: Any, runtime: Runtime, *, implicit_tls: bool, auth_needs_tls: bool,
                 **kwargs: Any) -> None:
        credentials = runtime.credentials
        super().__init__(
            handler,
            auth_required=False,
            auth_require_tls=False,
            authenticator=None if credentials is None else Authenticator(credentials, runtime.auth_replies),
            auth_exclude_mechanism=[XOAUTH2] if runtime.xoauth2 is None else [],
            **kwargs,
        )
        self._runtime = runtime
        self.implicit_tls = implicit_tls
        self._auth_needs_tls = auth_needs_tls
        self.log: Any = None  # bound to the session in connection_made, before anything logs
        self._hide_starttls = False
        self.hide_auth = runtime.credentials is None

    # aiosmtpd lists the protocol's members on every connection to find its commands and AUTH mechanisms;
    # answering with those alone makes each connection's set-up cheaper (fake_smtp/dispatch.py says why).
    def __dir__(self) -> Iterable[str]:
        return dispatch_names(type(self), PROTOCOL_PREFIXES)

    # aiosmtpd's documented hook for custom sessions: ours does not log a deprecation warning per login.
    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    @property
    def uses_tls(self) -> bool:
        return self.session is not None and self.session.ssl is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.session is None  # aiosmtpd calls this again after STARTTLS, with a new session
        super().connection_made(transport)
        assert self.session is not None
        if not first:
            return
        self._runtime.connections.add(self)
        self.log = logger(session=next(self._runtime.session_ids), peer=str(self.session.peer))
        self.log.info("connect", implicit_tls=self.implicit_tls)
        if self.implicit_tls:
            # aiosmtpd fills Session.ssl only after STARTTLS; this listener was TLS from the first byte.
            self.session.ssl = {key: transport.get_extra_info(key) for key in TLS_INFO_KEYS}

    def connection_lost(self, error: Exception | None) -> None:
        self._runtime.connections.discard(self)
        self.log.info("disconnect")
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection at once (server stop): no TLS close_notify round trip to wait for."""
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    # Not named auth_*: aiosmtpd takes every auth_* method of the protocol for an AUTH mechanism.
    def login_waits_for_tls(self) -> bool:
        """Whether AUTH must wait: this server has TLS and this session does not use it yet."""
        return self._auth_needs_tls and not self.uses_tls

    def advertised(self, responses: list[str]) -> list[str]:
        """EHLO lines without the extensions this session must not offer."""
        hide_auth = self.hide_auth or self.login_waits_for_tls()
        kept = []
        for line in responses:
            keyword = line[4:].split(" ", 1)[0].upper()
            if keyword == "STARTTLS" and self._hide_starttls:
                continue
            if keyword == "AUTH" and hide_auth:
                continue
            kept.append(line)
        return kept

    def starttls_refusal(self) -> str | None:
        """530 while `require_starttls` waits for STARTTLS on this listener."""
        waiting = self._runtime.require_starttls and self.tls_context is not None and not self.uses_tls
        return MUST_STARTTLS if waiting else None

    async def transaction_refusal(self, step: str) -> str | None:
        """The reply refusing MAIL, RCPT or DATA: a fault rule's, STARTTLS first, or log in first."""
        reply = await self.apply_faults(step) or self.starttls_refusal()
        if reply is None and self._runtime.require_login:
            assert self.session is not None
            reply = None if self.session.authenticated else LOGIN_REQUIRED
        return reply

    def refuse(self, verdict: Verdict, step: str) -> str:
        """The reply line for a policy's verdict; a closing verdict (421) drops the session after it."""
        self.log.info("policy", step=step, code=verdict.reply[:3], close=verdict.close)
        if verdict.close and self.transport is not None:
            # aiosmtpd writes the hook's reply before it yields to the loop, so this runs after the write.
            self.loop.call_soon(self.transport.close)
        return verdict.reply

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
                self.hide_auth = True
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

    # No hook runs before the greeting, so the greeting's faults wrap aiosmtpd's (private) client loop.
    async def _handle_client(self) -> None:
        reply = await self.apply_faults("greeting")
        if reply is not None:
            await self.push(reply)
            self.log.info("greeting refused", code=reply[:3])
            self.abort()
            return
        await super()._handle_client()

    # handle_STARTTLS runs only after the handshake: a fault, or hiding STARTTLS, must answer before 220.
    async def smtp_STARTTLS(self, arg: str) -> None:
        if await self._replied_by_fault("starttls"):
            return
        if self._hide_starttls or self.tls_context is None:
            await self.push(STARTTLS_NOT_OFFERED)
            return
        await super().smtp_STARTTLS(arg)

    # handle_DATA runs only after the final dot: the DATA command's own faults must answer before 354.
    async def smtp_DATA(self, arg: str) -> None:
        reply = await self.transaction_refusal("data")
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_DATA(arg)
