"""Loading a policy fast changes nothing: every fast path of the loader agrees with the
general code it short-cuts.

Correctness only: no timing is asserted here (timing belongs in ``make bench``). The
general readers are the reference: they read any table and word every problem (spec
section 8). The fast readers build the connector of a plain, valid table and decline
any other; where they build one, it is the one the general reader builds, and a whole
policy loads (or fails, with the same problems in the same order) exactly as it does
with the general readers alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import Policy, PolicyError, load_policy
from tlsconnector import _reading as model
from tlsconnector._addresses import IPRange, IPSet
from tlsconnector._errors import MISSING, InvalidValue, Problem
from tlsconnector._index import DomainIndex
from tlsconnector._names import (
    _LDH_NAME,
    DomainPattern,
    _canonical_domain_full,
    _is_ldh_label,
    canonical_domain,
)

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.generate import inbound_connector, outbound_connector, policy_mapping, policy_toml


class _Text(str):
    """A subclass of str: a program may hand one to Policy.from_mapping."""


# --------------------------------------------------------------------------------------
# Connector tables: valid ones, and valid ones spoilt by bad or odd values (wrong types,
# None, subclasses of str) of the kinds a file or a program may hold

_VALID_NAMES = st.sampled_from(["Fabrikam", "fabrikam", "Contoso", "in-1"])
_VALID_PATTERNS = st.sampled_from(
    ["fabrikam.com", "*.fabrikam.com", "*", "Fabrikam.COM.", "contoso.com", "*.com",
     "b\u00fccher.de", "_dmarc.fabrikam.com"]
)  # fmt: skip
_VALID_ADDRESSES = st.sampled_from(
    ["198.51.100.0/24", "198.51.100.10-198.51.100.20", "192.0.2.7", "2001:db8::/32",
     "::ffff:192.0.2.0/120", "2001:DB8::1"]
)  # fmt: skip
_VALID_HOSTS = st.sampled_from(
    ["mail.fabrikam.com", "192.0.2.1:587", "[2001:db8::1]:25", "2001:db8::1", "Mail.Fabrikam.com."]
)
_VALID_CERT_NAMES = st.sampled_from(
    ["mail.fabrikam.com", "*.fabrikam.com", "Mail.Fabrikam.COM.", "*.b\u00fccher.de"]
)
_ODD: st.SearchStrategy[Any] = st.sampled_from(
    [None, 1, 1.5, "yes", "", [], {}, [None], [["fabrikam.com"]], ("a",)]
)
_BAD_TEXTS = st.sampled_from(
    ["a.*.com", "1.2.3.4", "bad..name", "198.51.100.1/24", "198.51.100.20-198.51.100.1",
     "fe80::1%eth0", "010.0.0.1", "10.0.0.0/8", "mail.fabrikam.com:0", "bad host", "*.com",
     "*.*.fabrikam.com", "_x.fabrikam.com", "x" * 300, "a\x00b", " "]
)  # fmt: skip


def _lists(texts: st.SearchStrategy[str], *, min_size: int = 0) -> st.SearchStrategy[Any]:
    return st.lists(texts, min_size=min_size, max_size=3)


_VALID_COMMON: dict[str, st.SearchStrategy[Any]] = {
    "name": _VALID_NAMES,
    "enabled": st.booleans(),
    "type": st.sampled_from(["partner", "on_premises"]),
    "comment": st.sampled_from(["", "a comment"]),
}
_VALID_INBOUND: dict[str, st.SearchStrategy[Any]] = {
    **_VALID_COMMON,
    "sender_domains": _lists(_VALID_PATTERNS, min_size=1),
    "sender_ip_addresses": _lists(_VALID_ADDRESSES),
    "require_tls": st.booleans(),
    "tls_sender_certificate_name": _VALID_CERT_NAMES,
    "restrict_domains_to_certificate": st.booleans(),
    "restrict_domains_to_ip_addresses": st.booleans(),
}
_VALID_OUTBOUND: dict[str, st.SearchStrategy[Any]] = {
    **_VALID_COMMON,
    "recipient_domains": _lists(_VALID_PATTERNS, min_size=1),
    "use_mx_record": st.booleans(),
    "smart_hosts": _lists(_VALID_HOSTS),
    "tls_settings": st.sampled_from(
        ["opportunistic", "encryption_only", "certificate_validation", "domain_validation"]
    ),
    "tls_domain": _VALID_CERT_NAMES,
    "is_transport_rule_scoped": st.booleans(),
    "test_mode": st.booleans(),
}
_LIST_KEYS = {"sender_domains", "sender_ip_addresses", "recipient_domains", "smart_hosts"}


def _spoilt(key: str, valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value that is not a plain valid one: bad, odd, or valid but a subclass of str."""
    if key in _LIST_KEYS:
        return st.one_of(
            _ODD,
            st.lists(st.one_of(_BAD_TEXTS, _ODD), min_size=1, max_size=2),
            valid.map(lambda texts: [*texts, "bad..name", *texts]),
            valid.map(lambda texts: [_Text(text) for text in texts]),
            st.just([]),
        )
    return st.one_of(_ODD, _BAD_TEXTS, valid.map(lambda v: _Text(v) if type(v) is str else v))


@st.composite
def _tables(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    table: dict[str, Any] = {"name": draw(fields["name"])}
    for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=len(fields))):
        table[key] = draw(fields[key])
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
        if draw(st.booleans()):
            table[key] = draw(_spoilt(key, fields[key]))
        else:
            table.pop(key, None)
    if draw(st.integers(0, 19)) == 0:
        table["unknown_key"] = True
    if draw(st.integers(0, 19)) == 0:
        return types.MappingProxyType(table)  # a Mapping that is not a dict
    return table


def _plain(table: object) -> bool:
    """A dict with only values of their exact TOML types (no None, no subclass)."""

    def exact(value: object) -> bool:
        if isinstance(value, list):
            return type(value) is list and all(exact(item) for item in value)
        return type(value) in (str, bool, int, float, dict, tuple)

    return type(table) is dict and all(exact(value) for value in table.values())


def _read_both(
    fast: Callable[[object, Any], object],
    general: Callable[[object, int, list[Problem], Any], object],
    table: object,
) -> tuple[object, object, list[Problem]]:
    problems: list[Problem] = []
    built = general(table, 0, problems, model._Parsers.for_one_load())
    return fast(table, model._Parsers.for_one_load()), built, problems


@given(_tables(_VALID_INBOUND))
def test_the_fast_inbound_reader_builds_what_the_general_one_builds(table: Any) -> None:
    """Where the fast reader builds a connector, the general reader builds an equal one
    without a problem; every plain table the general reader accepts, the fast one does."""
    fast, general, problems = _read_both(model._inbound_fast, model._inbound_from_mapping, table)
    if fast is not None:
        assert ([], general) == (problems, fast)
    elif general is not None and _plain(table):
        # Only a certificate name given as None (a program's value, never TOML's)
        # passes the general reader and not the fast one.
        assert table.get("tls_sender_certificate_name", "") is None


@given(_tables(_VALID_OUTBOUND))
def test_the_fast_outbound_reader_builds_what_the_general_one_builds(table: Any) -> None:
    """As for inbound: the fast reader agrees, and declines no plain valid table."""
    fast, general, problems = _read_both(model._outbound_fast, model._outbound_from_mapping, table)
    if fast is not None:
        assert ([], general) == (problems, fast)
    elif general is not None and _plain(table):
        assert table.get("tls_domain", "") is None


@pytest.mark.parametrize("i", range(8))
def test_the_fast_readers_take_every_generated_benchmark_table(i: int) -> None:
    """The benchmark's connectors (every kind of each direction) take the fast path."""
    for fast, general, table in (
        (model._inbound_fast, model._inbound_from_mapping, inbound_connector(i)),
        (model._outbound_fast, model._outbound_from_mapping, outbound_connector(i)),
    ):
        built_fast, built, problems = _read_both(fast, general, table)
        assert ([], built) == (problems, built_fast)


# Valid tables at the edge of every rule that combines keys (section 9), so that one
# change makes a problem: restrict_* without what it needs, tls_domain without
# domain_validation, use_mx_record = false without smart hosts, no recipient domain
# without is_transport_rule_scoped.
_EDGE_INBOUND: list[dict[str, Any]] = [
    {"name": "a", "sender_domains": ["fabrikam.com"]},
    {
        "name": "b",
        "enabled": False,
        "type": "on_premises",
        "comment": "c",
        "sender_domains": ["*.fabrikam.com", "*"],
        "sender_ip_addresses": ["198.51.100.0/24"],
        "require_tls": False,
        "tls_sender_certificate_name": "*.fabrikam.com",
        "restrict_domains_to_certificate": True,
        "restrict_domains_to_ip_addresses": True,
    },
]
_EDGE_OUTBOUND: list[dict[str, Any]] = [
    {"name": "a", "recipient_domains": ["fabrikam.com"]},
    {
        "name": "b",
        "enabled": False,
        "type": "on_premises",
        "comment": "c",
        "recipient_domains": ["*.fabrikam.com"],
        "use_mx_record": False,
        "smart_hosts": ["mail.fabrikam.com", "192.0.2.1:587"],
        "tls_settings": "domain_validation",
        "tls_domain": "*.fabrikam.com",
        "test_mode": True,
    },
    {"name": "c", "is_transport_rule_scoped": True, "tls_settings": "encryption_only"},
]
_CHANGES: list[object] = [
    True, False, None, 0, 1, 1.5, "", " ", "partner", "on_premises", "Partner", "yes",
    "domain_validation", "opportunistic", "certificate_validation", "encryption_only",
    "mail.fabrikam.com", "*.com", [], [None], ["fabrikam.com"], ["bad..name"], ["*"],
    ["198.51.100.1/24"], ["192.0.2.7"], ["mail.fabrikam.com"], ["10.0.0.0/8"],
    [_Text("fabrikam.com")], _Text("fabrikam"), {}, ("fabrikam.com",),
]  # fmt: skip
_DELETE = object()


@pytest.mark.parametrize(
    ("fast", "general", "bases", "keys"),
    [
        (model._inbound_fast, model._inbound_from_mapping, _EDGE_INBOUND, model._INBOUND_KEYS),
        (model._outbound_fast, model._outbound_from_mapping, _EDGE_OUTBOUND, model._OUTBOUND_KEYS),
    ],
    ids=["inbound", "outbound"],
)
def test_one_change_to_a_valid_table(
    fast: Callable[[object, Any], object],
    general: Callable[[object, int, list[Problem], Any], object],
    bases: list[dict[str, Any]],
    keys: tuple[str, ...],
) -> None:
    """Every key of every edge table removed or set to each of many values: the fast
    reader builds exactly what the general reader builds without a problem."""
    for base in bases:
        for key in (*keys, "unknown_key"):
            for change in (_DELETE, *_CHANGES):
                table = {k: v for k, v in base.items() if k != key}
                if change is not _DELETE:
                    table[key] = change
                built_fast, built, problems = _read_both(fast, general, table)
                if built_fast is not None:
                    assert ([], built) == (problems, built_fast), table
                elif built is not None and _plain(table):
                    assert table.get(key, "") is None, table


@given(_tables(_VALID_OUTBOUND))
def test_a_built_connector_claims_what_its_table_says(table: Any) -> None:
    """The name check and the tie check read a built connector instead of its table:
    both give what reading the table gives (section 6.2)."""
    parsers = model._Parsers.for_one_load()
    connector = model._outbound_from_mapping(table, 3, [], parsers)
    if connector is None:
        return
    claim = model._table_claim(table, 3, parsers.pattern)
    expected = (connector.name, list(connector.recipient_domains))
    assert (expected if connector.selectable_by_domain else None) == claim
    assert (connector.name, True) == model._connector_name(table, "outbound", 3)


@given(_tables(_VALID_INBOUND))
def test_a_built_inbound_connector_has_its_tables_name(table: Any) -> None:
    connector = model._inbound_from_mapping(table, 3, [], model._Parsers.for_one_load())
    if connector is not None:
        assert (connector.name, True) == model._connector_name(table, "inbound", 3)


# --------------------------------------------------------------------------------------
# Whole policies: the same policy, or the same problems in the same order


def _outcome(data: Mapping[str, Any]) -> object:
    try:
        policy = Policy.from_mapping(data, trust=None)
    except PolicyError as exc:
        return ("problems", exc.problems, str(exc))
    domains = ["fabrikam.com", "a.fabrikam.com", "contoso.com", "x.org"]
    return (
        "policy",
        policy,
        [policy.inbound_candidates(d) for d in [*domains, None]],
        [policy.outbound_candidates(d) for d in domains],
        [policy.outbound_named(c.name.upper()) for c in policy.outbound],
    )


@contextlib.contextmanager
def _general_readers_only() -> Iterator[None]:
    """Loading as before the fast paths: every table read by the general reader, and
    the name and tie checks reading every table again, as they did."""
    check_names, check_ties = model._check_duplicate_names, model._check_outbound_ties

    def names_from_tables(tables: list[object], built: object, *args: Any) -> None:
        check_names(tables, [None] * len(tables), *args)

    def ties_from_tables(tables: list[object], built: object, *args: Any) -> None:
        check_ties(tables, [None] * len(tables), *args)

    with (
        mock.patch.object(model, "_inbound_fast", return_value=None),
        mock.patch.object(model, "_outbound_fast", return_value=None),
        mock.patch.object(model, "_check_duplicate_names", names_from_tables),
        mock.patch.object(model, "_check_outbound_ties", ties_from_tables),
    ):
        yield


def _general_only(data: Mapping[str, Any]) -> object:
    with _general_readers_only():
        return _outcome(data)


@given(
    st.lists(_tables(_VALID_INBOUND), max_size=4),
    st.lists(st.one_of(_tables(_VALID_OUTBOUND), _tables(_VALID_OUTBOUND), _ODD), max_size=5),
)
def test_a_policy_loads_as_with_the_general_readers_alone(
    inbound: list[Any], outbound: list[Any]
) -> None:
    """Duplicate names, ties and every other problem are reported as before, in the
    same order (section 8); a valid policy is equal and answers alike."""
    data = {"inbound": inbound, "outbound": outbound}
    assert _general_only(data) == _outcome(data)


def test_the_generated_policy_loads_as_with_the_general_readers_alone() -> None:
    data = policy_mapping(400)
    assert _general_only(data) == _outcome(data)


def test_ties_and_duplicate_names_between_fast_and_general_tables() -> None:
    """A valid table (fast path) and a table with a problem (general path) still tie
    and still share a name."""
    data = {
        "outbound": [
            {"name": "B", "recipient_domains": ["fabrikam.com", "*.contoso.com"]},
            {"name": "a", "recipient_domains": ["Fabrikam.com."], "use_mx_record": "no"},
            {"name": "b", "recipient_domains": ["*.contoso.com"]},
        ]
    }
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(data, trust=None)
    assert [
        ("a", "use_mx_record"),
        ("b", "name"),
        ("B", "recipient_domains"),
        ("b", "recipient_domains"),
    ] == [(p.connector, p.field) for p in caught.value.problems]
    assert _general_only(data) == _outcome(data)


def test_only_connectors_chosen_by_domain_tie() -> None:
    """Rule-scoped, test-mode and disabled connectors may claim a selectable one's
    pattern (section 6.2), whichever reader built them."""
    claims = {"recipient_domains": ["fabrikam.com"]}
    data = {
        "outbound": [
            {"name": "a", **claims, "is_transport_rule_scoped": True},
            {"name": "b", **claims, "test_mode": True},
            {"name": "c", **claims, "enabled": False},
            {"name": "d", **claims},
            types.MappingProxyType({"name": "e", **claims, "test_mode": True}),
        ]
    }
    policy = Policy.from_mapping(data, trust=None)
    assert ["d"] == [c.name for c in policy.outbound_candidates("fabrikam.com")]
    assert _general_only(data) == _outcome(data)


def test_a_repeated_bad_entry_is_reported_each_time() -> None:
    """Parse results are shared within a load, errors are not: every connector with a
    bad entry is named (section 8)."""
    bad = {"sender_ip_addresses": ["198.51.100.1/24"], "tls_sender_certificate_name": "*.com"}
    data = {
        "inbound": [
            {"name": "one", "sender_domains": ["fabrikam.com"], **bad},
            {"name": "two", "sender_domains": ["contoso.com"], **bad},
        ]
    }
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(data, trust=None)
    assert [
        ("one", "sender_ip_addresses[0]"),
        ("one", "tls_sender_certificate_name"),
        ("two", "sender_ip_addresses[0]"),
        ("two", "tls_sender_certificate_name"),
    ] == [(p.connector, p.field) for p in caught.value.problems]


def test_the_benchmark_file_loads_as_with_the_general_readers_alone(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy_toml(200))
    with _general_readers_only():
        general = load_policy(path, use_system_trust=False)
    assert general == load_policy(path, use_system_trust=False)


# --------------------------------------------------------------------------------------
# The primitives' fast paths


def _parsed(function: Callable[[str], object], text: str) -> tuple[str, object]:
    try:
        return ("value", function(text))
    except InvalidValue as exc:
        return ("error", exc.reason)


_NUMERICISH = st.from_regex(
    r"([a-z0-9_-]{1,5}\.){0,3}(0[xX][0-9a-fA-Fg]{0,3}|[0-9]{1,4}|[0-9a-fx]{1,4})\.?",
    fullmatch=True,
)


@given(_NUMERICISH)
def test_canonical_domain_refuses_a_numeric_last_label_in_one_match(text: str) -> None:
    """The fast path's single match keeps section 3 rule 6: a last label of digits (or
    0x hex) takes the full path, which refuses it."""
    assert _parsed(_canonical_domain_full, text) == _parsed(canonical_domain, text)


@pytest.mark.parametrize(
    "text",
    ["a.123", "a.0x", "a.0X1F", "a.0x1g", "0x1f.com", "123.com", "a.b.1", "a.1b", "a.x0", "9"],
)
def test_canonical_domain_numeric_last_label_edges(text: str) -> None:
    assert _parsed(_canonical_domain_full, text) == _parsed(canonical_domain, text)


@given(st.text(alphabet="aZ09-_.*\u00fc ", max_size=30))
def test_one_ldh_match_is_every_label_ldh(text: str) -> None:
    """Section 3 rule 3 checked on the whole name agrees with the check per label."""
    per_label = all(_is_ldh_label(label) for label in text.split("."))
    assert per_label == (_LDH_NAME.fullmatch(text) is not None)


def test_one_ldh_match_label_lengths() -> None:
    for label, ok in (("a" * 63, True), ("a" * 64, False), ("a-" * 31 + "a", True)):
        assert ok == (_LDH_NAME.fullmatch(f"x.{label}.com") is not None)


def _networks(version: Literal[4, 6]) -> st.SearchStrategy[str]:
    bits = 32 if version == 4 else 128
    return st.builds(
        lambda address, prefix: str(ipaddress.ip_network((address, prefix), strict=False)),
        st.ip_addresses(v=version),
        st.integers(0, bits),
    )


_OCTETS = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 255).map(str),
    st.integers(0, 255).map(str),
    st.sampled_from(["00", "01", "256", "999", ""]),
)
_QUADS = st.lists(_OCTETS, min_size=4, max_size=4).map(".".join)
_IPV4_ENTRIES = st.one_of(
    _QUADS,
    st.tuples(_QUADS, st.sampled_from(["0", "8", "24", "31", "32", "33", "08", "-1"])).map(
        "/".join
    ),
    st.tuples(_QUADS, _QUADS).map("-".join),
    st.ip_addresses(v=4).map(str),
    _networks(4),
    st.text(alphabet="0123456789./-: ", max_size=25),
)


@given(_IPV4_ENTRIES)
def test_the_ipv4_fast_path_agrees_with_the_general_path(text: str) -> None:
    """An IPv4 entry read on integers is the entry the general path reads (section 4);
    anything it does not read (errors included) is left to the general path."""
    fast = IPRange._parse_ipv4_fast(text)
    general = _parsed(IPRange._parse_general, text)
    if fast is not None:
        assert general == ("value", fast)
    assert general == _parsed(IPRange.parse, text)


@pytest.mark.parametrize(
    "text",
    ["1.2.3.0/33", "1.2.3.4/32", "1.2.3.4/31", "0.0.0.0/0", "1.2.3.4/0", "1.2.3.4/08",
     "1.2.3.0/24", "1.2.3.4/24", "255.255.255.255/32", "256.1.1.1", "1.2.3.4-1.2.3.3",
     "1.2.3.4-1.2.3.4", "1.2.3.4-1.2.3.5", "01.2.3.4", "1.2.3.4/", "1.2.3.4-", "1.2.3",
     "1.2.3.4.5", "1.2.3.4-1.2.3.4-1.2.3.5", "1.2.3.4/24/24", " 1.2.3.4", "1.2.3.4\n"],
)  # fmt: skip
def test_ipv4_fast_path_edges(text: str) -> None:
    fast = IPRange._parse_ipv4_fast(text)
    general = _parsed(IPRange._parse_general, text)
    assert general == (("value", fast) if fast is not None else _parsed(IPRange.parse, text))


@given(st.ip_addresses(v=4), _networks(4), st.ip_addresses(v=4))
def test_the_ipv4_fast_path_takes_every_canonical_entry(
    address: ipaddress.IPv4Address, network: str, other: ipaddress.IPv4Address
) -> None:
    first, last = sorted((address, other))
    for text in (str(address), network, f"{first}-{last}"):
        assert IPRange._parse_general(text) == IPRange._parse_ipv4_fast(text)


@given(
    st.lists(st.one_of(_networks(4), _networks(6)), max_size=5),
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
)
def test_an_address_set_holds_exactly_its_entries(
    entries: list[str], address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    ranges = [IPRange.parse(entry) for entry in entries]
    assert any(address in entry for entry in ranges) == (address in IPSet(tuple(ranges)))


def test_a_connector_with_a_repeated_pattern_is_listed_once() -> None:
    """A connector's repeated patterns put it once in its bucket (no answer lists it
    twice)."""
    patterns = [DomainPattern.parse(text) for text in ("a.com", "*.b.com", "A.com.", "*.b.com")]
    index = DomainIndex(["one", "two"], lambda name: patterns)
    assert ("one", "two") == index.best("a.com")
    assert ("one", "two") == index.best("x.b.com")


# --- messages a newcomer can act on (issue "For operators and integrators") ----------------


def test_an_absent_key_is_missing_not_none() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping({"inbound": [{"name": "x"}]}, trust=None)
    [problem] = caught.value.problems
    assert (MISSING, "connector 'x': sender_domains: missing (required)") == (
        problem.value,
        str(problem),
    )
    # A key given as None from Python is a value, and says so.
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping({"inbound": [{"name": "x", "sender_domains": None}]}, trust=None)
    assert "sender_domains = None: must be an array of strings" in str(caught.value)


def test_a_single_inbound_or_outbound_table_gets_the_double_bracket_hint() -> None:
    for direction in ("inbound", "outbound"):
        with pytest.raises(PolicyError) as caught:
            Policy.from_mapping({direction: {"name": "x"}}, trust=None)
        assert (
            f"must be an array of tables: write [[{direction}]] (two brackets) above each "
            f"connector, not [{direction}]"
        ) in str(caught.value)
    with pytest.raises(PolicyError) as caught:  # inline array of non-tables: no hint
        Policy.from_mapping({"inbound": "x"}, trust=None)
    assert str(caught.value).endswith("inbound = 'x': must be an array of tables")


def test_an_unknown_trust_key_lists_the_allowed_ones() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping({"trust": {"cafile": "x"}}, trust=None)
    assert str(caught.value).endswith(
        "trust.cafile = 'x': unknown key (allowed: ca_file, crl_files, revocation)"
    )
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping({"trust": [{"ca_file": "x"}]}, trust=None)
    assert "must be a table: write [trust] (one bracket pair), not [[trust]]" in str(caught.value)
