"""What every inbox API request must pass: an allowed Host header, then the bearer token when one is set.

The Host check stops DNS rebinding: a web page whose name the attacker re-points at 127.0.0.1 makes the
browser send `Host: attacker.example`, so a server that answers only to names it knows cannot be read that
way. A real client that typed an IP address is never a rebinding attack, so a server bound beyond loopback
accepts any IP literal; names it accepts must be listed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Final, NoReturn

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from fake_smtp.exposure import is_loopback_host

_HOST_NAME: Final = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")
_TOKEN: Final = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: it has to fit in a header unchanged
_SHOWN_HOST_CHARS: Final = 100


class InboxToken:
    """The inbox API's bearer token: never shown in a repr, str or pickle; compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not _TOKEN.match(value):
            # The message must not quote the value: it is (nearly) a secret.
            raise ValueError("inbox_token must be non-empty visible ASCII (no spaces)")
        self._value = value.encode()

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self._value, presented.encode())

    def __repr__(self) -> str:
        return "InboxToken('***')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an InboxToken is not pickled")


class HostPolicy:
    """Which Host header values the inbox API answers.

    Always: `localhost` and loopback addresses. Also the `allowed` names. On a non-loopback bind, also any
    IP literal.
    """

    def __init__(self, bind_host: str, allowed: Iterable[str] = ()) -> None:
        self.names = frozenset(_allowed_name(name) for name in allowed)
        self.any_ip_literal = not is_loopback_host(bind_host)

    def allows(self, name: str) -> bool:
        if name == "localhost" or name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.any_ip_literal

    def __repr__(self) -> str:
        return f"HostPolicy(names={sorted(self.names)!r}, any_ip_literal={self.any_ip_literal})"


def _allowed_name(name: str) -> str:
    normal = name.strip().lower().rstrip(".").strip("[]")
    if _HOST_NAME.match(normal) or _is_ip(normal):
        return normal
    raise ValueError(f"inbox_allowed_hosts: {name[:_SHOWN_HOST_CHARS]!r} is not a host name or an IP address")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str | None:
    """The name in a Host header without its port, lower case; None when the header is malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        name, closed, after = value[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            return None
        port = after[1:]
    elif value.count(":") > 1:  # an IPv6 address must be bracketed in a Host header
        return None
    else:
        name, _, port = value.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name.rstrip(".") or None


class InboxGuard:
    """Pure ASGI middleware: 400 for a Host the inbox does not answer, 401 without the token (when set)."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, token: InboxToken | None) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        presented_hosts = headers.getlist("host")
        name = host_name(presented_hosts[0]) if len(presented_hosts) == 1 else None
        if name is None or not self.hosts.allows(name):
            shown = "missing or malformed" if name is None else repr(name[:_SHOWN_HOST_CHARS])
            await _deny(send, 400, {
                "error": "host not allowed", "field": "Host",
                "message": f"Host {shown} is not one this inbox answers to; list it with "
                           "--inbox-allowed-host (inbox_allowed_hosts=).",
            })
            return
        if self.token is not None:
            scheme, _, presented = headers.get("authorization", "").partition(" ")
            if not (scheme.lower() == "bearer" and presented and self.token.matches(presented.strip())):
                await _deny(send, 401, {
                    "error": "unauthorized", "field": "Authorization",
                    "message": "Send Authorization: Bearer <token>.",
                }, (b"www-authenticate", b'Bearer realm="fake-smtp inbox"'))
                return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, content: dict[str, str], *extra: tuple[bytes, bytes]) -> None:
    body = json.dumps(content).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ],
    })
    await send({"type": "http.response.body", "body": body})
