"""A value that never prints: passwords and tokens are a `Secret` from parsing to the one place that uses them."""

from __future__ import annotations

from typing import Any, Final

MASK: Final = "********"


class Secret:
    """A password that never prints: repr, str and format show a mask; `reveal()` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the password out
        raise TypeError(f"{type(self).__name__} cannot be pickled")
