"""Strategies for domains, scope patterns, certificate names and CNs (sections 2, 3)."""

from __future__ import annotations

import functools

import idna
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._errors import InvalidValue
from tlsconnector._names import (
    CertificateName,
    canonical_domain,
    is_public_suffix,
)
from tlsconnector.testing._strategies._draw import _BOOLEANS, _draw_case, _pick

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
