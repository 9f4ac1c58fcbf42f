"""Specification tests for peer addresses and configured IP lists (section 4)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tlsconnector import InboundAction, InboundSession, Policy, evaluate_inbound
from tlsconnector._addresses import IPRange, IPSet, parse_peer_ip
from tlsconnector._errors import InvalidValue

from certmint import NOW

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


# ======================================================================================
# parse_peer_ip: a session fact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7", V4("198.51.100.7")),
        ("2001:db8::1", V6("2001:db8::1")),
        ("2001:DB8:0:0:0:0:0:1", V6("2001:db8::1")),
        ("::1", V6("::1")),
        ("::ffff:198.51.100.7", V4("198.51.100.7")),
        ("::FFFF:c633:6407", V4("198.51.100.7")),
    ],
)
def test_peer_ip_parses_v4_and_v6(text: str, expected: object) -> None:
    """IPv4 or IPv6; an IPv4-mapped IPv6 peer is the IPv4 address (section 4)."""
    assert expected == parse_peer_ip(text)


def test_mapped_peer_equals_the_ipv4_peer() -> None:
    assert parse_peer_ip("198.51.100.7") == parse_peer_ip("::ffff:198.51.100.7")


def test_ipv4_compatible_and_nat64_addresses_stay_ipv6() -> None:
    """Only the ::ffff:0:0/96 mapping means "this is an IPv4 peer"."""
    assert V6("::c633:6407") == parse_peer_ip("::198.51.100.7")
    assert V6("64:ff9b::c633:6407") == parse_peer_ip("64:ff9b::198.51.100.7")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("fe80::1%eth0", "zone identifiers"),
        ("fe80::1%1", "zone identifiers"),
        ("", "not an IPv4 or IPv6 address"),
        (" 198.51.100.7", "not an IPv4 or IPv6 address"),
        ("198.51.100.7 ", "not an IPv4 or IPv6 address"),
        ("198.51.100.7\n", "not an IPv4 or IPv6 address"),
        ("198.51.100.07", "not an IPv4 or IPv6 address"),
        ("198.51.100", "not an IPv4 or IPv6 address"),
        ("198.51.100.256", "not an IPv4 or IPv6 address"),
        ("[2001:db8::1]", "not an IPv4 or IPv6 address"),
        ("198.51.100.0/24", "not an IPv4 or IPv6 address"),
        ("mail.fabrikam.com", "not an IPv4 or IPv6 address"),
        ("\u0661.2.3.4", "not an IPv4 or IPv6 address"),
        ("1" * 1000, "too long"),
    ],
)
def test_peer_ip_refuses_anything_else(text: str, reason: str) -> None:
    """Zone identifiers and every other malformed text are invalid facts; nothing stripped."""
    with pytest.raises(InvalidValue, match=reason) as caught:
        parse_peer_ip(text)
    assert text == caught.value.value


@pytest.mark.parametrize("value", [None, 3325256711, b"198.51.100.7", V4("198.51.100.7")])
def test_peer_ip_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        parse_peer_ip(value)  # type: ignore[arg-type]


def mostly(
    valid: st.SearchStrategy[str], *hostile: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """Fuzzing input that gets past the parser most of the time: ``valid`` in about
    two draws of three, else one of the ``hostile`` strategies."""
    return st.integers(0, 5).flatmap(lambda pick: valid if pick < 4 else st.one_of(*hostile))


def _spellings(address: V4 | V6) -> list[str]:
    """Ways to write one address: compressed, exploded, upper case, IPv4-mapped."""
    texts = [str(address), address.exploded, str(address).upper()]
    if isinstance(address, V4):
        texts += [f"::ffff:{address}", f"::FFFF:{address}"]
    return texts


# Fuzzing: addresses in every spelling, some one edit away from valid (a character
# inserted, a zone identifier, a space), and arbitrary text.
_ADDRESS_EDITS = [" ", "%eth0", "0", ":", ".", "/", "-", "\x00", "\u0661"]
_SPELLED = st.builds(
    lambda address, pick: _spellings(address)[pick % len(_spellings(address))],
    st.ip_addresses(),
    st.integers(0, 4),
)


def _edited(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``texts`` with one of _ADDRESS_EDITS inserted somewhere."""
    return st.builds(
        lambda text, position, edit: text[:position] + edit + text[position:],
        texts,
        st.integers(0, 45),
        st.sampled_from(_ADDRESS_EDITS),
    )


address_texts = mostly(_SPELLED, _edited(_SPELLED), st.text(max_size=60))


@given(address_texts)
def test_peer_ip_only_ever_raises_invalid_value(text: str) -> None:
    try:
        address = parse_peer_ip(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert isinstance(address, V4 | V6)
    assert not (isinstance(address, V6) and address.ipv4_mapped is not None)  # section 4
    assert address == parse_peer_ip(str(address))


@given(st.ip_addresses())
def test_peer_ip_round_trips(address: V4 | V6) -> None:
    parsed = parse_peer_ip(str(address))
    if isinstance(address, V6) and address.ipv4_mapped is not None:
        assert address.ipv4_mapped == parsed
    else:
        assert address == parsed


# ======================================================================================
# IPRange.parse: one configured entry


@pytest.mark.parametrize(
    ("text", "first", "last", "canonical"),
    [
        ("198.51.100.7", V4("198.51.100.7"), V4("198.51.100.7"), "198.51.100.7"),
        ("2001:DB8::1", V6("2001:db8::1"), V6("2001:db8::1"), "2001:db8::1"),
        ("::ffff:198.51.100.7", V4("198.51.100.7"), V4("198.51.100.7"), "198.51.100.7"),
        ("198.51.100.0/24", V4("198.51.100.0"), V4("198.51.100.255"), "198.51.100.0/24"),
        ("198.51.100.7/32", V4("198.51.100.7"), V4("198.51.100.7"), "198.51.100.7/32"),
        ("0.0.0.0/0", V4("0.0.0.0"), V4("255.255.255.255"), "0.0.0.0/0"),  # noqa: S104
        (
            "2001:db8::/32",
            V6("2001:db8::"),
            V6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            "2001:db8::/32",
        ),
        ("::ffff:198.51.100.0/120", V4("198.51.100.0"), V4("198.51.100.255"), "198.51.100.0/24"),
        (
            "198.51.100.10-198.51.100.20",
            V4("198.51.100.10"),
            V4("198.51.100.20"),
            "198.51.100.10-198.51.100.20",
        ),
        ("198.51.100.10-198.51.100.10", V4("198.51.100.10"), V4("198.51.100.10"), None),
        ("2001:db8::1-2001:db8::ff", V6("2001:db8::1"), V6("2001:db8::ff"), None),
        (
            "::ffff:198.51.100.10-198.51.100.20",
            V4("198.51.100.10"),
            V4("198.51.100.20"),
            "198.51.100.10-198.51.100.20",
        ),
    ],
)
def test_range_parses_every_accepted_form(
    text: str, first: object, last: object, canonical: str | None
) -> None:
    """A single address, a CIDR block, an inclusive same-family range (section 4)."""
    entry = IPRange.parse(text)
    assert first == entry.first
    assert last == entry.last
    assert (canonical or text) == entry.text
    assert entry.text == str(entry)


def test_cidr_with_host_bits_set_says_what_was_meant() -> None:
    """Section 4: host bits set is a configuration error, saying which entry and why."""
    with pytest.raises(InvalidValue, match="host bits set") as caught:
        IPRange.parse("198.51.100.1/24")
    assert caught.value.value == "198.51.100.1/24"
    assert caught.value.reason == "host bits set; did you mean 198.51.100.0/24?"
    assert str(caught.value) == "'198.51.100.1/24': host bits set; did you mean 198.51.100.0/24?"


def test_ipv6_cidr_with_host_bits_set() -> None:
    with pytest.raises(InvalidValue, match=r"did you mean 2001:db8::/32\?"):
        IPRange.parse("2001:db8::1/32")


def test_mapped_cidr_with_host_bits_set_suggests_the_ipv4_block() -> None:
    with pytest.raises(InvalidValue, match=r"did you mean 198\.51\.100\.0/24\?"):
        IPRange.parse("::ffff:198.51.100.1/120")


def test_reversed_range_is_refused() -> None:
    with pytest.raises(InvalidValue, match=r"range start 198\.51\.100\.20 is above range end") as c:
        IPRange.parse("198.51.100.20-198.51.100.10")
    assert c.value.value == "198.51.100.20-198.51.100.10"


def test_mixed_family_range_is_refused() -> None:
    with pytest.raises(InvalidValue, match=r"different families \(IPv4 and IPv6\)"):
        IPRange.parse("198.51.100.10-2001:db8::1")
    with pytest.raises(InvalidValue, match=r"different families \(IPv6 and IPv4\)"):
        IPRange.parse("::1-198.51.100.10")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("fe80::1%eth0", "zone identifiers"),
        ("fe80::%eth0/64", "zone identifiers"),
        ("fe80::1%eth0-fe80::2", "zone identifiers"),
        ("198.51.100.0/33", "prefix length must be a number from 0 to 32"),
        ("2001:db8::/129", "prefix length must be a number from 0 to 128"),
        ("198.51.100.0/255.255.255.0", "prefix length"),
        ("198.51.100.0/024", "prefix length"),
        ("198.51.100.0/", "prefix length"),
        ("198.51.100.0/-1", "prefix length"),
        ("198.51.100.0/24/24", "prefix length"),
        ("198.51.100/24", "not an IPv4 or IPv6 network address"),
        ("fabrikam.com/24", "not an IPv4 or IPv6 network address"),
        ("198.51.100.10 - 198.51.100.20", "range start"),
        ("198.51.100.10-", "range end"),
        ("-198.51.100.10", "range start"),
        ("198.51.100.10-198.51.100.20-198.51.100.30", "range end"),
        ("198.51.100.*", "not an IP address, a CIDR block"),
        (" 198.51.100.7", "not an IP address, a CIDR block"),
        ("1" * 500, "too long"),
    ],
)
def test_range_refuses_malformed_entries(text: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason) as caught:
        IPRange.parse(text)
    assert text == caught.value.value


def test_range_refuses_non_strings() -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        IPRange.parse(ipaddress.ip_network("198.51.100.0/24"))  # type: ignore[arg-type]


@st.composite
def entry_texts(draw: st.DrawFn) -> str:
    """An entry as an operator writes it: an address, a CIDR block, a range (IPv4 ends
    also IPv4-mapped), or one step from valid: host bits set, a prefix too long, a
    range reversed or across families, a netmask for a prefix length."""
    family = draw(st.sampled_from([4, 6]))
    first = draw(st.ip_addresses(v=family))
    second = draw(st.ip_addresses(v=family))
    other = draw(st.ip_addresses(v=10 - family))
    prefix = draw(st.integers(0, first.max_prefixlen))
    network = ipaddress.ip_network((first, prefix), strict=False)
    low, high = sorted([first, second])
    start = draw(st.sampled_from(_spellings(network.network_address)[:3]))  # not mapped
    mapped = f"::ffff:{start}/{prefix + 96}" if family == 4 else f"{start}/{prefix}"
    shapes = {
        "address": draw(st.sampled_from(_spellings(first))),
        "cidr": f"{start}/{prefix}",
        "mapped cidr": mapped,
        "range": f"{draw(st.sampled_from(_spellings(low)))}-{high}",
        "host bits": f"{first}/{prefix}",  # valid when no host bit is set
        "prefix too long": f"{start}/{first.max_prefixlen + 1}",
        "reversed": f"{high}-{low}",  # valid when both ends are equal
        "two families": f"{first}-{other}",
        "netmask": f"{network.network_address}/{network.netmask}",
    }
    valid = ["address", "cidr", "mapped cidr", "range"] * 4
    return shapes[draw(st.sampled_from(valid + [shape for shape in shapes if shape not in valid]))]


@given(
    mostly(
        entry_texts(),
        _edited(entry_texts()),
        st.text(alphabet="0123456789abcdef:./-%", max_size=50),
    )
)
def test_range_only_ever_raises_invalid_value(text: str) -> None:
    try:
        entry = IPRange.parse(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert entry == IPRange.parse(entry.text)
    assert entry.first.version == entry.last.version
    assert int(entry.first) <= int(entry.last)
    assert entry.first in entry
    assert entry.last in entry


def test_range_membership_at_the_edges() -> None:
    entry = IPRange.parse("198.51.100.10-198.51.100.20")
    assert V4("198.51.100.9") not in entry
    assert V4("198.51.100.10") in entry
    assert V4("198.51.100.20") in entry
    assert V4("198.51.100.21") not in entry
    assert V6("::ffff:198.51.100.15") in entry
    assert V6("2001:db8::1") not in entry


def test_range_membership_accepts_peer_strings_and_refuses_other_objects() -> None:
    entry = IPRange.parse("198.51.100.0/24")
    assert "198.51.100.7" in entry
    assert "::ffff:198.51.100.7" in entry
    assert None not in entry
    assert 3325256711 not in entry
    with pytest.raises(InvalidValue):
        _ = "fe80::1%eth0" in entry


# ======================================================================================
# IPSet: sender_ip_addresses


def test_set_membership_at_range_edges() -> None:
    """Just inside and just outside every kind of entry."""
    ips = IPSet.parse(
        ["198.51.100.0/24", "203.0.113.10-203.0.113.20", "192.0.2.1", "2001:db8::/32"]
    )
    inside = [
        "198.51.100.0",
        "198.51.100.255",
        "203.0.113.10",
        "203.0.113.20",
        "192.0.2.1",
        "2001:db8::",
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:198.51.100.7",
    ]
    outside = [
        "198.51.99.255",
        "198.51.101.0",
        "203.0.113.9",
        "203.0.113.21",
        "192.0.2.0",
        "192.0.2.2",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
        "::ffff:198.51.101.0",
        "::c633:6407",  # IPv4-compatible, not mapped: an IPv6 peer
    ]
    assert [address for address in inside if parse_peer_ip(address) in ips] == inside
    assert [address for address in outside if parse_peer_ip(address) in ips] == []


def test_mapped_peer_matches_ipv4_entries_only() -> None:
    """A mapped peer is the IPv4 address, so IPv6 blocks covering ::ffff:0:0/96 do not apply."""
    assert V6("::ffff:198.51.100.7") in IPSet.parse(["198.51.100.0/24"])
    assert V6("::ffff:198.51.100.7") not in IPSet.parse(["::/0"])
    assert V4("198.51.100.7") in IPSet.parse(["::ffff:198.51.100.0/120"])


def test_zoned_address_object_is_never_a_member() -> None:
    assert V6("fe80::1%eth0") not in IPSet.parse(["fe80::/10"])


def test_overlapping_and_adjacent_entries_merge() -> None:
    ips = IPSet.parse(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.100-10.0.1.5", "10.0.0.7"])
    assert all(V4(f"10.0.0.{n}") in ips for n in range(256))
    assert V4("10.0.1.5") in ips
    assert V4("10.0.1.6") not in ips
    assert V4("9.255.255.255") not in ips


@pytest.mark.parametrize(
    ("entries", "gap"),
    [
        (["198.51.100.1", "198.51.100.3"], "198.51.100.2"),
        (["198.51.100.0/31", "198.51.100.3-198.51.100.9"], "198.51.100.2"),
        (["198.51.100.3", "198.51.100.1"], "198.51.100.2"),  # order does not matter
        (["2001:db8::1", "2001:db8::3"], "2001:db8::2"),
        (["2001:db8::/127", "2001:db8::3-2001:db8::ff"], "2001:db8::2"),
    ],
)
def test_one_address_between_two_entries_is_not_a_member(entries: list[str], gap: str) -> None:
    """Only overlapping or adjacent entries merge: the single address left between two
    entries stays outside the set (merging entries two apart would let it in)."""
    ips = IPSet.parse(entries)
    assert parse_peer_ip(gap) not in ips
    assert gap not in ips
    below, above = ipaddress.ip_address(gap) - 1, ipaddress.ip_address(gap) + 1
    assert below in ips
    assert above in ips


def test_the_address_between_two_allowed_addresses_is_rejected_by_the_connector() -> None:
    """End to end (section 5.4): a connector restricted to 198.51.100.1 and
    198.51.100.3 rejects a session from 198.51.100.2 (also as a mapped IPv6 peer)."""
    policy = Policy.from_mapping(
        {
            "inbound": [
                {
                    "name": "Fabrikam by IP",
                    "sender_domains": ["fabrikam.com"],
                    "require_tls": False,
                    "sender_ip_addresses": ["198.51.100.1", "198.51.100.3"],
                    "restrict_domains_to_ip_addresses": True,
                }
            ]
        },
        trust=None,
    )

    def decide(peer: str) -> tuple[InboundAction, str | None, tuple[str, ...]]:
        session = InboundSession.create(
            peer_ip=peer, mail_from="a@fabrikam.com", tls=None, at=NOW, rcpt_to=["b@contoso.com"]
        )
        decision = evaluate_inbound(policy, session)
        return decision.action, decision.connector, decision.codes

    rejected = (InboundAction.REJECT, "Fabrikam by IP", ("ip-not-allowed",))
    accepted = (InboundAction.ACCEPT, "Fabrikam by IP", ("connector-satisfied",))
    assert rejected == decide("198.51.100.2")
    assert rejected == decide("::ffff:198.51.100.2")
    assert accepted == decide("198.51.100.1")
    assert accepted == decide("198.51.100.3")
    assert accepted == decide("::ffff:198.51.100.3")


def test_set_keeps_entries_as_configured() -> None:
    entries = ["198.51.100.0/24", "198.51.100.7", "2001:db8::1"]
    ips = IPSet.parse(entries)
    assert [entry.text for entry in ips.ranges] == entries
    assert len(ips) == 3
    assert ips


def test_empty_set_contains_nothing_and_is_falsy() -> None:
    ips = IPSet.parse([])
    assert not ips
    assert len(ips) == 0
    assert V4("198.51.100.7") not in ips
    assert V6("::1") not in ips


def test_set_is_an_immutable_hashable_value() -> None:
    first = IPSet.parse(["198.51.100.0/24"])
    second = IPSet([IPRange.parse("198.51.100.0/24")])
    assert first == second
    assert hash(first) == hash(second)
    assert isinstance(second.ranges, tuple)


def test_set_parse_raises_for_the_first_bad_entry() -> None:
    with pytest.raises(InvalidValue, match="host bits set") as caught:
        IPSet.parse(["198.51.100.0/24", "203.0.113.1/24", "bogus"])
    assert caught.value.value == "203.0.113.1/24"


@pytest.mark.parametrize("entries", ["198.51.100.7", b"198.51.100.7", None, 7])
def test_set_parse_wants_a_list(entries: object) -> None:
    """A bare string is not silently split into characters."""
    with pytest.raises(InvalidValue, match="must be a list"):
        IPSet.parse(entries)  # type: ignore[arg-type]


def test_large_set_membership() -> None:
    """Twenty thousand disjoint entries (odd /32s and a v6 block per /24) still answer exactly."""
    entries = [f"10.{n // 256}.{n % 256}.1" for n in range(10_000)]
    entries += [f"2001:db8:{n:x}::/48" for n in range(0, 20_000, 2)]
    ips = IPSet.parse(entries)
    assert len(ips) == 20_000
    assert V4("10.0.0.1") in ips
    assert V4("10.39.15.1") in ips
    assert V4("10.39.15.2") not in ips
    assert V4("10.39.16.1") not in ips
    assert V6("2001:db8:4e1e::5") in ips
    assert V6("2001:db8:4e1f::5") not in ips
    assert V6("2001:db8:4e20::") not in ips


@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**16)), min_size=0, max_size=30),
    st.integers(0, 2**32 - 1),
)
def test_set_membership_agrees_with_the_entries(spans: list[tuple[int, int]], probe: int) -> None:
    """O(log n) membership gives the same answer as checking every entry."""
    entries = [f"{V4(start)}-{V4(min(start + size, 2**32 - 1))}" for start, size in spans]
    ips = IPSet.parse(entries)
    for address in [V4(probe), *[V4(start) for start, _ in spans]]:
        assert (address in ips) == any(address in entry for entry in ips.ranges)
