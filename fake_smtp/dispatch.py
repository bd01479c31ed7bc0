"""What aiosmtpd may find on the protocol and the handler: their dispatch surface, listed once per class.

aiosmtpd's `SMTP.__init__` finds the commands (`smtp_*`), the AUTH mechanisms (`auth_*`) and the handler's
hooks (`handle_*`) by listing every member of the protocol and of the handler (`dir`, `inspect.getmembers`),
on every new connection: ~180 names, each fetched as a bound method and sorted, most of what a connection's
set-up costs (issue 13). Both listings go through Python's `__dir__` hook, so a class that answers `dir()`
with its dispatch surface alone is reflected over in a fraction of the time, and aiosmtpd builds the same
tables from it (tests/fake_smtp/test_dispatch.py compares them with a full listing's).
"""

from __future__ import annotations

from typing import Final

PROTOCOL_PREFIXES = ("smtp_", "auth_")  # what SMTP.__init__ looks for on the protocol itself
HANDLER_PREFIXES = ("handle_", "auth_")  # what it looks for on the handler


_LISTED: Final[dict[tuple[type, tuple[str, ...]], tuple[str, ...]]] = {}


def dispatch_names(cls: type, prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """The names of `cls` (its bases' included) that start with one of `prefixes`, sorted as `dir()` is.

    Per class, not per instance: an attribute set on an instance under such a name is not listed (none
    is; aiosmtpd's commands, mechanisms and hooks are methods)."""
    names = _LISTED.get((cls, prefixes))
    if names is None:  # a race between threads computes the same tuple twice: harmless
        names = tuple(sorted({name for klass in cls.__mro__ for name in vars(klass) if name.startswith(prefixes)}))
        _LISTED[(cls, prefixes)] = names
    return names
