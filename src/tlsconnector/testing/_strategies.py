"""Hypothesis strategies for tlsconnector values, and for sessions aimed at a policy.

Every strategy draws *valid* input of its kind (what the policy loader or the facts
parsers accept); hostile input is the business of tests/test_hostile.py and fuzz/.
Strategies that build on a policy (:func:`inbound_sessions`, :func:`outbound_sessions`)
aim at its edges: domains it governs and domains one label off, addresses at the ends
of its ranges and just outside them, CNs that match its certificate names and CNs one
label off.

Speed: building a Hypothesis strategy costs more than drawing from one, so the
strategies here draw through small ``_draw_*`` helpers that only use primitive
strategies built once (``st.integers`` is cached by its bounds), never strategies
built per example.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import idna
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .._addresses import IPRange
from .._errors import InvalidValue
from .._facts import (
    ConnectionAttempt,
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
    UndecodableCertificate,
)
from .._model import InboundConnector, OutboundConnector, Policy
from .._names import (
    CertificateName,
    DomainPattern,
    PatternKind,
    canonical_domain,
    is_public_suffix,
)
from ._pki import (
    DEFAULT_TIME,
    EKU_CLIENT_AUTH,
    EKU_EMAIL_ONLY,
    EKU_SERVER_AUTH,
    EKU_TLS_BOTH,
    CertificateAuthority,
    Issuer,
    MintedChain,
    default_authority,
)

__all__ = [
    "addresses_near",
    "certificate_names",
    "certificates",
    "cns_near",
    "connector_names",
    "domain_patterns",
    "domains",
    "domains_near",
    "ekus",
    "inbound_connector_mappings",
    "inbound_connectors",
    "inbound_sessions",
    "ip_addresses",
    "ip_entries",
    "outbound_connector_mappings",
    "outbound_connectors",
    "outbound_sessions",
    "policies",
    "policy_mappings",
    "spellings",
    "tls_facts",
    "validity_periods",
]

T = TypeVar("T")
EKU = tuple[x509.ObjectIdentifier, ...] | None

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BOOLEANS = st.booleans()


def _pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    """One of ``items``; shrinks towards the first."""
    return items[draw(st.integers(0, len(items) - 1))]


def _draw_case(draw: st.DrawFn, text: str) -> str:
    """``text`` with a drawn case for each ASCII letter (never Unicode case mapping);
    shrinks towards ``text`` as given."""
    letters = [i for i, char in enumerate(text) if char.isascii() and char.isalpha()]
    if not letters:
        return text
    mask = draw(st.integers(0, (1 << min(len(letters), 64)) - 1))
    chars = list(text)
    for bit, position in enumerate(letters[:64]):
        if mask >> bit & 1:
            chars[position] = chars[position].swapcase()
    return "".join(chars)


# --------------------------------------------------------------------------------------
# Domains (specification section 2)

_ASCII_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not label.startswith("xn--")
)
# Letters IDNA 2008 classifies PVALID, in lower case (section 2: U-labels are never
# case-folded, so upper-case non-ASCII letters are not valid spellings).
_IDN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789éèüöäñçøåßяжщдфλπ"
_KNOWN_U_LABELS = ("bücher", "münchen", "straße", "пример", "例え", "ドメイン", "παράδειγμα")
_TLDS = ("com", "org", "net", "example", "test", "de", "co.uk", "com.au", "xn--p1ai", "рф")


def _is_u_label(label: str) -> bool:
    try:
        idna.alabel(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


_U_LABEL = st.one_of(
    st.sampled_from(_KNOWN_U_LABELS),
    st.text(alphabet=_IDN_ALPHABET, min_size=1, max_size=12).filter(
        lambda label: not label.isascii() and _is_u_label(label)
    ),
)
_ANY_LABEL = st.one_of(_ASCII_LABEL, _U_LABEL)
_TLD = st.one_of(st.sampled_from(_TLDS), st.from_regex(r"[a-z]{2,8}", fullmatch=True))
_ASCII_TLD = _TLD.filter(lambda tld: tld.isascii() and not tld.startswith("xn--"))


def _is_domain(text: str) -> bool:
    try:
        canonical_domain(text)
    except InvalidValue:
        return False
    return True


def _draw_domain(
    draw: st.DrawFn, idn: bool, mixed_case: bool, trailing_dot: bool, max_labels: int
) -> str:
    label = _ANY_LABEL if idn else _ASCII_LABEL
    for _ in range(3):
        count = draw(st.integers(1, max_labels - 1))
        labels = [draw(label) for _ in range(count)]
        tld = draw(_TLD if idn else _ASCII_TLD)
        # A two-label suffix (co.uk) counts: keep at most max_labels labels in all.
        labels = labels[: max_labels - len(tld.split("."))]
        text = ".".join([*labels, tld])
        if mixed_case:
            text = _draw_case(draw, text)
        if trailing_dot and draw(_BOOLEANS):
            text += "."
        if _is_domain(text):
            return text
    reject()


@st.composite
def _domains(draw: st.DrawFn, idn: bool, mixed_case: bool, trailing_dot: bool, top: int) -> str:
    return _draw_domain(draw, idn, mixed_case, trailing_dot, top)


@functools.cache
def _domains_cached(
    idn: bool, mixed_case: bool, trailing_dot: bool, top: int
) -> SearchStrategy[str]:
    return _domains(idn, mixed_case, trailing_dot, top)


def domains(
    *,
    idn: bool = True,
    mixed_case: bool = True,
    trailing_dot: bool = True,
    max_labels: int = 4,
) -> SearchStrategy[str]:
    """Domain names as a user or a session might spell them (section 2).

    ASCII and IDN (U-labels, and A-labels such as ``xn--p1ai``), ASCII letters in
    mixed case, sometimes with one trailing dot; at least two labels, at most
    ``max_labels``. Every value is accepted by :func:`~tlsconnector.canonical_domain`;
    map it through that function for the canonical form.
    """
    if max_labels < 2:
        raise ValueError("domains: max_labels must be at least 2")
    return _domains_cached(idn, mixed_case, trailing_dot, max_labels)


def _draw_spelling(draw: st.DrawFn, canonical: str) -> str:
    labels = []
    for label in canonical.split("."):
        if label.startswith("xn--") and draw(_BOOLEANS):
            label = idna.ulabel(label)
        labels.append(label)
    text = _draw_case(draw, ".".join(labels))
    if draw(_BOOLEANS):
        text += "."
    # Section 2 makes every such text normalise to ``canonical``; that is a property
    # of the library under test, so it is not checked (or papered over) here.
    return text


@st.composite
def _spellings(draw: st.DrawFn, canonical: str) -> str:
    return _draw_spelling(draw, canonical)


def spellings(domain: str) -> SearchStrategy[str]:
    """Every way of writing ``domain`` that normalises to the same canonical form:
    ASCII case, one trailing dot, U-labels for its A-labels (section 2). Shrinks
    towards the canonical form."""
    return _spellings(canonical_domain(domain))


def domain_patterns(
    *, domains: SearchStrategy[str] | None = None, wildcards: bool = True
) -> SearchStrategy[str]:
    """Scope patterns for ``sender_domains`` / ``recipient_domains``: ``domain``,
    ``*.domain`` and ``*`` (section 2), as configured text."""
    base = domains if domains is not None else _domains_cached(True, True, True, 4)
    if not wildcards:
        return base
    return st.one_of(base, base.map(lambda d: "*." + d), st.just("*"))


def _is_certificate_name(text: str) -> bool:
    try:
        CertificateName.parse(text)
    except InvalidValue:
        return False
    return True


def certificate_names(
    *, domains: SearchStrategy[str] | None = None, wildcards: bool = True
) -> SearchStrategy[str]:
    """Valid ``tls_sender_certificate_name`` / ``tls_domain`` settings (section 3):
    a name, or ``*.suffix`` with at least two labels that is not a public suffix."""
    base = domains if domains is not None else _domains_cached(True, True, True, 4)
    names = st.one_of(base, base.map(lambda d: "*." + d)) if wildcards else base
    return names.filter(_is_certificate_name)


#: Section 3 rule 2: a usable CN has at most 64 characters.
_MAX_CN = 64


def _cn_candidates(canonical: str, label: str) -> tuple[list[str], list[str]]:
    """(CNs that match the certificate name ``canonical``, CNs one label off)."""
    wildcard = canonical.startswith("*.")
    suffix = canonical[2:] if wildcard else canonical.partition(".")[2]
    parent = suffix.partition(".")[2]
    matches: list[str] = [canonical]
    misses: list[str] = []
    if wildcard:
        # Section 3: one label over the suffix matches; the apex, two labels, an
        # xn-- label (rule 5), a partial wildcard or a wider wildcard do not.
        child = f"{label}.{suffix}"
        matches.append(child if len(child) <= _MAX_CN else f"a.{suffix}")
        misses += [
            suffix,
            f"{label}.{label}.{suffix}",
            f"xn--bcher-kva.{suffix}",
            f"{label}*.{suffix}",
            f"{canonical}.",
        ]
        if parent:
            misses.append(f"*.{parent}")
    else:
        # A wildcard certificate covers a name one label under its suffix (section 3).
        first = canonical.partition(".")[0]
        if (
            "." in suffix
            and not first.startswith("xn--")
            and not is_public_suffix(suffix)
            and len(suffix) + 2 <= _MAX_CN
        ):
            matches.append(f"*.{suffix}")
        misses += [f"{label}.{canonical}", f"{canonical}."]
        if suffix:
            misses.append(suffix)
            if label != first:
                misses.append(f"{label}.{suffix}")
        if first.startswith("xn--"):
            misses.append(".".join([idna.ulabel(first), suffix]))
    return matches, misses


def _draw_cn(draw: st.DrawFn, canonical: str, matching: bool | None) -> str:
    matches, misses = _cn_candidates(canonical, draw(_ASCII_LABEL))
    pool = matches if matching else misses if matching is False else matches + misses
    return _draw_case(draw, _pick(draw, pool))


@st.composite
def _cns_near(draw: st.DrawFn, canonical: str, matching: bool | None) -> str:
    return _draw_cn(draw, canonical, matching)


def cns_near(name: str, *, matching: bool | None = None) -> SearchStrategy[str]:
    """Presented CNs aimed at the certificate name ``name`` (section 3).

    ``matching=True``: only CNs that match (the name, one label under a wildcard, a
    wildcard certificate covering the name), in random ASCII case. ``False``: only
    CNs one label off (the apex, two labels, a sibling, a parent, an ``xn--`` label
    under a wildcard, a partial wildcard, a trailing dot). ``None``: both. A name
    longer than 64 characters has no matching CN at all (section 3 rule 2).
    """
    return _cns_near(CertificateName.parse(name).text, matching)


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


# --------------------------------------------------------------------------------------
# Certificates (section 7)

_OFFSETS = tuple(dt.timedelta(seconds=s) for s in (1, 3600, 86_400, 30 * 86_400, 400 * 86_400))
_WINDOWS = ("valid", "expired", "not-yet-valid", "ends-now", "starts-now")


def _draw_window(
    draw: st.DrawFn, at: dt.datetime, kinds: Sequence[str] = _WINDOWS
) -> tuple[dt.datetime, dt.datetime]:
    at = at.astimezone(dt.UTC).replace(microsecond=0)
    kind = _pick(draw, kinds)
    a, b = _pick(draw, _OFFSETS), _pick(draw, _OFFSETS)
    if kind == "valid":
        return (at - a, at + b)
    if kind == "expired":
        return (at - a - b, at - a)
    if kind == "not-yet-valid":
        return (at + a, at + a + b)
    if kind == "ends-now":
        return (at - a, at)  # notAfter is inclusive (RFC 5280 4.1.2.5): still valid
    return (at, at + a)  # valid from this very second


@st.composite
def _validity_periods(draw: st.DrawFn, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    return _draw_window(draw, at)


def validity_periods(
    at: dt.datetime = DEFAULT_TIME,
) -> SearchStrategy[tuple[dt.datetime, dt.datetime]]:
    """``(not_before, not_after)`` windows around the session time ``at``: valid,
    expired, not yet valid, and the boundaries (valid until exactly ``at``; valid
    from exactly ``at``). Offsets range from one second to 400 days."""
    return _validity_periods(at)


_EKUS: tuple[EKU, ...] = (
    EKU_TLS_BOTH,
    None,
    EKU_SERVER_AUTH,
    EKU_CLIENT_AUTH,
    EKU_EMAIL_ONLY,
    (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,),
)


def ekus() -> SearchStrategy[EKU]:
    """Extended key usage lists for a leaf: both TLS purposes, no EKU extension,
    serverAuth, clientAuth, emailProtection only, anyExtendedKeyUsage (section 7)."""
    return st.sampled_from(_EKUS)


_ISSUERS = tuple(Issuer)
_WITH_INTERMEDIATE = (True, True, True, False)


@st.composite
def _certificate(
    draw: st.DrawFn,
    authority: CertificateAuthority | None,
    cns: SearchStrategy[str | Sequence[str] | None] | None,
    sans: SearchStrategy[Sequence[str]] | None,
    validity: SearchStrategy[tuple[dt.datetime, dt.datetime]] | None,
    eku: SearchStrategy[EKU] | None,
    issuers: SearchStrategy[Issuer] | None,
    with_intermediate: SearchStrategy[bool] | None,
    at: dt.datetime,
) -> MintedChain:
    pki = authority if authority is not None else default_authority()
    names = _domains_cached(True, False, False, 4)
    if cns is None:
        subject: str | Sequence[str] | None = [
            canonical_domain(draw(names)) for _ in range(draw(st.integers(1, 2)))
        ]
    else:
        subject = draw(cns)
    if sans is None:
        san: Sequence[str] = [canonical_domain(draw(names))] if draw(_BOOLEANS) else []
    else:
        san = draw(sans)
    not_before, not_after = draw(validity) if validity is not None else _draw_window(draw, at)
    return pki.issue(
        subject,
        sans=tuple(san),
        eku=draw(eku) if eku is not None else _pick(draw, _EKUS),
        not_before=not_before,
        not_after=not_after,
        issuer=draw(issuers) if issuers is not None else _pick(draw, _ISSUERS),
        with_intermediate=(
            draw(with_intermediate)
            if with_intermediate is not None
            else _pick(draw, _WITH_INTERMEDIATE)
        ),
    )


def certificates(
    *,
    cns: SearchStrategy[str | Sequence[str] | None] | None = None,
    sans: SearchStrategy[Sequence[str]] | None = None,
    validity: SearchStrategy[tuple[dt.datetime, dt.datetime]] | None = None,
    eku: SearchStrategy[EKU] | None = None,
    issuers: SearchStrategy[Issuer] | None = None,
    with_intermediate: SearchStrategy[bool] | None = None,
    authority: CertificateAuthority | None = None,
    at: dt.datetime = DEFAULT_TIME,
) -> SearchStrategy[MintedChain]:
    """Real X.509 chains (:class:`MintedChain`) from a test CA.

    Each argument is a strategy for one property of the leaf; by default: one or two
    canonical domain names as CNs, no SAN or one, :func:`validity_periods` around
    ``at``, :func:`ekus`, every :class:`Issuer`, the intermediate usually presented.
    Chains come from ``authority`` (default: :func:`default_authority`), whose
    ``trust_store`` a policy must use to trust them. Minted chains are cached.
    """
    return _certificate(authority, cns, sans, validity, eku, issuers, with_intermediate, at)


_BAD_DATES = ("expired", "expired", "not-yet-valid", "ends-now", "starts-now")

#: What can be wrong with a presented chain; a chain drawn for a session has none of
#: these (a chain that should pass), one, or now and then two.
_DEVIATIONS = (
    "cn-off",  # the CN is one label off the name
    "impostor",  # same CA names, other keys
    "self-signed",
    "no-intermediate",  # the peer did not present its intermediate
    "dates",  # expired, not yet valid, or just at a boundary
    "dates",  # (twice: expiry is the failure operators meet most)
    "eku",  # no EKU, one purpose only, emailProtection, anyExtendedKeyUsage
    "extra-cn",  # a second CN attribute beside the one aimed at the name
    "no-cn",  # no CN at all
    "san",  # the name in the SAN (never read), beside the CN
)


def _draw_chain(
    draw: st.DrawFn, names: Sequence[str], authority: CertificateAuthority | None, at: dt.datetime
) -> TLSFacts:
    name = _pick(draw, names)
    count = _pick(draw, (0, 1, 1, 2))
    deviations = {_pick(draw, _DEVIATIONS) for _ in range(count)}
    cn = _draw_cn(draw, name, "cn-off" not in deviations)
    subject: list[str] | None = [cn]
    if "extra-cn" in deviations:
        subject = _pick(draw, (["Partner Mail Gateway", cn], [cn, "Partner"]))
    if "no-cn" in deviations:
        subject = None
    window = _draw_window(draw, at, _BAD_DATES if "dates" in deviations else ("valid",))
    issuer = Issuer.TRUSTED
    if "impostor" in deviations:
        issuer = Issuer.IMPOSTOR
    elif "self-signed" in deviations:
        issuer = Issuer.SELF_SIGNED
    pki = authority if authority is not None else default_authority()
    chain = pki.issue(
        subject,
        sans=(name.removeprefix("*."),) if "san" in deviations else (),
        eku=_pick(draw, _EKUS) if "eku" in deviations else EKU_TLS_BOTH,
        not_before=window[0],
        not_after=window[1],
        issuer=issuer,
        with_intermediate="no-intermediate" not in deviations,
    )
    return chain.tls_facts()


def _draw_tls(
    draw: st.DrawFn,
    names: Sequence[str],
    authority: CertificateAuthority | None,
    at: dt.datetime,
    undecodable: bool,
    trusted_only: bool = False,
) -> TLSFacts:
    if trusted_only:
        name = _pick(draw, names)
        if draw(_BOOLEANS):
            return TLSFacts(MtaVerifiedCertificate((_draw_cn(draw, name, True),), True))
        pki = authority if authority is not None else default_authority()
        window = _draw_window(draw, at, ("valid",))
        chain = pki.issue(_draw_cn(draw, name, True), not_before=window[0], not_after=window[1])
        return chain.tls_facts()
    kinds = ("none", "mta", "chain", "chain") + (("undecodable",) if undecodable else ())
    kind = _pick(draw, kinds)
    if kind == "none":
        return TLSFacts(None)
    if kind == "mta":
        cns = [_draw_cn(draw, _pick(draw, names), None) for _ in range(_pick(draw, (1, 0, 2)))]
        return TLSFacts(MtaVerifiedCertificate(tuple(cns), _pick(draw, (True, False, True))))
    if kind == "chain":
        return _draw_chain(draw, names, authority, at)
    return TLSFacts(UndecodableCertificate("the server's certificate is truncated"))


@st.composite
def _tls_facts(
    draw: st.DrawFn,
    names: tuple[str, ...],
    authority: CertificateAuthority | None,
    at: dt.datetime,
    undecodable: bool,
    trusted_only: bool,
) -> TLSFacts:
    return _draw_tls(draw, names, authority, at, undecodable, trusted_only)


def tls_facts(
    names: Sequence[str],
    *,
    authority: CertificateAuthority | None = None,
    at: dt.datetime = DEFAULT_TIME,
    undecodable: bool = False,
    trusted_only: bool = False,
) -> SearchStrategy[TLSFacts]:
    """Facts of a session that used STARTTLS, aimed at certificate ``names``.

    In shrinking order: no certificate; CNs an MTA extracted (matching a name or one
    label off, verified or not); a real chain from ``authority`` with a CN matching a
    name, valid at ``at``, with both TLS purposes, and then (most of the time) one or
    two things wrong with it: a CN one label off, an impostor or self-signed issuer, no
    intermediate presented, dates around ``at``, another EKU, an extra CN or none, the
    name in the SAN. With ``undecodable`` (outbound), also a certificate that could not
    be decoded.

    ``trusted_only``: only credentials that prove one of the names: MTA-verified facts
    with a matching CN, or a chain from ``authority`` that is valid at ``at`` with a
    matching CN (trusted by a policy that trusts the authority). For searches where
    the certificate should not be what stands in the way, as for IP restrictions.
    """
    if not names:
        raise ValueError("tls_facts: give at least one certificate name to aim at")
    canonical = tuple(CertificateName.parse(name).text for name in names)
    return _tls_facts(canonical, authority, at, undecodable, trusted_only)


# --------------------------------------------------------------------------------------
# Connectors and policies (sections 5, 6, 9)

_READABLE_NAMES = (
    "Fabrikam Bank inbound",
    "Fabrikam Bank outbound",
    "Partner",
    "partner",
    "Contoso relay",
    "Zürich Partner",
)
_NAME_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("C", "Zl", "Zp")), min_size=1, max_size=40
)
_CONNECTOR_NAMES = st.one_of(st.sampled_from(_READABLE_NAMES), _NAME_TEXT).filter(
    lambda name: bool(name.strip()) and name.isprintable()
)


def connector_names() -> SearchStrategy[str]:
    """Valid connector names: printable, not blank, at most 256 characters."""
    return _CONNECTOR_NAMES


def _draw_inbound(
    draw: st.DrawFn,
    name: str,
    pattern: Any,
    cert_name: Any,
    entry: Any,
) -> dict[str, Any]:
    """One valid ``[[inbound]]`` table; ``pattern``, ``cert_name`` and ``entry`` are
    callables drawing one value each."""
    raw: dict[str, Any] = {
        "name": name,
        "sender_domains": [pattern() for _ in range(draw(st.integers(1, 3)))],
    }
    if draw(_BOOLEANS):
        raw["enabled"] = _pick(draw, (True, True, False))
    if draw(_BOOLEANS):
        raw["type"] = _pick(draw, ("partner", "partner", "on_premises"))
    if draw(_BOOLEANS):
        raw["comment"] = _pick(draw, ("", "forced TLS", "Zürich \u00e9 \U0001f512"))
    if draw(_BOOLEANS):
        raw["require_tls"] = draw(_BOOLEANS)
    if draw(_BOOLEANS):
        raw["tls_sender_certificate_name"] = cert_name()
        if draw(_BOOLEANS):
            raw["restrict_domains_to_certificate"] = draw(_BOOLEANS)
    ip_mode = _pick(draw, ("none", "listed", "restricted", "empty"))
    if ip_mode == "empty":
        raw["sender_ip_addresses"] = []
    elif ip_mode != "none":
        raw["sender_ip_addresses"] = [entry() for _ in range(draw(st.integers(1, 3)))]
        raw["restrict_domains_to_ip_addresses"] = ip_mode == "restricted"
    return raw


@st.composite
def _inbound_mapping(
    draw: st.DrawFn,
    names: SearchStrategy[str],
    patterns: SearchStrategy[str],
    cert_names: SearchStrategy[str],
    entries: SearchStrategy[str],
) -> dict[str, Any]:
    return _draw_inbound(
        draw, draw(names), lambda: draw(patterns), lambda: draw(cert_names), lambda: draw(entries)
    )


def _default_certificate_names() -> SearchStrategy[str]:
    return certificate_names()


def inbound_connector_mappings(
    *,
    names: SearchStrategy[str] | None = None,
    patterns: SearchStrategy[str] | None = None,
    certificate_names: SearchStrategy[str] | None = None,
    ip_entries: SearchStrategy[str] | None = None,
) -> SearchStrategy[dict[str, Any]]:
    """``[[inbound]]`` tables as the TOML loader hands them to
    :meth:`~tlsconnector.Policy.from_mapping`: every one valid, optional keys
    sometimes left out so that the defaults take part."""
    return _inbound_mapping(
        names if names is not None else _CONNECTOR_NAMES,
        patterns if patterns is not None else domain_patterns(),
        certificate_names if certificate_names is not None else _default_certificate_names(),
        ip_entries if ip_entries is not None else _IP_ENTRIES,
    )


def _draw_smart_host(draw: st.DrawFn, host: Any) -> str:
    kind = _pick(draw, ("name", "ipv4", "ipv6"))
    port = _pick(draw, (None, None, 25, 587))
    if kind == "name":
        text = str(host())
    elif kind == "ipv4":
        text = str(draw(_V4))
    else:
        text = str(draw(_V6))
        return text if port is None else f"[{text}]:{port}"
    return text if port is None else f"{text}:{port}"


_MODES = ("domain_validation", "certificate_validation", "encryption_only", "opportunistic")


def _draw_outbound(
    draw: st.DrawFn, name: str, pattern: Any, cert_name: Any, host: Any
) -> dict[str, Any]:
    """One valid ``[[outbound]]`` table (callables draw one pattern, name, host)."""
    rule_scoped = _pick(draw, (False, False, False, True))
    raw: dict[str, Any] = {"name": name}
    count = draw(st.integers(0 if rule_scoped else 1, 3))
    patterns = [pattern() for _ in range(count)]
    if bool(patterns) or draw(_BOOLEANS):
        raw["recipient_domains"] = patterns
    if rule_scoped:
        raw["is_transport_rule_scoped"] = True
    if draw(_BOOLEANS):
        raw["enabled"] = _pick(draw, (True, True, False))
    if draw(_BOOLEANS):
        raw["type"] = _pick(draw, ("partner", "partner", "on_premises"))
    if draw(_BOOLEANS):
        raw["comment"] = _pick(draw, ("", "forced TLS"))
    if draw(_BOOLEANS):
        raw["test_mode"] = _pick(draw, (False, False, True))
    use_mx = draw(_BOOLEANS)
    hosts = [_draw_smart_host(draw, host) for _ in range(draw(st.integers(0 if use_mx else 1, 2)))]
    if not use_mx or draw(_BOOLEANS):
        raw["use_mx_record"] = use_mx
    if bool(hosts) or draw(_BOOLEANS):
        raw["smart_hosts"] = hosts
    mode = _pick(draw, _MODES)
    if mode != "opportunistic" or draw(_BOOLEANS):
        raw["tls_settings"] = mode
    if mode == "domain_validation":
        raw["tls_domain"] = cert_name()
    return raw


@st.composite
def _outbound_mapping(
    draw: st.DrawFn,
    names: SearchStrategy[str],
    patterns: SearchStrategy[str],
    cert_names: SearchStrategy[str],
    hosts: SearchStrategy[str],
) -> dict[str, Any]:
    return _draw_outbound(
        draw, draw(names), lambda: draw(patterns), lambda: draw(cert_names), lambda: draw(hosts)
    )


def outbound_connector_mappings(
    *,
    names: SearchStrategy[str] | None = None,
    patterns: SearchStrategy[str] | None = None,
    certificate_names: SearchStrategy[str] | None = None,
    smart_hosts: SearchStrategy[str] | None = None,
) -> SearchStrategy[dict[str, Any]]:
    """``[[outbound]]`` tables for :meth:`~tlsconnector.Policy.from_mapping`, every one
    valid: ``tls_domain`` exactly with ``domain_validation``, smart hosts whenever
    ``use_mx_record = false``, no recipient domains only when rule-scoped.

    ``smart_hosts`` draws host names; IPv4 and IPv6 literals and ports are added here.
    """
    return _outbound_mapping(
        names if names is not None else _CONNECTOR_NAMES,
        patterns if patterns is not None else domain_patterns(),
        certificate_names if certificate_names is not None else _default_certificate_names(),
        smart_hosts if smart_hosts is not None else _domains_cached(False, False, False, 4),
    )


def _single(direction: str, raw: dict[str, Any]) -> Any:
    policy = Policy.from_mapping({direction: [raw]}, trust=None)
    return getattr(policy, direction)[0]


def inbound_connectors(**kwargs: Any) -> SearchStrategy[InboundConnector]:
    """Built :class:`~tlsconnector.InboundConnector` values; keyword arguments as for
    :func:`inbound_connector_mappings`."""
    return inbound_connector_mappings(**kwargs).map(lambda raw: _single("inbound", raw))


def outbound_connectors(**kwargs: Any) -> SearchStrategy[OutboundConnector]:
    """Built :class:`~tlsconnector.OutboundConnector` values; keyword arguments as for
    :func:`outbound_connector_mappings`."""
    return outbound_connector_mappings(**kwargs).map(lambda raw: _single("outbound", raw))


_IP_ENTRIES = ip_entries()


def _draw_related_domain(draw: st.DrawFn, base: Sequence[str]) -> str:
    """A domain of the pool, or one label under it."""
    domain = _pick(draw, base)
    if draw(_BOOLEANS):
        child = f"{draw(_ASCII_LABEL)}.{domain}"
        if _is_domain(child):
            return child
    return domain


def _draw_related_pattern(draw: st.DrawFn, base: Sequence[str]) -> str:
    kind = _pick(draw, ("exact", "subtree", "any"))
    if kind == "any":
        return "*"
    text = _draw_spelling(draw, _draw_related_domain(draw, base))
    return text if kind == "exact" else f"*.{text}"


def _draw_related_name(draw: st.DrawFn, base: Sequence[str]) -> str:
    domain = _draw_related_domain(draw, base)
    name = f"*.{domain}" if draw(_BOOLEANS) else domain
    return name if _is_certificate_name(name) else domain


def _untie(outbound: list[dict[str, Any]]) -> None:
    """Section 6.2: two selectable connectors may not claim one pattern. Patterns
    already claimed are dropped; a connector left with none is disabled instead."""
    claimed: set[DomainPattern] = set()
    for raw in sorted(outbound, key=lambda r: (r["name"].casefold(), r["name"])):
        selectable = (
            raw.get("enabled", True)
            and not raw.get("is_transport_rule_scoped", False)
            and not raw.get("test_mode", False)
        )
        if not selectable:
            continue
        patterns = raw.get("recipient_domains", [])
        free = [p for p in patterns if DomainPattern.parse(p) not in claimed]
        if not free:
            raw["enabled"] = False
            continue
        raw["recipient_domains"] = free
        claimed.update(DomainPattern.parse(p) for p in free)


def _draw_names(draw: st.DrawFn, low: int, high: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(low, high))):
        name = draw(_CONNECTOR_NAMES)
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    if len(names) < low:
        reject()
    return names


@st.composite
def _policy_mapping(
    draw: st.DrawFn,
    domains_: SearchStrategy[str],
    inbound: tuple[int, int],
    outbound: tuple[int, int],
) -> dict[str, Any]:
    base = list(
        dict.fromkeys(canonical_domain(draw(domains_)) for _ in range(draw(st.integers(1, 3))))
    )
    entries = [draw(_IP_ENTRIES) for _ in range(draw(st.integers(1, 3)))]

    def pattern() -> str:
        return _draw_related_pattern(draw, base)

    def cert_name() -> str:
        return _draw_related_name(draw, base)

    def entry() -> str:
        return _pick(draw, entries)

    def host() -> str:
        return _pick(draw, base)

    inbound_tables = [
        _draw_inbound(draw, name, pattern, cert_name, entry) for name in _draw_names(draw, *inbound)
    ]
    outbound_tables = [
        _draw_outbound(draw, name, pattern, cert_name, host)
        for name in _draw_names(draw, *outbound)
    ]
    _untie(outbound_tables)
    return {"inbound": inbound_tables, "outbound": outbound_tables}


def policy_mappings(
    *,
    domains: SearchStrategy[str] | None = None,
    min_inbound: int = 0,
    max_inbound: int = 4,
    min_outbound: int = 0,
    max_outbound: int = 4,
) -> SearchStrategy[dict[str, Any]]:
    """Whole policies as the mapping :meth:`~tlsconnector.Policy.from_mapping` takes
    (``{"inbound": [...], "outbound": [...]}``; no ``[trust]`` table).

    Connectors draw their patterns, certificate names and IP entries from small pools
    (one to three base domains, one to three IP entries) so that they overlap, spell
    one domain in different ways and compete for the same sessions. Names are unique
    per direction; no two selectable outbound connectors tie (section 6.2)."""
    if not 0 <= min_inbound <= max_inbound or not 0 <= min_outbound <= max_outbound:
        raise ValueError("policy_mappings: need 0 <= min <= max for each direction")
    return _policy_mapping(
        domains if domains is not None else _domains_cached(True, True, True, 4),
        (min_inbound, max_inbound),
        (min_outbound, max_outbound),
    )


def policies(
    *,
    authority: CertificateAuthority | None = None,
    domains: SearchStrategy[str] | None = None,
    min_inbound: int = 0,
    max_inbound: int = 4,
    min_outbound: int = 0,
    max_outbound: int = 4,
) -> SearchStrategy[Policy]:
    """Built :class:`~tlsconnector.Policy` values from :func:`policy_mappings`,
    trusting ``authority`` (default: :func:`default_authority`), so that chains from
    :func:`certificates` and the session strategies can validate."""
    mappings = policy_mappings(
        domains=domains,
        min_inbound=min_inbound,
        max_inbound=max_inbound,
        min_outbound=min_outbound,
        max_outbound=max_outbound,
    )

    def build(raw: Mapping[str, Any]) -> Policy:
        pki = authority if authority is not None else default_authority()
        return Policy.from_mapping(raw, trust=pki.trust_store)

    return mappings.map(build)


# --------------------------------------------------------------------------------------
# Sessions aimed at a policy (sections 5 and 6)

_ANY_DOMAIN = _domains_cached(True, True, True, 4)


def _draw_near(draw: st.DrawFn, pattern: DomainPattern) -> str:
    """A canonical domain inside the pattern's scope (two times in three) or just
    outside it."""
    if pattern.kind is PatternKind.ANY or pattern.domain is None:
        return canonical_domain(draw(_ANY_DOMAIN))
    domain = pattern.domain
    first, _, parent = domain.partition(".")
    label = draw(_ASCII_LABEL)
    under = [f"{label}.{domain}", f"{label}.{label}.{domain}"]
    # Section 2: "*.d" is d and everything under it; "d" is d alone.
    inside = [domain, *under] if pattern.kind is PatternKind.SUBTREE else [domain]
    outside = [] if pattern.kind is PatternKind.SUBTREE else under
    outside.append(f"{label}{domain}")  # the suffix without its dot: evilfabrikam.com
    if parent:
        outside.append(parent)  # one label less
        if label != first:
            outside.append(f"{label}.{parent}")  # a sibling
    candidates = inside if _pick(draw, (True, True, False)) else outside
    candidate = _pick(draw, candidates)
    return canonical_domain(candidate) if _is_domain(candidate) else domain


@st.composite
def _domains_near(draw: st.DrawFn, patterns: tuple[DomainPattern, ...]) -> str:
    return _draw_spelling(draw, _draw_near(draw, _pick(draw, patterns)))


def domains_near(patterns: Iterable[str | DomainPattern]) -> SearchStrategy[str]:
    """Domains aimed at scope patterns, spelled as a session might: mostly inside the
    scopes (each exact domain, each ``*.suffix``'s suffix and names one and two labels
    under it), else just outside (parents, siblings, and the suffix without its dot,
    ``evilfabrikam.com``); random domains for ``*``. Falls back to :func:`domains`
    when there are no patterns."""
    parsed = [p if isinstance(p, DomainPattern) else DomainPattern.parse(p) for p in patterns]
    if not parsed:
        return _ANY_DOMAIN
    return _domains_near(tuple(dict.fromkeys(parsed)))


_LOCAL_PARTS = ("a", "payments", "Postmaster", "first.last+tag")


def _names_in(
    configured: Iterable[CertificateName | None], scopes: Iterable[str], extra: Sequence[str]
) -> tuple[str, ...]:
    names = {str(name) for name in configured if name is not None}
    names |= {CertificateName.parse(name).text for name in extra}
    if names:
        return tuple(sorted(names))
    fallback = sorted(s for s in set(scopes) if _is_certificate_name(s))
    return tuple(fallback) or ("mail.example.com",)


@st.composite
def _inbound_session(
    draw: st.DrawFn,
    policy: Policy,
    authority: CertificateAuthority | None,
    at: dt.datetime,
    senders: SearchStrategy[str] | None,
    peer_ips: SearchStrategy[str] | None,
    tls: SearchStrategy[TLSFacts | None] | None,
    names: tuple[str, ...],
    patterns: tuple[DomainPattern, ...],
    near: tuple[str, ...],
) -> InboundSession:
    # The TLS facts first: Hypothesis varies early choices most evenly, and what the
    # peer presented matters most.
    if tls is not None:
        facts = draw(tls)
    elif _pick(draw, (True, False, False, False)):
        facts = None
    else:
        facts = _draw_tls(draw, names, authority, at, False)
    if peer_ips is not None:
        peer = draw(peer_ips)
    elif bool(near) and _pick(draw, (True, True, True, False)):
        peer = _pick(draw, near)
    else:
        peer = draw(_PEER_ANY)
    if senders is not None:
        sender = draw(senders)
    elif not patterns or _pick(draw, (False,) * 9 + (True,)):
        sender = _pick(draw, ("", "<>")) if draw(_BOOLEANS) else f"a@{draw(_ANY_DOMAIN)}"
    else:
        domain = _draw_spelling(draw, _draw_near(draw, _pick(draw, patterns)))
        sender = f"{_pick(draw, _LOCAL_PARTS)}@{domain}"
    return InboundSession.create(
        peer_ip=peer, mail_from=sender, tls=facts, at=at, rcpt_to=["postmaster@contoso.example"]
    )


_PEER_ANY = ip_addresses()


def inbound_sessions(
    policy: Policy,
    *,
    authority: CertificateAuthority | None = None,
    at: dt.datetime = DEFAULT_TIME,
    senders: SearchStrategy[str] | None = None,
    peer_ips: SearchStrategy[str] | None = None,
    tls: SearchStrategy[TLSFacts | None] | None = None,
    certificate_names: Sequence[str] = (),
) -> SearchStrategy[InboundSession]:
    """Inbound sessions aimed at ``policy``, at time ``at``.

    Defaults: senders at :func:`domains_near` the inbound connectors' patterns (now and
    then the null sender or a random domain); peer addresses :func:`addresses_near`
    their IP entries (now and then a random one); no STARTTLS, or :func:`tls_facts`
    aimed at their certificate names and at ``certificate_names``, with chains from
    ``authority`` (default: :func:`default_authority`). Any part can be replaced by a
    strategy of your own.
    """
    connectors = policy.inbound
    patterns = tuple(dict.fromkeys(p for c in connectors for p in c.sender_domains))
    entries = [r for c in connectors for r in c.sender_ip_addresses.ranges]
    near = tuple(dict.fromkeys(text for entry in entries for text in _around(entry)))
    names = _names_in(
        (c.tls_sender_certificate_name for c in connectors),
        (p.domain for p in patterns if p.domain is not None),
        certificate_names,
    )
    return _inbound_session(policy, authority, at, senders, peer_ips, tls, names, patterns, near)


_QUEUED_FOR = (None, 0.0, 1.0, 23.99, 24.0, 25.0, 72.0)
_PEER_HOSTS = (None, "mx1.partner.example")


@st.composite
def _outbound_session(
    draw: st.DrawFn,
    authority: CertificateAuthority | None,
    at: dt.datetime,
    recipients: SearchStrategy[str] | None,
    attempts: SearchStrategy[ConnectionAttempt | None] | None,
    plans: bool,
    known: tuple[str, ...],
    names: tuple[str, ...],
    patterns: tuple[DomainPattern, ...],
) -> OutboundSession:
    # The connection attempt first: Hypothesis varies early choices most evenly.
    attempt: ConnectionAttempt | None
    if attempts is not None:
        attempt = draw(attempts)
    else:
        kind = _pick(draw, ("plan", "no-tls", "tls", "tls") if plans else ("no-tls", "tls", "tls"))
        if kind == "plan":
            attempt = None
        elif kind == "no-tls":
            attempt = ConnectionAttempt(None)
        else:
            attempt = ConnectionAttempt(_draw_tls(draw, names, authority, at, True))
    if recipients is not None:
        recipient = draw(recipients)
    else:
        pattern = _pick(draw, patterns) if patterns else DomainPattern.parse("*")
        domain = _draw_spelling(draw, _draw_near(draw, pattern))
        recipient = f"{_pick(draw, _LOCAL_PARTS)}@{domain}"
    connector: str | None = None
    if bool(known) and _pick(draw, (False,) * 5 + (True,)):
        options = (*known, "No such connector")
        connector = _draw_case(draw, _pick(draw, options))
    hours = _pick(draw, _QUEUED_FOR)
    return OutboundSession.create(
        recipient=recipient,
        at=at,
        connector=connector,
        peer_host=_pick(draw, _PEER_HOSTS),
        attempt=attempt,
        queued_since=None if hours is None else at - dt.timedelta(hours=hours),
    )


def outbound_sessions(
    policy: Policy,
    *,
    authority: CertificateAuthority | None = None,
    at: dt.datetime = DEFAULT_TIME,
    recipients: SearchStrategy[str] | None = None,
    plans: bool = True,
    named_connectors: bool = True,
    attempts: SearchStrategy[ConnectionAttempt | None] | None = None,
    certificate_names: Sequence[str] = (),
) -> SearchStrategy[OutboundSession]:
    """Outbound sessions (one message to one recipient) aimed at ``policy``, at ``at``.

    Defaults: recipients at :func:`domains_near` the outbound connectors' patterns;
    now and then (with ``named_connectors``) a connector named as a transport rule
    would, an existing name in another case or an unknown one; a plan only (with
    ``plans``), a connection without STARTTLS, or :func:`tls_facts` aimed at the
    ``tls_domain`` names and ``certificate_names`` (undecodable certificates
    included); queue times around the 24-hour retry window.
    """
    connectors = policy.outbound
    patterns = tuple(dict.fromkeys(p for c in connectors for p in c.recipient_domains))
    known = tuple(c.name for c in connectors) if named_connectors else ()
    if named_connectors and not known:
        known = ("No such connector",)
    names = _names_in(
        (c.tls_domain for c in connectors),
        (p.domain for p in patterns if p.domain is not None),
        certificate_names,
    )
    return _outbound_session(authority, at, recipients, attempts, plans, known, names, patterns)
