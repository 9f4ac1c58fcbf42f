"""The test suite's certificate minting: the package's own minting toolkit.

Real X.509 certificates minted with ``cryptography`` (never mocks); see
``tlsconnector.testing._pki`` for the API::

    root = CA()
    leaf = root.intermediate().issue("server1.fabrikam.com")
"""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tlsconnector.testing._pki import (
    CA,
    DEFAULT_EKU,
    DEFAULT_NOT_AFTER,
    DEFAULT_NOT_BEFORE,
    NOW,
    Leaf,
    pem,
    self_signed,
)

__all__ = [
    "CA",
    "DEFAULT_EKU",
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "NOW",
    "Leaf",
    "hand_made_ca",
    "pem",
    "self_signed",
]


def hand_made_ca(
    cn: str,
    *,
    organization: str | None = None,
    not_before: dt.datetime = NOW - dt.timedelta(days=30),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
    ca: bool = True,
    key_cert_sign: bool | None = True,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed EC root as a tool outside the toolkit makes it (``openssl req
    -x509``: the key identifiers and what ``-addext`` asks for), which may lack what
    every ``CA`` of the toolkit has: ``ca``: basicConstraints cA; ``key_cert_sign``:
    keyUsage with keyCertSign (True), keyUsage without it (False), or no keyUsage
    (None, as plain ``openssl req -x509`` makes it). ``CA.from_certificate(cert, key)``
    issues leaves under it."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if key_cert_sign is not None:
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=key_cert_sign,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    return key, builder.sign(key, hashes.SHA256())
