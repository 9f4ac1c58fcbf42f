"""Strategies for IP addresses and ``sender_ip_addresses`` entries (section 4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._addresses import IPRange
from tlsconnector.testing._strategies._draw import _pick

# --------------------------------------------------------------------------------------
# IP addresses (section 4)

_V4 = st.ip_addresses(v=4)
_V6 = st.ip_addresses(v=6)


def ip_addresses(*, v4: bool = True, v6: bool = True, mapped: bool = True) -> SearchStrategy[str]:
    """Peer addresses as text: IPv4, IPv6, and IPv4-mapped IPv6 (``::ffff:a.b.c.d``)."""
    choices: list[SearchStrategy[str]] = []
    if v4:
        choices.append(_V4.map(str))
    if v6:
        choices.append(_V6.map(str))
    if mapped:
        choices.append(_V4.map(lambda a: f"::ffff:{a}"))
    if not choices:
        raise ValueError("ip_addresses: allow at least one of v4, v6, mapped")
    return st.one_of(choices)


@st.composite
def _ip_entry(draw: st.DrawFn, version: Literal[4, 6]) -> str:
    address = draw(_V4 if version == 4 else _V6)
    kind = _pick(draw, ("single", "cidr", "range"))
    if kind == "single":
        return str(address)
    if kind == "cidr":
        bits = address.max_prefixlen
        prefix = draw(st.integers(bits - 16, bits) | st.integers(0, bits))
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    other = draw(_V4 if version == 4 else _V6)
    first, last = sorted([address, other], key=int)
    if _is_mapped(first) != _is_mapped(last):
        # An IPv4-mapped end is an IPv4 address (section 4): the two ends of such a
        # range are of different families, which is a configuration error.
        return str(first)
    return f"{first}-{last}"


def _is_mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None


def ip_entries(*, v4: bool = True, v6: bool = True) -> SearchStrategy[str]:
    """``sender_ip_addresses`` entries: a single address, a CIDR block without host
    bits, or an inclusive range ``first-last`` of one family (section 4)."""
    choices = [_ip_entry(4)] if v4 else []
    if v6:
        choices.append(_ip_entry(6))
    if not choices:
        raise ValueError("ip_entries: allow at least one of v4, v6")
    return st.one_of(choices)


def _around(entry: IPRange) -> list[str]:
    """The ends of a range, its middle, and the addresses just outside it."""
    first, last = int(entry.first), int(entry.last)
    top = (1 << 32) - 1 if entry.first.version == 4 else (1 << 128) - 1
    points = {first, last, (first + last) // 2}
    if first > 0:
        points.add(first - 1)
    if last < top:
        points.add(last + 1)
    version = entry.first.version
    addresses = [
        ipaddress.IPv4Address(p) if version == 4 else ipaddress.IPv6Address(p)
        for p in sorted(points)
    ]
    texts = [str(address) for address in addresses]
    if version == 4:
        texts += [f"::ffff:{address}" for address in addresses]
    return texts


def addresses_near(entries: Iterable[str | IPRange]) -> SearchStrategy[str]:
    """Peer addresses aimed at ``sender_ip_addresses`` entries: each entry's first and
    last address, its middle, the addresses just below and just above it, and the
    IPv4-mapped IPv6 spelling of each IPv4 one (section 4). Falls back to
    :func:`ip_addresses` when there are no entries."""
    points: list[str] = []
    for entry in entries:
        parsed = entry if isinstance(entry, IPRange) else IPRange.parse(entry)
        points.extend(_around(parsed))
    if not points:
        return ip_addresses()
    return st.sampled_from(list(dict.fromkeys(points)))
