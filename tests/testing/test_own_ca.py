"""The test PKI built from the user's own CA (CertificateAuthority.from_pem / from_files),
and trusting(): a policy pointed at a test authority (docs/testing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tlsconnector import (
    InboundAction,
    InboundSession,
    InvalidValue,
    Policy,
    evaluate_inbound,
    load_policy,
)
from tlsconnector.testing import (
    DEFAULT_TIME,
    CertificateAuthority,
    MintedChain,
    default_authority,
    trusting,
)
from tlsconnector.testing._pki import CA, MAX_CA_PEM_BYTES, pem

from certmint import self_signed

PARTNER = {
    "name": "Fabrikam",
    "sender_domains": ["fabrikam.com"],
    "tls_sender_certificate_name": "*.fabrikam.com",
}


def key_pem(ca: CA, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password is not None
        else serialization.NoEncryption()
    )
    return ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode("ascii")


def decide(policy: Policy, chain: MintedChain) -> InboundSession:
    return InboundSession.create(
        peer_ip="192.0.2.1",
        mail_from="payments@fabrikam.com",
        tls=chain.tls_facts(),
        at=DEFAULT_TIME,
    )


def action(policy: Policy, chain: MintedChain) -> tuple[InboundAction, tuple[str, ...]]:
    decision = evaluate_inbound(policy, decide(policy, chain))
    return decision.action, decision.codes


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_chains_from_the_users_own_ca_validate_under_a_policy_loaded_with_it(
    tmp_path: Path, key_type: str
) -> None:
    own = CA("Fabrikam Partner Root", key_type=key_type)
    (tmp_path / "partners-ca.pem").write_text(own.cert_pem())
    (tmp_path / "policy.toml").write_text(
        '[trust]\nca_file = "partners-ca.pem"\n\n[[inbound]]\nname = "Fabrikam"\n'
        'sender_domains = ["fabrikam.com"]\ntls_sender_certificate_name = "*.fabrikam.com"\n'
    )
    policy = load_policy(tmp_path / "policy.toml", use_system_trust=False)
    authority = CertificateAuthority.from_pem(own.cert_pem(), key_pem(own))
    assert own.cert_pem() == authority.root_pem
    assert "Fabrikam Partner Root" == authority.name
    assert (InboundAction.ACCEPT, ("connector-satisfied",)) == action(
        policy, authority.issue("mail.fabrikam.com")
    )
    # Its impostor (same names, other keys) and the default authority are not trusted.
    for other in (authority.impostor, default_authority()):
        assert (InboundAction.REJECT, ("certificate-not-trusted",)) == action(
            policy, other.issue("mail.fabrikam.com")
        )


def test_from_files_reads_an_encrypted_key(tmp_path: Path) -> None:
    own = CA("Own Root")
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert.write_text(own.cert_pem())
    key.write_bytes(key_pem(own, b"s3cret").encode())
    authority = CertificateAuthority.from_files(cert, key, password="s3cret")  # noqa: S106  # a test key
    assert own.cert_pem() == authority.root_pem
    policy = trusting(Policy.from_mapping({"inbound": [PARTNER]}, trust=None), authority)
    assert InboundAction.ACCEPT == action(policy, authority.issue("a.fabrikam.com"))[0]
    with pytest.raises(InvalidValue, match=r"ca\.key'?: CA key: not a PEM private key, or a wrong"):
        CertificateAuthority.from_files(cert, key, password="wrong")  # noqa: S106
    with pytest.raises(InvalidValue, match=r"ca\.key'?: CA key: .*encrypted"):
        CertificateAuthority.from_files(cert, key)


def test_from_files_refuses_an_oversized_file(tmp_path: Path) -> None:
    own = CA("Own Root")
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert.write_text(own.cert_pem() + "#" * MAX_CA_PEM_BYTES)
    key.write_text(key_pem(own))
    with pytest.raises(InvalidValue, match=f"larger than {MAX_CA_PEM_BYTES} bytes"):
        CertificateAuthority.from_files(cert, key)


OWN = CA("Own Root")
OTHER = CA("Other Root")
LEAF = self_signed("leaf.example")


@pytest.mark.parametrize(
    ("certificate", "key", "message"),
    [
        (LEAF.chain_pem(), LEAF.key_pem(), "CN=leaf.example'?: CA certificate: basicConstraints"),
        (OWN.cert_pem(), key_pem(OTHER), "CN=Own Root'?: CA key: not the key of this CA"),
        (pem(OWN.cert, OTHER.cert), key_pem(OWN), "2 certificates'?: CA certificate: exactly one"),
        ("not a certificate", key_pem(OWN), "CA certificate: no PEM certificate"),
        (OWN.cert_pem(), "not a key", "CA key: not a PEM private key"),
        (
            (lambda ca: ca.cert_pem())(CA("Flat", path_length=0)),
            None,
            "CA certificate: pathLenConstraint 0",
        ),
        ("x" * (MAX_CA_PEM_BYTES + 1), key_pem(OWN), "CA certificate: larger than"),
    ],
)
def test_from_pem_refuses_what_cannot_sign_and_names_it(
    certificate: str, key: str | None, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        CertificateAuthority.from_pem(certificate, key if key is not None else key_pem(OWN))


def test_trusting_points_a_policy_at_a_test_authority() -> None:
    policy = Policy.from_mapping({"inbound": [PARTNER]}, trust=None)
    chain = default_authority().issue("mail.fabrikam.com")
    assert (InboundAction.REJECT, ("certificate-not-trusted",)) == action(policy, chain)
    assert InboundAction.ACCEPT == action(trusting(policy), chain)[0]
    other = CertificateAuthority("Another test root")
    pointed = other.policy(policy)
    assert pointed.trust == other.trust_store
    assert InboundAction.ACCEPT == action(pointed, other.issue("mail.fabrikam.com"))[0]
    assert InboundAction.REJECT == action(pointed, chain)[0]  # only the given authority
    assert policy.inbound == pointed.inbound
