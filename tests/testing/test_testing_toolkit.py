"""tlsconnector.testing: the strategies draw what they promise, the checks find what
they should, and the example in docs/testing.md runs as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import tlsconnector.testing as toolkit
from tlsconnector import (
    CertificateName,
    DomainPattern,
    InboundDecision,
    InboundSession,
    InvalidValue,
    IPRange,
    OutboundAction,
    OutboundSession,
    Policy,
    Purpose,
    canonical_domain,
    evaluate_inbound,
    evaluate_outbound,
    validate_chain,
)
from tlsconnector.testing import (
    DEFAULT_TIME,
    EKU_EMAIL_ONLY,
    EKU_SERVER_AUTH,
    CertificateAuthority,
    Issuer,
    addresses_near,
    assert_forced_tls,
    assert_never_delivered_without_validation,
    assert_only_from_addresses,
    certificate_names,
    certificates,
    cns_near,
    decision_from_json,
    default_authority,
    domains,
    domains_near,
    inbound_connectors,
    inbound_decision_from_json,
    inbound_sessions,
    ip_entries,
    outbound_connectors,
    outbound_decision_from_json,
    outbound_sessions,
    policies,
    policy_mappings,
    spellings,
)

DOCS = Path(__file__).parents[2] / "docs" / "testing.md"
AUTHORITY = default_authority()
TRUST = AUTHORITY.trust_store
# Enough examples for a search to reach a known counterexample, whatever the profile;
# a search that holds runs them all, so it gets fewer.
SEARCH = 300
HOLDS = 100


def policy_of(**tables: list[dict[str, Any]]) -> Policy:
    return Policy.from_mapping(tables, trust=TRUST)


FORCED = policy_of(
    inbound=[
        {
            "name": "Fabrikam Bank inbound",
            "sender_domains": ["fabrikam.com"],
            "tls_sender_certificate_name": "*.fabrikam.com",
            "sender_ip_addresses": ["198.51.100.0/25"],
            "restrict_domains_to_ip_addresses": True,
        }
    ],
    outbound=[
        {
            "name": "Fabrikam Bank outbound",
            "recipient_domains": ["fabrikam.com"],
            "tls_settings": "domain_validation",
            "tls_domain": "*.fabrikam.com",
        }
    ],
)


def first(strategy: st.SearchStrategy[Any], condition: Callable[[Any], bool]) -> Any:
    """An example of ``strategy`` meeting ``condition``: the strategy can reach it."""
    return find(
        strategy,
        condition,
        settings=settings(
            max_examples=2000,
            database=None,
            phases=[Phase.generate],  # the first hit is enough: no time spent shrinking
            suppress_health_check=list(HealthCheck),
        ),
    )


# ======================================================================================
# The package


def test_importing_the_toolkit_exports_what_it_documents() -> None:
    """Every name in __all__ exists, is documented, and appears in docs/testing.md."""
    docs = DOCS.read_text()
    for name in toolkit.__all__:
        value = getattr(toolkit, name)
        if callable(value):
            assert value.__doc__, name
        if not name.isupper() and not name.startswith("EKU_"):
            assert name in docs, name


def test_importing_tlsconnector_alone_does_not_import_hypothesis() -> None:
    """The toolkit is the only module that imports Hypothesis, and only when imported."""
    code = (
        "import sys, tlsconnector, tlsconnector.cli; "
        "print('hypothesis' in sys.modules, 'tlsconnector.testing' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "False False" == result.stdout.strip()


def test_docs_example() -> None:
    """The ten-line example in docs/testing.md is a passing test, run as written."""
    text = DOCS.read_text()
    marker = "<!-- tests/testing/test_testing_toolkit.py::test_docs_example runs this block -->"
    block = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 14
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    tests = [value for key, value in namespace.items() if key.startswith("test_")]
    assert 1 == len(tests)
    tests[0]()


# ======================================================================================
# Domains, names, addresses


@given(domains())
def test_domains_are_valid_domain_names(text: str) -> None:
    canonical_domain(text)


def test_domains_reach_idn_mixed_case_and_trailing_dots() -> None:
    """The spellings users and sessions really use are all drawn."""
    assert not first(domains(), lambda d: not d.isascii()).isascii()
    assert first(domains(), lambda d: d.endswith(".")).endswith(".")
    mixed = first(domains(), lambda d: d != d.lower())
    assert mixed != mixed.lower()


@given(domains(idn=False, mixed_case=False, trailing_dot=False, max_labels=2))
def test_domains_can_be_plain_ascii(text: str) -> None:
    assert text == canonical_domain(text)
    assert 2 == len(text.split("."))


def test_spellings_include_u_labels_for_a_labels() -> None:
    """(tests/test_properties_roundtrip.py checks every spelling normalises back.)"""
    assert (
        "bücher.example."
        == first(spellings("xn--bcher-kva.example"), lambda s: "ü" in s and s.endswith(".")).lower()
    )


@given(certificate_names())
def test_certificate_names_are_valid_settings(text: str) -> None:
    CertificateName.parse(text)


NAMES = ["*.fabrikam.com", "mail.fabrikam.com", "*.mx.partner.co.uk", "xn--bcher-kva.example.org"]


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_cns_near_a_name_match_or_miss_as_they_say(name: str, data: st.DataObject) -> None:
    """CNs drawn as matching match the name (section 3); CNs one label off do not."""
    expected = CertificateName.parse(name)
    assert expected.matches_cn(data.draw(cns_near(name, matching=True)))
    assert not expected.matches_cn(data.draw(cns_near(name, matching=False)))


def test_cns_near_a_wildcard_include_the_classic_near_misses() -> None:
    """The apex, two labels and an xn-- label under *.fabrikam.com are all drawn."""
    misses = cns_near("*.fabrikam.com", matching=False)
    assert "fabrikam.com" == first(misses, lambda cn: cn == "fabrikam.com")
    two_labels = re.compile(r"[a-z0-9-]+\.[a-z0-9-]+\.fabrikam\.com")
    assert two_labels.fullmatch(first(misses, lambda cn: two_labels.fullmatch(cn.lower())).lower())
    assert first(misses, lambda cn: cn.lower().startswith("xn--")).lower().startswith("xn--")


@given(ip_entries())
def test_ip_entries_are_valid_sender_ip_addresses(text: str) -> None:
    IPRange.parse(text)


@given(addresses_near(["198.51.100.0/25"]))
def test_addresses_near_a_range_are_its_edges_and_just_outside(address: str) -> None:
    assert address.removeprefix("::ffff:") in {
        "198.51.99.255",
        "198.51.100.0",
        "198.51.100.63",
        "198.51.100.127",
        "198.51.100.128",
    }


@given(domains_near(["*.fabrikam.com"]))
def test_domains_near_a_pattern_are_valid_domains(text: str) -> None:
    canonical_domain(text)


def test_domains_near_a_pattern_reach_inside_and_just_outside() -> None:
    pattern = DomainPattern.parse("*.fabrikam.com")
    near = domains_near([pattern])
    assert pattern.matches(canonical_domain(first(near, lambda d: d.count(".") >= 3)))
    outside = first(
        near,
        lambda d: (
            canonical_domain(d).endswith("fabrikam.com")
            and not pattern.matches(canonical_domain(d))
        ),
    )
    assert not canonical_domain(outside).endswith(".fabrikam.com")


# ======================================================================================
# Certificates


def eku_of(cert: x509.Certificate) -> tuple[x509.ObjectIdentifier, ...] | None:
    try:
        return tuple(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


@given(certificates())
def test_minted_chains_carry_what_was_asked_for(chain: toolkit.MintedChain) -> None:
    """CNs, SAN, validity and EKU of the leaf are the ones recorded, read back with
    cryptography; the intermediate is presented when asked."""
    leaf = chain.presented.leaf
    assert chain.cns == tuple(
        a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    assert chain.not_before == leaf.not_valid_before_utc
    assert chain.not_after == leaf.not_valid_after_utc
    assert chain.eku == eku_of(leaf)
    try:
        sans = tuple(
            leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        sans = ()
    assert chain.sans == sans
    expected_length = 2 if chain.with_intermediate and chain.issuer is not Issuer.SELF_SIGNED else 1
    assert expected_length == len(chain.presented.certificates)


@given(certificates(eku=st.just(EKU_SERVER_AUTH)))
def test_a_minted_chain_validates_exactly_when_trusted_and_within_its_dates(
    chain: toolkit.MintedChain,
) -> None:
    """Only chains from the authority itself, presented with their intermediate and
    within their validity at the session time, validate against its trust store."""
    verdict = validate_chain(
        chain.presented, trust=TRUST, at=DEFAULT_TIME, purpose=Purpose.OUTBOUND
    )
    expected = (
        chain.issuer is Issuer.TRUSTED
        and chain.with_intermediate
        and chain.not_before <= DEFAULT_TIME <= chain.not_after
    )
    assert expected == verdict.trusted


def test_an_authority_mints_each_chain_once_and_its_impostor_is_never_trusted() -> None:
    authority = CertificateAuthority("Toolkit Test Root")
    chain = authority.issue("mail.fabrikam.com")
    assert chain is authority.issue("mail.fabrikam.com")
    impostor = authority.issue("mail.fabrikam.com", issuer=Issuer.IMPOSTOR)
    assert impostor.presented.leaf.issuer == chain.presented.leaf.issuer
    for candidate, trusted in ((chain, True), (impostor, False)):
        verdict = validate_chain(
            candidate.presented,
            trust=authority.trust_store,
            at=DEFAULT_TIME,
            purpose=Purpose.INBOUND,
        )
        assert trusted == verdict.trusted
    email_only = authority.issue("mail.fabrikam.com", eku=EKU_EMAIL_ONLY)
    assert (ExtendedKeyUsageOID.EMAIL_PROTECTION,) == eku_of(email_only.presented.leaf)


# ======================================================================================
# Connectors and policies


@given(policy_mappings())
def test_policy_mappings_always_load(mapping: dict[str, Any]) -> None:
    """Every generated policy passes Policy.from_mapping: unique names, valid
    combinations, no outbound ties (section 6.2)."""
    Policy.from_mapping(mapping, trust=None)


@given(inbound_connectors(), outbound_connectors())
def test_connectors_build(inbound: Any, outbound: Any) -> None:
    assert inbound.sender_domains
    assert outbound.recipient_domains or outbound.is_transport_rule_scoped


def test_policies_reach_overlapping_connectors() -> None:
    """Policies have connectors competing for one domain, so precedence is exercised."""
    policy = first(
        policies(min_inbound=2),
        lambda p: (
            len({str(d) for c in p.inbound for d in c.sender_domains})
            < sum(len(c.sender_domains) for c in p.inbound)
        ),
    )
    assert 2 <= len(policy.inbound)


# ======================================================================================
# Sessions aimed at a policy


def inbound_outcome(session: InboundSession) -> tuple[str, tuple[str, ...]]:
    decision = evaluate_inbound(FORCED, session)
    return str(decision.action), decision.codes


@pytest.mark.parametrize(
    "codes",
    [
        ("connector-satisfied",),
        ("no-connector",),
        ("tls-required",),
        ("certificate-missing",),
        ("certificate-not-trusted",),
        ("certificate-expired",),
        ("certificate-name-mismatch",),
        ("ip-not-allowed",),
    ],
)
def test_inbound_sessions_reach_every_outcome_of_a_policy(codes: tuple[str, ...]) -> None:
    """Sessions aimed at a policy are accepted, ignored and refused for every reason."""
    session = first(inbound_sessions(FORCED), lambda s: set(codes) <= set(inbound_outcome(s)[1]))
    assert set(codes) <= set(inbound_outcome(session)[1])


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("route", "connector-selected"),
        ("deliver", "connector-selected"),
        ("defer", "starttls-not-supported"),
        ("defer", "certificate-host-mismatch"),
        ("defer", "certificate-not-trusted"),
        ("defer", "certificate-expired"),
        ("defer", "validation-failure"),
        ("fail", "message-expired"),
        ("defer", "connector-unavailable"),
        ("route", "no-connector"),
    ],
)
def test_outbound_sessions_reach_every_outcome_of_a_policy(action: str, code: str) -> None:
    def reaches(session: OutboundSession) -> bool:
        decision = evaluate_outbound(FORCED, session)
        return action == decision.action and code in decision.codes

    assert reaches(first(outbound_sessions(FORCED), reaches))


# ======================================================================================
# The checks


def test_assert_forced_tls_holds_for_a_forced_tls_policy() -> None:
    assert_forced_tls(FORCED, "fabrikam.com", certificate_name="*.fabrikam.com", max_examples=HOLDS)


def test_assert_forced_tls_finds_a_connector_that_only_requires_tls() -> None:
    """The smallest counterexample is STARTTLS without a certificate, explained."""
    policy = policy_of(inbound=[{"name": "TLS only", "sender_domains": ["fabrikam.com"]}])
    with pytest.raises(AssertionError) as failure:
        assert_forced_tls(policy, "fabrikam.com", max_examples=SEARCH)
    message = str(failure.value)
    assert "Why: the session used STARTTLS but no client certificate was presented" in message
    assert "tls: STARTTLS, no client certificate" in message
    assert "decision: ACCEPT by connector 'TLS only'" in message


def test_assert_forced_tls_finds_a_domain_no_connector_governs() -> None:
    with pytest.raises(AssertionError, match="no connector governs the sender domain"):
        assert_forced_tls(FORCED, "contoso.com", max_examples=SEARCH)


def test_assert_forced_tls_finds_a_wider_connector_for_subdomains() -> None:
    policy = policy_of(
        inbound=[
            *FORCED_INBOUND,
            {"name": "Fabrikam group", "sender_domains": ["*.fabrikam.com"], "require_tls": False},
        ]
    )
    assert_forced_tls(policy, "fabrikam.com", max_examples=SEARCH)
    with pytest.raises(
        AssertionError, match=r"did not use STARTTLS[\s\S]*'a@[^']+\.fabrikam\.com'"
    ):
        assert_forced_tls(policy, "fabrikam.com", include_subdomains=True, max_examples=SEARCH)


FORCED_INBOUND = [
    {
        "name": "Fabrikam Bank inbound",
        "sender_domains": ["fabrikam.com"],
        "tls_sender_certificate_name": "*.fabrikam.com",
    }
]


def test_assert_forced_tls_finds_a_certificate_name_other_than_the_one_demanded() -> None:
    policy = policy_of(inbound=FORCED_INBOUND)
    with pytest.raises(
        AssertionError, match=r"no certificate CN \(.*\) matches 'mail\.fabrikam\.com'"
    ):
        assert_forced_tls(
            policy, "fabrikam.com", certificate_name="mail.fabrikam.com", max_examples=SEARCH
        )


def test_assert_forced_tls_finds_a_policy_without_trust_anchors_accepting_mta_facts() -> None:
    """Without trust anchors only MTA-verified facts can be accepted; unverified ones never."""
    policy = Policy.from_mapping({"inbound": FORCED_INBOUND}, trust=None)
    assert_forced_tls(policy, "fabrikam.com", certificate_name="*.fabrikam.com", max_examples=HOLDS)


def test_assert_only_from_addresses_holds_and_finds_the_first_address_outside() -> None:
    assert_only_from_addresses(FORCED, "fabrikam.com", ["198.51.100.0/25"], max_examples=HOLDS)
    with pytest.raises(AssertionError) as failure:
        assert_only_from_addresses(FORCED, "fabrikam.com", ["198.51.100.0/26"], max_examples=SEARCH)
    outside = r"the peer 198\.51\.100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]) is not in"
    assert re.search(outside, str(failure.value))


def test_assert_never_delivered_without_validation_holds_for_domain_validation() -> None:
    assert_never_delivered_without_validation(
        FORCED, "fabrikam.com", certificate_name="*.fabrikam.com", max_examples=HOLDS
    )


def test_assert_never_delivered_without_validation_finds_encryption_only() -> None:
    policy = policy_of(
        outbound=[
            {
                "name": "Out",
                "recipient_domains": ["fabrikam.com"],
                "tls_settings": "encryption_only",
            }
        ]
    )
    with pytest.raises(AssertionError, match="no server certificate was presented"):
        assert_never_delivered_without_validation(policy, "fabrikam.com", max_examples=SEARCH)


def test_assert_never_delivered_without_validation_finds_a_name_never_checked() -> None:
    """certificate_validation validates the chain but not the name."""
    policy = policy_of(
        outbound=[
            {
                "name": "Out",
                "recipient_domains": ["fabrikam.com"],
                "tls_settings": "certificate_validation",
            }
        ]
    )
    assert_never_delivered_without_validation(policy, "fabrikam.com", max_examples=HOLDS)
    with pytest.raises(AssertionError, match=r"matches '\*\.fabrikam\.com'"):
        assert_never_delivered_without_validation(
            policy, "fabrikam.com", certificate_name="*.fabrikam.com", max_examples=SEARCH
        )


def test_assert_never_delivered_without_validation_finds_an_opportunistic_rule_connector() -> None:
    """A transport rule naming an opportunistic connector delivers in plaintext."""
    policy = policy_of(
        outbound=[
            {
                "name": "Fabrikam Bank outbound",
                "recipient_domains": ["fabrikam.com"],
                "tls_settings": "certificate_validation",
            },
            {"name": "Bulk", "is_transport_rule_scoped": True},
        ]
    )
    assert_never_delivered_without_validation(policy, "fabrikam.com", max_examples=HOLDS)
    with pytest.raises(AssertionError, match="did not use STARTTLS"):
        assert_never_delivered_without_validation(
            policy, "fabrikam.com", connector="bulk", max_examples=SEARCH
        )


@given(st.sampled_from(["fabrikam.com", "FABRIKAM.com."]))
@settings(max_examples=2, suppress_health_check=list(HealthCheck))
def test_the_checks_run_inside_a_users_own_given(domain: str) -> None:
    """A check may run inside the user's own @given; its failure still surfaces."""
    policy = policy_of(inbound=[{"name": "TLS only", "sender_domains": ["fabrikam.com"]}])
    with pytest.raises(AssertionError, match="Smallest counterexample found"):
        assert_forced_tls(policy, domain, max_examples=SEARCH)


# ======================================================================================
# decision_from_json


def test_decision_from_json_tells_the_directions_apart() -> None:
    inbound = InboundDecision.tempfail("boom")
    assert inbound == decision_from_json(inbound.to_dict())
    assert inbound == inbound_decision_from_json(inbound.to_dict())
    session = OutboundSession.create(recipient="a@fabrikam.com", at=DEFAULT_TIME)
    outbound = evaluate_outbound(FORCED, session)
    assert OutboundAction.ROUTE == outbound.action
    assert outbound == decision_from_json(outbound.to_dict())
    assert outbound == outbound_decision_from_json(outbound.to_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "maybe"}, "action: must be one of accept, reject, tempfail"),
        ({"extra": 1}, r"\(decision\): unknown keys extra"),
        (
            {"reasons": [{"code": "nope", "detail": "", "connector": None}]},
            r"reasons\[0\]\.code: must be one of",
        ),
        (
            {"reasons": [{"code": "tls-required", "detail": 3, "connector": None}]},
            r"reasons\[0\]\.detail: must be a string",
        ),
        (
            {"smtp": {"code": "550", "enhanced": "5.7.1", "text": "x"}},
            "smtp.code: must be a reply code",
        ),
        ({"connector": 7}, "connector: must be a string or null"),
    ],
)
def test_decision_from_json_refuses_what_to_dict_never_writes(
    change: dict[str, Any], message: str
) -> None:
    obj = {**InboundDecision.tempfail("boom").to_dict(), **change}
    with pytest.raises(InvalidValue, match=message):
        inbound_decision_from_json(obj)


def test_decision_from_json_refuses_a_missing_key_and_an_unknown_action() -> None:
    obj = InboundDecision.tempfail("boom").to_dict()
    del obj["smtp"]
    with pytest.raises(InvalidValue, match="missing keys smtp"):
        decision_from_json(obj)
    with pytest.raises(InvalidValue, match="action: must be one of accept"):
        decision_from_json({"action": None})
