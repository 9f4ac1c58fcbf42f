"""``tlsconnector requirements`` (section 12): what mail from a sender domain must show,
computed with the very selection evaluate_inbound uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import (
    InboundAction,
    InboundSession,
    MtaVerifiedCertificate,
    Policy,
    TLSFacts,
    TrustStore,
    evaluate_inbound,
    load_policy,
)
from tlsconnector._inbound import inbound_requirements
from tlsconnector.cli import main

from certmint import CA, NOW

ROOT = CA("Requirements Root")
TRUST = TrustStore.from_pem(ROOT.cert_pem())
CONNECTORS: list[dict[str, Any]] = [
    {
        "name": "Fabrikam by certificate",
        "sender_domains": ["fabrikam.com"],
        "tls_sender_certificate_name": "*.fabrikam.com",
    },
    {
        "name": "Fabrikam by IP",
        "sender_domains": ["fabrikam.com"],
        "restrict_domains_to_ip_addresses": True,
        "sender_ip_addresses": ["198.51.100.0/24"],
    },
    {"name": "Fabrikam DR site", "sender_domains": ["fabrikam.com"], "require_tls": True},
    {"name": "Woodgrove", "sender_domains": ["*.woodgrove.com"], "require_tls": True},
]
POLICY_TOML = """
[trust]
ca_file = "ca.pem"

[[inbound]]
name = "Fabrikam by certificate"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.fabrikam.com"

[[inbound]]
name = "Fabrikam by IP"
sender_domains = ["fabrikam.com"]
restrict_domains_to_ip_addresses = true
sender_ip_addresses = ["198.51.100.0/24"]

[[inbound]]
name = "Fabrikam DR site"
sender_domains = ["fabrikam.com"]
require_tls = true
"""


def policy() -> Policy:
    return Policy.from_mapping({"inbound": CONNECTORS}, trust=TRUST)


def test_two_restricting_connectors_mean_either_suffices_and_the_tls_only_one_is_dropped() -> None:
    found = inbound_requirements(policy(), "FabriKam.com.")
    assert "fabrikam.com" == found.domain
    # Ordered by name, as evaluate_inbound orders candidates (casefold).
    assert ["Fabrikam by certificate", "Fabrikam by IP"] == [c.connector for c in found.connectors]
    assert found.either_suffices
    assert ("Fabrikam DR site",) == found.dropped
    by_cert, by_ip = found.connectors
    assert (True, None, None, ("198.51.100.0/24",)) == (  # require_tls defaults to true
        by_ip.tls,
        by_ip.certificate_name,
        by_ip.trust_anchors,
        by_ip.ip_addresses,
    )
    assert (True, "*.fabrikam.com", 1, None) == (
        by_cert.tls,
        by_cert.certificate_name,
        by_cert.trust_anchors,
        by_cert.ip_addresses,
    )


def test_a_domain_nothing_governs_and_the_null_sender() -> None:
    for domain in ("example.org", "<>", ""):
        found = inbound_requirements(policy(), domain)
        assert (False, ()) == (found.governed, found.connectors)
    assert ["Woodgrove"] == [
        c.connector for c in inbound_requirements(policy(), "a.b.woodgrove.com").connectors
    ]


SENDERS = st.sampled_from(["a@fabrikam.com", "a@mail.woodgrove.com", "a@example.org"])
PEERS = st.sampled_from(["198.51.100.7", "203.0.113.9"])
TLS = st.sampled_from(
    [
        None,
        TLSFacts(None),
        TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), verified=True)),
        TLSFacts(MtaVerifiedCertificate(("evil.example",), verified=True)),
    ]
)


@given(SENDERS, PEERS, TLS)
def test_the_deciding_connectors_are_those_evaluate_inbound_names(
    sender: str, peer: str, tls: TLSFacts | None
) -> None:
    """Every accept and reject names a connector the requirements list, and a session
    showing what one listed connector asks for is accepted."""
    pol = policy()
    session = InboundSession.create(peer_ip=peer, mail_from=sender, tls=tls, at=NOW)
    decision = evaluate_inbound(pol, session)
    found = inbound_requirements(pol, sender.rpartition("@")[2])
    listed = {c.connector for c in found.connectors}
    if decision.connector is None:
        assert not found.governed
    else:
        assert decision.connector in listed
        assert {r.connector for r in decision.reasons if r.connector} <= listed
    if decision.action is InboundAction.REJECT:
        assert found.governed


def write_policy(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return path


def test_the_command_prints_what_each_domain_must_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy(tmp_path)
    assert 0 == main(["requirements", "--policy", str(path), "fabrikam.com", "example.org"])
    out = capsys.readouterr().out
    assert (
        "fabrikam.com: decided by 'Fabrikam by certificate' or 'Fabrikam by IP': "
        "satisfying either one suffices"
    ) in out
    assert "  'Fabrikam by IP': IP addresses: 198.51.100.0/24" in out
    assert (
        "  'Fabrikam by certificate': certificate: a client certificate whose subject CN "
        "matches *.fabrikam.com, chaining to ca_file 'ca.pem' (1 anchor)"
    ) in out
    assert "  not deciding (restrict beats allow): 'Fabrikam DR site'" in out
    assert "example.org: no enabled partner connector governs it" in out


def test_the_command_as_a_subprocess_with_json_and_a_bad_domain(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlsconnector",
            "requirements",
            "--policy",
            str(path),
            "fabrikam.com",
            "bad..example",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 1 == result.returncode
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (True, 2) == (first["either_suffices"], len(first["connectors"]))
    assert "bad..example" == second["error"]["domain"]
    assert "empty label" in result.stderr


def test_without_ca_file_the_anchors_are_named_the_system_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """load_policy reads the system bundle when the policy names no ca_file: the text
    says so, not "the policy's trust store"."""
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[inbound]]\nname = "F"\nsender_domains = ["f.example"]\n'
        'tls_sender_certificate_name = "mail.f.example"\n'
    )
    policy = load_policy(path)
    if policy.trust is None:
        pytest.skip("no system CA bundle on this machine")
    assert 0 == main(["requirements", "--policy", str(path), "f.example"])
    anchors = len(policy.trust.certificates)
    assert f"chaining to the system CA bundle ({anchors} anchors)" in capsys.readouterr().out
