"""Presented certificate chains, trust stores and chain validation (spec section 7).

Pure: no clock, files, network or environment. The session time is passed in, the
trust anchors are passed in, and intermediates come only from what the peer presented
(no AIA chasing).

Path validation is done by ``cryptography.x509.verification`` (the Rust WebPKI path
validator), never by hand. tlsconnector only adjusts its extension policies and adds
the two checks the validator does not make:

* the purpose rule for the extended key usage (spec section 7), and
* the CA's DNS name constraints applied to the subject CN, which tlsconnector matches
  instead of the SAN (spec sections 3 and 7).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from tlsconnector._errors import InvalidValue, show
from tlsconnector._memory import BoundedMemory

__all__ = [
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "MAX_CN_ATTRIBUTES",
    "MAX_PEM_BYTES",
    "MAX_TRUST_STORE_BYTES",
    "ChainVerdict",
    "PresentedChain",
    "Purpose",
    "TrustStore",
    "describe",
    "mta_name_constraint_failure",
    "validate_chain",
]

# Bounds on attacker input (spec section 7, "Bounds on attacker input").
MAX_CHAIN_CERTIFICATES = 10  # presented certificates: the leaf plus intermediates
MAX_CERTIFICATE_BYTES = 64 * 1024  # DER size of one certificate
MAX_PEM_BYTES = 1 * 1024 * 1024  # size of a presented chain as PEM text
MAX_CN_ATTRIBUTES = 16  # CN attributes in one subject
# A trust store is operator configuration, not attacker input, but still bounded:
# a full public bundle is about 250 KiB.
MAX_TRUST_STORE_BYTES = 16 * 1024 * 1024
#: The memory of checked certificates (see ``_CheckedCertificates``): entries, and
#: bytes counted as twice each certificate's DER (the decoded object and the bytes).
MAX_CHECKED_CERTIFICATES = 4096
MAX_CHECKED_CERTIFICATE_BYTES = 16 * 1024 * 1024

CODE_EXPIRED = "certificate-expired"
CODE_NOT_TRUSTED = "certificate-not-trusted"

_SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
_EKU_OID = ExtensionOID.EXTENDED_KEY_USAGE
_NAME_CONSTRAINTS_OID = ExtensionOID.NAME_CONSTRAINTS

# Both the traditional "CERTIFICATE" and OpenSSL's "X509 CERTIFICATE" labels: counted
# before decoding so an oversized chain is refused without parsing it.
_PEM_CERT_BEGIN = re.compile(rb"-----BEGIN (?:X509 )?CERTIFICATE-----")

# Exceptions ``cryptography`` raises while (lazily) decoding a certificate's fields.
# TypeError included: a subject attribute of the wrong ASN.1 type (a CN encoded as a
# BIT STRING) makes ``.subject`` raise TypeError from the NameAttribute constructor.
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,  # raised on load for an unknown version number (v2, v9, ...)
)


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


def describe(cert: x509.Certificate) -> str:
    """A certificate's subject for a message: escaped and bounded (never raw bytes).

    Never raises: a subject that cannot be rendered is described as such.
    """
    try:
        with _quiet():
            return show(cert.subject.rfc4514_string())
    except Exception as exc:  # a message must not fail a decision
        return f"(subject not renderable: {type(exc).__name__})"


#: :func:`describe`, memoised for trust anchors only (an anchor is described in every
#: verdict it ends); a certificate a peer presented is never kept by this memory.
_describe_anchor = functools.lru_cache(maxsize=256)(describe)


def _leaf_extensions(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, x509.ExtensionType]:
    """The certificate's extension values by OID (decoded by :func:`_check_certificate`
    or at trust store load)."""
    return {extension.oid: extension.value for extension in cert.extensions}


#: :func:`_leaf_extensions`, memoised for CA certificates only: those of verified paths
#: (signed by a trust anchor's hierarchy, so not an attacker's to multiply) and trust
#: anchors. A CA's extensions are read in every chain it ends, and a dictionary lookup
#: costs less than ``get_extension_for_class``.
_extensions = functools.lru_cache(maxsize=1024)(_leaf_extensions)


# ASN.1 types a name attribute value may carry that are not character strings.
_NON_STRING_TYPES = frozenset(
    {_ASN1Type.BitString, _ASN1Type.OctetString, _ASN1Type.UTCTime, _ASN1Type.GeneralizedTime}
)


def _cn_text(attribute: x509.NameAttribute[Any]) -> str:
    """A CN attribute value as text.

    ``cryptography`` decodes the character-string types (UTF8String, PrintableString,
    IA5String, BMPString, UniversalString, T61String, ...) to ``str``, but also hands
    back an OCTET STRING or a UTCTime as ``str``, and a BIT STRING as ``bytes``. A CN
    must be a character string (RFC 5280 4.1.2.4, DirectoryString), so a value of any
    other type is rendered the RFC 4514 (2.4) way for non-string values, ``#`` plus
    hex: printable, but never a usable host name, so it matches nothing (spec
    section 3; fail closed).
    """
    value: object = attribute.value
    if isinstance(value, str) and attribute._type not in _NON_STRING_TYPES:
        return value
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return "#" + bytes(value).hex() if isinstance(value, bytes | bytearray) else "#"


def subject_cns(cert: x509.Certificate) -> tuple[str, ...]:
    """Every CN attribute of the certificate's subject, in order, as text (never the SAN).

    The subject iterated once (what ``get_attributes_for_oid`` does, without its
    extra call: speed).
    """
    return tuple(_cn_text(a) for a in cert.subject if a.oid == NameOID.COMMON_NAME)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings ``cryptography`` emits while decoding hostile certificates.

    It warns (UserWarning) on a CN over 64 characters and (deprecation) on a negative
    serial number. Such a certificate is decoded the same whatever the process's
    warning filters are: under ``-W error`` a warning would otherwise become an
    exception escaping the library. (``catch_warnings`` swaps the process-wide filters
    for the duration; a warning raised by another thread meanwhile may be dropped.)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CryptographyDeprecationWarning too
        yield


def _check_certificate(cert: x509.Certificate, what: str) -> bytes:
    """Decode every field tlsconnector reads, so a malformed one fails here, not later.

    ``cryptography`` parses lazily: a certificate that loads may still raise on
    ``.subject`` or ``.extensions``. Raises :class:`InvalidValue` naming the problem;
    returns the certificate's DER.
    """
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        # The decoded names are cached on the certificate, so later reads do not warn.
        with _quiet():
            subject = cert.subject
            issuer = cert.issuer
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        _ = issuer
        for extension in cert.extensions:
            _ = extension.value
        _ = cert.not_valid_before_utc, cert.not_valid_after_utc
    except _DECODE_ERRORS as exc:
        raise InvalidValue(type(exc).__name__, f"{what}: undecodable: {show(str(exc))}") from exc
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise InvalidValue(
            f"<{len(der)} bytes>", f"{what}: larger than {MAX_CERTIFICATE_BYTES} bytes (DER)"
        )
    if len(cns) > MAX_CN_ATTRIBUTES:
        raise InvalidValue(
            f"<{len(cns)} CN attributes>",
            f"{what}: more than {MAX_CN_ATTRIBUTES} CN attributes in the subject",
        )
    return der


class _CheckedCertificates:
    """Certificates that passed :func:`_check_certificate`, with their DER (speed).

    The intermediates of a CA are presented again in every chain it issued: once one
    has been decoded and checked, a chain that presents it again gets that very
    object (equal certificates are equal DER), whose decoded fields are cached on
    it, instead of decoding and checking it again; identical certificates are so held
    once, whatever the number of chains that present them. Only certificates that
    passed are kept, so the answer is always what checking them would say. Bounded in
    entries and in DER bytes (:data:`MAX_CHECKED_CERTIFICATES`,
    :data:`MAX_CHECKED_CERTIFICATE_BYTES`); the least recently used go first.
    Thread-safe.
    """

    def __init__(
        self,
        maxsize: int = MAX_CHECKED_CERTIFICATES,
        max_bytes: int = MAX_CHECKED_CERTIFICATE_BYTES,
    ) -> None:
        self._memory: BoundedMemory[x509.Certificate, tuple[x509.Certificate, bytes]]
        self._memory = BoundedMemory(max_entries=maxsize, max_bytes=max_bytes)

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def nbytes(self) -> int:
        return self._memory.nbytes

    def checked(self, cert: x509.Certificate) -> x509.Certificate:
        """The checked certificate equal to ``cert``, or ``cert`` itself."""
        found = self._memory.get(cert)
        return cert if found is None else found[0]

    def der(self, cert: x509.Certificate) -> bytes | None:
        """The DER of ``cert`` when this very object passed the checks, else None."""
        found = self._memory.get(cert)
        return found[1] if found is not None and found[0] is cert else None

    def add(self, cert: x509.Certificate, der: bytes) -> None:
        # The object is counted as twice its DER: the decoded certificate and the bytes.
        self._memory.put(cert, (cert, der), 2 * len(der))

    def clear(self) -> None:
        self._memory.clear()


#: The process-wide memory of checked certificates.
CHECKED_CERTIFICATES = _CheckedCertificates()


def _checked_der(cert: x509.Certificate, what: str) -> bytes:
    """:func:`_check_certificate`, skipped for an object that already passed it."""
    der = CHECKED_CERTIFICATES.der(cert)
    if der is None:
        der = _check_certificate(cert, what)
        CHECKED_CERTIFICATES.add(cert, der)
    return der


def _encode(data: str | bytes, limit: int, what: str) -> bytes:
    """PEM input as bytes, refusing empty or oversized input before any decoding."""
    if not isinstance(data, str | bytes | bytearray | memoryview):
        raise InvalidValue(data, f"{what}: expected PEM text (str or bytes)")
    if len(data) > limit:
        raise InvalidValue(f"<{len(data)} characters>", f"{what}: larger than {limit} bytes")
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    if len(raw) > limit:
        raise InvalidValue(f"<{len(raw)} bytes>", f"{what}: larger than {limit} bytes")
    if not raw.strip():
        raise InvalidValue(data, f"{what}: empty")
    return raw


_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
_PEM_CERT_END = re.compile(rb"-----END (?:X509 )?CERTIFICATE-----")


def _not_a_certificate(raw: bytes) -> str:
    """What PEM input that holds no decodable certificate is instead, in words.

    Never the input's bytes (a private key pasted by mistake must not reach a log)
    and never ``cryptography``'s generic message (a pointer to its FAQ).
    """
    labels = [m.group(1).decode("ascii") for m in _PEM_LABEL.finditer(raw)]
    if any(label.endswith("PRIVATE KEY") for label in labels):
        return "this is a private key, not a certificate (its content is not shown)"
    begins, ends = len(_PEM_CERT_BEGIN.findall(raw)), len(_PEM_CERT_END.findall(raw))
    if begins > ends:
        return "a truncated PEM certificate: a BEGIN CERTIFICATE line without its END line"
    if begins:
        return "a PEM CERTIFICATE block that does not decode (damaged base64 or DER)"
    if labels:
        return f"this is a PEM {labels[0]}, not a certificate"
    if raw[:1] == b"\x30":
        return "this looks like DER (binary); give PEM text (openssl x509 -inform der)"
    return "no PEM certificate block (-----BEGIN CERTIFICATE-----) found"


def _load_pem(raw: bytes, what: str) -> list[x509.Certificate]:
    try:
        with _quiet():
            return x509.load_pem_x509_certificates(raw)
    except _DECODE_ERRORS as exc:
        raise InvalidValue(f"<{len(raw)} bytes>", f"{what}: {_not_a_certificate(raw)}") from exc


def _as_tuple(certificates: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(certificates)


def _check_chain(instance: PresentedChain, _: attrs.Attribute[object], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise InvalidValue(value, "a presented chain needs at least one certificate")
    if len(value) > MAX_CHAIN_CERTIFICATES:
        raise InvalidValue(
            f"<{len(value)} certificates>",
            f"more than {MAX_CHAIN_CERTIFICATES} certificates presented",
        )
    for position, cert in enumerate(value):
        what = "leaf certificate" if position == 0 else f"certificate #{position + 1}"
        if not isinstance(cert, x509.Certificate):
            raise InvalidValue(cert, f"{what}: not an x509.Certificate")
        _checked_der(cert, what)


@attrs.frozen
class PresentedChain:
    """The certificates a peer presented: the leaf first, then its intermediates.

    Bounded (spec section 7): at most :data:`MAX_CHAIN_CERTIFICATES` certificates of at
    most :data:`MAX_CERTIFICATE_BYTES` each, at most :data:`MAX_CN_ATTRIBUTES` CN
    attributes per subject. Every field that is read later is decoded up front.
    """

    certificates: tuple[x509.Certificate, ...] = attrs.field(
        converter=_as_tuple, validator=_check_chain
    )
    #: SHA-256 over the DER of every certificate, in order: a cache key for chain work.
    key: bytes = attrs.field(init=False, eq=False, repr=False)

    _cns: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", _digest(self.certificates))
        object.__setattr__(self, "_cns", subject_cns(self.leaf))

    @classmethod
    def from_pem(cls, data: str | bytes) -> PresentedChain:
        """Decode PEM text (one or more ``CERTIFICATE`` blocks, leaf first).

        Text outside the PEM blocks is ignored. Raises :class:`InvalidValue` when the
        input is empty, holds no decodable certificate, or exceeds a bound.
        """
        raw = _encode(data, MAX_PEM_BYTES, "presented chain")
        blocks = len(_PEM_CERT_BEGIN.findall(raw))
        if blocks > MAX_CHAIN_CERTIFICATES:
            raise InvalidValue(
                f"<{blocks} PEM certificates>",
                f"more than {MAX_CHAIN_CERTIFICATES} certificates presented",
            )
        # Speed: certificates checked before (a CA's intermediate) are reused.
        return cls(CHECKED_CERTIFICATES.checked(c) for c in _load_pem(raw, "presented chain"))

    @classmethod
    def from_der(cls, data: bytes | Sequence[bytes]) -> PresentedChain:
        """Decode one DER certificate, or a sequence of them (leaf first).

        Raises :class:`InvalidValue` when a certificate is empty, undecodable or
        oversized, or when there are none or too many.
        """
        items: list[bytes]
        if isinstance(data, bytes | bytearray | memoryview):
            items = [bytes(data)]
        elif isinstance(data, str):
            raise InvalidValue(data, "DER certificates must be bytes, not text")
        else:
            items = []
            for position, item in enumerate(data):
                if len(items) >= MAX_CHAIN_CERTIFICATES:
                    raise InvalidValue(
                        f"<more than {MAX_CHAIN_CERTIFICATES} certificates>",
                        f"more than {MAX_CHAIN_CERTIFICATES} certificates presented",
                    )
                if not isinstance(item, bytes | bytearray | memoryview):
                    raise InvalidValue(item, f"certificate #{position + 1}: expected bytes")
                items.append(bytes(item))
        if not items:
            raise InvalidValue(data, "a presented chain needs at least one certificate")
        certs: list[x509.Certificate] = []
        for position, der in enumerate(items):
            what = "leaf certificate" if position == 0 else f"certificate #{position + 1}"
            if not der:
                raise InvalidValue(der, f"{what}: empty")
            if len(der) > MAX_CERTIFICATE_BYTES:
                raise InvalidValue(
                    f"<{len(der)} bytes>",
                    f"{what}: larger than {MAX_CERTIFICATE_BYTES} bytes (DER)",
                )
            try:
                with _quiet():
                    loaded = x509.load_der_x509_certificate(der)
                certs.append(CHECKED_CERTIFICATES.checked(loaded))  # speed, as from_pem
            except _DECODE_ERRORS as exc:
                raise InvalidValue(der[:40], f"{what}: undecodable DER: {show(str(exc))}") from exc
        return cls(tuple(certs))

    @property
    def leaf(self) -> x509.Certificate:
        """The end-entity certificate (the first one presented)."""
        return self.certificates[0]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """Everything presented after the leaf."""
        return self.certificates[1:]

    @property
    def cns(self) -> tuple[str, ...]:
        """Every subject CN attribute of the leaf, in order, as text (never the SAN).

        Values are returned as decoded, unnormalised: deciding whether a CN is usable
        is the name matcher's job (spec section 3). Extracted once, at construction.
        """
        return self._cns

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf's DER, as ``AA:BB:...`` upper-case hex (as Postfix prints it)."""
        return ":".join(f"{b:02X}" for b in self.leaf.fingerprint(hashes.SHA256()))


def _digest(certificates: Sequence[x509.Certificate]) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    for cert in certificates:
        der = CHECKED_CERTIFICATES.der(cert)  # speed: known for checked certificates
        if der is None:
            der = cert.public_bytes(serialization.Encoding.DER)
        digest.update(len(der).to_bytes(4, "big"))
        digest.update(der)
    return digest.finalize()


def _check_anchors(instance: TrustStore, _: attrs.Attribute[object], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise InvalidValue(value, "a trust store needs at least one certificate")
    for position, cert in enumerate(value):
        what = f"trust anchor #{position + 1}"
        if not isinstance(cert, x509.Certificate):
            raise InvalidValue(cert, f"{what}: not an x509.Certificate")
        _check_certificate(cert, what)


@attrs.frozen
class TrustStore:
    """The trust anchors (from the policy's ``[trust] ca_file`` or a system bundle).

    The validator's :class:`~cryptography.x509.verification.Store` is built once.
    """

    certificates: tuple[x509.Certificate, ...] = attrs.field(
        converter=_as_tuple, validator=_check_anchors
    )
    _store: Store = attrs.field(init=False, eq=False, repr=False)
    #: SHA-256 over the anchors' DER: identifies the store's content in cache keys.
    key: bytes = attrs.field(init=False, eq=False, repr=False)
    #: The certificates of the store that carry DNS name constraints, in order. An
    #: MTA that verified a chain itself does not apply them to the CN (spec section 7).
    name_constrained: tuple[x509.Certificate, ...] = attrs.field(
        init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_store", Store(list(self.certificates)))
        object.__setattr__(self, "key", _digest(self.certificates))
        constrained = tuple(c for c in self.certificates if _has_dns_constraints(c))
        object.__setattr__(self, "name_constrained", constrained)

    @property
    def store(self) -> Store:
        """The validator's store of these anchors."""
        return self._store

    @classmethod
    def from_pem(cls, data: str | bytes) -> TrustStore:
        """Decode a PEM bundle of trust anchors; :class:`InvalidValue` if empty or undecodable."""
        raw = _encode(data, MAX_TRUST_STORE_BYTES, "trust store")
        return cls(_load_pem(raw, "trust store"))


@attrs.frozen
class ChainVerdict:
    """The outcome of :func:`validate_chain`: a value, never an exception.

    ``code`` is ``None`` when trusted, else ``"certificate-expired"`` or
    ``"certificate-not-trusted"``; ``detail`` is a human explanation with every
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
        return (None if subdomains_only else ([], False))
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


def _has_dns_constraints(cert: x509.Certificate) -> bool:
    """The certificate carries a NameConstraints extension with a DNS subtree."""
    constraints = _extensions(cert).get(_NAME_CONSTRAINTS_OID)
    if constraints is None:
        return False
    assert isinstance(constraints, x509.NameConstraints)
    names = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
    return any(isinstance(name, x509.DNSName) for name in names)


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
    chain: PresentedChain, *, trust: TrustStore, at: datetime, purpose: Purpose
) -> ChainVerdict:
    """Validate a presented chain against trust anchors at the session's time.

    ``at`` must be timezone-aware (:class:`InvalidValue` otherwise). Returns a
    :class:`ChainVerdict`; an untrusted chain is a verdict, never an exception.
    """
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
    return ChainVerdict(
        trusted=True,
        code=None,
        detail=f"verified to trust anchor {_describe_anchor(path[-1])}",
        valid_from=max(cert.not_valid_before_utc for cert in path),
        valid_until=min(cert.not_valid_after_utc for cert in path),
    )
