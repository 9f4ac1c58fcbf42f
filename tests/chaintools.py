"""Shared helpers of the chain and validation tests (tests/test_chains.py,
tests/test_validation.py): EKU names, reason codes, and checking a minted leaf."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._validation import ChainVerdict, Purpose, validate_chain

import certmint
from certmint import CA, NOW

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

EXPIRED = "certificate-expired"
NOT_TRUSTED = "certificate-not-trusted"


def check(
    leaf: certmint.Leaf,
    trust: TrustStore,
    *,
    at: datetime = NOW,
    purpose: Purpose = Purpose.INBOUND,
    intermediates: bool = True,
) -> ChainVerdict:
    chain = PresentedChain.from_pem(leaf.chain_pem(intermediates=intermediates))
    return validate_chain(chain, trust=trust, at=at, purpose=purpose)


def code_of(leaf: certmint.Leaf, trust: TrustStore, **kw: object) -> str | None:
    return check(leaf, trust, **kw).code  # type: ignore[arg-type]


def with_extension(ca: CA, extension: x509.ExtensionType, cn: str = "big.fabrikam.com") -> bytes:
    """A leaf signed by ``ca`` carrying one extra (non-critical) extension, as DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certmint.DEFAULT_NOT_BEFORE)
        .not_valid_after(certmint.DEFAULT_NOT_AFTER)
        .add_extension(extension, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


