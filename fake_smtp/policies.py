"""Envelope policies: decisions a real server makes from who is sending what to whom.

A fault fires at a step whatever the session holds; a policy looks at the envelope (the sender, the
recipient, the login, the client's address) and at what came before (greylisting remembers the first try,
a rate limit counts accepted messages). Policies answer through aiosmtpd's public hooks (handle_MAIL,
handle_RCPT, handle_DATA): a reply line to send instead of 250, or None to let the next policy decide.

Every policy's memory is bounded: greylisting forgets the oldest triplets past `MAX_TRIPLETS`, the rate
limit keeps at most `limit` timestamps.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRIPLETS = 10_000


@dataclass(frozen=True)
class Envelope:
    """What a policy may look at. `rcpt` is the recipient being decided (RCPT) or None (MAIL, DATA)."""

    peer_ip: str
    login: str | None
    mail_from: str
    rcpt: str | None = None
    rcpt_tos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """A reply line to send instead of the normal one; `close` drops the connection after it (421)."""

    reply: str
    close: bool = False


class Policy:
    """Base: every hook lets the envelope through. Subclasses override the steps they judge."""

    def on_mail(self, envelope: Envelope) -> Verdict | None:
        return None

    def on_rcpt(self, envelope: Envelope) -> Verdict | None:
        return None

    def on_data(self, envelope: Envelope) -> Verdict | None:
        """At the final dot, before the message is stored."""
        return None

    def on_accepted(self, envelope: Envelope) -> None:
        """After a message was stored."""


def _same_address(one: str, other: str | None) -> bool:
    return other is not None and one.strip().lower() == other.strip().lower()


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class SenderMustBeLogin(Policy):
    """Postfix's reject_sender_login_mismatch: MAIL FROM must be the address that logged in."""

    def __init__(self, reply: str) -> None:
        self._reply = reply

    def on_mail(self, envelope: Envelope) -> Verdict | None:
        if envelope.login is None or _same_address(envelope.mail_from, envelope.login):
            return None
        return Verdict(fill(self._reply, envelope))


class SendAsAtData(Policy):
    """Microsoft 365: MAIL and RCPT pass whatever the From; the end of DATA rejects a sender that is not
    the mailbox that logged in (no Send As right)."""

    def __init__(self, reply: str) -> None:
        self._reply = reply

    def on_data(self, envelope: Envelope) -> Verdict | None:
        if _same_address(envelope.mail_from, envelope.login):
            return None
        return Verdict(fill(self._reply, envelope))


class VerifiedSendersOnly(Policy):
    """Amazon SES: the message is refused at the end of DATA unless its sender (address or domain) is a
    verified identity."""

    def __init__(self, reply: str, verified: tuple[str, ...] = ()) -> None:
        self._reply = reply
        self._verified = frozenset(identity.lower() for identity in verified)

    def on_data(self, envelope: Envelope) -> Verdict | None:
        sender = envelope.mail_from.lower()
        if sender in self._verified or _domain(sender) in self._verified:
            return None
        return Verdict(fill(self._reply, envelope))


class RelayDenied(Policy):
    """An open-relay guard: recipients outside `local_domains` are refused unless the session logged in."""

    def __init__(self, reply: str, local_domains: tuple[str, ...]) -> None:
        self._reply = reply
        self._local = frozenset(domain.lower() for domain in local_domains)

    def on_rcpt(self, envelope: Envelope) -> Verdict | None:
        assert envelope.rcpt is not None
        if envelope.login is not None or _domain(envelope.rcpt) in self._local:
            return None
        return Verdict(fill(self._reply, envelope))


class Greylist(Policy):
    """Postgrey-style: the first try of a (client address, sender, recipient) triplet gets a 4xx; a retry
    at least `seconds` later is accepted, and so is every later one."""

    def __init__(self, reply: str, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._reply = reply
        self._seconds = seconds
        self._clock = clock
        self._first_seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def on_rcpt(self, envelope: Envelope) -> Verdict | None:
        assert envelope.rcpt is not None
        triplet = (envelope.peer_ip, envelope.mail_from.lower(), envelope.rcpt.lower())
        now = self._clock()
        with self._lock:
            first = self._first_seen.get(triplet)
            if first is None:
                self._first_seen[triplet] = now
                while len(self._first_seen) > MAX_TRIPLETS:
                    self._first_seen.popitem(last=False)
                return Verdict(fill(self._reply, envelope))
            if now - first >= self._seconds:
                return None
        return Verdict(fill(self._reply, envelope))


class RateLimit(Policy):
    """After `limit` accepted messages within `window` seconds, MAIL gets a 421 and the connection closes,
    as providers do when a sender goes over its quota; it opens again as old messages leave the window."""

    def __init__(self, reply: str, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._reply = reply
        self._limit = limit
        self._window = window
        self._clock = clock
        self._accepted: deque[float] = deque(maxlen=max(limit, 1))
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._accepted and now - self._accepted[0] >= self._window:
            self._accepted.popleft()

    def on_mail(self, envelope: Envelope) -> Verdict | None:
        with self._lock:
            self._expire(self._clock())
            if len(self._accepted) < self._limit:
                return None
        return Verdict(fill(self._reply, envelope), close=True)

    def on_accepted(self, envelope: Envelope) -> None:
        with self._lock:
            self._accepted.append(self._clock())


def fill(reply: str, envelope: Envelope) -> str:
    """Put the envelope's values into a reply's placeholders: {mail_from}, {rcpt}, {rcpt_domain}, {login}."""
    return (
        reply.replace("{mail_from}", envelope.mail_from)
        .replace("{rcpt_domain}", _domain(envelope.rcpt or ""))
        .replace("{rcpt}", envelope.rcpt or "")
        .replace("{login}", envelope.login or "")
    )


class Policies:
    """The policies in force, asked in order; the first verdict wins. Replaceable while running."""

    def __init__(self, policies: tuple[Policy, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._policies = policies

    def replace(self, policies: tuple[Policy, ...]) -> None:
        with self._lock:
            self._policies = policies

    @property
    def all(self) -> tuple[Policy, ...]:
        with self._lock:
            return self._policies

    def on_mail(self, envelope: Envelope) -> Verdict | None:
        return next((v for p in self.all if (v := p.on_mail(envelope)) is not None), None)

    def on_rcpt(self, envelope: Envelope) -> Verdict | None:
        return next((v for p in self.all if (v := p.on_rcpt(envelope)) is not None), None)

    def on_data(self, envelope: Envelope) -> Verdict | None:
        return next((v for p in self.all if (v := p.on_data(envelope)) is not None), None)

    def on_accepted(self, envelope: Envelope) -> None:
        for policy in self.all:
            policy.on_accepted(envelope)
