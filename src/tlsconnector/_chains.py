"""Presented certificate chains and trust stores (spec section 7): parsing, bounds.

Pure: no clock, files, network or environment. A :class:`PresentedChain` is what a
peer sent, leaf first, decoded up front and bounded (:data:`MAX_CHAIN_CERTIFICATES`,
:data:`MAX_CERTIFICATE_BYTES`, :data:`MAX_CN_ATTRIBUTES`); a :class:`TrustStore` holds
the anchors of the policy. Whether a chain is trusted is :mod:`tlsconnector._validation`'s
question.
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID
from cryptography.x509.verification import (
    Store,
)

from tlsconnector._errors import InvalidValue, show
from tlsconnector._memory import BoundedCache
from tlsconnector._revocation import NO_CRLS, CrlSet

__all__ = [
    "CHECKED_CERTIFICATES",
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "MAX_CHECKED_CERTIFICATES",
    "MAX_CHECKED_CERTIFICATE_BYTES",
    "MAX_CN_ATTRIBUTES",
    "MAX_PEM_BYTES",
    "MAX_TRUST_STORE_BYTES",
    "PresentedChain",
    "TrustStore",
    "anchor_problem",
    "describe",
    "subject_cns",
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


def describe(cert: x509.Certificate) -> str:
    """A certificate's subject for a message: escaped and bounded (never raw bytes).

    Never raises: a subject that cannot be rendered is described as such.
    """
    try:
        with _quiet():
            return show(cert.subject.rfc4514_string())
    except Exception as exc:  # a message must not fail a decision
        return f"(subject not renderable: {type(exc).__name__})"


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


class _CheckedCertificates(BoundedCache[x509.Certificate, tuple[x509.Certificate, bytes]]):
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
        super().__init__(maxsize, max_bytes)

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


def _check_crls(instance: TrustStore, _: attrs.Attribute[CrlSet], value: object) -> None:
    if not isinstance(value, CrlSet):
        raise InvalidValue(value, "crls must be a CrlSet")


@attrs.frozen
class TrustStore:
    """The trust anchors (from the policy's ``[trust] ca_file`` or a system bundle),
    and the CRLs (``[trust] crl_files``, spec section 11) checked on validated paths.

    The validator's :class:`~cryptography.x509.verification.Store` is built once.
    """

    certificates: tuple[x509.Certificate, ...] = attrs.field(
        converter=_as_tuple, validator=_check_anchors
    )
    #: The CRLs; their ``key`` (a content digest) keys cached chain verdicts.
    crls: CrlSet = attrs.field(default=NO_CRLS, validator=_check_crls, kw_only=True)
    #: The policy's ``[trust] ca_file`` as written, when the anchors came from it (for
    #: messages and the lint; None for the system bundle or a store made in code).
    #: Not part of equality: the anchors are the store.
    ca_file: str | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)
    _store: Store = attrs.field(init=False, eq=False, repr=False)
    #: SHA-256 over the anchors' DER: identifies the store's content in cache keys.
    key: bytes = attrs.field(init=False, eq=False, repr=False)
    #: The certificates of the store that carry DNS name constraints, in order. An
    #: MTA that verified a chain itself does not apply them to the CN (spec section 7).
    name_constrained: tuple[x509.Certificate, ...] = attrs.field(init=False, eq=False, repr=False)

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
    def from_pem(
        cls, data: str | bytes, *, crls: CrlSet = NO_CRLS, ca_file: str | None = None
    ) -> TrustStore:
        """Decode a PEM bundle of trust anchors; :class:`InvalidValue` if empty or undecodable."""
        raw = _encode(data, MAX_TRUST_STORE_BYTES, "trust store")
        return cls(_load_pem(raw, "trust store"), crls=crls, ca_file=ca_file)

    def with_crls(self, crls: CrlSet) -> TrustStore:
        """The same anchors with ``crls`` instead of this store's CRLs."""
        return attrs.evolve(self, crls=crls)


def anchor_problem(cert: x509.Certificate) -> str | None:
    """Why the validator refuses every path through this trust anchor, or None.

    ``cryptography``'s validator (webpki rules, spec section 7) asks a CA certificate,
    the anchor included, for basicConstraints with cA set and for keyUsage with
    keyCertSign (RFC 5280 4.2.1.9 and 4.2.1.3): an anchor without them is loaded, and
    then no chain validates through it. Plain ``openssl req -x509`` leaves keyUsage out.
    """
    extensions = _extensions(cert)
    constraints = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        return (
            "it is not a CA certificate (no basicConstraints with cA: TRUE; with openssl "
            "req -x509, add -addext 'basicConstraints=critical,CA:TRUE')"
        )
    usage = extensions.get(ExtensionOID.KEY_USAGE)
    if not isinstance(usage, x509.KeyUsage):
        return (
            "it has no keyUsage extension (with openssl req -x509, add "
            "-addext 'keyUsage=critical,keyCertSign,cRLSign')"
        )
    if not usage.key_cert_sign:
        return "its keyUsage lacks keyCertSign (the right to sign certificates)"
    return None


def _has_dns_constraints(cert: x509.Certificate) -> bool:
    """The certificate carries a NameConstraints extension with a DNS subtree."""
    constraints = _extensions(cert).get(_NAME_CONSTRAINTS_OID)
    if constraints is None:
        return False
    assert isinstance(constraints, x509.NameConstraints)
    names = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
    return any(isinstance(name, x509.DNSName) for name in names)
