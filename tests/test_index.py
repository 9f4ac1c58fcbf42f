"""The domain index decides exactly like a linear scan (section 2 specificity)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import (
    InboundSession,
    OutboundSession,
    Policy,
    PolicyError,
    TLSFacts,
    evaluate_inbound,
    evaluate_outbound,
)
from tlsconnector.testing._pki import NOW

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.baseline import LinearPolicy

LABELS = st.sampled_from(["fabrikam", "contoso", "eu", "mail", "a", "b", "com", "example"])
DOMAINS = st.lists(LABELS, min_size=1, max_size=4).map(".".join)
PATTERNS = st.one_of(DOMAINS, DOMAINS.map(lambda d: "*." + d), st.just("*"))


@st.composite
def inbound(draw: st.DrawFn, index: int) -> dict[str, Any]:
    return {
        "name": f"in{index}",
        "enabled": draw(st.booleans()),
        "type": draw(st.sampled_from(["partner", "partner", "on_premises"])),
        "sender_domains": draw(st.lists(PATTERNS, min_size=1, max_size=3)),
        "require_tls": draw(st.booleans()),
    }


@st.composite
def outbound(draw: st.DrawFn, index: int) -> dict[str, Any]:
    return {
        "name": f"out{index}",
        "enabled": draw(st.booleans()),
        "recipient_domains": draw(st.lists(PATTERNS, min_size=1, max_size=3)),
        "is_transport_rule_scoped": draw(st.booleans()),
        "test_mode": draw(st.booleans()),
    }


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count_in = draw(st.integers(0, 8))
    count_out = draw(st.integers(0, 8))
    mapping = {
        "inbound": [draw(inbound(i)) for i in range(count_in)],
        "outbound": [draw(outbound(i)) for i in range(count_out)],
    }
    try:
        return Policy.from_mapping(mapping, trust=None)
    except PolicyError:  # outbound ties are load errors; keep the rest of the draw
        mapping["outbound"] = []
        return Policy.from_mapping(mapping, trust=None)


@given(policies(), st.one_of(st.none(), DOMAINS), st.booleans())
def test_inbound_index_agrees_with_the_linear_scan(
    policy: Policy, domain: str | None, tls: bool
) -> None:
    """Candidates and decisions are the same with the index and with a linear scan."""
    linear = LinearPolicy.of(policy)
    assert linear.inbound_candidates(domain) == policy.inbound_candidates(domain)
    session = InboundSession.create(
        peer_ip="192.0.2.1",
        mail_from=f"a@{domain}" if domain else "",
        tls=TLSFacts(None) if tls else None,
        at=NOW,
    )
    assert evaluate_inbound(linear, session) == evaluate_inbound(policy, session)


@given(policies(), DOMAINS)
def test_outbound_index_agrees_with_the_linear_scan(policy: Policy, domain: str) -> None:
    linear = LinearPolicy.of(policy)
    assert linear.outbound_candidates(domain) == policy.outbound_candidates(domain)
    session = OutboundSession.create(recipient=f"b@{domain}", at=NOW)
    assert evaluate_outbound(linear, session) == evaluate_outbound(policy, session)


def test_null_sender_only_reaches_star() -> None:
    policy = Policy.from_mapping(
        {
            "inbound": [
                {"name": "star", "sender_domains": ["*"]},
                {"name": "sub", "sender_domains": ["*.fabrikam.com"]},
            ]
        },
        trust=None,
    )
    assert ["star"] == [c.name for c in policy.inbound_candidates(None)]
    assert ["sub"] == [c.name for c in policy.inbound_candidates("x.y.fabrikam.com")]
    assert ["sub"] == [c.name for c in policy.inbound_candidates("fabrikam.com")]
    assert ["star"] == [c.name for c in policy.inbound_candidates("notfabrikam.com")]
