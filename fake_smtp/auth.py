"""Credential checks and the AUTH mechanisms the fake server offers (PLAIN, LOGIN, CRAM-MD5).

aiosmtpd implements PLAIN and LOGIN and calls our authenticator; CRAM-MD5 is not built in, so
`cram_md5` implements it (RFC 2195) as a handler method. Passwords never reach a log line.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from fake_smtp.logs import logger

AUTH_FAILED = "535 5.7.8 Error: authentication failed"
AUTH_NOT_ENABLED = "503 5.5.1 Error: authentication not enabled"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
LOGIN_REQUIRED = "530 5.7.0 Authentication required"
MECHANISMS = ("CRAM-MD5", "LOGIN", "PLAIN")



@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def check(self, username: bytes, password: bytes) -> bool:
        # Both comparisons always run, in constant time, so timing tells nothing.
        user_ok = hmac.compare_digest(username, self.username.encode())
        password_ok = hmac.compare_digest(password, self.password.encode())
        return user_ok and password_ok


@dataclass(frozen=True)
class AuthReplies:
    """What a failed login hears. `refusal`: every PLAIN/LOGIN/CRAM-MD5 login is refused with it, right
    credentials or not (a provider that turned password logins off), after the client sent them."""

    failure: str = AUTH_FAILED
    refusal: str | None = None


class Authenticator:
    """aiosmtpd `authenticator=` callable for PLAIN and LOGIN."""

    def __init__(self, credentials: Credentials, replies: AuthReplies = AuthReplies()) -> None:
        self._credentials = credentials
        self._replies = replies

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False, message=AUTH_FAILED)
        username = auth_data.login.decode("utf-8", "replace")
        success = self._credentials.check(auth_data.login, auth_data.password)
        return auth_outcome(success, username, mechanism, self._replies)


def auth_outcome(success: bool, username: str, mechanism: str, replies: AuthReplies = AuthReplies()) -> AuthResult:
    """Log the attempt (user and mechanism only) and build aiosmtpd's result.

    handled=False on failure: with aiosmtpd's default (handled=True) it would send nothing at all.
    """
    if replies.refusal is not None:
        logger().info("auth", user=username, mechanism=mechanism, success=False, refused=True)
        return AuthResult(success=False, handled=False, message=replies.refusal)
    logger().info("auth", user=username, mechanism=mechanism, success=success)
    if success:
        return AuthResult(success=True, auth_data=username)
    return AuthResult(success=False, handled=False, message=replies.failure)


async def cram_md5(server: SMTP, credentials: Credentials, replies: AuthReplies = AuthReplies()) -> AuthResult:
    """RFC 2195: send a unique challenge, expect ``username hex(HMAC-MD5(password, challenge))``."""
    challenge = f"<{secrets.randbits(64)}.{int(time.time())}@{server.hostname}>".encode()
    response = await server.challenge_auth(challenge)
    if not isinstance(response, bytes):  # aborted with '*' or bad base64: aiosmtpd already replied
        return AuthResult(success=False, handled=True)
    username, _, digest = response.partition(b" ")
    expected = hmac.new(credentials.password.encode(), challenge, "md5").hexdigest().encode()
    user_ok = hmac.compare_digest(username, credentials.username.encode())
    digest_ok = hmac.compare_digest(digest, expected)
    return auth_outcome(user_ok and digest_ok, username.decode("utf-8", "replace"), "CRAM-MD5", replies)

