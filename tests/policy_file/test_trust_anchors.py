"""The lint of ``[trust] ca_file`` anchors no chain can validate through (docs/lint.md,
``trust-anchor-unusable``): real certificates minted with ``cryptography``, and the
validator's own verdict on a chain through each one, so the warning says what happens."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization

from tlsconnector import PresentedChain, TrustStore, lint, load_policy, validate_chain
from tlsconnector._validation import Purpose
from tlsconnector.policy_file.lint import LintCode

from certmint import CA, NOW, hand_made_ca

POLICY = """
[trust]
ca_file = "ca.pem"

[[inbound]]
name = "Fabrikam"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "mail.fabrikam.com"
"""

ROOTS = {
    "Good Root": hand_made_ca("Good Root"),
    "No KeyUsage Root": hand_made_ca("No KeyUsage Root", key_cert_sign=None),
    "No CertSign Root": hand_made_ca("No CertSign Root", key_cert_sign=False),
    "Not A CA Root": hand_made_ca("Not A CA Root", ca=False),
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
        leaf = CA.from_certificate(cert, key).issue("mail.fabrikam.com")
        chain = PresentedChain.from_pem(leaf.chain_pem())
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
