"""Mint real X.509 test certificates with ``cryptography`` (never mocks).

A small, trustme-like toolkit shared by the test suite::

    root = CA()
    inter = root.intermediate()
    leaf = inter.issue("server1.fabrikam.com")
    chain_text = leaf.chain_pem()          # leaf, then the intermediate
    trust_text = root.cert_pem()           # the trust anchor

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

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA",
    "DEFAULT_EKU",
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "KEY_TYPES",
    "NOW",
    "Leaf",
    "pem",
    "self_signed",
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
    return builder.sign(issuer_key, hashes.SHA256())


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
        self.cert: x509.Certificate = builder.sign(signing_key, hashes.SHA256())
        # Intermediates from this CA up to, but excluding, the root.
        self.chain: tuple[x509.Certificate, ...] = (
            (self.cert, *parent.chain) if parent is not None else ()
        )

    @property
    def root(self) -> CA:
        """The self-signed root this CA descends from (itself for a root)."""
        return self if self.parent is None else self.parent.root

    def intermediate(
        self,
        name: str = "Test Intermediate CA",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        permitted_dns: list[str] | None = None,
        excluded_dns: list[str] | None = None,
        path_length: int | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
        key_type: str = "ec-p256",
    ) -> CA:
        """A CA signed by this one; keyword arguments as for :class:`CA`."""
        return CA(
            name,
            not_before=not_before,
            not_after=not_after,
            permitted_dns=permitted_dns,
            excluded_dns=excluded_dns,
            parent=self,
            path_length=path_length,
            eku=eku,
            key_type=key_type,
        )

    def issue(
        self,
        cn: str | list[str] | None = "server1.fabrikam.com",
        *,
        san: Sequence[str | x509.GeneralName] | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = DEFAULT_EKU,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        extra_subject: list[x509.NameAttribute[Any]] | None = None,
    ) -> Leaf:
        """Issue an end-entity certificate.

        ``cn``: one CN, several (several CN attributes, in order) or ``None`` (no CN).
        ``san``: DNS names (or ready-made general names); no SAN extension when ``None``.
        ``eku``: the EKU purposes; no EKU extension when ``None``.
        """
        key = _shared_leaf_key()
        subject = x509.Name(_name_attributes(cn) + list(extra_subject or ()))
        cert = _leaf_builder(
            subject,
            self.subject,
            key,
            self.key,
            san=san,
            eku=eku,
            not_before=not_before,
            not_after=not_after,
        )
        return Leaf(cert, key, self.chain)

    def cert_pem(self) -> str:
        """This CA's own certificate as PEM text."""
        return pem(self.cert)


def self_signed(
    cn: str | list[str] | None = "server1.fabrikam.com",
    *,
    san: Sequence[str | x509.GeneralName] | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = DEFAULT_EKU,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extra_subject: list[x509.NameAttribute[Any]] | None = None,
) -> Leaf:
    """A self-signed end-entity certificate (no CA involved), with its own fresh key."""
    key = _new_key()
    subject = x509.Name(_name_attributes(cn) + list(extra_subject or ()))
    cert = _leaf_builder(
        subject,
        subject,
        key,
        key,
        san=san,
        eku=eku,
        not_before=not_before,
        not_after=not_after,
    )
    return Leaf(cert, key, ())
