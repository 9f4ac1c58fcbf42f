"""The lint of ``[trust] ca_file`` anchors no chain can validate through (docs/lint.md,
``trust-anchor-unusable``): real certificates minted with ``cryptography``, and the
validator's own verdict on a chain through each one, so the warning says what happens."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlsconnector import PresentedChain, TrustStore, lint, load_policy, validate_chain
from tlsconnector._validation import Purpose
from tlsconnector.policy_file.lint import LintCode

from certmint import NOW

_USAGE = {
    "digital_signature": False,
    "content_commitment": False,
    "key_encipherment": False,
    "data_encipherment": False,
    "key_agreement": False,
    "crl_sign": True,
    "encipher_only": False,
    "decipher_only": False,
}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def root(
    cn: str, *, usage: bool | None, ca: bool = True
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed root; ``usage``: keyUsage with keyCertSign (True), without it
    (False), or no keyUsage at all (None); ``ca``: basicConstraints cA."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if usage is not None:
        builder = builder.add_extension(x509.KeyUsage(key_cert_sign=usage, **_USAGE), True)
    return key, builder.sign(key, hashes.SHA256())


def leaf_pem(key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate) -> str:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mail.fabrikam.com"))
        .issuer_name(issuer.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


POLICY = """
[trust]
ca_file = "ca.pem"

[[inbound]]
name = "Fabrikam"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "mail.fabrikam.com"
"""

ROOTS = {
    "Good Root": root("Good Root", usage=True),
    "No KeyUsage Root": root("No KeyUsage Root", usage=None),
    "No CertSign Root": root("No CertSign Root", usage=False),
    "Not A CA Root": root("Not A CA Root", usage=True, ca=False),
}


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    pems = [cert.public_bytes(serialization.Encoding.PEM).decode() for _, cert in ROOTS.values()]
    (tmp_path / "ca.pem").write_text("".join(pems))
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def test_each_unusable_anchor_of_ca_file_is_a_warning(policy_path: Path) -> None:
    policy = load_policy(policy_path)
    assert policy.trust is not None
    assert "ca.pem" == policy.trust.ca_file
    found = {w.message for w in lint(policy) if w.code is LintCode.TRUST_ANCHOR_UNUSABLE}
    assert {
        "ca_file 'ca.pem': certificate 'CN=No KeyUsage Root': it has no keyUsage extension "
        "(with openssl req -x509, add -addext 'keyUsage=critical,keyCertSign,cRLSign'), so "
        "every chain through it is refused (certificate-not-trusted)",
        "ca_file 'ca.pem': certificate 'CN=No CertSign Root': its keyUsage lacks keyCertSign "
        "(the right to sign certificates), so every chain through it is refused "
        "(certificate-not-trusted)",
        "ca_file 'ca.pem': certificate 'CN=Not A CA Root': it is not a CA certificate (no "
        "basicConstraints with cA: TRUE; with openssl req -x509, add -addext "
        "'basicConstraints=critical,CA:TRUE'), so every chain through it is refused "
        "(certificate-not-trusted)",
    } == found


def test_what_the_warning_says_is_what_the_validator_does(policy_path: Path) -> None:
    """A chain through each flagged anchor is refused; through the good one, trusted."""
    trust = load_policy(policy_path).trust
    assert trust is not None
    for name, (key, cert) in ROOTS.items():
        chain = PresentedChain.from_pem(leaf_pem(key, cert))
        verdict = validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
        assert (name == "Good Root") is verdict.trusted, (name, verdict)


def test_check_strict_fails_on_it_and_a_store_not_from_ca_file_is_not_linted(
    policy_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tlsconnector.cli import main

    assert 1 == main(["check", "--strict", str(policy_path)])
    assert "warning[trust-anchor-unusable]: [trust]: ca_file 'ca.pem'" in capsys.readouterr().err
    # The same anchors in a store made in code (or the host's system bundle): the host's
    # to keep, not a mistake in this policy's file.
    policy = load_policy(policy_path)
    assert policy.trust is not None
    in_code = attrs.evolve(policy, trust=TrustStore(policy.trust.certificates))
    assert policy.trust == in_code.trust  # where the anchors came from is not equality
    assert not [w for w in lint(in_code) if w.code is LintCode.TRUST_ANCHOR_UNUSABLE]
