"""Writing TOML: a small, strict writer for the value types a policy uses, and the
policy file writer built on it (an edge: it produces text, the caller writes files).

The standard library reads TOML (``tomllib``) but cannot write it. A policy needs only
strings, booleans, integers, arrays of those, tables and arrays of tables, so this
writer covers exactly those and refuses everything else (``None``, floats, dates)
with a :class:`TypeError` rather than guessing. Strings are always TOML basic strings
(``"..."``) with escapes for ``"``, ``\\`` and every non-printable character (TOML
1.0.0 forbids raw control characters in basic strings); printable non-ASCII text is
written as UTF-8. A lone surrogate cannot be written in TOML at all (``\\uXXXX``
escapes must be Unicode scalar values) and raises :class:`ValueError`.

Why not ``tomli-w`` or ``tomlkit``: both write a bidi override (U+202E) or a
zero-width space into a string or a comment as the raw character, so an imported
policy could show a reviewer another connector name or domain than the one it holds
(tests/policy_file/test_writing.py). This writer escapes every non-printable
character, in values and in comments; ``tomlkit``'s comments would be the only thing
it adds, and comments are a few lines here (:func:`comment_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tlsconnector._errors import show
from tlsconnector._model import Policy
from tlsconnector._reading import _INBOUND_KEYS, _OUTBOUND_KEYS

__all__ = [
    "dumps",
    "dumps_policy",
    "format_key",
    "format_string",
    "format_value",
    "policy_to_mapping",
]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML 1.0.0 "escape" production: the short forms, else \uXXXX / \UXXXXXXXX.
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_SHORT_ESCAPES |= {"\f": "\\f", "\r": "\\r"}


def format_string(text: str) -> str:
    """``text`` as a TOML basic string that reads back as exactly ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"not a string: {show(text)}")
    out = ['"']
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            if 0xD800 <= code <= 0xDFFF:
                raise ValueError(
                    f"a lone surrogate (U+{code:04X}) cannot be written in TOML: {show(text)}"
                )
            # Controls, DEL, bidi and other format characters: escaped, so the file
            # shows what it holds and stays valid TOML.
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def format_key(key: str) -> str:
    """A key: bare when TOML allows it (``A-Za-z0-9_-``), else a quoted basic string."""
    if not isinstance(key, str):
        raise TypeError(f"a TOML key must be a string, not {show(key)}")
    return key if _BARE_KEY.fullmatch(key) else format_string(key)


def format_value(value: object) -> str:
    """An inline value: string, boolean, integer, or an array of those."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping) for item in value):
            raise TypeError("an array of tables cannot be written inline")
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    raise TypeError(f"TOML cannot hold this value here: {show(value)}")


def _is_table_array(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(item, Mapping) for item in value)
    )


def _check_mapping(table: Mapping[Any, Any]) -> None:
    for key in table:
        if not isinstance(key, str):
            raise TypeError(f"a TOML key must be a string, not {show(key)}")


def dumps(data: Mapping[str, Any], *, header: Sequence[str] = ()) -> str:
    """The TOML document for ``data``: scalars first, then tables, then arrays of tables.

    ``header`` lines become comments at the top. Reading the result with ``tomllib``
    gives back ``data`` (tuples read back as lists).
    """
    out = comment_lines(header)
    if out:
        out.append("")
    _dump_table(data, [], out)
    return "\n".join(out).rstrip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], path: list[str], out: list[str]) -> None:
    _check_mapping(table)
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_table_array(value):
            nested.append((key, value))
        else:
            out.append(f"{format_key(key)} = {format_value(value)}")
    for key, value in nested:
        sub = [*path, format_key(key)]
        if isinstance(value, Mapping):
            if out and out[-1] != "":
                out.append("")
            out.append(f"[{'.'.join(sub)}]")
            _dump_table(value, sub, out)
        else:
            for item in value:
                if out and out[-1] != "":
                    out.append("")
                out.append(f"[[{'.'.join(sub)}]]")
                _dump_table(item, sub, out)


def _comment_char(char: str) -> str:
    code = ord(char)
    if char == "\t" or (char.isprintable() and not 0xD800 <= code <= 0xDFFF):
        return char
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def comment_lines(lines: Iterable[str]) -> list[str]:
    """Comment lines (``# ...``); any character TOML forbids in a comment is escaped.

    TOML comments may not hold control characters other than tab, so untrusted text
    (file names, connector names) can never end the comment or corrupt the file.
    """
    out = []
    for line in lines:
        for part in str(line).split("\n"):
            out.append(f"# {''.join(_comment_char(c) for c in part)}".rstrip())
    return out


# --------------------------------------------------------------------------------------
# Policies: Policy -> mapping -> TOML text (section 9 file format)

#: Keys whose absence means "not set"; TOML has no null, so an unset key is written as
#: a comment, which keeps "every key explicit" true for a reader of the file.
_OPTIONAL_STRING_KEYS = ("tls_sender_certificate_name", "tls_domain")


def policy_to_mapping(policy: Policy) -> dict[str, Any]:
    """The mapping :meth:`Policy.from_mapping` reads back as ``policy``, every key explicit.

    The trust store is not part of it: it holds certificates, not the name of the file
    they came from. Unset certificate names are left out (TOML has no null).
    """
    inbound: list[dict[str, Any]] = []
    for c in policy.inbound:
        table: dict[str, Any] = {
            "name": c.name,
            "enabled": c.enabled,
            "type": c.type.value,
            "comment": c.comment,
            "sender_domains": [str(p) for p in c.sender_domains],
            "sender_ip_addresses": [r.text for r in c.sender_ip_addresses.ranges],
            "require_tls": c.require_tls,
        }
        if c.tls_sender_certificate_name is not None:
            table["tls_sender_certificate_name"] = str(c.tls_sender_certificate_name)
        table["restrict_domains_to_certificate"] = c.restrict_domains_to_certificate
        table["restrict_domains_to_ip_addresses"] = c.restrict_domains_to_ip_addresses
        inbound.append(table)
    outbound: list[dict[str, Any]] = []
    for o in policy.outbound:
        table = {
            "name": o.name,
            "enabled": o.enabled,
            "type": o.type.value,
            "comment": o.comment,
            "recipient_domains": [str(p) for p in o.recipient_domains],
            "use_mx_record": o.use_mx_record,
            "smart_hosts": [str(h) for h in o.smart_hosts],
            "tls_settings": o.tls_settings.value,
        }
        if o.tls_domain is not None:
            table["tls_domain"] = str(o.tls_domain)
        table["is_transport_rule_scoped"] = o.is_transport_rule_scoped
        table["test_mode"] = o.test_mode
        outbound.append(table)
    return {"inbound": inbound, "outbound": outbound}


def dumps_policy(
    data: Mapping[str, Any],
    *,
    header: Sequence[str] = (),
    notes: Mapping[tuple[str, int], Sequence[str]] | None = None,
) -> str:
    """A policy file for the policy mapping ``data`` (as :func:`policy_to_mapping` makes).

    Connector keys come in the documented order; an unset certificate name is written
    as a comment saying so. ``notes[(direction, index)]`` are comment lines written
    above that connector's table. ``[trust]`` is written when ``data`` has it.
    """
    notes = notes or {}
    out = comment_lines(header)
    trust = data.get("trust")
    if trust is not None:
        if out:
            out.append("")
        out.append("[trust]")
        _dump_table(trust, ["trust"], out)
    for direction, order in (("inbound", _INBOUND_KEYS), ("outbound", _OUTBOUND_KEYS)):
        for index, connector in enumerate(data.get(direction, ())):
            _check_mapping(connector)
            if out:
                out.append("")
            out.extend(comment_lines(notes.get((direction, index), ())))
            out.append(f"[[{direction}]]")
            for key in order:
                if key in connector:
                    out.append(f"{format_key(key)} = {format_value(connector[key])}")
                elif key in _OPTIONAL_STRING_KEYS:
                    out.append(f"# {key} is not set")
            for key, value in connector.items():
                if key not in order:
                    out.append(f"{format_key(key)} = {format_value(value)}")
    return "\n".join(out) + "\n"
