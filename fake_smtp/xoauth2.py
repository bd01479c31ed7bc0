"""AUTH XOAUTH2 (Google's and Microsoft's OAuth 2.0 SASL mechanism), against one configured token.

The client sends base64 of ``user=<login>\\x01auth=Bearer <token>\\x01\\x01``, as the initial response or
after an empty 334. A match with the configured login and token gets 235. A mismatch gets the provider's
answer:

    gmail      334 <base64 {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}>, then,
               after the client's empty line, Gmail's 535-5.7.8 (Google's XOAUTH2 protocol page)
    microsoft  535 5.7.3 Authentication unsuccessful [<hostname>] (jstedfast/MailKit#1712)

The token is compared in constant time and never logged or shown in a repr.
"""

from __future__ import annotations

import binascii
import hmac
import json
from base64 import b64decode
from typing import Literal, get_args

from aiosmtpd.smtp import SMTP, AuthResult

from fake_smtp.logs import logger
from fake_smtp.scenarios import GMAIL_BAD_CREDENTIALS

Style = Literal["gmail", "microsoft"]
STYLES: tuple[str, ...] = get_args(Style)
MECHANISM = "XOAUTH2"
GMAIL_ERROR = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}, separators=(",", ":")
).encode()
MICROSOFT_FAILED = "535 5.7.3 Authentication unsuccessful [{hostname}]"
CANNOT_DECODE = "501 5.5.2 Can't decode base64"
MAX_TOKEN_LENGTH = 8192  # real access tokens are 1-3 kB; the bound keeps a config mistake visible



class XOAuth2:
    def __init__(self, username: str, token: str, style: Style = "gmail") -> None:
        if style not in STYLES:
            raise ValueError(f"xoauth2_style must be one of {', '.join(STYLES)}, got {style!r}")
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isprintable() or " " in token:
            raise ValueError(f"xoauth2_token must be 1-{MAX_TOKEN_LENGTH} visible characters without spaces")
        self._username = username.encode()
        self._token = token.encode()
        self.style: Style = style

    def __repr__(self) -> str:
        return f"XOAuth2(style={self.style!r}, token=***)"

    def check(self, blob: bytes) -> tuple[bool, str]:
        """(success, the login the client named); both comparisons always run."""
        fields = dict(part.partition(b"=")[::2] for part in blob.split(b"\x01") if part)
        user = fields.get(b"user", b"")
        scheme, _, token = fields.get(b"auth", b"").partition(b" ")
        user_ok = hmac.compare_digest(user, self._username)
        token_ok = hmac.compare_digest(token, self._token)
        return user_ok and token_ok and scheme.lower() == b"bearer", user.decode("utf-8", "replace")

    async def authenticate(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            try:
                blob = b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(success=False, handled=False, message=CANNOT_DECODE)
        else:
            response = await server.challenge_auth("")
            if not isinstance(response, bytes):  # '*' or bad base64: aiosmtpd already replied
                return AuthResult(success=False, handled=True)
            blob = response
        success, user = self.check(blob)
        logger().info("auth", user=user, mechanism=MECHANISM, success=success)
        if success:
            return AuthResult(success=True, auth_data=user)
        if self.style == "microsoft":
            return AuthResult(success=False, handled=False, message=MICROSOFT_FAILED.format(hostname=server.hostname))
        # Gmail: the error as a base64 JSON challenge; the client answers with an empty line, then 535.
        await server.challenge_auth(GMAIL_ERROR)
        return AuthResult(success=False, handled=False, message=GMAIL_BAD_CREDENTIALS)
