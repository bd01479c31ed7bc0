"""What a config field is: its value type with its limits and checks, and its words for each audience.

The rows of the table are `SmtpConfig`'s own fields (diag/config.py): each carries a `Field` in its
metadata, so the dataclass and the table cannot drift. Everything that knows the schema reads the table:
`parse_config` (checks and error messages), the OpenAPI document (`json_schema`), the CLI (`argparse_options`),
the page (its form and the list of fields app.js collects) and the config stage's re-check of configs built
by hand in Python (`reaches_smtp`, `Text.problem`).

A value type owns its limits once: the check that refuses a value, the JSON schema that describes it, the
argparse options that read it and the form control that asks for it all come from the same numbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal

from diag.secret import Secret

FORBIDDEN_CHARACTERS: Final = re.compile(r"[\r\n\x00]")
MAX_FIELD_LENGTH: Final = 1024
MAX_CA_BUNDLE_LENGTH: Final = 256 * 1024
# The same rule as FORBIDDEN_CHARACTERS, as a JSON schema (ECMA) pattern: no CR, LF or NUL anywhere.
SAFE_TEXT: Final = "^[^\\r\\n\\u0000]*$"

Bad = Callable[[str, str], None]  # (field name, message): one field error
PageValue = Literal["text", "raw", "number", "integer", "flag"]


def encodable(value: str) -> bool:
    """No lone surrogate: such a string cannot be written as UTF-8 (no JSON encoder or log line can take it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- value types ---------------------------------------------------------------------------------------------


class ValueType:
    """How one field's value is checked, described and asked for. Subclasses are frozen dataclasses."""

    # Whether the value can reach the SMTP socket (and so must never hold CR, LF or NUL).
    reaches_smtp: ClassVar[bool] = False
    def page_value(self) -> PageValue:
        """How the page sends what was typed: trimmed text, text as typed, a number, an integer, a checkbox."""
        return "text"

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        """The value from untrusted input (None when absent), or f.default after calling `bad`."""
        raise NotImplementedError

    def json_schema(self, f: Field) -> dict[str, Any]:
        raise NotImplementedError

    def argparse_options(self, f: Field) -> dict[str, Any]:
        """Options for argparse's add_argument beyond the flag, dest, help and required."""
        return {}

    def input_attributes(self) -> dict[str, str]:
        """HTML attributes that carry this type's limits to the form control (min, max, maxlength...)."""
        return {}

    @staticmethod
    def nullable(schema_type: str, f: Field) -> str | list[str]:
        return schema_type if f.required else [schema_type, "null"]


@dataclass(frozen=True, slots=True)
class Text(ValueType):
    """One line of text that may reach the SMTP conversation: never CR, LF or NUL (command injection)."""

    reaches_smtp: ClassVar[bool] = True
    max_length: int = MAX_FIELD_LENGTH
    strip: bool = False  # surrounding spaces are a typing slip, not part of the value
    secret: bool = False  # a password: kept as a Secret, never returned by the API
    pattern: re.Pattern[str] | None = None  # a further shape the value must have
    pattern_message: str = ""

    def page_value(self) -> PageValue:
        return "raw" if self.secret else "text"  # a password is taken as typed, spaces and all

    def problem(self, value: str) -> str | None:
        """Why `value` cannot be this field's value, as the field error says it; None when it can."""
        if FORBIDDEN_CHARACTERS.search(value):
            return "must not contain CR, LF or NUL characters (SMTP command injection)"
        if len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        if not encodable(value):
            return "must be valid Unicode text (it contains a lone surrogate)"
        if self.pattern is not None and not self.pattern.match(value):
            return self.pattern_message
        return None

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None or raw == "":
            if f.required:
                bad(f.name, "is required")
            return None
        if not isinstance(raw, str):
            bad(f.name, "must be a string")
            return None
        problem = self.problem(raw)
        if problem is not None:
            bad(f.name, problem)
            return None
        value = raw.strip() if self.strip else raw
        return Secret(value) if self.secret else value

    def json_schema(self, f: Field) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": self.nullable("string", f),
            "maxLength": self.max_length,
            "pattern": SAFE_TEXT,
        }
        if f.required:
            # Blank counts as missing; a value of spaces only is reported by the config stage, not refused.
            schema["minLength"] = 1
        if self.pattern is not None:
            schema["allOf"] = [{"pattern": self.pattern.pattern}]
        if self.secret:
            schema["writeOnly"] = True
        return schema



@dataclass(frozen=True, slots=True)
class Pem(ValueType):
    """PEM certificates: multi-line by nature, and they never reach the SMTP socket, only the TLS context."""

    max_length: int = MAX_CA_BUNDLE_LENGTH
    marker: str = "-----BEGIN CERTIFICATE-----"

    def page_value(self) -> PageValue:
        return "raw"

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            bad(f.name, "must be PEM text")
            return None
        if "\x00" in raw:
            bad(f.name, "must not contain NUL characters")
            return None
        if len(raw) > self.max_length:
            bad(f.name, f"must be at most {self.max_length} characters")
            return None
        if self.marker not in raw:
            bad(f.name, f"must contain at least one PEM certificate ({self.marker})")
            return None
        from diag.certs import ca_bundle_problem  # cryptography: loaded only when a bundle is given

        problem = ca_bundle_problem(raw)
        if problem is not None:
            bad(f.name, f"is not a usable CA bundle: {problem}")
            return None
        return raw

    def json_schema(self, f: Field) -> dict[str, Any]:
        return {
            "type": self.nullable("string", f),
            "maxLength": self.max_length,
            "allOf": [{"pattern": self.marker}, {"pattern": "^[^\\u0000]*$"}],
        }


# 1-65535 as digits, surrounding spaces allowed (parse_config strips them): what Port() accepts as a string.
PORT_STRING: Final = (
    "^\\s*0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])\\s*$"
)


@dataclass(frozen=True, slots=True)
class Port(ValueType):
    """A TCP port; a string of digits counts (the CLI and HTML forms give strings). Only 1-65535: PORT_STRING
    spells that range out for the JSON schema."""

    minimum: ClassVar[int] = 1
    maximum: ClassVar[int] = 65535

    @property
    def message(self) -> str:
        return f"must be a whole number from {self.minimum} to {self.maximum}"

    def page_value(self) -> PageValue:
        return "integer"

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None:
            bad(f.name, "is required")
            return None
        value = raw
        if isinstance(raw, bool) or not isinstance(raw, int):
            if not (isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit()):
                bad(f.name, self.message)
                return None
            value = int(raw.strip())
        if not self.minimum <= value <= self.maximum:
            bad(f.name, self.message)
            return None
        return value

    def json_schema(self, f: Field) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "integer", "minimum": self.minimum, "maximum": self.maximum},
                {"type": "string", "pattern": PORT_STRING},
            ],
        }

    def input_attributes(self) -> dict[str, str]:
        return {"min": str(self.minimum), "max": str(self.maximum), "inputmode": "numeric"}


@dataclass(frozen=True, slots=True)
class Flag(ValueType):

    def page_value(self) -> PageValue:
        return "flag"

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None:
            return f.default
        if not isinstance(raw, bool):
            bad(f.name, "must be true or false")
            return f.default
        return raw

    def json_schema(self, f: Field) -> dict[str, Any]:
        return {"type": self.nullable("boolean", f), "default": f.default}

    def argparse_options(self, f: Field) -> dict[str, Any]:
        return {"action": "store_true"}


@dataclass(frozen=True, slots=True)
class Choice(ValueType):
    choices: type[StrEnum]

    @property
    def values(self) -> list[str]:
        return [m.value for m in self.choices]

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None:
            return f.default
        try:
            return self.choices(raw)
        except ValueError:
            bad(f.name, "must be one of: " + ", ".join(self.values))
            return f.default

    def json_schema(self, f: Field) -> dict[str, Any]:
        return {"type": self.nullable("string", f), "enum": [*self.values, None], "default": f.default.value}

    def argparse_options(self, f: Field) -> dict[str, Any]:
        # No argparse `choices`: parse_config's message names the flag like every other field error.
        return {"default": f.shown_default.value, "metavar": "{" + ",".join(self.values) + "}"}


@dataclass(frozen=True, slots=True)
class Seconds(ValueType):
    minimum: float
    maximum: float
    step: float

    def page_value(self) -> PageValue:
        return "number"

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None:
            return f.default
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            bad(f.name, "must be a number of seconds")
            return f.default
        if not self.minimum <= raw <= self.maximum:
            bad(f.name, f"must be between {self.minimum:g} and {self.maximum:g} seconds")
            return f.default
        return float(raw)

    def json_schema(self, f: Field) -> dict[str, Any]:
        return {
            "type": self.nullable("number", f),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "default": f.default,
        }

    def argparse_options(self, f: Field) -> dict[str, Any]:
        return {"type": float, "default": None, "metavar": "S"}

    def input_attributes(self) -> dict[str, str]:
        return {"min": f"{self.minimum:g}", "max": f"{self.maximum:g}", "step": f"{self.step:g}"}


@dataclass(frozen=True, slots=True)
class Addresses(ValueType):
    """IP addresses given as strings, at most `max_items` of them."""

    max_items: int

    def parse(self, f: Field, raw: Any, bad: Bad) -> Any:
        if raw is None or raw == []:
            return ()
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or len(raw) > self.max_items:
            bad(f.name, f"must be a list of at most {self.max_items} IP addresses")
            return ()
        addresses: list[str] = []
        for item in raw:
            # Strings only: ip_address(2130706433) is 127.0.0.1, and a JSON number is no address anyone typed.
            try:
                if not isinstance(item, str):
                    raise TypeError
                addresses.append(str(ipaddress.ip_address(item.strip())))
            except (ValueError, TypeError):
                bad(f.name, f"{str(item)[:64]!r} is not an IP address (give it as a string like \"192.0.2.53\")")
                return ()
        return tuple(addresses)

    def json_schema(self, f: Field) -> dict[str, Any]:
        address = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
        return {
            "anyOf": [
                {"type": "array", "maxItems": self.max_items, "items": address},
                address,  # one address alone counts as a list of one
                *([] if f.required else [{"type": "null"}]),
            ],
        }

    def argparse_options(self, f: Field) -> dict[str, Any]:
        return {"action": "append", "default": [], "metavar": "IP"}


# --- the audiences -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cli:
    """The field's command-line flag. `from_file`: the flag names a file whose text is the value."""

    flag: str
    help: str
    group: Literal["server", "authentication", "TLS", "envelope"]
    metavar: str | None = None
    from_file: bool = False


@dataclass(frozen=True, slots=True)
class Form:
    """The field's control on the page. Fields sharing a `row` sit side by side (at the first one's place)."""

    control: Literal["text", "email", "password", "number", "checkbox", "select", "textarea"]
    placeholder: str = ""
    hint: str = ""
    advanced: bool = False  # inside the "Advanced" disclosure
    row: str | None = None
    width: Literal["", "grow", "port"] = ""
    autocomplete: str = "off"
    options: Mapping[str, str] = field(default_factory=dict)  # a select's option labels, by value
    # A service setting that must be on for the control to be usable; when it is off the control is disabled
    # and `denied_hint` says why, ending with the environment variable that turns it on (`gate_env`=1).
    gate: Literal["allow_send"] | None = None
    gate_env: str = ""
    denied_hint: str = ""
    # A field that goes with this one: when it is filled and this one is empty, the page says so before a run
    # (the password of a username; a shared report never carries the password).
    pair: str | None = None


@dataclass(frozen=True, slots=True)
class Needs:
    """When this flag is on, `other` must be given: `message` is the other field's error."""

    other: str
    message: str


@dataclass(frozen=True, slots=True)
class Field:
    value: ValueType
    label: str  # what people call it (the page's label)
    description: str  # for the API's readers (OpenAPI)
    required: bool = False
    public: bool = True  # shown in reports; when False they show only `<name>_set`
    cli: Cli | None = None  # None: not a flag (the password comes from stdin or the environment)
    form: Form | None = None  # None: not on the page
    needs: Needs | None = None
    # The default where people fill the field in (the page and the CLI) when it differs from a Python
    # caller's `default` (the profile: palette on the page and the CLI, generic for Python callers).
    people_default: Any = None
    # Filled from the dataclass field that holds this row.
    name: str = ""
    default: Any = None

    def parse(self, raw: Any, bad: Bad) -> Any:
        return self.value.parse(self, raw, bad)

    @property
    def shown_default(self) -> Any:
        """The default the page and the CLI start from."""
        return self.default if self.people_default is None else self.people_default

    def json_schema(self) -> dict[str, Any]:
        return {**self.value.json_schema(self), "description": self.description}

    def page_entry(self) -> dict[str, Any]:
        """What app.js needs to collect, clear, fill and place this field (the page embeds it as JSON)."""
        assert self.form is not None
        entry: dict[str, Any] = {
            "name": self.name,
            "control": self.form.control,
            "value": self.value.page_value(),
            "advanced": self.form.advanced,
            "refill": self.public,  # a stored report carries its value
            "pair": self.form.pair,
        }
        if isinstance(self.value, Choice):
            entry["default"] = self.shown_default.value
        return entry


def row(value: ValueType, label: str, description: str, **options: Any) -> dict[str, Field]:
    """A table row as dataclass field metadata: `x: int = dataclasses.field(metadata=row(...))`."""
    return {SCHEMA_KEY: Field(value, label, description, **options)}


SCHEMA_KEY: Final = "diag.fields"
