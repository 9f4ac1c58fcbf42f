"""Loading a second policy with the connectors of a first (``load_policy(path,
reuse=first)``, for ``tlsconnector diff``) gives what loading it alone gives.

A connector table of the second file that reads alike (equal keys and values of the
same types) takes the first policy's connector object; everything else is read and
checked as in a plain load. So the result equals (==) a plain load of the same file,
and a broken file fails with the same problems, in the same order, on the same lines.
Correctness only: the time saved is measured by ``make bench``, never asserted here.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import Policy, PolicyError, load_policy
from tlsconnector.testing import policy_mappings

# --------------------------------------------------------------------------------------
# Writing a policy mapping as TOML, whatever its values (odd ones included)


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _toml(data: dict[str, Any]) -> str:
    out: list[str] = []
    if "trust" in data:
        out.append("[trust]")
        out += [f"{key} = {_toml_value(value)}" for key, value in data["trust"].items()]
    for direction in ("inbound", "outbound"):
        for table in data.get(direction, []):
            out.append(f"\n[[{direction}]]")
            out += [f"{_toml_string(key)} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(out) + "\n"


@pytest.fixture
def directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _write(directory: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else _toml(data), encoding="utf-8")
    return path


def _outcome(path: Path, reuse: Policy | None = None) -> Policy | list[Any]:
    """The policy loaded from ``path``, or the problems (with their lines) it fails with."""
    try:
        return load_policy(path, use_system_trust=False, reuse=reuse)
    except PolicyError as exc:
        return [(p.connector, p.field, repr(p.value), p.message, p.line) for p in exc.problems]


# --------------------------------------------------------------------------------------
# Edits of a valid policy: tables changed, spoilt, removed, added, copied, moved, renamed

_ODD_FOR_BOOLEAN = {True: [1, 1.0], False: [0, 0.0]}  # equal (==) to the boolean


def _edit_table(draw: st.DrawFn, table: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    table = copy.deepcopy(table)
    how = draw(
        st.sampled_from(["flip", "odd", "other", "drop key", "unknown key", "bad value", "keys"])
    )
    keys = sorted(key for key in table if key != "name")
    if how == "flip":  # a boolean the other way (maybe an invalid combination)
        flags = [key for key in keys if type(table[key]) is bool]
        if flags:
            key = draw(st.sampled_from(flags))
            table[key] = not table[key]
    elif how == "odd":  # a boolean as an equal number: not a boolean (section 8)
        flags = [key for key in keys if type(table[key]) is bool]
        if flags:
            key = draw(st.sampled_from(flags))
            table[key] = draw(st.sampled_from(_ODD_FOR_BOOLEAN[table[key]]))
        else:
            table["enabled"] = draw(st.sampled_from([1, 1.0]))
    elif how == "other":  # another valid table's settings under this name
        table = {**copy.deepcopy(other), "name": table["name"]}
    elif how == "drop key" and keys:
        del table[draw(st.sampled_from(keys))]
    elif how == "unknown key":
        table["unknown_key"] = True
    elif how == "bad value" and keys:
        table[draw(st.sampled_from(keys))] = draw(st.sampled_from(["a.*.com", [], ["bad..x"], 7]))
    elif how == "keys":  # the same table, its keys in another order: reads alike
        table = dict(reversed(list(table.items())))
    return table


@st.composite
def _edited(draw: st.DrawFn, old: dict[str, Any], spare: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(old)
    for direction in ("inbound", "outbound"):
        tables: list[dict[str, Any]] = new[direction]
        others = spare[direction] or old[direction]
        for _ in range(draw(st.integers(0, 4))):
            how = draw(
                st.sampled_from(["change", "remove", "add", "copy", "swap", "rename", "across"])
            )
            if how == "add" and others:  # a new connector (its name maybe taken)
                tables.insert(
                    draw(st.integers(0, len(tables))), copy.deepcopy(draw(st.sampled_from(others)))
                )
            if not tables:
                continue
            index = draw(st.integers(0, len(tables) - 1))
            if how == "change":
                other = draw(st.sampled_from(others)) if others else tables[index]
                tables[index] = _edit_table(draw, tables[index], other)
            elif how == "remove":
                del tables[index]
            elif how == "copy":  # the same table twice: a duplicate name
                tables.insert(draw(st.integers(0, len(tables))), copy.deepcopy(tables[index]))
            elif how == "swap":  # reordered
                other_index = draw(st.integers(0, len(tables) - 1))
                tables[index], tables[other_index] = tables[other_index], tables[index]
            elif how == "rename":
                name = tables[index]["name"]
                tables[index]["name"] = draw(st.sampled_from([name.upper(), f"{name} 2", ""]))
            elif how == "across":  # the table under the other direction
                target = "outbound" if direction == "inbound" else "inbound"
                new[target].append(copy.deepcopy(tables[index]))
    if draw(st.booleans()):
        new["trust"] = {"revocation": draw(st.sampled_from(["soft", "hard", "off", "never"]))}
    return new


_POLICIES = policy_mappings(min_inbound=1, max_inbound=6, min_outbound=1, max_outbound=6)


@given(data=st.data(), old=_POLICIES, spare=_POLICIES)
def test_a_load_reusing_an_earlier_policy_equals_a_plain_load(
    data: st.DataObject, old: dict[str, Any], spare: dict[str, Any]
) -> None:
    if data.draw(st.booleans()):
        old = {**old, "trust": {"revocation": data.draw(st.sampled_from(["soft", "hard"]))}}
    new = data.draw(_edited(old, spare))
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        first = load_policy(
            _write(directory, "old.toml", old), use_system_trust=False, keep_tables=True
        )
        path = _write(directory, "new.toml", new)
        expected = _outcome(path)
        assert expected == _outcome(path, reuse=first)


# --------------------------------------------------------------------------------------
# What is reused, and what is not

OLD = """
[[inbound]]
name = "Fabrikam"
sender_domains = ["fabrikam.com"]
require_tls = true

[[inbound]]
name = "Contoso"
sender_domains = ["contoso.com"]
sender_ip_addresses = ["192.0.2.0/24"]
restrict_domains_to_ip_addresses = true

[[outbound]]
name = "Fabrikam out"
recipient_domains = ["fabrikam.com"]
tls_settings = "encryption_only"
"""


def _first(directory: Path) -> Policy:
    return load_policy(_write(directory, "old.toml", OLD), use_system_trust=False, keep_tables=True)


def test_tables_that_read_alike_give_the_earlier_connector_objects(directory: Path) -> None:
    first = _first(directory)
    # Reordered, keys in another order, one connector changed, [trust] added.
    text = (
        '[trust]\nrevocation = "hard"\n'
        '[[outbound]]\ntls_settings = "encryption_only"\nname = "Fabrikam out"\n'
        'recipient_domains = ["fabrikam.com"]\n'
        + OLD.split("[[outbound]]")[0].replace('"contoso.com"', '"contoso.org"')
    )
    path = _write(directory, "new.toml", text)
    second = load_policy(path, use_system_trust=False, reuse=first)
    assert second == load_policy(path, use_system_trust=False)
    fabrikam, contoso = first.inbound[1], first.inbound[0]
    assert second.inbound[1] is fabrikam
    assert second.inbound[0] != contoso  # contoso.org: read again
    assert second.outbound[0] is first.outbound[0]


def test_a_boolean_written_as_an_equal_number_is_read_again_and_refused(directory: Path) -> None:
    """``1 == True`` in Python: a table equal to an earlier one but for the types of
    its values is not the earlier table (section 8: no coercion)."""
    first = _first(directory)
    for odd in ("1", "1.0"):
        path = _write(
            directory, "new.toml", OLD.replace("require_tls = true", f"require_tls = {odd}")
        )
        problems = _outcome(path, reuse=first)
        assert problems == _outcome(path)
        assert [
            ("Fabrikam", "require_tls", odd, "must be a boolean (true or false)", 5)
        ] == problems


def test_a_connector_is_not_reused_across_directions(directory: Path) -> None:
    first = _first(directory)
    inbound = OLD.split("[[outbound]]")[0].split("[[inbound]]")[1]
    path = _write(directory, "new.toml", OLD + "\n[[outbound]]" + inbound)
    problems = _outcome(path, reuse=first)
    assert problems == _outcome(path)
    assert isinstance(problems, list)
    assert ("Fabrikam", "sender_domains", "['fabrikam.com']") == problems[0][:3]


def test_a_policy_that_kept_no_tables_reuses_nothing(directory: Path) -> None:
    path = _write(directory, "old.toml", OLD)
    first = load_policy(path, use_system_trust=False)
    second = load_policy(path, use_system_trust=False, reuse=first)
    assert second == first
    assert all(a is not b for a, b in zip(first.inbound, second.inbound, strict=True))


def test_only_a_policy_loaded_with_keep_tables_keeps_them(directory: Path) -> None:
    """The tables cost about as much memory again as the connectors: kept on request."""
    path = _write(directory, "old.toml", OLD)
    assert load_policy(path, use_system_trust=False)._sources is None
    assert load_policy(path, use_system_trust=False, keep_tables=True)._sources is not None
    # Not part of the value.
    assert load_policy(path, use_system_trust=False) == load_policy(
        path, use_system_trust=False, keep_tables=True
    )


def test_forgotten_tables_are_read_again_and_the_value_is_unchanged(tmp_path: Path) -> None:
    from tlsconnector._reading import forget_tables

    path = tmp_path / "p.toml"
    path.write_text('[[inbound]]\nname = "a"\nsender_domains = ["a.example"]\n')
    first = load_policy(path, keep_tables=True)
    assert load_policy(path, reuse=first).inbound[0] is first.inbound[0]
    forget_tables(first)
    assert first == load_policy(path)
    again = load_policy(path, reuse=first)
    assert again == first
    assert again.inbound[0] is not first.inbound[0]  # nothing kept: read again
