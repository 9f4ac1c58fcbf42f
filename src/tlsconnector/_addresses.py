"""Peer IP addresses and configured IP lists (spec section 4).

Pure: strings in, :mod:`ipaddress` values and membership answers out. An IPv4-mapped
IPv6 address (``::ffff:198.51.100.7``) is the IPv4 address everywhere (section 4), so
the configured lists and the peer side always compare within one family.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence

import attrs

from ._errors import InvalidValue

__all__ = ["IPAddress", "IPRange", "IPSet", "parse_peer_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The longest textual IPv6 address is 45 characters (with an embedded IPv4 part); the
# longest entry is a range of two of them. Anything longer is refused before parsing.
_MAX_ADDRESS_TEXT = 45
_MAX_ENTRY_TEXT = 2 * _MAX_ADDRESS_TEXT + 1
# Section 4: a CIDR prefix length is a plain decimal number (no netmask, no leading zero).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


# Speed: the patterns are compiled on first use, so that a command whose policy holds no
# address (``tlsconnector check`` on most files) does not compile them at start-up.
@functools.cache
def _prefix() -> re.Pattern[str]:
    return re.compile(r"0|[1-9][0-9]{0,2}")


@functools.cache
def _dotted_quad() -> re.Pattern[str]:
    return re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


@functools.cache
def _ipv4_entry() -> re.Pattern[str]:
    """The fast path of IPRange.parse(): an IPv4 entry written the canonical way
    (dotted quads as :func:`_dotted_quad`, a prefix length of 0-32 as :func:`_prefix`
    allows): an address, a CIDR block or a range."""
    return re.compile(
        rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
        rf"(?:/(3[0-2]|[12]?[0-9])|-{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})?"
    )


def _unmap(address: IPAddress) -> IPAddress:
    """Section 4: an IPv4-mapped IPv6 address is the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _ip_address(text: str) -> IPAddress:
    """``ipaddress.ip_address(text)`` for a string, in one parse instead of two.

    Speed: ip_address() tries IPv4, then IPv6. Text without ':' is never IPv6 (an
    IPv6 address has at least two colons) and text with one is never IPv4 (octets are
    digits), so the family is known from ':' and the answer is the same.
    """
    if ":" in text:
        return ipaddress.IPv6Address(text)
    # Speed: a plain dotted quad (octets 0-255, no leading zeros: exactly what
    # IPv4Address accepts) is built from its integer; anything else is left to
    # IPv4Address, which accepts or refuses it with its own message.
    match = _dotted_quad().fullmatch(text)
    if match is not None:
        a, b, c, d = match.groups()
        return ipaddress.IPv4Address((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d))
    return ipaddress.IPv4Address(text)


def _parse_address(text: str, *, what: str) -> IPAddress:
    if "%" in text:
        # Section 4: IPv6 zone identifiers are invalid (they only mean something on
        # one host, and ipaddress would otherwise keep them in comparisons).
        raise InvalidValue(text, f"{what}: IPv6 zone identifiers ('%...') are not allowed")
    if len(text) > _MAX_ADDRESS_TEXT:
        raise InvalidValue(text, f"{what}: too long to be an IP address")
    try:
        address = _ip_address(text)
    except ValueError:
        raise InvalidValue(text, f"{what}: not an IPv4 or IPv6 address") from None
    return _unmap(address)


def parse_peer_ip(text: str) -> IPAddress:
    """Parse the peer address of a session (a fact): IPv4 or IPv6, nothing stripped.

    IPv4-mapped IPv6 becomes IPv4; zone identifiers and anything else invalid raise
    :class:`InvalidValue`.
    """
    if not isinstance(text, str):
        raise InvalidValue(text, "a peer IP address must be a string")
    return _parse_address(text, what="peer IP address")


def _as_address(address: object) -> IPAddress | None:
    """An address argument of ``in``: an address object, or a string parsed as a fact."""
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            return None  # section 4: a zoned address is not a valid fact, never a member
        return _unmap(address)
    if isinstance(address, str):
        return parse_peer_ip(address)
    return None


def _family_name(address: IPAddress) -> str:
    return f"IPv{address.version}"


@attrs.frozen
class IPRange:
    """One configured entry of ``sender_ip_addresses``: an inclusive range of addresses.

    ``text`` is the canonical text of the entry as configured (``"198.51.100.0/24"``,
    ``"198.51.100.10-198.51.100.20"``, ``"2001:db8::1"``). Build it with :meth:`parse`.
    """

    first: IPAddress
    last: IPAddress
    text: str

    @classmethod
    def parse(cls, text: str) -> IPRange:
        """Parse a single address, a CIDR block or an inclusive range ``a-b`` (section 4)."""
        # A subclass of str takes the general path (the fast one keeps ``text`` itself).
        if type(text) is str:
            found = cls._parse_ipv4_fast(text)
            if found is not None:
                return found
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> IPRange:
        """:meth:`parse` without its fast path (the reference it must agree with)."""
        if not isinstance(text, str):
            raise InvalidValue(text, "an IP address entry must be a string")
        if not text:
            raise InvalidValue(text, "empty IP address entry")
        if "%" in text:
            raise InvalidValue(text, "IPv6 zone identifiers ('%...') are not allowed")
        if len(text) > _MAX_ENTRY_TEXT:
            raise InvalidValue(text, "too long to be an IP address, CIDR block or range")
        if "/" in text:
            return cls._parse_cidr(text)
        if "-" in text:
            return cls._parse_range(text)
        try:
            address = _parse_address(text, what="entry")
        except InvalidValue:
            raise InvalidValue(
                text, "not an IP address, a CIDR block (a.b.c.d/n) or a range (a-b)"
            ) from None
        return cls(address, address, str(address))

    @classmethod
    def _parse_ipv4_fast(cls, text: str) -> IPRange | None:
        """Speed: a valid IPv4 entry written the canonical way (what the general path
        would print is then ``text`` itself), computed on integers; None for any other
        entry, left to the general path (which also words the errors)."""
        match = _ipv4_entry().fullmatch(text)
        if match is None:
            return None
        a, b, c, d, prefix, e, f, g, h = match.groups()
        first = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
        if prefix is not None:
            host_mask = (1 << (32 - int(prefix))) - 1
            if first & host_mask:
                return None  # host bits set: an error
            last = first | host_mask
        elif e is not None:
            last = (int(e) << 24) | (int(f) << 16) | (int(g) << 8) | int(h)
            if first > last:
                return None  # start above end: an error
        else:
            address = ipaddress.IPv4Address(first)
            return cls(address, address, text)
        return cls(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last), text)

    @classmethod
    def _parse_cidr(cls, text: str) -> IPRange:
        address_text, _, prefix_text = text.partition("/")
        try:
            address = _ip_address(address_text)
        except ValueError:
            raise InvalidValue(text, "CIDR block: not an IPv4 or IPv6 network address") from None
        if not _prefix().fullmatch(prefix_text) or int(prefix_text) > address.max_prefixlen:
            raise InvalidValue(
                text,
                f"CIDR block: the prefix length must be a number from 0 to {address.max_prefixlen}",
            )
        # Speed: the common case, a block without host bits outside ::ffff:0:0/96, is
        # computed on integers (what ip_network() does, without building networks);
        # anything else takes the general path below, which also words the errors.
        prefix = int(prefix_text)
        value = int(address)
        host_mask = (1 << (address.max_prefixlen - prefix)) - 1
        mapped_v4 = address.version == 6 and prefix >= 96 and value >> 32 == 0xFFFF
        if value & host_mask == 0 and not mapped_v4:
            last = type(address)(value | host_mask)
            return cls(address, last, f"{address}/{prefix}")
        network: ipaddress.IPv4Network | ipaddress.IPv6Network
        network = ipaddress.ip_network((address, int(prefix_text)), strict=False)
        host_bits_set = network.network_address != address
        mapped = ipaddress.IPv6Network("::ffff:0:0/96")
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped):
            # Section 4: IPv4-mapped addresses are IPv4, so a block inside ::ffff:0:0/96
            # is the corresponding IPv4 block.
            network = ipaddress.IPv4Network(
                (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
            )
        if host_bits_set:
            # Section 4: host bits set is a configuration error, and we say what was meant.
            raise InvalidValue(text, f"host bits set; did you mean {network}?")
        return cls(network.network_address, network.broadcast_address, str(network))

    @classmethod
    def _parse_range(cls, text: str) -> IPRange:
        first_text, _, last_text = text.partition("-")
        try:
            first = _parse_address(first_text, what="range start")
            last = _parse_address(last_text, what="range end")
        except InvalidValue as err:
            raise InvalidValue(text, err.reason) from None
        if first.version != last.version:
            # Section 4: both ends of a range are of the same family.
            raise InvalidValue(
                text,
                f"range ends are of different families ({_family_name(first)} and "
                f"{_family_name(last)})",
            )
        if int(first) > int(last):
            # Section 4: the first address must not be above the last.
            raise InvalidValue(text, f"range start {first} is above range end {last}")
        return cls(first, last, f"{first}-{last}")

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (an address, or a string parsed as a peer IP) is in range."""
        found = _as_address(address)
        if found is None or found.version != self.first.version:
            return False
        return int(self.first) <= int(found) <= int(self.last)

    def __str__(self) -> str:
        return self.text


# Merged, sorted, disjoint intervals of one family: (starts, ends), inclusive.
_Intervals = tuple[tuple[int, ...], tuple[int, ...]]


def _merge(spans: list[tuple[int, int]]) -> _Intervals:
    spans.sort()
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1] + 1:  # overlapping or adjacent: extend
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return tuple(starts), tuple(ends)


def _to_ranges(ranges: Iterable[IPRange]) -> tuple[IPRange, ...]:
    # Accept any iterable of entries, keep an immutable (hashable) tuple.
    return tuple(ranges)


@attrs.frozen
class IPSet:
    """The configured ``sender_ip_addresses`` of one connector (section 4).

    Membership is O(log n): the entries are merged into sorted disjoint intervals per
    family once, at construction.
    """

    ranges: tuple[IPRange, ...] = attrs.field(converter=_to_ranges)
    _index: dict[int, _Intervals] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for entry in self.ranges:
            spans[entry.first.version].append((int(entry.first), int(entry.last)))
        index = {4: _merge(spans[4]), 6: _merge(spans[6])}
        object.__setattr__(self, "_index", index)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> IPSet:
        """Parse every entry; the first bad one raises :class:`InvalidValue`."""
        if isinstance(entries, str | bytes) or not isinstance(entries, Sequence):
            raise InvalidValue(entries, "IP address entries must be a list of strings")
        return cls(tuple(IPRange.parse(entry) for entry in entries))

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (an address, or a string parsed as a peer IP) is in the set."""
        found = _as_address(address)
        if found is None:
            return False
        starts, ends = self._index[found.version]
        value = int(found)
        position = bisect.bisect_right(starts, value) - 1
        return position >= 0 and value <= ends[position]

    def __len__(self) -> int:
        return len(self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)
