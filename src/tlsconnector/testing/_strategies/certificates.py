"""Strategies for validity periods, EKUs, real X.509 chains and TLS facts (section 7)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._facts import (
    MtaVerifiedCertificate,
    TLSFacts,
    UndecodableCertificate,
)
from tlsconnector._names import (
    CertificateName,
    canonical_domain,
)
from tlsconnector.testing._pki import (
    DEFAULT_TIME,
    EKU_CLIENT_AUTH,
    EKU_EMAIL_ONLY,
    EKU_SERVER_AUTH,
    EKU_TLS_BOTH,
    CertificateAuthority,
    Issuer,
    MintedChain,
    _session_time,
    default_authority,
)
from tlsconnector.testing._strategies._draw import _BOOLEANS, EKU, _pick
from tlsconnector.testing._strategies.domains import _domains_cached, _draw_cn

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
    at: dt.datetime | None = None,
) -> SearchStrategy[MintedChain]:
    """Real X.509 chains (:class:`MintedChain`) from a test CA.

    Each argument is a strategy for one property of the leaf; by default: one or two
    canonical domain names as CNs, no SAN or one, :func:`validity_periods` around
    ``at``, :func:`ekus`, every :class:`Issuer`, the intermediate usually presented.
    Chains come from ``authority`` (default: :func:`default_authority`), whose
    ``trust_store`` a policy must use to trust them. ``at`` defaults to
    ``authority.valid_at`` (DEFAULT_TIME without ``authority``). Minted chains are
    cached.
    """
    when = _session_time(authority, at)
    return _certificate(authority, cns, sans, validity, eku, issuers, with_intermediate, when)


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
    at: dt.datetime | None = None,
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

    ``at`` defaults to ``authority.valid_at`` (DEFAULT_TIME without ``authority``).
    """
    if not names:
        raise ValueError("tls_facts: give at least one certificate name to aim at")
    canonical = tuple(CertificateName.parse(name).text for name in names)
    when = _session_time(authority, at)
    return _tls_facts(canonical, authority, when, undecodable, trusted_only)
