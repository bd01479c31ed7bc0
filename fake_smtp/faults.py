"""Fault rules: at a step of the SMTP conversation, reply a code, delay, disconnect or stall.

A `Fault` is one rule; a `FaultPlan` holds the active rules of a running server and may be replaced
while it runs (from any thread). Rules are written on the command line as ``STEP=ACTION``:

    greeting=reply:554                      ehlo=no-starttls
    auth=reply:534:5.7.9 Application-specific password required
    mail_from=delay:2                       ehlo=no-auth
    ehlo=disconnect                         data=stall
    rcpt_to#2=reply:451:4.7.1 Greylisted    (``#N``: only the first N occurrences)
    mail_from@0.3=reply:451                 (``@P``: each occurrence with probability P, 0 < P <= 1)
    data=delay:0.1-0.5                      (a delay drawn between 0.1 and 0.5 s)

Chance is repeatable: the plan draws from one `random.Random(seed)`, so the same seed and the same
sequence of steps fault the same way again (concurrent sessions interleave their draws).
"""

from __future__ import annotations

import dataclasses
import math
import random
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast, get_args

Step = Literal[
    "greeting", "ehlo", "helo", "starttls", "auth", "mail_from", "rcpt_to", "data", "end_of_data"
]
Action = Literal["reply", "delay", "disconnect", "stall", "no-starttls", "no-auth"]

STEPS: tuple[str, ...] = get_args(Step)
ACTIONS: tuple[str, ...] = get_args(Action)
# Actions that change what EHLO advertises instead of replacing the reply.
ADVERTISING_ACTIONS = frozenset({"no-starttls", "no-auth"})

# Realistic reply texts (enhanced status code first), chosen per step when a rule gives only a code.
_TEXT_BY_STEP_AND_CODE: dict[tuple[str, int], str] = {
    ("greeting", 421): "4.3.2 Service not available, closing transmission channel",
    ("greeting", 554): "5.3.2 No SMTP service here",
    ("starttls", 454): "4.7.0 TLS not available due to local problem",
    ("auth", 454): "4.7.0 Temporary authentication failure",
    ("auth", 530): "5.7.0 Must issue a STARTTLS command first",
    ("mail_from", 530): "5.7.0 Authentication required",
    ("mail_from", 550): "5.7.1 Sender address rejected: not owned by user",
    ("mail_from", 553): "5.7.1 Sender address rejected: not owned by user",
    ("rcpt_to", 550): "5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    ("rcpt_to", 554): "5.7.1 Relay access denied",
    ("data", 554): "5.5.1 Error: no valid recipients",
    ("end_of_data", 554): "5.7.1 Message rejected: content policy violation",
}
_TEXT_BY_CODE: dict[int, str] = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.0 Mailbox temporarily unavailable",
    451: "4.3.0 Requested action aborted: local error in processing",
    452: "4.3.1 Insufficient system storage",
    454: "4.7.0 Temporary failure",
    500: "5.5.2 Syntax error, command unrecognized",
    501: "5.5.4 Syntax error in parameters or arguments",
    502: "5.5.1 Command not implemented",
    503: "5.5.1 Bad sequence of commands",
    504: "5.5.4 Unrecognized authentication type",
    530: "5.7.0 Authentication required",
    534: "5.7.9 Authentication mechanism is too weak",
    535: "5.7.8 Error: authentication failed",
    538: "5.7.11 Encryption required for requested authentication mechanism",
    550: "5.7.1 Requested action not taken: mailbox unavailable",
    551: "5.1.6 User not local",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    553: "5.1.3 Requested action not taken: mailbox name not allowed",
    554: "5.0.0 Transaction failed",
}
_TEXT_BY_CLASS = {2: "2.0.0 OK", 3: "Go ahead", 4: "4.0.0 Temporary failure", 5: "5.0.0 Permanent failure"}


@dataclass(frozen=True)
class Fault:
    """One rule. `times` limits it to the first N occurrences of the step (None: every time)."""

    step: Step
    action: Action
    code: int | None = None
    text: str | None = None
    seconds: float | None = None
    times: int | None = None
    # Lines sent before `text` as a multi-line reply (``535-...`` then ``535 text``), as Gmail answers.
    lines: tuple[str, ...] = ()
    probability: float | None = None  # None: every occurrence (within `times`)
    seconds_max: float | None = None  # a delay drawn in [seconds, seconds_max]

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown fault step {self.step!r}; expected one of {', '.join(STEPS)}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.action == "reply":
            if self.code is None or not 200 <= self.code <= 599:
                raise ValueError(f"fault reply code must be 200-599, got {self.code!r}")
            if self.step == "greeting" and self.code < 400:
                raise ValueError("a greeting fault must reply 4xx or 5xx")
        elif self.code is not None or self.text is not None:
            raise ValueError(f"fault action {self.action!r} takes no reply code or text")
        if self.action == "delay":
            if self.seconds is None or not math.isfinite(self.seconds) or self.seconds < 0:
                raise ValueError(f"fault delay must be a finite number of seconds >= 0, got {self.seconds!r}")
        elif self.seconds is not None:
            raise ValueError(f"fault action {self.action!r} takes no delay")
        if self.action in ADVERTISING_ACTIONS and self.step != "ehlo":
            raise ValueError(f"fault action {self.action!r} applies to step 'ehlo' only")
        if any(c in line for line in (self.text or "", *self.lines) for c in "\r\n\0"):
            raise ValueError("fault reply text must not contain CR, LF or NUL")
        if self.lines and (self.action != "reply" or self.text is None):
            raise ValueError("a multi-line reply needs action 'reply' and a text for its last line")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault times must be >= 1, got {self.times!r}")
        if self.probability is not None and not (math.isfinite(self.probability) and 0 < self.probability <= 1):
            raise ValueError(f"fault probability must be > 0 and <= 1, got {self.probability!r}")
        if self.seconds_max is not None:
            if self.action != "delay":
                raise ValueError("only a delay takes a range")
            assert self.seconds is not None
            if not math.isfinite(self.seconds_max) or self.seconds_max < self.seconds:
                raise ValueError(f"delay range must go up: {self.seconds:g}-{self.seconds_max!r}")

    def reply_line(self) -> str:
        """The full reply line for a `reply` rule, e.g. ``535 5.7.8 Error: authentication failed``."""
        assert self.code is not None
        text = self.text
        if text is None:
            text = _TEXT_BY_STEP_AND_CODE.get((self.step, self.code)) or _TEXT_BY_CODE.get(self.code)
        if text is None:
            text = _TEXT_BY_CLASS[self.code // 100]
        first = "".join(f"{self.code}-{line}\r\n" for line in self.lines)
        return f"{first}{self.code} {text}"

    def __str__(self) -> str:
        step = self.step if self.times is None else f"{self.step}#{self.times}"
        if self.probability is not None:
            step += f"@{self.probability:g}"
        if self.action == "reply":
            text = self.text if not self.lines else " / ".join((*self.lines, self.text or ""))
            return f"{step}=reply:{self.code}" + ("" if text is None else f":{text}")
        if self.action == "delay":
            upper = "" if self.seconds_max is None else f"-{self.seconds_max:g}"
            return f"{step}=delay:{self.seconds:g}{upper}"
        return f"{step}={self.action}"


def parse_fault(spec: str) -> Fault:
    """Parse ``STEP[#N][@P]=ACTION`` (see the module docstring); raise ValueError with the reason."""
    left, sep, right = spec.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ValueError(f"fault {spec!r}: expected STEP=ACTION, e.g. auth=reply:535")
    left, at_sign, probability_text = left.strip().partition("@")
    probability: float | None = None
    if at_sign:
        try:
            probability = float(probability_text)
        except ValueError:
            raise ValueError(f"fault {spec!r}: the probability after '@' must be a number, e.g. @0.3") from None
    step_text, hash_sign, times_text = left.strip().partition("#")
    times: int | None = None
    if hash_sign:
        if not times_text.isdigit():
            raise ValueError(f"fault {spec!r}: the count after '#' must be a whole number")
        times = int(times_text)
    action, _, args = right.strip().partition(":")
    try:
        if action == "reply":
            code_text, _, text = args.partition(":")
            if not (len(code_text) == 3 and code_text.isdigit()):
                raise ValueError(f"reply needs a 3-digit code, got {code_text!r}")
            return Fault(_as_step(step_text), "reply", code=int(code_text), text=text.strip() or None,
                         times=times, probability=probability)
        if action == "delay":
            low_text, dash, high_text = args.partition("-")
            try:
                if not low_text.strip():  # "-1": one negative number, refused by Fault with its reason
                    seconds, seconds_max = float(args), None
                else:
                    seconds = float(low_text)
                    seconds_max = float(high_text) if dash else None
            except ValueError:
                raise ValueError(f"delay needs seconds or MIN-MAX seconds, got {args!r}") from None
            return Fault(_as_step(step_text), "delay", seconds=seconds, seconds_max=seconds_max, times=times,
                         probability=probability)
        if args:
            raise ValueError(f"action {action!r} takes no argument")
        return Fault(_as_step(step_text), cast(Action, action), times=times, probability=probability)
    except ValueError as error:
        raise ValueError(f"fault {spec!r}: {error}") from None


def _as_step(text: str) -> Step:
    if text not in STEPS:
        raise ValueError(f"unknown step {text!r}; expected one of {', '.join(STEPS)}")
    return cast(Step, text)


@dataclass
class _Rule:
    fault: Fault
    left: int | None  # occurrences still to fault; None: unlimited


MAX_FAULTS = 1000
MAX_SEED = 2**63 - 1


def new_seed() -> int:
    return secrets.randbelow(2**32)


class FaultPlan:
    """The rules in force. `take` counts an occurrence; rules used up by `times` stop applying.

    `seed` makes chance repeatable; without one a fresh seed is chosen, readable as `seed` (and logged at
    start), so that a run that failed can be replayed with it.
    """

    def __init__(self, faults: Iterable[Fault] = (), seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.seed = 0
        self._random = random.Random(0)
        self.replace(faults, seed)

    def replace(self, faults: Iterable[Fault], seed: int | None = None) -> None:
        """New rules, counted from zero, and a new random sequence (from `seed`, or a fresh seed)."""
        rules: list[_Rule] = []
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
            rules.append(_Rule(fault, fault.times))
        if len(rules) > MAX_FAULTS:
            raise ValueError(f"at most {MAX_FAULTS} fault rules")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be 0-{MAX_SEED}")
        chosen = new_seed() if seed is None else seed
        with self._lock:
            self._rules = rules
            self.seed = chosen
            self._random = random.Random(chosen)

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return [rule.fault for rule in self._rules]

    def take(self, step: str) -> list[Fault]:
        """The rules that apply to this occurrence of `step`, counting it against their `times`.

        A rule with a probability fires when its draw says so (a miss does not count against `times`); a
        ranged delay comes back with the drawn seconds. Draws happen under the lock, in rule order.
        """
        taken: list[Fault] = []
        with self._lock:
            for rule in self._rules:
                fault = rule.fault
                if fault.step != step or rule.left == 0:
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                if rule.left is not None:
                    rule.left -= 1
                if fault.seconds_max is not None:
                    assert fault.seconds is not None
                    drawn = self._random.uniform(fault.seconds, fault.seconds_max)
                    fault = dataclasses.replace(fault, seconds=drawn, seconds_max=None)
                taken.append(fault)
        return taken
