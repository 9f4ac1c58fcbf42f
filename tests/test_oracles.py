"""Properties against independent oracles (specification sections 3, 4 and 5).

Each oracle is a small reference implementation written here from the
specification's words, sharing no code with tlsconnector: IP lists with the
``ipaddress`` module only, certificate names with ``publicsuffixlist`` and ``idna``
used directly, and inbound evaluation as steps 1-5 of section 5. Strategies draw
mostly valid, near-valid and colliding inputs so that both outcomes of every
comparison are common; a counting check after each property proves it.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Sequence

from hypothesis import event, given
from hypothesis import strategies as st

from tlsconnector import (
    InboundAction,
    InboundSession,
    IPSet,
    Policy,
    evaluate_inbound,
)

from certmint import NOW

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def require_outcomes(seen: collections.Counter[str], **minimum: int) -> None:
    """Each named outcome occurred at least ``minimum`` times: a property whose
    comparisons never reach one side proves nothing about that side."""
    short = {name: seen[name] for name, least in minimum.items() if seen[name] < least}
    assert not short, f"outcomes too rare to test anything: {short} of {dict(seen)}"


# ======================================================================================
# Section 4: IP address lists, against an oracle built with the ipaddress module only

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _oracle_address(text: str) -> Address:
    """A peer or an entry's address; an IPv4-mapped IPv6 address is the IPv4 address."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _oracle_entry(text: str) -> tuple[Address, Address]:
    """One entry as (first, last), inclusive: a CIDR block, a range ``a-b`` or one address."""
    if "/" in text:
        network = ipaddress.ip_network(text, strict=True)  # host bits set: an error
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
            # Mapped addresses are IPv4, so a block of them is the IPv4 block.
            network = ipaddress.IPv4Network(
                (
                    int(network.network_address) - int(_MAPPED.network_address),
                    network.prefixlen - 96,
                )
            )
        return network.network_address, network.broadcast_address
    if "-" in text:
        first_text, last_text = text.split("-")
        first, last = _oracle_address(first_text), _oracle_address(last_text)
        assert first.version == last.version, text  # the strategy draws valid ranges
        assert first <= last, text
        return first, last
    address = _oracle_address(text)
    return address, address


def oracle_contains(entries: Sequence[str], peer: str) -> bool:
    """Section 4: the peer is in the list when some entry of its family holds it."""
    address = _oracle_address(peer)
    for text in entries:
        first, last = _oracle_entry(text)
        if first.version == address.version and first <= address <= last:
            return True
    return False


def _v4_text(value: int, mapped: bool) -> str:
    text = str(ipaddress.IPv4Address(value))
    return f"::ffff:{text}" if mapped else text


def _spell(family: int, value: int, mapped: bool) -> str:
    """An address as configured or presented: IPv4 maybe as ``::ffff:a.b.c.d``."""
    if family == 4:
        return _v4_text(value, mapped)
    return str(ipaddress.IPv6Address(value))


# Bases near the ends of each family's space and the documentation ranges; IPv6 bases
# stay outside ::ffff:0:0/96, whose addresses are IPv4.
_V4_BASES = [0, int(ipaddress.IPv4Address("198.51.100.0")), 2**32 - 64]
_V6_BASES = [
    int(ipaddress.IPv6Address("2001:db8::")),
    int(ipaddress.IPv6Address("fe80::")),
    2**128 - 64,
    0x1_0000_0000_0000,  # ::1:0:0:0, near the mapped block but outside it
]


@st.composite
def ip_lists(draw: st.DrawFn) -> tuple[int, list[str], list[int]]:
    """Entries of one family laid out one after another with small steps between them
    (overlapping, adjacent, and very often exactly one address apart), a few fixed
    wide entries sometimes, and every address from just below to just above them."""
    family = draw(st.sampled_from([4, 6]))
    base = draw(st.sampled_from(_V4_BASES if family == 4 else _V6_BASES))
    top = (2**32 if family == 4 else 2**128) - 1
    entries: list[str] = []
    spans: list[tuple[int, int]] = []
    position = base + draw(st.integers(0, 3))
    for _ in range(draw(st.integers(1, 6))):
        size = draw(st.sampled_from([1, 1, 2, 3, 4, 8]))
        first, last = position, min(position + size - 1, top)
        form = draw(st.sampled_from(["address", "range", "cidr"]))
        mapped = family == 4 and draw(st.integers(0, 4)) == 0
        if form == "cidr":
            # The largest aligned block starting at ``first`` and at most ``size`` long.
            bits = 0
            while bits < 3 and first % (2 ** (bits + 1)) == 0 and 2 ** (bits + 1) <= size:
                bits += 1
            last = first + 2**bits - 1
            prefix = (32 if family == 4 else 128) - bits
            if mapped:
                prefix += 96
            entries.append(f"{_spell(family, first, mapped)}/{prefix}")
        elif form == "range" or first != last:
            entries.append(f"{_spell(family, first, mapped)}-{_spell(family, last, False)}")
        else:
            entries.append(_spell(family, first, mapped))
        spans.append((first, last))
        # Next entry: overlapping (-1, 0), adjacent (+1), one address apart (+2, most
        # often: the gap a too-eager merge would swallow) or further (+3).
        step = draw(st.sampled_from([-1, 0, 1, 2, 2, 2, 3]))
        position = max(base, min(last + step, top))
    entries = draw(st.permutations(entries))
    entries += draw(st.lists(st.sampled_from(["::/0", "::ffff:0:0/96", "10.0.0.0/8"]), max_size=1))
    low = max(0, min(start for start, _ in spans) - 2)
    high = min(top, max(end for _, end in spans) + 2)
    return family, entries, list(range(low, high + 1))


def test_ip_set_membership_agrees_with_an_ipaddress_oracle() -> None:
    """Section 4: for every address around the configured entries (CIDR blocks, ranges,
    single addresses; IPv4 peers also as ``::ffff:a.b.c.d``), IPSet membership, and the
    connector's IP check, are what an oracle built on ``ipaddress`` alone says."""
    seen: collections.Counter[str] = collections.Counter()

    @given(ip_lists())
    def check(drawn: tuple[int, list[str], list[int]]) -> None:
        family, entries, values = drawn
        ips = IPSet.parse(entries)
        member = {}
        for value in values:
            spellings = [_spell(family, value, False)]
            if family == 4:
                spellings.append(_v4_text(value, True))  # the same peer, IPv4-mapped
            for peer in spellings:
                expected = oracle_contains(entries, peer)
                assert expected == (peer in ips), (entries, peer)
                seen["member" if expected else "not a member"] += 1
            member[value] = expected
        # A gap of exactly one address (both neighbours in, the address out) also
        # decides through a connector's IP check (section 5.4).
        policy = _ip_policy(entries)
        for value in values[1:-1]:
            if member[value - 1] and member[value + 1] and not member[value]:
                seen["gap of one"] += 1
                event("a gap of one address between two entries")
                for peer in {_spell(family, value, False), _spell(family, value, True)}:
                    decision = evaluate_inbound(policy, _ip_session(peer))
                    assert InboundAction.REJECT == decision.action, (entries, peer)
                    assert ("ip-not-allowed",) == decision.codes

    check()
    require_outcomes(seen, **{"member": 20, "not a member": 20, "gap of one": 5})


def _ip_policy(entries: list[str]) -> Policy:
    connector = {
        "name": "by IP",
        "sender_domains": ["fabrikam.com"],
        "require_tls": False,
        "sender_ip_addresses": entries,
        "restrict_domains_to_ip_addresses": True,
    }
    return Policy.from_mapping({"inbound": [connector]}, trust=None)


def _ip_session(peer: str) -> InboundSession:
    return InboundSession.create(peer_ip=peer, mail_from="a@fabrikam.com", tls=None, at=NOW)
