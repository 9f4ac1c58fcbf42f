"""The test PKI: real X.509 certificates minted with ``cryptography`` (never mocks).

One place mints every test certificate: the test suite (``tests/certmint.py``), the
demo and :mod:`tlsconnector.testing` all use it, and it imports without Hypothesis.
Two layers:

* a small, trustme-like toolkit::

      root = CA()
      inter = root.intermediate()
      leaf = inter.issue("server1.fabrikam.com")
      chain_text = leaf.chain_pem()          # leaf, then the intermediate
      trust_text = root.cert_pem()           # the trust anchor

* :class:`CertificateAuthority` for the strategies: each authority mints its root and
  intermediate once, and every chain it issues is cached by what was asked for, so
  Hypothesis can draw (and shrink through) hundreds of chains in a test run.

Speed: leaves share one pooled EC P-256 key (a leaf key never signs a certificate
here). Every CA gets its own fresh key: EC P-256 key generation costs tens of
microseconds, and sharing a CA key would let an "unknown" CA with the same name
silently validate against a trusted one. ``CA(key_type="rsa-2048")`` gives a CA an
RSA key instead (as most public CAs have): its certificates are then signed with
RSA, which costs more to sign and less to verify.

Default validity is 2026-01-01T00:00Z .. 2027-12-31T00:00Z; tests evaluate at
:data:`NOW` (2026-11-26T12:00Z).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import os
import threading
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._model import Policy

from .._decisions import _DictForm
from .._errors import InvalidValue
from .._facts import TLSFacts

__all__ = [
    "CA",
    "DEFAULT_EKU",
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "DEFAULT_TIME",
    "EKU_CLIENT_AUTH",
    "EKU_EMAIL_ONLY",
    "EKU_SERVER_AUTH",
    "EKU_TLS_BOTH",
    "KEY_TYPES",
    "MAX_CA_PEM_BYTES",
    "NOW",
    "CertificateAuthority",
    "Issuer",
    "Leaf",
    "MintedChain",
    "default_authority",
    "pem",
    "self_signed",
    "trusting",
]


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEFAULT_NOT_BEFORE = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2027, 12, 31, 0, 0, tzinfo=UTC)
DEFAULT_EKU: list[x509.ObjectIdentifier] = [
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
]

_Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_leaf_key: _Key | None = None
#: The key types a CA may have.
KEY_TYPES = ("ec-p256", "rsa-2048")


def _new_key(key_type: str = "ec-p256") -> _Key:
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type != "ec-p256":
        raise ValueError(f"key_type must be one of {KEY_TYPES}, not {key_type!r}")
    return ec.generate_private_key(ec.SECP256R1())


def _shared_leaf_key() -> _Key:
    """The one pooled leaf key, created on first use."""
    global _leaf_key  # a lazy module-level cache
    if _leaf_key is None:
        _leaf_key = _new_key()
    return _leaf_key


def _name_attributes(cn: str | Sequence[str] | None) -> list[x509.NameAttribute[Any]]:
    if cn is None:
        return []
    values = [cn] if isinstance(cn, str) else list(cn)
    # _validate=False: hostile tests need NUL bytes, odd Unicode and overlong values;
    # cryptography still warns about the length, which is exactly what we want here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [x509.NameAttribute(NameOID.COMMON_NAME, v, _validate=False) for v in values]


def _general_name(entry: str | x509.GeneralName) -> x509.GeneralName:
    return entry if isinstance(entry, x509.GeneralName) else x509.DNSName(entry)


def pem(*certs: x509.Certificate) -> str:
    """Concatenate certificates as PEM text, in the order given."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


class Leaf:
    """An end-entity certificate, its private key and the intermediates that lead to it."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: _Key,
        intermediates: tuple[x509.Certificate, ...] = (),
    ) -> None:
        self.cert = cert
        self.key = key
        self.intermediates = intermediates

    def chain_pem(self, *, intermediates: bool = True) -> str:
        """The presented chain as PEM: the leaf first, then (optionally) the intermediates."""
        return pem(self.cert, *(self.intermediates if intermediates else ()))

    def der(self) -> bytes:
        """The leaf certificate alone, DER-encoded."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> str:
        """The leaf's private key as unencrypted PKCS#8 PEM (for TLS servers in tests)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: _Key,
    issuer_key: _Key,
    *,
    ca: bool,
    path_length: int | None,
    not_before: datetime | None,
    not_after: datetime | None,
) -> x509.CertificateBuilder:
    """What every minted certificate has: names, key, validity, basic constraints, key
    usage for its role, and the key identifiers."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or DEFAULT_NOT_BEFORE)
        .not_valid_after(not_after or DEFAULT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _leaf_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: _Key,
    issuer_key: _Key,
    *,
    san: Sequence[str | x509.GeneralName] | None,
    eku: Sequence[x509.ObjectIdentifier] | None,
    not_before: datetime | None,
    not_after: datetime | None,
    crl_urls: Sequence[str] | None = None,
) -> x509.Certificate:
    builder = _base_builder(
        subject,
        issuer,
        key,
        issuer_key,
        ca=False,
        path_length=None,
        not_before=not_before,
        not_after=not_after,
    )
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(e) for e in san]), critical=False
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return _with_crl_urls(builder, crl_urls).sign(issuer_key, hashes.SHA256())


def _with_crl_urls(
    builder: x509.CertificateBuilder, urls: Sequence[str] | None
) -> x509.CertificateBuilder:
    """A CRL distribution points extension with one point per URL (none: unchanged)."""
    if not urls:
        return builder
    points = [
        x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in urls
    ]
    return builder.add_extension(x509.CRLDistributionPoints(points), critical=False)


class LeafOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`CA.issue` and :func:`self_signed` besides ``cn``.

    ``san``: DNS names (or ready-made general names); no SAN extension when absent or
    ``None``. ``eku``: the EKU purposes (absent: :data:`DEFAULT_EKU`); no EKU extension
    when ``None``. ``not_before``/``not_after``: the validity (absent: the defaults).
    ``extra_subject``: attributes added to the subject after the CNs.
    """

    san: Sequence[str | x509.GeneralName] | None
    eku: Sequence[x509.ObjectIdentifier] | None
    not_before: datetime | None
    not_after: datetime | None
    extra_subject: list[x509.NameAttribute[Any]] | None
    #: CRL distribution point URLs (spec section 11); none: no extension.
    crl_distribution_points: Sequence[str] | None


class CAOptions(TypedDict, total=False):
    """The keyword arguments of :class:`CA` besides ``parent`` (what
    :meth:`CA.intermediate` passes on)."""

    not_before: datetime | None
    not_after: datetime | None
    permitted_dns: list[str] | None
    excluded_dns: list[str] | None
    path_length: int | None
    eku: Sequence[x509.ObjectIdentifier] | None
    key_type: str
    crl_distribution_points: Sequence[str] | None


class CA:
    """A certificate authority: a self-signed root, or an intermediate when ``parent`` is set.

    ``permitted_dns``/``excluded_dns`` add a critical NameConstraints extension;
    ``eku`` (an addition to the core API) puts an EKU extension on the CA certificate;
    ``key_type`` is ``"ec-p256"`` (default) or ``"rsa-2048"``.
    """

    def __init__(
        self,
        name: str = "Test Root CA",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        permitted_dns: list[str] | None = None,
        excluded_dns: list[str] | None = None,
        parent: CA | None = None,
        path_length: int | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
        key_type: str = "ec-p256",
        crl_distribution_points: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.parent = parent
        self.key: _Key = _new_key(key_type)
        subject = x509.Name(_name_attributes(name))
        # Our own Name objects, so a hostile (overlong) CA name never re-parses and warns.
        self.subject = subject
        issuer = parent.subject if parent is not None else subject
        signing_key = parent.key if parent is not None else self.key
        builder = _base_builder(
            subject,
            issuer,
            self.key,
            signing_key,
            ca=True,
            path_length=path_length,
            not_before=not_before,
            not_after=not_after,
        )
        if eku is not None:  # an EKU on a CA restricts what it may issue for
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if permitted_dns or excluded_dns:
            builder = builder.add_extension(
                x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName(d) for d in permitted_dns]
                    if permitted_dns
                    else None,
                    excluded_subtrees=[x509.DNSName(d) for d in excluded_dns]
                    if excluded_dns
                    else None,
                ),
                critical=True,
            )
        builder = _with_crl_urls(builder, crl_distribution_points)
        self.cert: x509.Certificate = builder.sign(signing_key, hashes.SHA256())
        # Intermediates from this CA up to, but excluding, the root.
        self.chain: tuple[x509.Certificate, ...] = (
            (self.cert, *parent.chain) if parent is not None else ()
        )

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, key: _Key) -> CA:
        """A CA made of an existing CA certificate and its private key (checked by
        :meth:`CertificateAuthority.from_pem`); it is the top of its own chains here."""
        ca = cls.__new__(cls)
        ca.name = _common_name(cert)
        ca.parent = None
        ca.key = key
        ca.subject = cert.subject
        ca.cert = cert
        ca.chain = ()
        return ca

    @property
    def root(self) -> CA:
        """The self-signed root this CA descends from (itself for a root)."""
        return self if self.parent is None else self.parent.root

    def intermediate(self, name: str = "Test Intermediate CA", **options: Unpack[CAOptions]) -> CA:
        """A CA signed by this one; keyword arguments as for :class:`CA`."""
        return CA(name, parent=self, **options)

    def issue(
        self, cn: str | list[str] | None = "server1.fabrikam.com", **options: Unpack[LeafOptions]
    ) -> Leaf:
        """Issue an end-entity certificate.

        ``cn``: one CN, several (several CN attributes, in order) or ``None`` (no CN);
        the other keyword arguments are those of :class:`LeafOptions`.
        """
        return _minted_leaf(cn, options, _shared_leaf_key(), self)

    def cert_pem(self) -> str:
        """This CA's own certificate as PEM text."""
        return pem(self.cert)

    def crl(
        self,
        revoked: Sequence[tuple[x509.Certificate | int, datetime]] = (),
        *,
        this_update: datetime | None = None,
        next_update: datetime | None = NOW + dt.timedelta(days=7),
        signing_key: _Key | None = None,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        entry_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> x509.CertificateRevocationList:
        """A real CRL issued in this CA's name (spec section 11).

        ``revoked``: (certificate or serial, revocation date) pairs. Defaults: current
        at :data:`NOW` (thisUpdate a day before, nextUpdate a week after); signed with
        this CA's key unless ``signing_key``; ``next_update=None`` leaves it out.
        ``extensions`` (CRL) and ``entry_extensions`` (each entry): (value, critical).
        """
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.subject)
            .last_update(this_update or NOW - dt.timedelta(days=1))
        )
        if next_update is not None:
            builder = builder.next_update(next_update)
        for value, critical in extensions:
            builder = builder.add_extension(value, critical=critical)
        for item, date in revoked:
            serial = item.serial_number if isinstance(item, x509.Certificate) else item
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(date)
            for value, critical in entry_extensions:
                entry = entry.add_extension(value, critical=critical)
            builder = builder.add_revoked_certificate(entry.build())
        key = signing_key or self.key
        if next_update is None:
            return _sign_without_next_update(builder, key)
        return builder.sign(key, hashes.SHA256())

    def ocsp_responder(self, *, eku: Sequence[x509.ObjectIdentifier] | None = None) -> Leaf:
        """A delegated OCSP responder certificate issued by this CA (RFC 6960 4.2.2.2);
        ``eku`` defaults to OCSPSigning."""
        signing = [ExtendedKeyUsageOID.OCSP_SIGNING] if eku is None else list(eku)
        return _minted_leaf("Test OCSP Responder", {"eku": signing}, _new_key(), self)

    def ocsp_response(
        self,
        leaf: x509.Certificate,
        status: str = "good",
        *,
        revoked_at: datetime | None = None,
        this_update: datetime | None = None,
        next_update: datetime | None = NOW + dt.timedelta(days=3),
        responder: Leaf | None = None,
        cert_id_issuer: x509.Certificate | None = None,
    ) -> bytes:
        """A real OCSP response (DER) about ``leaf`` issued by this CA, as a server
        staples it. ``status``: "good", "revoked" (at ``revoked_at``, default a day
        before :data:`NOW`) or "unknown"; signed by this CA, or by ``responder``
        (its certificate is included). ``cert_id_issuer``: the certificate whose name
        and key the CertID hashes (default this CA's: a wrong one names another leaf)."""
        from cryptography.x509 import ocsp

        statuses = {
            "good": ocsp.OCSPCertStatus.GOOD,
            "revoked": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN,
        }
        cert_status = statuses[status]
        revoked = revoked_at or NOW - dt.timedelta(days=1)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf,
            issuer=cert_id_issuer or self.cert,
            algorithm=hashes.SHA1(),  # noqa: S303 (RFC 5019 2.1.1: CertID hashes are SHA-1)
            cert_status=cert_status,
            this_update=this_update or NOW - dt.timedelta(hours=1),
            next_update=next_update,
            revocation_time=revoked if cert_status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=None,
        )
        if responder is None:
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.cert)
            signed = builder.sign(self.key, hashes.SHA256())
        else:
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder.cert)
            builder = builder.certificates([responder.cert])
            signed = builder.sign(responder.key, hashes.SHA256())
        return signed.public_bytes(serialization.Encoding.DER)


def _sign_without_next_update(
    builder: x509.CertificateRevocationListBuilder, key: _Key
) -> x509.CertificateRevocationList:
    """``cryptography``'s builder insists on nextUpdate: sign with one, then mint the
    same CRL without it by re-encoding tbsCertList (a real signature over it)."""
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    placeholder = builder.next_update(NOW + dt.timedelta(days=7)).sign(key, hashes.SHA256())
    tbs = _drop_next_update(placeholder.tbs_certlist_bytes)
    if isinstance(key, _ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, _ec.ECDSA(hashes.SHA256()))
        algorithm = bytes.fromhex("300a06082a8648ce3d040302")  # ecdsa-with-SHA256
    else:
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
        algorithm = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSA
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + algorithm + bit_string
    return x509.load_der_x509_crl(b"\x30" + _der_length(len(body)) + body)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_items(data: bytes) -> list[bytes]:
    """The DER elements (tag, length, value) laid end to end in ``data``."""
    items, offset = [], 0
    while offset < len(data):
        first = data[offset + 1]
        if first < 0x80:
            size, header = first, 2
        else:
            count = first & 0x7F
            size = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
            header = 2 + count
        items.append(data[offset : offset + header + size])
        offset += header + size
    return items


def _drop_next_update(tbs: bytes) -> bytes:
    """tbsCertList without its nextUpdate (the second time after the issuer name)."""
    (outer,) = _der_items(tbs)
    header = 2 if outer[1] < 0x80 else 2 + (outer[1] & 0x7F)
    items = _der_items(outer[header:])
    # version?, signature, issuer, thisUpdate, nextUpdate?, revoked?, extensions?
    start = 1 if items[0][0] == 0x02 else 0
    next_index = start + 3
    assert items[next_index][0] in (0x17, 0x18)  # UTCTime / GeneralizedTime
    body = b"".join(items[:next_index] + items[next_index + 1 :])
    return b"\x30" + _der_length(len(body)) + body


def self_signed(
    cn: str | list[str] | None = "server1.fabrikam.com", **options: Unpack[LeafOptions]
) -> Leaf:
    """A self-signed end-entity certificate (no CA involved), with its own fresh key;
    arguments as for :meth:`CA.issue`."""
    return _minted_leaf(cn, options, _new_key(), None)


def _minted_leaf(
    cn: str | list[str] | None, options: LeafOptions, key: _Key, issuer: CA | None
) -> Leaf:
    """A leaf for ``cn`` with ``key``, signed by ``issuer`` (None: by itself)."""
    subject = x509.Name(_name_attributes(cn) + list(options.get("extra_subject") or ()))
    cert = _leaf_builder(
        subject,
        subject if issuer is None else issuer.subject,
        key,
        key if issuer is None else issuer.key,
        san=options.get("san"),
        eku=options.get("eku", DEFAULT_EKU),
        not_before=options.get("not_before"),
        not_after=options.get("not_after"),
        crl_urls=options.get("crl_distribution_points"),
    )
    return Leaf(cert, key, () if issuer is None else issuer.chain)


#: The session time the strategies use unless told otherwise (2026-11-26T12:00Z); the
#: default validity of minted certificates (2026-01-01 .. 2027-12-31) covers it.
DEFAULT_TIME = NOW

#: Extended key usage lists for :meth:`CertificateAuthority.issue` (None: no extension).
EKU_TLS_BOTH: tuple[x509.ObjectIdentifier, ...] = (
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
)
EKU_SERVER_AUTH: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,)
EKU_CLIENT_AUTH: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,)
#: Usable for neither direction (spec section 7).
EKU_EMAIL_ONLY: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,)

#: Chains kept per authority; the oldest are dropped beyond this.
_CACHE_LIMIT = 4096


class Issuer(enum.Enum):
    """Who signed a minted chain, as seen from a policy trusting the authority's root."""

    #: The authority's intermediate: the chain validates (given valid dates and EKU).
    TRUSTED = "trusted"
    #: An impostor CA with the same names but its own keys: never validates.
    IMPOSTOR = "impostor"
    #: A self-signed leaf: never validates.
    SELF_SIGNED = "self-signed"


@attrs.frozen
class MintedChain(_DictForm):
    """A real certificate chain, leaf first, with what it was minted with.

    ``presented`` is the decoded :class:`~tlsconnector.PresentedChain`; ``pem`` is the
    text a session's ``tls.peer_chain_pem`` carries.
    """

    pem: str
    cns: tuple[str, ...]
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    #: The EKU purposes; None when the leaf has no EKU extension.
    eku: tuple[x509.ObjectIdentifier, ...] | None
    issuer: Issuer
    #: Whether the intermediate was presented after the leaf.
    with_intermediate: bool
    presented: PresentedChain = attrs.field(eq=False, repr=False)

    def tls_facts(self) -> TLSFacts:
        """The session facts of a STARTTLS session presenting this chain."""
        return TLSFacts(self.presented)

    def to_dict(self) -> dict[str, str]:
        """The ``tls`` object of a JSON Lines session (specification section 9)."""
        return {"peer_chain_pem": self.pem}

    def describe(self) -> str:
        """One line for a counterexample: CNs, issuer, validity, EKU, SAN."""
        eku = "no EKU" if self.eku is None else "EKU " + "+".join(_eku_name(o) for o in self.eku)
        cns = ", ".join(ascii(cn) for cn in self.cns) or "no CN"
        parts = [
            f"chain with CN {cns}",
            f"issued by {self.issuer.value}"
            + ("" if self.with_intermediate else " (intermediate not presented)"),
            f"valid {self.not_before.isoformat()} .. {self.not_after.isoformat()}",
            eku,
        ]
        if self.sans:
            parts.append("SAN " + ", ".join(ascii(s) for s in self.sans))
        return "; ".join(parts)


def _eku_name(oid: x509.ObjectIdentifier) -> str:
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


_ChainKey = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[x509.ObjectIdentifier, ...] | None,
    dt.datetime,
    dt.datetime,
    Issuer,
    bool,
]


class CertificateAuthority:
    """A test PKI: a root (the trust anchor) and an intermediate that issues leaves.

    Every chain is real X.509 minted with ``cryptography``. Chains are cached by their
    parameters, so drawing the same chain again costs nothing. :attr:`impostor` is a
    second PKI with the same names but its own keys: its chains never validate against
    this authority's :attr:`trust_store`.

    >>> authority = CertificateAuthority("Example Partner Root CA")
    >>> chain = authority.issue("mail.partner.example")
    >>> chain.presented.cns
    ('mail.partner.example',)
    """

    def __init__(
        self,
        name: str = "tlsconnector.testing Root CA",
        *,
        _root: CA | None = None,
        _window: tuple[dt.datetime, dt.datetime, dt.datetime] | None = None,
    ) -> None:
        self.name = name
        self._root = CA(name) if _root is None else _root
        # _window: (valid_at, start, end) for a CA of the user's (see _own_window).
        valid_at, start, end = _window or (DEFAULT_TIME, DEFAULT_NOT_BEFORE, DEFAULT_NOT_AFTER)
        self._valid_at = valid_at
        self._intermediate = self._root.intermediate(
            f"{name} - Issuing CA", not_before=start, not_after=end
        )
        self.trust_store = TrustStore.from_pem(self._root.cert_pem())
        self._cache: dict[_ChainKey, MintedChain] = {}
        self._lock = threading.Lock()
        self._impostor: CertificateAuthority | None = None

    @property
    def valid_at(self) -> dt.datetime:
        """A time at which this whole PKI is valid: the session time the checks and
        strategies use with this authority when not given ``at``.

        :data:`DEFAULT_TIME` for the toolkit's own authorities, and for one made
        :meth:`from_pem` when your CA is valid then; otherwise noon UTC of the day after
        the later start of your CA's validity and of the minted window (2026-01-01 ..
        2027-12-31), or the middle of what the two share when that is less than a day
        and a half.

        >>> default_authority().valid_at == DEFAULT_TIME
        True
        """
        return self._valid_at

    @property
    def root_pem(self) -> str:
        """The trust anchor as PEM (what a policy's ``[trust] ca_file`` holds)."""
        return self._root.cert_pem()

    @classmethod
    def from_pem(
        cls,
        certificate: str | bytes,
        key: str | bytes,
        *,
        password: str | bytes | None = None,
    ) -> CertificateAuthority:
        """An authority whose trust anchor is *your* CA: its certificate and private key
        as PEM (one ``CERTIFICATE`` block; the key PKCS#8 or traditional, encrypted
        when ``password`` is given).

        The CA signs this authority's issuing intermediate (valid while both your CA
        and the minted window 2026-01-01 .. 2027-12-31 are), which issues the leaves;
        :attr:`trust_store` and :attr:`root_pem` are your CA certificate, so a policy
        whose ``[trust] ca_file`` is that certificate trusts the chains. The checks and
        strategies decide at :attr:`valid_at`, a time your CA is valid (a CA made today
        may not be valid at :data:`DEFAULT_TIME`).
        The key never leaves the process. Raises :class:`~tlsconnector.InvalidValue`
        naming what is wrong: not one certificate, not a CA certificate (no
        basicConstraints cA, no keyUsage or no keyCertSign in it, pathLenConstraint 0),
        a CA valid
        only outside the minted window (its validity and the window named), not an EC
        or RSA key, a key that does not belong to the certificate, a wrong password; at
        most 1 MiB of PEM each.
        """
        cert = _one_certificate(certificate)
        window = _own_window(cert)
        private_key = _ca_key(key, password, cert)
        root = CA.from_certificate(cert, private_key)
        return cls(_common_name(cert), _root=root, _window=window)

    @classmethod
    def from_files(
        cls,
        certificate: str | os.PathLike[str],
        key: str | os.PathLike[str],
        *,
        password: str | bytes | None = None,
    ) -> CertificateAuthority:
        """:meth:`from_pem` with the certificate and the key read from files (at most
        1 MiB each); an unreadable file is :class:`OSError`, a bad one
        :class:`~tlsconnector.InvalidValue` naming the file."""
        cert_path, key_path = Path(certificate), Path(key)
        cert_pem, key_pem = _read_pem(cert_path), _read_pem(key_path)
        try:
            cert = _one_certificate(cert_pem)
            window = _own_window(cert)
        except InvalidValue as exc:
            raise InvalidValue(str(cert_path), exc.reason) from None
        try:
            private_key = _ca_key(key_pem, password, cert)
        except InvalidValue as exc:
            raise InvalidValue(str(key_path), exc.reason) from None
        root = CA.from_certificate(cert, private_key)
        return cls(_common_name(cert), _root=root, _window=window)

    def policy(self, policy: Policy) -> Policy:
        """``policy`` with this authority's root as its only trust anchor (its CRLs and
        everything else kept), so the chains this authority issues validate under it:
        instead of ``attrs.evolve(policy, trust=authority.trust_store)``.

        >>> from tlsconnector import Policy
        >>> policy = Policy.from_mapping({}, trust=None)
        >>> authority = default_authority()
        >>> authority.policy(policy).trust == authority.trust_store
        True
        """
        return trusting(policy, self)

    @property
    def impostor(self) -> CertificateAuthority:
        """A PKI with the same CA names and different keys (created on first use)."""
        with self._lock:
            if self._impostor is None:
                self._impostor = CertificateAuthority(self.name)
            return self._impostor

    def issue(
        self,
        cns: str | Sequence[str] | None,
        *,
        sans: Sequence[str] = (),
        eku: Sequence[x509.ObjectIdentifier] | None = EKU_TLS_BOTH,
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
        issuer: Issuer = Issuer.TRUSTED,
        with_intermediate: bool = True,
    ) -> MintedChain:
        """Mint (or fetch from the cache) a chain for a leaf with these subject CNs.

        ``cns``: one CN, several (one CN attribute each, in order) or None (no CN).
        ``sans``: DNS names for a subjectAltName extension (none when empty).
        ``issuer``: :attr:`Issuer.IMPOSTOR` signs with :attr:`impostor`'s intermediate,
        :attr:`Issuer.SELF_SIGNED` makes a self-signed leaf (no intermediate).
        """
        cn_tuple = () if cns is None else (cns,) if isinstance(cns, str) else tuple(cns)
        key: _ChainKey = (
            cn_tuple,
            tuple(sans),
            None if eku is None else tuple(eku),
            not_before,
            not_after,
            issuer,
            with_intermediate,
        )
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        chain = self._mint(key, cns_given=cns is not None)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = chain
        return chain

    def _mint(self, key: _ChainKey, *, cns_given: bool) -> MintedChain:
        cns, sans, eku, not_before, not_after, issuer, with_intermediate = key
        subject: list[str] | None = list(cns) if cns_given else None
        san = list(sans) if sans else None
        eku_list = None if eku is None else list(eku)
        if issuer is Issuer.SELF_SIGNED:
            leaf = self_signed(
                subject, san=san, eku=eku_list, not_before=not_before, not_after=not_after
            )
            with_intermediate = False
        else:
            ca = self._intermediate if issuer is Issuer.TRUSTED else self.impostor._intermediate
            leaf = ca.issue(
                subject, san=san, eku=eku_list, not_before=not_before, not_after=not_after
            )
        pem = leaf.chain_pem(intermediates=with_intermediate)
        return MintedChain(
            pem=pem,
            cns=cns,
            sans=sans,
            not_before=not_before,
            not_after=not_after,
            eku=eku,
            issuer=issuer,
            with_intermediate=with_intermediate,
            presented=PresentedChain.from_pem(pem),
        )


#: The most PEM text :meth:`CertificateAuthority.from_pem` reads, per argument.
MAX_CA_PEM_BYTES = 1 << 20


def _read_pem(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_CA_PEM_BYTES + 1)
    if len(data) > MAX_CA_PEM_BYTES:
        raise InvalidValue(str(path), f"larger than {MAX_CA_PEM_BYTES} bytes")
    return data


def _as_bytes(data: str | bytes, what: str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not isinstance(raw, bytes):
        raise InvalidValue(type(data).__name__, f"{what}: PEM text (str or bytes) expected")
    if len(raw) > MAX_CA_PEM_BYTES:
        raise InvalidValue(f"{len(raw)} bytes", f"{what}: larger than {MAX_CA_PEM_BYTES} bytes")
    return raw


def _one_certificate(data: str | bytes) -> x509.Certificate:
    """Exactly one PEM certificate, which must be a CA that may sign a CA."""
    raw = _as_bytes(data, "CA certificate")
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise InvalidValue(
            raw[:40].decode("ascii", "replace"), "CA certificate: no PEM certificate"
        ) from None
    if len(certs) != 1:
        raise InvalidValue(f"{len(certs)} certificates", "CA certificate: exactly one expected")
    (cert,) = certs
    subject = cert.subject.rfc4514_string()
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidValue(subject, "CA certificate: no basicConstraints extension") from None
    if not basic.ca:
        raise InvalidValue(subject, "CA certificate: basicConstraints cA is false")
    if basic.path_length == 0:
        raise InvalidValue(
            subject, "CA certificate: pathLenConstraint 0, it cannot sign the issuing CA"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        # RFC 5280 4.2.1.3: a CA MUST have keyUsage; the validator refuses a path through
        # a CA without it, so every chain would be silently untrusted. Plain
        # `openssl req -x509` leaves it out (OpenSSL 3's default v3_ca section).
        raise InvalidValue(
            subject,
            "CA certificate: no keyUsage extension, so no chain it signs validates "
            "(RFC 5280 4.2.1.3); with openssl req -x509 add "
            "-addext 'keyUsage=critical,keyCertSign,cRLSign'",
        ) from None
    if not usage.key_cert_sign:
        raise InvalidValue(subject, "CA certificate: keyUsage lacks keyCertSign")
    return cert


def _own_window(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """(valid_at, start, end) for a PKI on the user's CA ``cert``: the minted
    intermediate is valid from ``start`` to ``end``, where the CA and the minted window
    (:data:`DEFAULT_NOT_BEFORE` .. :data:`DEFAULT_NOT_AFTER`) overlap (both ends
    inclusive, RFC 5280 4.1.2.5), and ``valid_at`` is a time in there: DEFAULT_TIME if
    it is, else noon UTC of the day after ``start``, else the middle (whole seconds).
    Deterministic: it depends on the certificate alone, never on the clock."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    start, end = max(not_before, DEFAULT_NOT_BEFORE), min(not_after, DEFAULT_NOT_AFTER)
    if start > end:
        raise InvalidValue(
            cert.subject.rfc4514_string(),
            f"CA certificate: valid {not_before.isoformat()} .. {not_after.isoformat()}, "
            "never within the window the toolkit's minted certificates are valid in "
            f"({DEFAULT_NOT_BEFORE.isoformat()} .. {DEFAULT_NOT_AFTER.isoformat()}), so "
            "no chain it signs could validate at a session time the toolkit uses; use a "
            "test CA valid at some time in that window",
        )
    if start <= DEFAULT_TIME <= end:
        return DEFAULT_TIME, start, end
    noon = datetime.combine(start.date() + dt.timedelta(days=1), dt.time(12), UTC)
    if noon <= end:
        return noon, start, end
    middle = start + (end - start) / 2
    return middle.replace(microsecond=0), start, end


def _ca_key(data: str | bytes, password: str | bytes | None, cert: x509.Certificate) -> _Key:
    """The private key of ``cert``: EC or RSA, and the key of that certificate."""
    raw = _as_bytes(data, "CA key")
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(raw, password=secret)
    except TypeError as exc:  # a password for an unencrypted key, or none for an encrypted one
        raise InvalidValue("(key)", f"CA key: {exc}") from None
    except ValueError:
        raise InvalidValue("(key)", "CA key: not a PEM private key, or a wrong password") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidValue(type(key).__name__, "CA key: an EC or RSA key expected")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, public)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, public)
    if mine != theirs:
        raise InvalidValue(
            cert.subject.rfc4514_string(), "CA key: not the key of this CA certificate"
        )
    return key


def _common_name(cert: x509.Certificate) -> str:
    """The certificate's first CN, else its whole subject (RFC 4514)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = cns[0].value if cns else None
    return value if isinstance(value, str) and value else cert.subject.rfc4514_string()


def trusting(policy: Policy, authority: CertificateAuthority | None = None) -> Policy:
    """``policy`` with ``authority``'s root (default: :func:`default_authority`) as its
    only trust anchor, keeping the policy's CRLs and everything else, so chains the
    authority mints validate under it. The replacement for
    ``attrs.evolve(policy, trust=authority.trust_store)``.
    """
    authority = default_authority() if authority is None else authority
    store = authority.trust_store
    if policy.trust is not None:
        store = store.with_crls(policy.trust.crls)
    return attrs.evolve(policy, trust=store)


def _session_time(authority: CertificateAuthority | None, at: dt.datetime | None) -> dt.datetime:
    """The session time of a check or strategy: ``at`` when given, else the
    authority's :attr:`~CertificateAuthority.valid_at`, else :data:`DEFAULT_TIME`."""
    if at is not None:
        return at
    return DEFAULT_TIME if authority is None else authority.valid_at


@functools.cache
def default_authority() -> CertificateAuthority:
    """The authority the strategies use when none is given (one per process).

    A policy that should trust the chains the strategies mint uses its
    :attr:`~CertificateAuthority.trust_store`.
    """
    return CertificateAuthority()
