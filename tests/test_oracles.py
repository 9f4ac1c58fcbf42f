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
from collections.abc import Callable, Sequence
from typing import Any

import idna
from hypothesis import event, example, given
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from tlsconnector import (
    InboundAction,
    InboundSession,
    IPSet,
    MtaVerifiedCertificate,
    Policy,
    TLSFacts,
    evaluate_inbound,
    match_certificate_name,
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


# ======================================================================================
# Section 3: certificate names, against a reference matcher written from rules 1-7

_PSL = PublicSuffixList(only_icann=False)  # ICANN and private sections (*.s3.amazonaws.com)
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HEX = frozenset("0123456789abcdefABCDEF")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ldh_label(label: str) -> bool:
    """Rule 3: letters, digits, hyphens, 1-63 octets, no hyphen at either end."""
    return (
        0 < len(label) <= 63
        and set(label) <= _LDH
        and not label.startswith("-")
        and not label.endswith("-")
    )


def _ip_like(labels: list[str]) -> bool:
    """Rule 6: an IPv4 or IPv6 address, or a numeric last label (digits, or the hex
    spelling ``0x7f`` that address parsers read as a number: docs/certificate-names.md)."""
    try:
        ipaddress.ip_address(".".join(labels))
    except ValueError:
        pass
    else:
        return True
    last = labels[-1]
    digits = last[2:] if last[:2] in ("0x", "0X") else None
    return (last.isascii() and last.isdigit()) or (digits is not None and set(digits) <= _HEX)


def reference_setting(text: str) -> str | None:
    """The canonical form of a certificate-name setting, or None when it is invalid:
    section 2's normalisation (one trailing dot removed, ASCII lower case, U-labels to
    A-labels with IDNA 2008, an existing A-label must decode), then section 3's rules
    (LDH labels, nothing IP-like, a wildcard only as ``*.`` followed by two or more
    labels and not directly over a public suffix)."""
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    body = body[:-1] if body.endswith(".") else body
    if not body or "*" in body or len(body) > 253:
        return None
    labels = []
    for raw in body.split("."):
        label = raw.translate(_ASCII_LOWER)
        try:
            if not label.isascii():
                label = idna.alabel(label).decode("ascii")
            elif label.startswith("xn--"):
                idna.ulabel(label)
        except (idna.IDNAError, UnicodeError):
            return None
        if not _ldh_label(label):
            return None
        labels.append(label)
    name = ".".join(labels)
    if len(name) > 253 or _ip_like(labels):
        return None
    if wildcard:
        if len(labels) < 2 or _PSL.is_public(name):
            return None
        return "*." + name
    return name


def reference_usable_cn(cn: str) -> bool:
    """Rules 1-4 and 6 for a presented CN."""
    if not cn or len(cn) > 64:  # rule 2
        return False
    if any(not "\x21" <= char <= "\x7e" for char in cn):  # rule 1
        return False
    labels = cn.split(".")
    if "" in labels:  # rule 2
        return False
    wildcard = labels[0] == "*"
    literal = labels[1:] if wildcard else labels
    if wildcard and len(literal) < 2:  # rule 4
        return False
    if not all(_ldh_label(label) for label in literal) or _ip_like(literal):  # rules 3, 4, 6
        return False
    return not (wildcard and _PSL.is_public(".".join(literal).translate(_ASCII_LOWER)))


def _covers(wildcard: str, name: str) -> bool:
    """``*.suffix`` covers a name of exactly one more label, never an ``xn--`` one (rule 5)."""
    label, _, rest = name.partition(".")
    return rest == wildcard[2:] and label != "" and not label.startswith("xn--")


def reference_match(expected: str, cn: str) -> bool:
    """Section 3's table, comparing ASCII case-insensitively (rule 7)."""
    setting = reference_setting(expected)
    if setting is None or not reference_usable_cn(cn):
        return False
    presented = cn.translate(_ASCII_LOWER)
    if presented == setting:
        return True  # equal names, or equal wildcard patterns
    if setting.startswith("*.") and not presented.startswith("*."):
        return _covers(setting, presented)
    if presented.startswith("*.") and not setting.startswith("*."):
        return _covers(presented, setting)
    return False


_SUFFIXES = ["partner.com", "eu.partner.com", "partner.co.uk", "xn--bcher-kva.example"]
_ODD_SUFFIXES = [
    "bücher.example",  # a U-label: the setting takes its A-label, a CN is unusable
    "s3.amazonaws.com",  # a public suffix (private section)
    "co.uk",
    "com",
    "partner.123",
    "partner.0x1f",
]
_LABELS = ["mail", "MX", "xn--bcher-kva"]
_ODD_LABELS = ["xn--zz", "-a", "a-", "a_b", "f*", "**", "1", "b" * 63, "c" * 64, "mäil"]
# Hypothesis starts from the first element of a sampled list: valid labels first, and
# more often than odd ones.
_LABEL = st.sampled_from(_LABELS * 4 + _ODD_LABELS)
_ONE_IN = {n: st.sampled_from([False] * (n - 1) + [True]) for n in (2, 6, 8)}
# How the setting and the CN are shaped over one suffix: the rows of section 3's
# table (equal names, a wildcard over one label, equal wildcards) and the near misses
# (the apex, two labels, a wildcard against a wildcard).
_SHAPES = [
    ("one", "one"),
    ("wildcard", "one"),
    ("one", "wildcard"),
    ("wildcard", "wildcard"),
    ("wildcard", "apex"),
    ("apex", "wildcard"),
    ("wildcard", "two"),
    ("two", "wildcard"),
    ("wildcard", "*.two"),
    ("apex", "apex"),
]


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Rule 7: any ASCII case (Unicode letters are left alone: "BÜCHER" is not a U-label).
_CASES: dict[str, Callable[[str], str]] = {
    "as drawn": lambda name: name,
    "upper": lambda name: name.translate(_ASCII_UPPER),
    "alternating": lambda name: "".join(
        char.translate(_ASCII_UPPER) if index % 2 else char for index, char in enumerate(name)
    ),
}


def _name(shape: str, suffix: str, labels: tuple[str, str], case: str) -> str:
    """A name over ``suffix``: the apex, one or two labels more, or a wildcard."""
    parts = {
        "apex": [],
        "one": [labels[0]],
        "two": list(labels),
        "wildcard": ["*"],
        "*.two": ["*", labels[1]],
    }[shape]
    return _CASES[case](".".join([*parts, suffix]))


_CORRUPTIONS: list[Callable[[str], str]] = [
    lambda name: name + ".",
    lambda name: "." + name,
    lambda name: name + " ",
    lambda name: " " + name,
    lambda name: name.replace(".", "\x00.", 1),
    lambda name: name.replace(".", "..", 1),
    lambda name: name.replace(".", "\u0430.", 1),  # a Cyrillic letter
    lambda name: "x" * max(0, 65 - len(name)) + name,  # over 64 characters
    lambda name: "*" + name,
    lambda name: name.replace("*", "*.*", 1),
]


@st.composite
def name_pairs(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Settings and CNs over every suffix, in every shape of section 3's table, so that
    both outcomes occur in every example: the labels and the case are drawn; now and
    then the CN is over another suffix, or one side is corrupted in one of the ways
    rules 1-6 refuse."""
    labels = {side: (draw(_LABEL), draw(_LABEL)) for side in ("expected", "cn")}
    if draw(_ONE_IN[2]):
        labels["cn"] = labels["expected"]  # the same names on both sides
    cases = {side: draw(st.sampled_from(sorted(_CASES))) for side in ("expected", "cn")}
    corrupt: dict[str, Callable[[str], str]] = {"expected": str, "cn": str}
    if draw(_ONE_IN[6]):
        corrupt[draw(st.sampled_from(["expected", "cn"]))] = draw(st.sampled_from(_CORRUPTIONS))
    suffixes = _SUFFIXES + _ODD_SUFFIXES
    other = draw(st.sampled_from(suffixes)) if draw(_ONE_IN[8]) else None
    return [
        (
            corrupt["expected"](_name(expected, suffix, labels["expected"], cases["expected"])),
            corrupt["cn"](_name(cn, other or suffix, labels["cn"], cases["cn"])),
        )
        for suffix in suffixes
        for expected, cn in _SHAPES
    ]


def test_certificate_name_matching_agrees_with_a_reference_matcher() -> None:
    """Section 3: match_certificate_name(expected, cn) is what a reference matcher
    written from the table and rules 1-7 says, with the Public Suffix List package
    used directly; matches and mismatches both occur often."""
    seen: collections.Counter[str] = collections.Counter()

    @given(name_pairs())
    def check(pairs: list[tuple[str, str]]) -> None:
        for expected, cn in pairs:
            reference = reference_match(expected, cn)
            assert reference == match_certificate_name(expected, cn), (expected, cn)
            outcome = "match" if reference else "no match"
            if not reference:
                if reference_setting(expected) is None:
                    outcome = "invalid setting"
                elif not reference_usable_cn(cn):
                    outcome = "unusable CN"
            seen[outcome] += 1
            event(outcome)

    check()
    require_outcomes(seen, match=250, **{"no match": 250, "invalid setting": 50, "unusable CN": 50})


# ======================================================================================
# Section 5: inbound candidate selection and decision, against a reference evaluator

_CONNECTOR_NAMES = ["alpha", "Beta", "a", "B", "beta2", "Zed", "straße", "_x"]
_SENDER_PATTERNS = [
    "fabrikam.com",
    "*.fabrikam.com",
    "eu.fabrikam.com",
    "*.eu.fabrikam.com",
    "*",
    "contoso.com",
]
_CERTIFICATE_NAMES = ["*.fabrikam.com", "server1.fabrikam.com", "*.eu.fabrikam.com"]
_IP_ENTRIES = ["198.51.100.0/25", "198.51.100.200-198.51.100.210", "2001:db8::/32"]
_SENDERS = [
    "a@fabrikam.com",
    "b@eu.fabrikam.com",
    "c@x.eu.fabrikam.com",
    "d@EU.Fabrikam.COM",
    "e@contoso.com",
    "f@example.org",
    "",
    "<>",
]
_PEERS = ["198.51.100.7", "::ffff:198.51.100.7", "198.51.100.205", "198.51.100.150", "2001:db8::1"]
_CNS = [
    "server1.fabrikam.com",
    "SERVER1.Fabrikam.COM",
    "mx.eu.fabrikam.com",
    "fabrikam.com",
    "a.b.fabrikam.com",
    "*.fabrikam.com",
    "mail.contoso.com",
]
_ABSENT = object()


def _optional(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A key's value, or _ABSENT to leave the key out (its default then applies)."""
    return st.one_of(st.just(_ABSENT), value)


@st.composite
def inbound_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Two to four valid ``[[inbound]]`` tables with distinct names (by casefold()),
    often sharing a sender pattern, so that several candidates meet at one level."""
    names = draw(st.lists(st.sampled_from(_CONNECTOR_NAMES), min_size=2, max_size=4, unique=True))
    shared = draw(st.sampled_from(_SENDER_PATTERNS))
    tables = []
    for name in names:
        patterns = draw(st.lists(st.sampled_from(_SENDER_PATTERNS), max_size=2))
        if draw(st.booleans()) or not patterns:
            patterns.append(shared)
        raw: dict[str, Any] = {
            "name": name,
            "sender_domains": patterns,
            "enabled": draw(_optional(st.sampled_from([True, True, True, False]))),
            "type": draw(_optional(st.sampled_from(["partner"] * 5 + ["on_premises"]))),
            "require_tls": draw(_optional(st.booleans())),
            "tls_sender_certificate_name": draw(_optional(st.sampled_from(_CERTIFICATE_NAMES))),
            "sender_ip_addresses": draw(
                _optional(st.lists(st.sampled_from(_IP_ENTRIES), min_size=1, max_size=2))
            ),
        }
        if raw["tls_sender_certificate_name"] is not _ABSENT:
            raw["restrict_domains_to_certificate"] = draw(_optional(st.booleans()))
        if raw["sender_ip_addresses"] is not _ABSENT:
            raw["restrict_domains_to_ip_addresses"] = draw(_optional(st.booleans()))
        tables.append({key: value for key, value in raw.items() if value is not _ABSENT})
    return tables


_TLS = st.one_of(
    st.none(),  # plaintext
    st.just(TLSFacts(None)),  # TLS without a client certificate
    st.builds(
        lambda cn, verified: TLSFacts(MtaVerifiedCertificate((cn,), verified=verified)),
        st.sampled_from(_CNS),
        st.sampled_from([True, True, True, False]),
    ),
)


def _reference_level(pattern: str, domain: str | None) -> tuple[int, int] | None:
    """Section 2: how specifically ``pattern`` matches: exact > ``*.suffix`` by suffix
    length > ``*``; None when it does not match. The null sender matches only ``*``."""
    if pattern == "*":
        return (0, 0)
    if domain is None:
        return None
    if pattern.startswith("*."):
        suffix = pattern[2:]
        if domain == suffix or domain.endswith("." + suffix):
            return (1, suffix.count(".") + 1)
        return None
    return (2, 0) if domain == pattern else None


def reference_inbound(
    tables: list[dict[str, Any]], peer: str, mail_from: str, tls: TLSFacts | None
) -> tuple[str, str | None, collections.Counter[tuple[str | None, str]]]:
    """Steps 1-5 of section 5: (action, connector, every (connector, reason code))."""
    # Step 1: the sender domain; the null sender has none.
    domain = None if mail_from in ("", "<>") else mail_from.rpartition("@")[2].lower()
    # Step 2: enabled partner connectors at the most specific level.
    levels: dict[str, tuple[int, int]] = {}
    for table in tables:
        if not table.get("enabled", True) or table.get("type", "partner") != "partner":
            continue
        matching = [_reference_level(p, domain) for p in table["sender_domains"]]
        found = [level for level in matching if level is not None]
        if found:
            levels[table["name"]] = max(found)
    if not levels:
        return "accept", None, collections.Counter({(None, "no-connector"): 1})
    top = max(levels.values())
    candidates = [t for t in tables if levels.get(t["name"]) == top]
    # Step 3: restrict beats allow; require_tls alone does not restrict.
    restricting = [
        t
        for t in candidates
        if "tls_sender_certificate_name" in t or t.get("restrict_domains_to_ip_addresses", False)
    ]
    candidates = restricting or candidates
    # Step 5: connectors by name (casefold(), then the exact text: docs/inbound.md).
    candidates.sort(key=lambda t: (t["name"].casefold(), t["name"]))
    failures: collections.Counter[tuple[str | None, str]] = collections.Counter()
    for table in candidates:
        name = table["name"]
        # Step 4: every configured check.
        failed = []
        expected = table.get("tls_sender_certificate_name")
        if (table.get("require_tls", True) or expected is not None) and tls is None:
            failed.append("tls-required")
        if expected is not None:
            certificate = tls.certificate if tls is not None else None
            if certificate is None:
                failed.append("certificate-missing")
            else:
                assert isinstance(certificate, MtaVerifiedCertificate)
                if not certificate.verified:
                    failed.append("certificate-not-trusted")
                if not any(reference_match(expected, cn) for cn in certificate.cns):
                    failed.append("certificate-name-mismatch")
        if table.get("restrict_domains_to_ip_addresses", False) and not oracle_contains(
            table["sender_ip_addresses"], peer
        ):
            failed.append("ip-not-allowed")
        if not failed:
            return "accept", name, collections.Counter({(name, "connector-satisfied"): 1})
        failures.update((name, code) for code in failed)
    return "reject", candidates[0]["name"], failures


def _sessions(mail_from: str, cn: str, peer: str) -> list[tuple[str, str, TLSFacts | None]]:
    """Sessions from one sender: plaintext, TLS without a certificate, a verified and
    an unverified MTA CN."""
    return [
        (peer, mail_from, tls)
        for tls in [
            None,
            TLSFacts(None),
            TLSFacts(MtaVerifiedCertificate((cn,), verified=True)),
            TLSFacts(MtaVerifiedCertificate((cn,), verified=False)),
        ]
    ]


@st.composite
def inbound_cases(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], list[tuple[str, str, TLSFacts | None]]]:
    """A policy (its tables in any order) and sessions of every kind from every sender."""
    tables = draw(st.permutations(draw(inbound_tables())))
    sessions = []
    for mail_from in _SENDERS:
        cn = draw(st.sampled_from(_CNS))
        sessions += _sessions(mail_from, cn, draw(st.sampled_from(_PEERS)))
    return tables, sessions


# Always tried as well: a TLS-only "DR site" beside two certificate connectors (the
# second by name satisfied), and two allow-only connectors of which only the second
# lets plaintext in.
_EXAMPLES = [
    (
        [
            {"name": "DR site", "sender_domains": ["fabrikam.com"]},
            {
                "name": "alpha",
                "sender_domains": ["fabrikam.com"],
                "tls_sender_certificate_name": "*.eu.fabrikam.com",
            },
            {
                "name": "Beta",
                "sender_domains": ["*.fabrikam.com", "fabrikam.com"],
                "tls_sender_certificate_name": "*.fabrikam.com",
            },
            {"name": "eu", "sender_domains": ["*.eu.fabrikam.com"], "require_tls": False},
        ],
        [
            session
            for mail_from in _SENDERS
            for session in _sessions(mail_from, "server1.fabrikam.com", "198.51.100.7")
        ],
    ),
    (
        [
            {"name": "b", "sender_domains": ["*"], "require_tls": False},
            {"name": "A", "sender_domains": ["*"]},
        ],
        _sessions("a@fabrikam.com", "server1.fabrikam.com", "2001:db8::1"),
    ),
]


def test_inbound_decisions_agree_with_a_reference_evaluator() -> None:
    """Section 5, steps 1-5: evaluate_inbound's action, deciding connector and reason
    codes are what a reference evaluator says (most specific level, disabled and
    on-premises connectors dropped first, restrict beats allow, one satisfied candidate
    is enough, the first by name decides), for plaintext sessions, TLS without a
    certificate and MTA-verified CNs."""
    seen: collections.Counter[str] = collections.Counter()

    @given(inbound_cases())
    @example(_EXAMPLES[0])
    @example(_EXAMPLES[1])
    def check(case: tuple[list[dict[str, Any]], list[tuple[str, str, TLSFacts | None]]]) -> None:
        tables, sessions = case
        policy = Policy.from_mapping({"inbound": tables}, trust=None)
        for peer, mail_from, tls in sessions:
            session = InboundSession.create(
                peer_ip=peer, mail_from=mail_from, tls=tls, at=NOW, rcpt_to=["b@contoso.com"]
            )
            decision = evaluate_inbound(policy, session)
            action, connector, reasons = reference_inbound(tables, peer, mail_from, tls)
            got = collections.Counter((r.connector, str(r.code)) for r in decision.reasons)
            assert (action, connector, reasons) == (
                str(decision.action),
                decision.connector,
                got,
            ), (tables, peer, mail_from, tls)
            seen["no connector" if connector is None else action] += 1
            # The outcomes that steps 3 and 5 decide, tallied from the policy's own
            # step-2 candidates.
            best = policy.inbound_candidates(session.sender_domain)
            if any(c.restricts for c in best) and not all(c.restricts for c in best):
                seen["restrict beat allow"] += 1
                if any(c.require_tls and not c.restricts for c in best):
                    seen["a TLS-only connector dropped"] += 1
            if len({c.restricts for c in best}) == 1 and len(best) > 1:
                seen[f"{len(best)} candidates, {action}"] += 1
            deciding = [c for c in best if c.restricts] or list(best)
            if action == "accept" and deciding and connector != deciding[0].name:
                seen["a later candidate satisfied"] += 1
        event(f"{len(tables)} connectors")

    check()
    require_outcomes(
        seen,
        accept=5,
        reject=5,
        **{
            "no connector": 3,
            "restrict beat allow": 3,
            "a TLS-only connector dropped": 2,
            "2 candidates, accept": 1,
            "2 candidates, reject": 1,
            "a later candidate satisfied": 2,
        },
    )
