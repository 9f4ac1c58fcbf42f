"""Chain validation (spec section 7): the path, the extended key usage, the CA's DNS
name constraints on the CN, and (later) revocation.

Pure: the session time and the trust anchors are passed in, and intermediates come
only from what the peer presented (no AIA chasing). Path validation is done by
``cryptography.x509.verification`` (the Rust WebPKI path validator), never by hand.
tlsconnector only adjusts its extension policies and adds the two checks the
validator does not make:

* the purpose rule for the extended key usage (spec section 7), and
* the CA's DNS name constraints applied to the subject CN, which tlsconnector matches
  instead of the SAN (spec sections 3 and 7), also for CNs an MTA verified;

and, on the path the validator built, revocation (spec section 11, the rules in
:mod:`tlsconnector._revocation`).
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    VerificationError,
)

from tlsconnector._chains import (
    _NAME_CONSTRAINTS_OID,
    MAX_CHAIN_CERTIFICATES,
    PresentedChain,
    TrustStore,
    _extensions,
    _leaf_extensions,
    describe,
)
from tlsconnector._errors import InvalidValue, show
from tlsconnector._revocation import (
    CODE_REVOKED,
    CODE_UNKNOWN,
    Revocation,
    check_revocation,
)

__all__ = [
    "CODE_EXPIRED",
    "CODE_NOT_TRUSTED",
    "CODE_REVOKED",
    "CODE_UNKNOWN",
    "ChainVerdict",
    "Purpose",
    "mta_name_constraint_failure",
    "validate_chain",
]

CODE_EXPIRED = "certificate-expired"
CODE_NOT_TRUSTED = "certificate-not-trusted"

_SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
_EKU_OID = ExtensionOID.EXTENDED_KEY_USAGE


class Purpose(enum.Enum):
    """What the peer is doing in the SMTP session; selects the extended key usage rule.

    Spec section 7: an EKU extension, when the leaf has one, must include
    ``serverAuth`` or ``clientAuth`` for inbound peers (partners reuse their server
    certificate as client certificate) and ``serverAuth`` for outbound peers. A leaf
    without an EKU extension is accepted for both.

    ``anyExtendedKeyUsage`` on the leaf does *not* satisfy the rule: the spec names the
    two purposes, and the CA/B Forum Baseline Requirements (7.1.2.7.10) forbid
    anyExtendedKeyUsage in TLS subscriber certificates, so a leaf relying on it is
    refused (fail closed). On a CA certificate anyExtendedKeyUsage means "no
    restriction" (RFC 5280 4.2.1.12).
    """

    INBOUND = "inbound"  # the peer is an SMTP client
    OUTBOUND = "outbound"  # the peer is an SMTP server

    @property
    def usages(self) -> frozenset[x509.ObjectIdentifier]:
        """The EKU purposes that make a certificate usable for this direction."""
        if self is Purpose.INBOUND:
            return frozenset({_SERVER_AUTH, _CLIENT_AUTH})
        return frozenset({_SERVER_AUTH})


#: :func:`describe`, memoised for trust anchors only (an anchor is described in every
#: verdict it ends); a certificate a peer presented is never kept by this memory.
_describe_anchor = functools.lru_cache(maxsize=256)(describe)


@attrs.frozen
class ChainVerdict:
    """The outcome of :func:`validate_chain`: a value, never an exception.

    ``code`` is ``None`` when trusted, else ``"certificate-expired"``,
    ``"certificate-not-trusted"``, ``"certificate-revoked"`` or (``[trust] revocation
    = "hard"``) ``"revocation-unknown"``; ``detail`` is a human explanation with every
    attacker-supplied text escaped.
    """

    trusted: bool
    code: str | None
    detail: str
    #: For a trusted verdict: the times between which every certificate of the
    #: verified path (leaf, intermediates used, anchor) is valid, both inclusive. The
    #: same chain verifies the same way at any time inside; None otherwise.
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    #: Trusted under ``revocation = "soft"`` although a certificate of the path that
    #: names a CRL distribution point got no usable answer: why (spec section 11).
    revocation_unknown: str | None = None


# --- extended key usage (spec section 7) -------------------------------------------

_EkuCallback = Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]


def _leaf_eku_rule(purpose: Purpose) -> _EkuCallback:
    """The leaf's EKU rule: absent is fine; present must name one of the purpose's usages.

    Replaces the client verifier's built-in "must include clientAuth" check.
    """
    wanted = purpose.usages
    names = "serverAuth or clientAuth" if purpose is Purpose.INBOUND else "serverAuth"

    def check(policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is None or wanted.intersection(eku):
            return
        raise ValueError(f"leaf extended key usage does not include {names} ({purpose.value})")

    return check


def _ca_eku_rule(purpose: Purpose) -> _EkuCallback:
    """A CA's EKU, when present, constrains what it may issue (EKU chaining, as WebPKI
    verifiers do): it must allow one of the purpose's usages or anyExtendedKeyUsage.

    Replaces the client verifier's CA check, which demands clientAuth and so would
    refuse a serverAuth-only public intermediate on an outbound connection.
    """
    wanted = purpose.usages | {_ANY_EKU}

    def check(policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is None or wanted.intersection(eku):
            return
        raise ValueError(f"CA extended key usage excludes {purpose.value} TLS use")

    return check


def _extension_policies(purpose: Purpose) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """(CA policy, end-entity policy) for the client verifier, for one purpose."""
    # Only the purpose check is replaced: the EKU keeps the WebPKI defaults' criticality
    # rule (RFC 5280 4.2.1.12 lets it be either; CA/B Forum BR 7.1.2 and cryptography's
    # defaults refuse a critical one), so a critical EKU fails the path (spec section 7).
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _ca_eku_rule(purpose)
    )
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        # Spec section 3: the SAN is never read, so it need not be present.
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _leaf_eku_rule(purpose))
    )
    return ca_policy, ee_policy


_POLICIES = {purpose: _extension_policies(purpose) for purpose in Purpose}


def _effective_usages(
    path: Sequence[x509.Certificate], purpose: Purpose
) -> frozenset[x509.ObjectIdentifier]:
    """The purpose's usages every certificate of the verified path allows (EKU chaining)."""
    allowed = purpose.usages
    for position, cert in enumerate(path):
        # The leaf's extensions are read directly: only CAs of verified paths and
        # trust anchors are kept in the memory of extensions (bounded, section 8).
        eku = (_leaf_extensions(cert) if position == 0 else _extensions(cert)).get(_EKU_OID)
        if eku is None:
            continue
        assert isinstance(eku, x509.ExtendedKeyUsage)
        if _ANY_EKU not in eku:
            allowed = allowed.intersection(eku)
    return allowed


# --- name constraints on the CN (spec section 7; RFC 5280 4.2.1.10) -----------------

_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _dns_labels(name: str) -> list[str] | None:
    """A CN as lower-case DNS labels, or None when it is not DNS-like.

    DNS-like: ASCII letter-digit-hyphen labels, optionally a whole ``*`` left-most
    label, no empty label, no trailing dot (the shape section 3 can ever match).
    """
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.lower().split(".")
    for position, label in enumerate(labels):
        if position == 0 and label == "*" and len(labels) > 1:
            continue
        if not _LDH_LABEL.fullmatch(label):
            return None
    return labels


def _constraint(name: x509.DNSName) -> tuple[list[str], bool] | None:
    """A DNS subtree as (labels of its base, subdomains only?); None when malformed.

    RFC 5280 4.2.1.10: "example.com" is the domain and everything under it; the
    leading-period form ".example.com" (OpenSSL's extension) is only what is under
    it. An empty base constrains every name. Anything else that is not a DNS name
    (an empty label, a trailing dot, a space, a NUL, a non-ASCII character, a
    wildcard) is malformed: the caller fails closed (spec section 7), as the path
    validator does when it meets such a constraint with a SAN.
    """
    value = name.value
    if not isinstance(value, str) or len(value) > 253 or not value.isascii():
        return None
    value = value.lower()
    subdomains_only = value.startswith(".")
    base = value[1:] if subdomains_only else value
    if not base:
        return None if subdomains_only else ([], False)
    labels = base.split(".")
    if not all(_LDH_LABEL.fullmatch(label) for label in labels):
        return None
    return labels, subdomains_only


def _under(labels: Sequence[str], base: Sequence[str], *, strictly: bool) -> bool:
    """``labels`` is ``base`` (unless ``strictly``) or below it, label by label."""
    if len(labels) < len(base) or (strictly and len(labels) == len(base)):
        return False
    return list(labels[len(labels) - len(base) :]) == list(base)


def _inside(labels: list[str], subtree: tuple[list[str], bool]) -> bool:
    """Every name the CN can stand for lies inside the subtree (for permitted subtrees).

    A wildcard ``*.rest`` stands for one extra label over ``rest``: all of those are
    inside when ``rest`` is the base or below it.
    """
    base, subdomains_only = subtree
    if labels[0] == "*":
        return _under(labels[1:], base, strictly=False)
    return _under(labels, base, strictly=subdomains_only)


def _touches(raw_cn: str, subtree: tuple[list[str], bool]) -> bool:
    """Some name the CN can stand for lies inside the subtree (for excluded subtrees).

    Deliberately lenient about the CN's shape (any ASCII case, a trailing dot, a
    ``*`` anywhere in the left-most label) so that no spelling slips past an
    exclusion: failing closed.
    """
    labels = raw_cn.lower().removesuffix(".").split(".")
    base, subdomains_only = subtree
    if "*" in labels[0] and len(labels) > 1:
        rest = labels[1:]
        if _under(rest, base, strictly=False):
            return True
        # "*.rest" covers base itself when base is exactly one label over rest.
        return not subdomains_only and len(base) == len(labels) and base[1:] == rest
    return _under(labels, base, strictly=subdomains_only)


def _dns_subtrees(
    ca: x509.Certificate,
) -> tuple[list[tuple[list[str], bool]], list[tuple[list[str], bool]]] | str:
    """The CA's (permitted, excluded) DNS subtrees, or why they cannot be applied."""
    constraints = _extensions(ca).get(_NAME_CONSTRAINTS_OID)
    if constraints is None:
        return [], []
    assert isinstance(constraints, x509.NameConstraints)
    subtrees: list[list[tuple[list[str], bool]]] = [[], []]
    for kind, names in enumerate((constraints.permitted_subtrees, constraints.excluded_subtrees)):
        for name in names or ():
            if not isinstance(name, x509.DNSName):
                continue
            subtree = _constraint(name)
            if subtree is None:
                return (
                    f"CA {describe(ca)} has a DNS name constraint that cannot be parsed "
                    f"({show(name.value)}): no CN can be shown to respect it"
                )
            subtrees[kind].append(subtree)
    return subtrees[0], subtrees[1]


def _name_constraint_failure(cns: Sequence[str], path: Sequence[x509.Certificate]) -> str | None:
    """Why the leaf's CNs break a DNS name constraint of a CA on the path, or None.

    The validator applies name constraints to the SAN only; tlsconnector matches the
    CN, so it applies every CA's DNS subtrees (intermediates and the anchor) to every
    CN of the leaf. When a CA has permitted DNS subtrees, a CN that is not a DNS-like
    name fails: it cannot be shown to be inside them. A constraint that cannot be
    parsed fails every CN (fail closed, spec section 7).
    """
    for ca in path:
        subtrees = _dns_subtrees(ca)
        if isinstance(subtrees, str):
            return subtrees
        permitted, excluded = subtrees
        for cn in cns:
            for subtree in excluded:
                if _touches(cn, subtree):
                    return f"CN {show(cn)} is inside a DNS subtree excluded by CA {describe(ca)}"
            if permitted:
                labels = _dns_labels(cn)
                if labels is None or not any(_inside(labels, s) for s in permitted):
                    return (
                        f"CN {show(cn)} is outside the DNS subtrees permitted by CA {describe(ca)}"
                    )
    return None


def mta_name_constraint_failure(cns: Sequence[str], trust: TrustStore) -> str | None:
    """Why CNs an MTA verified cannot be trusted under ``trust``'s name constraints.

    OpenSSL (Postfix, Python's ``ssl``) applies a CA's DNS name constraints to the CN
    only when the leaf has no DNS SAN, and an MTA that hands over only a CN says
    nothing of the path it built. So a CN is refused when any name-constrained CA of
    the trust store could exclude it (spec section 7: the path cannot be known, so
    fail closed).
    """
    if not trust.name_constrained:
        return None
    failure = _name_constraint_failure(cns, trust.name_constrained)
    if failure is None:
        return None
    return (
        f"the MTA verified the chain, but it does not apply DNS name constraints to the CN "
        f"and the path it built is unknown: {failure}"
    )


# --- validation ---------------------------------------------------------------------


def _expired(
    chain: PresentedChain, trust: TrustStore, at: datetime
) -> tuple[x509.Certificate, str] | None:
    """The first certificate past its notAfter at ``at`` (presented ones, then the
    anchor) on a chain that leads to a trust anchor, or None.

    RFC 5280 4.1.2.5: the validity period includes notAfter itself, so a certificate
    is expired only strictly after it (the validator agrees).

    Only called after the validator refused the chain, to choose between two refusals
    (spec section 7: "an expired certificate from an unknown issuer is
    certificate-not-trusted"): the chain leads to an anchor when each presented
    certificate of the issuer path is signed by the next one and the last by an anchor
    of the store (``verify_directly_issued_by``: issuer name and signature).
    """
    path = _issuer_path(chain.certificates)
    anchor = _signing_anchor(path[-1], trust)
    if anchor is None:
        return None
    try:
        for cert, issuer in itertools.pairwise(path):
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return None
    for cert in path:
        if at > cert.not_valid_after_utc:
            position = chain.certificates.index(cert)
            return cert, "leaf certificate" if position == 0 else f"certificate #{position + 1}"
    if at > anchor.not_valid_after_utc:
        return anchor, "trust anchor"
    return None


def _signing_anchor(cert: x509.Certificate, trust: TrustStore) -> x509.Certificate | None:
    """The trust anchor that issued and signed ``cert`` (``cert`` itself when it is an
    anchor that signed itself), or None."""
    for anchor in trust.certificates:
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return anchor
    return None


def _issuer_path(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf, then each presented certificate that issued the previous one.

    Only certificates "of the chain" count for expiry (section 7): an unrelated extra
    certificate appended by the peer must not turn "not trusted" into "expired".
    Bounded: at most MAX_CHAIN_CERTIFICATES presented certificates.
    """
    path = [certificates[0]]
    unused = list(certificates[1:])
    while unused:
        current = path[-1]
        wanted_key = _authority_key_id(current)
        for candidate in unused:
            key = _subject_key_id(candidate)
            if candidate.subject == current.issuer and (
                wanted_key is None or key is None or key == wanted_key
            ):
                path.append(candidate)
                unused.remove(candidate)
                break
        else:
            break
    return path


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return value.key_identifier


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _verifier(trust: TrustStore, at: datetime, purpose: Purpose) -> ClientVerifier:
    """The validator for one trust store, time and purpose.

    The client verifier for both directions: the server verifier insists on a SAN
    (spec section 7). At most MAX_CHAIN_CERTIFICATES - 1 intermediates.
    """
    ca_policy, ee_policy = _POLICIES[purpose]
    return (
        PolicyBuilder()
        .store(trust.store)
        .time(at)
        .max_chain_depth(MAX_CHAIN_CERTIFICATES - 1)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )


def _not_trusted(detail: str) -> ChainVerdict:
    return ChainVerdict(trusted=False, code=CODE_NOT_TRUSTED, detail=detail)


def validate_chain(
    chain: PresentedChain,
    *,
    trust: TrustStore,
    at: datetime,
    purpose: Purpose,
    revocation: Revocation = Revocation.SOFT,
    ocsp_response: bytes | None = None,
) -> ChainVerdict:
    """Validate a presented chain against trust anchors at the session's time.

    ``at`` must be timezone-aware (:class:`InvalidValue` otherwise). Returns a
    :class:`ChainVerdict`; an untrusted chain is a verdict, never an exception.
    Revocation (section 11): the path is checked against ``trust.crls`` and, for the
    leaf, against ``ocsp_response`` (a stapled OCSP response, DER), unless
    ``revocation`` is ``off``.
    """
    if not isinstance(revocation, Revocation):
        raise InvalidValue(revocation, "revocation must be a Revocation")
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidValue(at, "the validation time must be a timezone-aware datetime")
    # The validator works in whole seconds (X.509 times have no fractions); so do we.
    at = at.astimezone(UTC).replace(microsecond=0)
    try:
        verified = _verifier(trust, at, purpose).verify(chain.leaf, list(chain.intermediates))
    except VerificationError as exc:
        # Spec section 7: "expired" is decided from the dates, since the validator
        # reports expired and not-yet-valid alike; anything else is "not trusted".
        expired = _expired(chain, trust, at)
        if expired is not None:
            cert, what = expired
            return ChainVerdict(
                trusted=False,
                code=CODE_EXPIRED,
                detail=(
                    f"{what} {describe(cert)} expired at "
                    f"{cert.not_valid_after_utc.isoformat()} (session time {at.isoformat()})"
                ),
            )
        return _not_trusted(f"no trusted path: {show(str(exc), limit=300)}")

    path = verified.chain  # leaf, intermediates used, then the trust anchor
    if not _effective_usages(path, purpose):
        return _not_trusted(
            f"the extended key usages along the path leave no {purpose.value} TLS use"
        )
    failure = _name_constraint_failure(chain.cns, path[1:])
    if failure is not None:
        return _not_trusted(failure)
    valid_from = max(cert.not_valid_before_utc for cert in path)
    valid_until = min(cert.not_valid_after_utc for cert in path)
    unknown: str | None = None
    if revocation is not Revocation.OFF:
        checked = check_revocation(path, trust.crls, at, ocsp_response=ocsp_response)
        if checked.revoked is not None:
            return ChainVerdict(trusted=False, code=CODE_REVOKED, detail=checked.revoked)
        if checked.unknown is not None and revocation is Revocation.HARD:
            return ChainVerdict(trusted=False, code=CODE_UNKNOWN, detail=checked.unknown)
        unknown = checked.unknown
        # The answer holds only while no CRL or staple changes it (a nextUpdate passing,
        # a revocation date arriving): the verdict's window narrows to that.
        if checked.valid_from is not None:
            valid_from = max(valid_from, checked.valid_from)
        if checked.valid_until is not None:
            valid_until = min(valid_until, checked.valid_until)
    return ChainVerdict(
        trusted=True,
        code=None,
        detail=f"verified to trust anchor {_describe_anchor(path[-1])}",
        valid_from=valid_from,
        valid_until=valid_until,
        revocation_unknown=unknown,
    )
