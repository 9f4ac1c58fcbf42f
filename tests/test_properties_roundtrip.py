"""Round trips and normalisation, as properties over the tlsconnector.testing strategies.

Each test states one guarantee that holds for every input of its kind (specification
sections 2, 3, 4 and 9): normalising is idempotent and blind to spelling, an IPv4-mapped
peer is its IPv4 address, a policy survives being written as TOML and read back, a
decision survives being written as JSON and read back. Example counts come from the
Hypothesis profile (``ci`` by default, ``long`` on demand).
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import (
    CertificateName,
    DomainPattern,
    InboundSession,
    IPRange,
    IPSet,
    OutboundSession,
    Policy,
    canonical_domain,
    evaluate_inbound,
    evaluate_outbound,
    parse_peer_ip,
)
from tlsconnector.policy_file.writing import dumps, dumps_policy, policy_to_mapping
from tlsconnector.testing import (
    certificate_names,
    decision_from_json,
    default_authority,
    domain_patterns,
    domains,
    inbound_sessions,
    ip_addresses,
    ip_entries,
    outbound_sessions,
    policies,
    policy_mappings,
    spellings,
)

TRUST = default_authority().trust_store
_ASCII_SWAP = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
)


def ascii_swapcase(text: str) -> str:
    """Swap the case of ASCII letters only (section 2 never folds other letters)."""
    return text.translate(_ASCII_SWAP)


# ======================================================================================
# Normalisation (sections 2 and 3)


@given(domains())
def test_canonical_domain_is_idempotent_ascii_lower_case_and_without_trailing_dot(
    domain: str,
) -> None:
    """Normalising twice changes nothing; the canonical form is lower-case ASCII
    (A-labels) without a trailing dot; swapping ASCII case changes nothing."""
    canonical = canonical_domain(domain)
    assert canonical == canonical_domain(canonical)
    assert canonical.isascii()
    assert canonical == canonical.lower()
    assert not canonical.endswith(".")
    assert canonical == canonical_domain(ascii_swapcase(domain))


@given(domains().flatmap(lambda d: st.tuples(st.just(d), spellings(d))))
def test_every_spelling_of_a_domain_has_the_same_canonical_form(pair: tuple[str, str]) -> None:
    """U-labels or A-labels, any ASCII case, with or without one trailing dot: one domain."""
    domain, spelling = pair
    assert canonical_domain(domain) == canonical_domain(spelling)


@given(domain_patterns())
def test_scope_patterns_print_and_parse_back_to_the_same_pattern(text: str) -> None:
    """A pattern prints in canonical form, which parses to the same pattern, in any case."""
    pattern = DomainPattern.parse(text)
    assert pattern == DomainPattern.parse(str(pattern))
    assert pattern == DomainPattern.parse(ascii_swapcase(text))


@given(certificate_names())
def test_certificate_names_print_and_parse_back_to_the_same_name(text: str) -> None:
    """A certificate-name setting prints canonically and parses back, in any ASCII case."""
    name = CertificateName.parse(text)
    assert name == CertificateName.parse(str(name))
    assert name == CertificateName.parse(ascii_swapcase(text))


@given(ip_entries())
def test_ip_entries_print_and_parse_back_to_the_same_range(text: str) -> None:
    """An address list entry's canonical text parses back to the same range."""
    entry = IPRange.parse(text)
    assert entry == IPRange.parse(str(entry))
    assert entry == IPRange.parse(text.upper())


# ======================================================================================
# IPv4-mapped IPv6 is the IPv4 address (section 4)


def mapped(address: str) -> str:
    return f"::ffff:{address}"


@given(st.lists(ip_entries(), max_size=4), ip_addresses(v6=False, mapped=False))
def test_an_ipv4_mapped_peer_is_a_member_exactly_when_its_ipv4_form_is(
    entries: list[str], address: str
) -> None:
    """Membership in any sender_ip_addresses list is the same for a.b.c.d and
    ::ffff:a.b.c.d, given as text or as an address object."""
    allowed = IPSet.parse(entries)
    expected = address in allowed
    assert expected == (mapped(address) in allowed)
    assert expected == (ipaddress.IPv6Address(mapped(address)) in allowed)
    assert parse_peer_ip(address) == parse_peer_ip(mapped(address))


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_an_ipv4_mapped_cidr_block_is_the_ipv4_block(address: Any, prefix: int) -> None:
    """::ffff:a.b.c.d/(96+n) configures exactly the IPv4 block a.b.c.d/n."""
    network = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
    as_mapped = f"::ffff:{network.network_address}/{96 + prefix}"
    assert IPRange.parse(str(network)) == IPRange.parse(as_mapped)


@given(policies(min_inbound=1).flatmap(lambda p: st.tuples(st.just(p), inbound_sessions(p))))
def test_an_ipv4_mapped_peer_gets_exactly_the_decision_of_its_ipv4_form(
    case: tuple[Policy, InboundSession],
) -> None:
    """The same session from ::ffff:a.b.c.d and from a.b.c.d: the same decision, down
    to every reason's detail and the SMTP reply."""
    policy, session = case
    v4 = session.peer_ip.ipv4_mapped if session.peer_ip.version == 6 else session.peer_ip
    if v4 is None:  # an IPv6 peer: use an address from the IPv4-mapped block instead
        v4 = ipaddress.IPv4Address(int(session.peer_ip) & 0xFFFFFFFF)

    def at(peer: str) -> InboundSession:
        return InboundSession.create(
            peer_ip=peer,
            mail_from=session.mail_from,
            rcpt_to=session.rcpt_to,
            tls=session.tls,
            at=session.at,
        )

    expected = evaluate_inbound(policy, at(str(v4)))
    assert expected == evaluate_inbound(policy, at(mapped(str(v4))))


# ======================================================================================
# Policy -> TOML -> policy (section 9)


@given(policies())
def test_a_policy_written_as_toml_reads_back_as_the_same_policy(policy: Policy) -> None:
    """policy_to_mapping + dumps_policy give a policy file that loads as the same policy
    (every connector, every key, in canonical form)."""
    text = dumps_policy(policy_to_mapping(policy))
    assert policy == Policy.from_mapping(tomllib.loads(text), trust=TRUST)


@given(policy_mappings())
def test_a_policy_mapping_written_as_toml_reads_back_as_the_same_mapping(
    mapping: dict[str, Any],
) -> None:
    """Whatever a user wrote (any spelling, Unicode names and comments, optional keys
    left out), the TOML text of the mapping reads back as the same mapping and the
    same policy; the canonical mapping of that policy is a fixed point."""
    text = dumps(mapping)
    assert mapping == tomllib.loads(text)
    policy = Policy.from_mapping(mapping, trust=TRUST)
    canonical = policy_to_mapping(policy)
    assert policy == Policy.from_mapping(canonical, trust=TRUST)
    assert canonical == policy_to_mapping(Policy.from_mapping(canonical, trust=TRUST))


# ======================================================================================
# Decision -> JSON -> decision (section 9)


def through_json(obj: dict[str, Any]) -> Any:
    return json.loads(json.dumps(obj, ensure_ascii=True))


@given(policies(min_inbound=1).flatmap(lambda p: st.tuples(st.just(p), inbound_sessions(p))))
def test_an_inbound_decision_survives_a_json_round_trip(
    case: tuple[Policy, InboundSession],
) -> None:
    """The JSON object of `tlsconnector inbound --json` holds the whole decision."""
    decision = evaluate_inbound(*case)
    assert decision == decision_from_json(through_json(decision.to_dict()))


@given(policies(min_outbound=1).flatmap(lambda p: st.tuples(st.just(p), outbound_sessions(p))))
def test_an_outbound_decision_survives_a_json_round_trip(
    case: tuple[Policy, OutboundSession],
) -> None:
    """The JSON object of `tlsconnector outbound --json` holds the whole decision."""
    decision = evaluate_outbound(*case)
    assert decision == decision_from_json(through_json(decision.to_dict()))
