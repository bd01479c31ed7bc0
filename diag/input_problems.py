"""Well-formed but unusable input, every problem at once and under its field: a host that is no host name,
a From or recipient that is no plain address, a username without a password, a CA bundle that is no PEM.

parse_config stops what is not data at all (types, ranges, CR/LF/NUL); these are the next line. The CLI
(exit 2) and the API (422) check them before a run, so a person sees all of them next to what they typed,
not the first one as a failed run. The config stage still checks the same things for configs built by
hand in Python, with the same words (it owns host_problem and the address pattern).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from diag.certs import ca_bundle_problem
from diag.config import FieldError
from diag.profiles import Profile, profile_field_problems
from diag.stages.config_check import EMAIL, host_problem


def input_problems(data: Mapping[str, Any], *, skip: Collection[str] = ()) -> list[FieldError]:
    """The problems in raw input (a JSON body, the CLI's flags as a dict), so they can be reported together
    with parse_config's own; fields named in `skip` (already reported) and values that are not text are left
    to parse_config."""

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and name not in skip else None

    problems: list[FieldError] = []
    host = text("host")
    problem = host_problem(host) if host is not None else None
    if problem:
        problems.append(FieldError("host", problem))
    from_email = text("from_email")
    if from_email and not EMAIL.match(from_email):
        problems.append(FieldError("from_email", "must be a plain address like name@example.com"))
    username, password = data.get("username"), data.get("password")
    # Under the field that was given: it is the one the person typed, and the one to clear for anonymous SMTP.
    if text("username") and not password:
        problems.append(FieldError("username", "needs a password: enter it, or clear the username (anonymous)"))
    elif text("password") and not username:
        problems.append(FieldError("password", "needs a username: enter it, or clear the password (anonymous)"))
    recipient = text("recipient")
    if recipient and not EMAIL.match(recipient):
        problems.append(FieldError("recipient", "must be one plain address like you@example.com"))
    ca_bundle = text("ca_bundle")
    if ca_bundle:
        bundle = ca_bundle_problem(ca_bundle)
        if bundle:
            problems.append(FieldError("ca_bundle", bundle))
    profile = text("profile")  # a value that is no profile is parse_config's to report
    if profile in {p.value for p in Profile}:
        given = {name: value for name, value in data.items() if name not in skip}
        lacking = profile_field_problems(profile, given)
        problems.extend(FieldError(name, message) for name, message in lacking.items())
    return problems
