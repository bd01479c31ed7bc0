"""Per-address rules: a reply chosen by the sender or the recipient address, the way Mailpit users ask.

    rcpt:*@bounce.test=550 5.1.1              recipients in bounce.test get 550 5.1.1 at RCPT TO
    from:spoof@*=553                           that sender gets 553 at MAIL FROM
    rcpt:full@example.test=452 4.2.2 Mailbox full

The pattern is a shell-style glob (`*`, `?`, `[...]`), matched case-insensitively against the whole
address. The reply is CODE (400-599), then optionally an enhanced status code and a text; what is left
out is filled in the way Postfix words it. 421 also closes the connection. The first matching rule wins.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from fake_smtp.policies import Envelope, Policy, Verdict, fill

Kind = Literal["from", "rcpt"]
MAX_RULES = 1000
MAX_RULE_LENGTH = 512
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class AddressRule:
    kind: Kind
    pattern: str
    code: int
    text: str  # the reply after the code, placeholders included

    def matches(self, address: str) -> bool:
        return fnmatch.fnmatchcase(address.lower(), self.pattern.lower())

    def reply(self, envelope: Envelope) -> Verdict:
        return Verdict(fill(f"{self.code} {self.text}", envelope), close=self.code == 421)

    def __str__(self) -> str:
        return f"{self.kind}:{self.pattern}={self.code} {self.text}"


def parse_address_rule(spec: str) -> AddressRule:
    """``from:GLOB=CODE [X.Y.Z] [TEXT]`` or ``rcpt:...``; ValueError naming the problem."""
    if len(spec) > MAX_RULE_LENGTH:
        raise ValueError(f"address rule longer than {MAX_RULE_LENGTH} characters")
    if any(c in spec for c in "\r\n\0"):
        raise ValueError("address rule must not contain CR, LF or NUL")
    left, eq, reply = spec.partition("=")
    kind, colon, pattern = left.strip().partition(":")
    if not eq or not colon or kind not in ("from", "rcpt") or not pattern.strip():
        raise ValueError(f"address rule {spec!r}: expected from:GLOB=CODE or rcpt:GLOB=CODE, "
                         "e.g. rcpt:*@bounce.test=550")
    code_text, _, rest = reply.strip().partition(" ")
    if not code_text.isdigit() or not 400 <= int(code_text) <= 599:
        raise ValueError(f"address rule {spec!r}: the reply code must be 400-599")
    code = int(code_text)
    enhanced, _, words = rest.strip().partition(" ")
    if not _ENHANCED.fullmatch(enhanced):
        enhanced, words = "", rest.strip()
    if enhanced and enhanced[0] != code_text[0]:
        raise ValueError(f"address rule {spec!r}: enhanced code {enhanced} does not match the class of {code}")
    typed = cast(Kind, kind)
    default_enhanced = f"{code_text[0]}.1.1" if typed == "rcpt" else f"{code_text[0]}.7.1"
    default_words = (
        "<{rcpt}>: Recipient address rejected" if typed == "rcpt" else "<{mail_from}>: Sender address rejected"
    )
    text = f"{enhanced or default_enhanced} {words.strip() or default_words}"
    return AddressRule(typed, pattern.strip(), code, text)


class AddressRules(Policy):
    """The rules in force, replaceable while the server runs (from any thread)."""

    def __init__(self, rules: Iterable[AddressRule | str] = ()) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[AddressRule, ...] = ()
        self.replace(rules)

    def replace(self, rules: Iterable[AddressRule | str]) -> None:
        parsed = tuple(rule if isinstance(rule, AddressRule) else parse_address_rule(rule) for rule in rules)
        if len(parsed) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} address rules")
        with self._lock:
            self._rules = parsed

    @property
    def rules(self) -> tuple[AddressRule, ...]:
        with self._lock:
            return self._rules

    def _first(self, kind: Kind, address: str, envelope: Envelope) -> Verdict | None:
        rule = next((r for r in self.rules if r.kind == kind and r.matches(address)), None)
        return None if rule is None else rule.reply(envelope)

    def on_mail(self, envelope: Envelope) -> Verdict | None:
        return self._first("from", envelope.mail_from, envelope)

    def on_rcpt(self, envelope: Envelope) -> Verdict | None:
        assert envelope.rcpt is not None
        return self._first("rcpt", envelope.rcpt, envelope)
