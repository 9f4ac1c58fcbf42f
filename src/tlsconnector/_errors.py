"""The one small exception hierarchy of tlsconnector.

Rejections are never exceptions: they are decisions. Exceptions are for bad
configuration (:class:`PolicyError`), malformed session facts (:class:`FactsError`)
and bad single values handed to a primitive (:class:`InvalidValue`).
"""

from __future__ import annotations

import enum
import re
import reprlib
from typing import Any

import attrs

__all__ = [
    "MISSING",
    "FactsError",
    "InvalidValue",
    "PolicyError",
    "Problem",
    "TLSConnectorError",
    "printable",
    "show",
]

_PRINTABLE_ASCII = re.compile(r"[ -~]*")

#: How much of a message :func:`printable` keeps by default, and for whole messages.
NAME_LIMIT = 200
MESSAGE_LIMIT = 2000


def printable(text: str, limit: int = NAME_LIMIT) -> str:
    """Untrusted text for a line of output, unquoted: printable ASCII only, bounded.

    The one helper every echoed name goes through (field names, JSON and TOML keys,
    EOP field names, connector names, CNs): a newline, a control or bidi character,
    anything outside printable ASCII becomes a backslash escape, so no attacker text
    can forge a line ("line 2: ACCEPT ...") in a log, on stderr or in readable output.
    """
    if len(text) <= limit and _PRINTABLE_ASCII.fullmatch(text) is not None:
        return text  # speed: nothing to escape or cut (the common case)
    # Cut before escaping, so the work is bounded by ``limit``, not by the input.
    head = text[: limit + 1]
    escaped = head.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    truncated = len(text) > limit or len(escaped) > limit
    return escaped[:limit] + "..." if truncated else escaped


def show(value: object, limit: int = 80) -> str:
    """Render an untrusted value for an error message: escaped, quoted, bounded.

    ``repr`` escapes NUL, control, bidi and other non-printable characters, so an
    attacker-controlled value can never forge a line in a log or a terminal.
    """
    if isinstance(value, bool):  # TOML and JSON spell them true / false
        return "true" if value else "false"
    if isinstance(value, str):
        shown = ascii(value[:limit])
        return shown[:-1] + "..." + shown[-1] if len(value) > limit else shown
    # reprlib bounds both depth and width: a value nested thousands deep, or a list of
    # a million entries, renders in bounded time and space (section 8).
    text = _REPR.repr(value).encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


#: The value of a :class:`Problem` or :class:`FactsError` about a key that is absent
#: (not a key given as None, or JSON null): messages say "missing", not "= None".
MISSING = _Missing.MISSING


def missing_text(message: str) -> str:
    """``field: missing (...)``'s text: "is required" reads "missing (required)"."""
    if message.startswith("is required"):
        rest = message[len("is required") :]
        if rest.startswith(" (") and rest.endswith(")"):  # no parentheses in parentheses
            rest = f"; {rest[2:-1]}"
        return f"missing (required{rest})"
    return f"missing ({message})"


#: The exceptions (and Problem) carry the package's public path from their definition,
#: whichever module a caller imported first (tracebacks, reprs and pickles say
#: ``tlsconnector.FactsError``); the package's lazy publishing covers the other names.
_PUBLIC = "tlsconnector"


class TLSConnectorError(Exception):
    """The root of every exception tlsconnector raises on purpose."""

    __module__ = _PUBLIC


class InvalidValue(TLSConnectorError, ValueError):
    """One value (a domain, a pattern, an address, a certificate) is not acceptable.

    Raised by the primitives; the policy loader and the facts parsers turn it into a
    :class:`Problem` or a :class:`FactsError` that also names the field.
    """

    __module__ = _PUBLIC

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"{show(value)}: {reason}")
        self.value = value
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with the arguments it is made from (the default pickles the message
        # alone, which this signature cannot take back): workers' errors travel.
        return (type(self), (self.value, self.reason), self.__dict__)


@attrs.frozen
class Problem:
    """One thing wrong with a policy: which connector, which field(s), which value, why.

    ``value`` is :data:`MISSING` for a key that is absent. ``line``, when the policy
    file's loader could tell, is the line of the file the problem is on (the key's
    line, else its table's header line).
    """

    connector: str | None
    field: str
    value: object
    message: str
    line: int | None = attrs.field(default=None, kw_only=True)

    __module__ = _PUBLIC

    def __str__(self) -> str:
        at = f"line {self.line}: " if self.line is not None else ""
        where = f"connector {show(self.connector)}" if self.connector is not None else "policy"
        # A problem from a combination of keys names them all; the value is the first
        # key's: "tls_domain = '*.x.com' (with tls_settings): ...".
        first, comma, others = self.field.partition(", ")
        also = f" (with {others})" if comma else ""
        also = printable(also)
        if self.value is MISSING:
            message = printable(missing_text(self.message), MESSAGE_LIMIT)
            return f"{at}{where}: {printable(first)}{also}: {message}"
        message = printable(self.message, MESSAGE_LIMIT)
        return f"{at}{where}: {printable(first)} = {show(self.value)}{also}: {message}"


class PolicyError(TLSConnectorError):
    """A policy failed to load; :attr:`problems` lists every problem found, not only the first."""

    __module__ = _PUBLIC

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid policy ({count} problem{'s' if count != 1 else ''}):\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,), self.__dict__)


class FactsError(TLSConnectorError):
    """Session facts are malformed; :attr:`field` names the offending field."""

    __module__ = _PUBLIC

    def __init__(self, field: str, value: object, message: str) -> None:
        if value is MISSING:
            text = f"{printable(field)}: {printable(missing_text(message), MESSAGE_LIMIT)}"
        else:
            text = f"{printable(field)} = {show(value)}: {printable(message, MESSAGE_LIMIT)}"
        super().__init__(text)
        self.field = field
        self.value = value
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.value, self.message), self.__dict__)
