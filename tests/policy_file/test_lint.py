"""Policy lint: valid policies that probably do not do what their author meant.

Each rule is tested for the warning and for its absence, and where the warning makes
a claim about decisions (a connector never takes part), the claim is checked against
the library's own decisions.
"""

from __future__ import annotations

import random
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tlsconnector import (
    InboundConnector,
    InboundSession,
    OutboundConnector,
    Policy,
    evaluate_inbound,
    load_policy,
)
from tlsconnector._decisions import printable
from tlsconnector._names import DomainPattern, PatternKind
from tlsconnector._outbound import plan_outbound
from tlsconnector.cli import main
from tlsconnector.policy_file.lint import (
    LintCode,
    LintSeverity,
    LintWarning,
    _allow_only_message,
    _broad_wildcards,
    _Check,
    _checks,
    _first_domain,
    _name_outside,
    _overlap_message,
    _smart_hosts,
    _takes_part_inbound,
    _too_long,
    _warning,
    lint,
)

from certmint import NOW

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.generate import lint_policy_mapping, lint_policy_toml, policy_mapping

ROOT = Path(__file__).resolve().parents[2]
FABRIKAM_EXAMPLE = ROOT / "examples" / "fabrikam" / "policy.toml"
LINT_DOCS = ROOT / "docs" / "lint.md"

STRICT_INBOUND: dict[str, Any] = {
    "name": "Fabrikam Bank inbound",
    "sender_domains": ["fabrikam.com"],
    "require_tls": True,
    "tls_sender_certificate_name": "*.fabrikam.com",
    "restrict_domains_to_certificate": True,
}
STRICT_OUTBOUND: dict[str, Any] = {
    "name": "Fabrikam Bank outbound",
    "recipient_domains": ["fabrikam.com"],
    "tls_settings": "domain_validation",
    "tls_domain": "*.fabrikam.com",
}


def inbound(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "sender_domains": ["fabrikam.com"], **settings}


def outbound(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "recipient_domains": ["fabrikam.com"], **settings}


def policy_of(
    inbound: list[dict[str, Any]] | None = None, outbound: list[dict[str, Any]] | None = None
) -> Policy:
    data: Mapping[str, Any] = {"inbound": inbound or [], "outbound": outbound or []}
    return Policy.from_mapping(data, trust=None)


def findings(policy: Policy) -> list[tuple[str, str, str]]:
    """(code, direction, connector) of every warning, in lint order."""
    return [(str(w.code), str(w.direction), w.connector) for w in lint(policy)]


def only(policy: Policy, code: LintCode) -> list[LintWarning]:
    return [w for w in lint(policy) if w.code is code]


def inbound_session(sender: str, *, tls: None = None) -> InboundSession:
    return InboundSession.create(peer_ip="198.51.100.7", mail_from=sender, tls=tls, at=NOW)


def verified_cn_session(sender: str, cn: str | None, *, peer_ip: str) -> InboundSession:
    """A session over TLS with the CN an MTA verified (or no client certificate)."""
    tls: dict[str, Any] = {} if cn is None else {"peer_cn": [cn], "peer_verified": True}
    return InboundSession.from_json(
        {"peer_ip": peer_ip, "mail_from": sender, "tls": tls, "at": "2026-11-26T12:00:00Z"}
    )


# --- clean policies ----------------------------------------------------------------------


def test_the_fabrikam_example_policy_has_no_warnings() -> None:
    assert [] == lint(load_policy(FABRIKAM_EXAMPLE, use_system_trust=False))


def test_the_specification_example_has_no_warnings() -> None:
    assert [] == lint(policy_of([STRICT_INBOUND], [STRICT_OUTBOUND]))


def test_an_empty_policy_gets_only_the_empty_policy_warning() -> None:
    # It used to get none: a newcomer's empty (or [inbound]-less) file then looked fine.
    warnings = lint(policy_of())
    assert [(LintCode.EMPTY_POLICY, None, "")] == [
        (w.code, w.direction, w.connector) for w in warnings
    ]
    text = str(warnings[0])
    assert text.startswith("warning[empty-policy]: policy: no [[inbound]] or [[outbound]] ")
    assert "enforces nothing" in text


def test_a_policy_with_only_trust_is_empty_and_one_connector_is_not() -> None:
    only_trust = Policy.from_mapping({"trust": {"revocation": "hard"}}, trust=None)
    assert [LintCode.EMPTY_POLICY] == [w.code for w in lint(only_trust)]
    assert LintCode.EMPTY_POLICY not in [w.code for w in lint(policy_of([], [STRICT_OUTBOUND]))]
    assert LintCode.EMPTY_POLICY not in [w.code for w in lint(policy_of([STRICT_INBOUND]))]


# --- connector-shadowed --------------------------------------------------------------------


def test_subtree_connector_whose_apex_is_listed_exactly_elsewhere_is_shadowed() -> None:
    """`*.fabrikam.com` names fabrikam.com; an exact `fabrikam.com` elsewhere takes it."""
    legacy = inbound("Fabrikam legacy", sender_domains=["*.fabrikam.com"], require_tls=True)
    policy = policy_of([legacy, STRICT_INBOUND])
    (warning,) = only(policy, LintCode.CONNECTOR_SHADOWED)
    assert ("Fabrikam legacy", "inbound") == (warning.connector, str(warning.direction))
    assert LintSeverity.WARNING == warning.severity
    assert "fabrikam.com by 'Fabrikam Bank inbound'" in warning.message
    assert "remove or disable it" in warning.message
    assert "name them in sender_domains" in warning.message


def test_shadowed_connector_really_decides_only_unlisted_subdomains() -> None:
    """The lint's claim, checked against the decisions: the apex goes to the exact
    connector, an unlisted subdomain still to the shadowed one."""
    legacy = inbound("Fabrikam legacy", sender_domains=["*.fabrikam.com"], require_tls=True)
    policy = policy_of([legacy, STRICT_INBOUND])
    apex = evaluate_inbound(policy, inbound_session("a@fabrikam.com"))
    sub = evaluate_inbound(policy, inbound_session("a@eu.fabrikam.com"))
    assert "Fabrikam Bank inbound" == apex.connector
    assert "Fabrikam legacy" == sub.connector


@pytest.mark.parametrize(
    ("legacy_domains", "why"),
    [
        (["fabrikam.com"], "identical exact patterns tie, they do not shadow"),
        (["*.fabrikam.com", "*.fabrikam.de"], "fabrikam.de is still its own"),
        (["*.fabrikam.com", "fabrikam.com"], "its own exact pattern ties for the apex"),
        (["*"], "'*' names no domain: it is the catch-all"),
        (["*.eu.fabrikam.com"], "nobody lists eu.fabrikam.com exactly"),
    ],
)
def test_connectors_that_keep_a_domain_of_their_own_are_not_shadowed(
    legacy_domains: list[str], why: str
) -> None:
    legacy = inbound("Fabrikam legacy", sender_domains=legacy_domains, require_tls=True)
    assert [] == only(policy_of([legacy, STRICT_INBOUND]), LintCode.CONNECTOR_SHADOWED), why


@pytest.mark.parametrize(
    "change",
    [{"enabled": False}, {"type": "on_premises"}],
    ids=["disabled", "on-premises"],
)
def test_connectors_that_take_no_part_shadow_nothing(change: dict[str, Any]) -> None:
    """Disabled (section 2) and on-premises (section 5.6) connectors are not candidates."""
    legacy = inbound("Fabrikam legacy", sender_domains=["*.fabrikam.com"], require_tls=True)
    exact = {**STRICT_INBOUND, **change}
    assert [] == only(policy_of([legacy, exact]), LintCode.CONNECTOR_SHADOWED)


def test_outbound_subtree_connector_shadowed_by_an_exact_one() -> None:
    wide = outbound("Fabrikam group", recipient_domains=["*.fabrikam.com"])
    policy = policy_of(outbound=[wide, STRICT_OUTBOUND])
    (warning,) = only(policy, LintCode.CONNECTOR_SHADOWED)
    assert ("Fabrikam group", "outbound") == (warning.connector, str(warning.direction))
    assert "fabrikam.com by 'Fabrikam Bank outbound'" in warning.message
    assert "Fabrikam Bank outbound" == plan_outbound(policy, "fabrikam.com").connector
    assert "Fabrikam group" == plan_outbound(policy, "eu.fabrikam.com").connector


@pytest.mark.parametrize(
    "change",
    [{"test_mode": True}, {"is_transport_rule_scoped": True}, {"enabled": False}],
    ids=["test-mode", "rule-scoped", "disabled"],
)
def test_outbound_connectors_not_selectable_by_domain_shadow_nothing(
    change: dict[str, Any],
) -> None:
    wide = outbound("Fabrikam group", recipient_domains=["*.fabrikam.com"])
    exact = {**STRICT_OUTBOUND, **change}
    assert [] == only(policy_of(outbound=[wide, exact]), LintCode.CONNECTOR_SHADOWED)


# --- allow-only-overridden -----------------------------------------------------------------


@pytest.mark.parametrize("shared", ["fabrikam.com", "*.fabrikam.com", "*"])
def test_allow_only_connector_sharing_a_pattern_with_a_restricting_one(shared: str) -> None:
    allow = inbound("Fabrikam allow", sender_domains=[shared], require_tls=False)
    strict = {**STRICT_INBOUND, "sender_domains": [shared]}
    (warning,) = only(policy_of([allow, strict]), LintCode.ALLOW_ONLY_OVERRIDDEN)
    assert "Fabrikam allow" == warning.connector
    assert f"shares sender_domains {shared!r} with 'Fabrikam Bank inbound'" in warning.message
    assert f"remove {shared!r} from its sender_domains" in warning.message


def test_overridden_allow_only_connector_really_never_takes_part() -> None:
    """Mail from fabrikam.com without TLS is refused by the restricting connector."""
    allow = inbound("Fabrikam allow", require_tls=False)
    decision = evaluate_inbound(
        policy_of([allow, STRICT_INBOUND]), inbound_session("a@fabrikam.com")
    )
    assert ("reject", "Fabrikam Bank inbound") == (str(decision.action), decision.connector)


@pytest.mark.parametrize(
    ("allow_domains", "other"),
    [
        (["fabrikam.de"], STRICT_INBOUND),
        (["fabrikam.com"], {**STRICT_INBOUND, "enabled": False}),
        (["fabrikam.com"], {**STRICT_INBOUND, "type": "on_premises"}),
        (["fabrikam.com"], inbound("Fabrikam allow too", require_tls=False)),
        (["fabrikam.com"], inbound("Fabrikam TLS only", require_tls=True)),
    ],
    ids=[
        "other-domain",
        "restricting-disabled",
        "restricting-on-premises",
        "both-allow-only",
        "tls-only-does-not-restrict",
    ],
)
def test_allow_only_connector_not_overridden(
    allow_domains: list[str], other: dict[str, Any]
) -> None:
    allow = inbound("Fabrikam allow", sender_domains=allow_domains, require_tls=False)
    assert [] == only(policy_of([allow, other]), LintCode.ALLOW_ONLY_OVERRIDDEN)


def test_the_dr_site_tls_only_connector_is_said_never_to_decide() -> None:
    """Section 5.3: a second connector for fabrikam.com with only require_tls (a "DR
    site") does not restrict, so next to a certificate-name connector it never decides,
    and the text says what it does and does not check (not "require_tls = false")."""
    fabrikam = inbound("Fabrikam", tls_sender_certificate_name="*.fabrikam.com")
    dr_site = inbound("Fabrikam DR site", require_tls=True)
    policy = policy_of([fabrikam, dr_site])
    assert [("allow-only-overridden", "inbound", "Fabrikam DR site")] == findings(policy)
    (warning,) = lint(policy)
    assert warning.message.startswith(
        "it requires TLS but restricts neither by certificate name nor by IP, and shares "
        "sender_domains 'fabrikam.com' with 'Fabrikam', which restricts by certificate name;"
    )
    assert "this connector never takes part (its TLS requirement included)" in warning.message
    assert "require_tls = false" not in warning.message
    # The claim, against the decisions: sessions the DR site alone would accept (TLS,
    # with a certificate of the DR site or with none) are refused by 'Fabrikam'.
    for cn in ("mail.fabrikam-dr.net", None):
        decision = evaluate_inbound(
            policy, verified_cn_session("a@fabrikam.com", cn, peer_ip="198.51.100.7")
        )
        assert ("reject", "Fabrikam") == (str(decision.action), decision.connector), cn


def test_an_allow_only_connector_without_tls_is_said_to_impose_no_check() -> None:
    allow = inbound("Fabrikam allow", require_tls=False)
    (warning,) = only(policy_of([allow, STRICT_INBOUND]), LintCode.ALLOW_ONLY_OVERRIDDEN)
    assert warning.message.startswith(
        "it imposes no check (require_tls = false, no tls_sender_certificate_name, no IP "
        "restriction), and shares sender_domains 'fabrikam.com' with 'Fabrikam Bank "
        "inbound', which restricts by certificate name;"
    )
    assert "requires TLS" not in warning.message


def test_ip_restricted_connector_counts_as_restricting() -> None:
    allow = inbound("Fabrikam allow", require_tls=False)
    by_ip = inbound(
        "Fabrikam by IP",
        require_tls=False,
        sender_ip_addresses=["198.51.100.0/24"],
        restrict_domains_to_ip_addresses=True,
    )
    (warning,) = only(policy_of([allow, by_ip]), LintCode.ALLOW_ONLY_OVERRIDDEN)
    assert "with 'Fabrikam by IP', which restricts by IP;" in warning.message


# --- restricting-overlap -------------------------------------------------------------------

IP_RANGE = "198.51.100.0/24"


def by_name_and_ip(name: str, **settings: Any) -> dict[str, Any]:
    return inbound(
        name,
        tls_sender_certificate_name="*.fabrikam.com",
        sender_ip_addresses=[IP_RANGE],
        restrict_domains_to_ip_addresses=True,
        **settings,
    )


@pytest.mark.parametrize("shared", ["fabrikam.com", "*.fabrikam.com", "*"])
def test_the_weaker_of_two_restricting_connectors_is_named(shared: str) -> None:
    """A checks the certificate name and the IP, B only the certificate name: either
    satisfied is enough (section 5.3), so B is the weaker one and A's IP check is never
    required of a session B accepts. One warning, on B, naming A."""
    strong = by_name_and_ip("A strong", sender_domains=[shared])
    weak = inbound("B weak", sender_domains=[shared], tls_sender_certificate_name="*.fabrikam.com")
    policy = policy_of([weak, strong])
    (warning,) = only(policy, LintCode.RESTRICTING_OVERLAP)
    assert ("B weak", LintSeverity.WARNING) == (warning.connector, warning.severity)
    assert warning.message.startswith(
        f"it shares sender_domains {shared!r} with 'A strong', and both restrict; between "
        "restricting connectors one satisfied is enough"
    )
    assert (
        "so this connector is the weaker one: it lacks the IP restriction that 'A strong' "
        "applies, and for those senders a session passing only its own checks (TLS and "
        "certificate name '*.fabrikam.com') is accepted"
    ) in warning.message
    assert "give this connector restrict_domains_to_ip_addresses = true" in warning.message
    assert f"remove {shared!r} from its sender_domains" in warning.message


def test_a_weaker_restricting_connector_really_lets_its_sessions_in() -> None:
    """The claim, against the decisions: the right certificate from outside A's IP
    range is accepted, by B."""
    policy = policy_of(
        [
            by_name_and_ip("A strong"),
            inbound("B weak", tls_sender_certificate_name="*.fabrikam.com"),
        ]
    )
    decision = evaluate_inbound(
        policy, verified_cn_session("a@fabrikam.com", "mx.fabrikam.com", peer_ip="203.0.113.9")
    )
    assert ("accept", "B weak") == (str(decision.action), decision.connector)


def test_a_restricting_connector_without_tls_is_weaker_than_one_with_it() -> None:
    """Both restrict by IP; only one requires TLS: the other lets plaintext in."""
    plain = inbound(
        "A plain",
        require_tls=False,
        sender_ip_addresses=[IP_RANGE],
        restrict_domains_to_ip_addresses=True,
    )
    tls = {**plain, "name": "B tls", "require_tls": True}
    (warning,) = only(policy_of([plain, tls]), LintCode.RESTRICTING_OVERLAP)
    assert "A plain" == warning.connector
    assert "it lacks the TLS requirement that 'B tls' applies" in warning.message
    assert "give this connector require_tls = true too" in warning.message
    decision = evaluate_inbound(policy_of([plain, tls]), inbound_session("a@fabrikam.com"))
    assert ("accept", "A plain") == (str(decision.action), decision.connector)


@pytest.mark.parametrize(
    ("first", "second", "first_checks", "second_checks"),
    [
        (
            inbound("Site 1", tls_sender_certificate_name="mx1.fabrikam.com"),
            inbound("Site 2", tls_sender_certificate_name="mx2.fabrikam.com"),
            "TLS and certificate name 'mx1.fabrikam.com'",
            "TLS and certificate name 'mx2.fabrikam.com'",
        ),
        (
            inbound(
                "Site 1",
                require_tls=False,
                sender_ip_addresses=[IP_RANGE],
                restrict_domains_to_ip_addresses=True,
            ),
            inbound("Site 2", tls_sender_certificate_name="mx2.fabrikam.com"),
            "the peer IP (sender_ip_addresses)",
            "TLS and certificate name 'mx2.fabrikam.com'",
        ),
    ],
    ids=["two-certificate-names", "ip-against-certificate"],
)
def test_when_neither_restricting_connector_is_weaker_both_are_named_once(
    first: dict[str, Any], second: dict[str, Any], first_checks: str, second_checks: str
) -> None:
    """One warning for the pair, on the first by name, whatever the file order."""
    for order in ([first, second], [second, first]):
        (warning,) = only(policy_of(order), LintCode.RESTRICTING_OVERLAP)
        assert "Site 1" == warning.connector
        assert (
            f"and neither is weaker: this connector checks {first_checks}; 'Site 2' checks "
            f"{second_checks}; so for those senders either one suffices"
        ) in warning.message
        assert "put them in one connector" in warning.message


def test_either_site_certificate_is_accepted_as_the_warning_says() -> None:
    site_1 = inbound("Site 1", tls_sender_certificate_name="mx1.fabrikam.com")
    site_2 = inbound("Site 2", tls_sender_certificate_name="mx2.fabrikam.com")
    policy = policy_of([site_1, site_2])
    for cn, site in (("mx1.fabrikam.com", "Site 1"), ("mx2.fabrikam.com", "Site 2")):
        decision = evaluate_inbound(
            policy, verified_cn_session("a@fabrikam.com", cn, peer_ip="203.0.113.9")
        )
        assert ("accept", site) == (str(decision.action), decision.connector)


def test_every_overlapping_pair_is_reported_once_listing_every_shared_pattern() -> None:
    a = inbound(
        "A",
        sender_domains=["fabrikam.com", "*.fabrikam.com", "fabrikam.de"],
        tls_sender_certificate_name="*.fabrikam.com",
    )
    b = by_name_and_ip("B", sender_domains=["*.fabrikam.com", "fabrikam.com"])
    c = inbound("C", sender_domains=["fabrikam.de"], tls_sender_certificate_name="*.fabrikam.de")
    warnings = only(policy_of([c, b, a]), LintCode.RESTRICTING_OVERLAP)
    assert [("A", "B"), ("A", "C")] == [
        (w.connector, re.search(r"with '(\w)'", w.message).group(1))  # type: ignore[union-attr]
        for w in warnings
    ]
    assert "shares sender_domains 'fabrikam.com', '*.fabrikam.com' with 'B'" in warnings[0].message
    assert "shares sender_domains 'fabrikam.de' with 'C'" in warnings[1].message


@pytest.mark.parametrize(
    ("other_domains", "change"),
    [
        (["*.fabrikam.com"], {}),  # exact against subtree: shadowing, not a tie
        (["fabrikam.de"], {}),
        (["fabrikam.com"], {"enabled": False}),
        (["fabrikam.com"], {"type": "on_premises"}),
    ],
    ids=["different-specificity", "other-domain", "disabled", "on-premises"],
)
def test_restricting_connectors_that_never_tie_are_not_reported(
    other_domains: list[str], change: dict[str, Any]
) -> None:
    other = by_name_and_ip("Other", sender_domains=other_domains, **change)
    assert [] == only(policy_of([STRICT_INBOUND, other]), LintCode.RESTRICTING_OVERLAP)


# --- connector-disabled, connector-test-mode ---------------------------------------------


def test_disabled_connectors_are_reported_as_information() -> None:
    policy = policy_of(
        [{**STRICT_INBOUND, "enabled": False}], [{**STRICT_OUTBOUND, "enabled": False}]
    )
    warnings = lint(policy)
    assert [
        ("connector-disabled", "inbound", "Fabrikam Bank inbound"),
        ("connector-disabled", "outbound", "Fabrikam Bank outbound"),
    ] == findings(policy)
    assert {LintSeverity.INFO} == {w.severity for w in warnings}
    assert all("set enabled = true" in w.message for w in warnings)


def test_test_mode_outbound_connector_is_reported_as_information() -> None:
    policy = policy_of(outbound=[{**STRICT_OUTBOUND, "test_mode": True}])
    (warning,) = lint(policy)
    assert LintCode.CONNECTOR_TEST_MODE == warning.code
    assert LintSeverity.INFO == warning.severity
    assert "set test_mode = false" in warning.message


def test_a_disabled_test_mode_connector_is_reported_once_as_disabled() -> None:
    policy = policy_of(outbound=[{**STRICT_OUTBOUND, "test_mode": True, "enabled": False}])
    assert [("connector-disabled", "outbound", "Fabrikam Bank outbound")] == findings(policy)


# --- certificate names outside the connector's domains ----------------------------------


@pytest.mark.parametrize(
    ("domains", "name"),
    [
        (["fabrikam.com"], "*.contoso.com"),
        (["fabrikam.com"], "mail.fabrikam.net"),
        (["*.eu.fabrikam.com"], "*.fabrikam.com"),  # matches servers outside eu.
        (["fabrikam.com"], "notfabrikam.com"),  # a suffix of the text is not a subdomain
    ],
)
def test_certificate_name_outside_every_sender_domain(domains: list[str], name: str) -> None:
    connector = {**STRICT_INBOUND, "sender_domains": domains, "tls_sender_certificate_name": name}
    (warning,) = only(policy_of([connector]), LintCode.CERTIFICATE_NAME_OUTSIDE_DOMAINS)
    assert "Fabrikam Bank inbound" == warning.connector
    assert f"tls_sender_certificate_name {name!r} is not under any of its sender_domains" in (
        warning.message
    )
    assert "set tls_sender_certificate_name to the partner's certificate name" in warning.message


@pytest.mark.parametrize(
    ("domains", "name"),
    [
        (["fabrikam.com"], "*.fabrikam.com"),
        (["fabrikam.com"], "fabrikam.com"),
        (["fabrikam.com"], "mail.eu.fabrikam.com"),
        (["*.fabrikam.com"], "*.eu.fabrikam.com"),
        (["contoso.com", "fabrikam.com"], "*.fabrikam.com"),
        (["*"], "*.fabrikam.com"),
    ],
)
def test_certificate_name_under_a_sender_domain_is_fine(domains: list[str], name: str) -> None:
    connector = {**STRICT_INBOUND, "sender_domains": domains, "tls_sender_certificate_name": name}
    assert [] == only(policy_of([connector]), LintCode.CERTIFICATE_NAME_OUTSIDE_DOMAINS)


def test_tls_domain_outside_the_recipient_domains() -> None:
    connector = {**STRICT_OUTBOUND, "tls_domain": "*.fabrikam-mail.net"}
    (warning,) = only(policy_of(outbound=[connector]), LintCode.TLS_DOMAIN_OUTSIDE_DOMAINS)
    assert "Fabrikam Bank outbound" == warning.connector
    assert "tls_domain '*.fabrikam-mail.net' is not under any of its recipient_domains" in (
        warning.message
    )
    assert "set tls_domain to the partner's certificate name (for example '*.fabrikam.com')" in (
        warning.message
    )


def test_rule_scoped_connector_without_domains_is_not_compared() -> None:
    """It is chosen by name and serves no listed domain: nothing to compare with."""
    connector = {**STRICT_OUTBOUND, "recipient_domains": [], "is_transport_rule_scoped": True}
    assert [] == lint(policy_of(outbound=[connector]))


# --- broad-wildcard ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["*.com", "*.co.uk", "*.github.io"])
def test_wildcard_over_a_public_suffix_warns_in_both_directions(pattern: str) -> None:
    opportunistic = {"name": "Fabrikam Bank outbound", "recipient_domains": [pattern]}
    policy = policy_of([{**STRICT_INBOUND, "sender_domains": [pattern]}], [opportunistic])
    broad = only(policy, LintCode.BROAD_WILDCARD)
    assert [("inbound", "Fabrikam Bank inbound"), ("outbound", "Fabrikam Bank outbound")] == [
        (str(w.direction), w.connector) for w in broad
    ]
    suffix = pattern[2:]
    assert all(
        f"covers every domain under the public suffix {suffix!r}" in w.message for w in broad
    )


def test_star_on_a_partner_connector_warns() -> None:
    policy = policy_of([{**STRICT_INBOUND, "sender_domains": ["*"]}])
    (warning,) = only(policy, LintCode.BROAD_WILDCARD)
    assert "sender_domains '*' makes this partner connector govern every sender domain" in (
        warning.message
    )
    assert "list the partner's domains instead" in warning.message


def test_star_on_an_on_premises_connector_is_normal() -> None:
    """An on-premises connector relays the organisation's own mail: '*' is its usual scope."""
    relay = {"name": "Contoso relay", "type": "on_premises", "sender_domains": ["*"]}
    assert [] == lint(policy_of([relay]))


@pytest.mark.parametrize("pattern", ["*.fabrikam.com", "*.fabrikam.co.uk", "fabrikam.com"])
def test_partner_scoped_patterns_are_not_broad(pattern: str) -> None:
    policy = policy_of([{**STRICT_INBOUND, "sender_domains": [pattern]}])
    assert [] == only(policy, LintCode.BROAD_WILDCARD)


# --- smart-host-tls-domain-mismatch --------------------------------------------------------


def smart_host_connector(*hosts: str, tls_domain: str = "*.fabrikam.com") -> dict[str, Any]:
    return {
        **STRICT_OUTBOUND,
        "use_mx_record": False,
        "smart_hosts": list(hosts),
        "tls_domain": tls_domain,
    }


def test_smart_host_that_tls_domain_cannot_match() -> None:
    policy = policy_of(outbound=[smart_host_connector("relay.contoso.net")])
    (warning,) = lint(policy)
    assert LintCode.SMART_HOST_TLS_DOMAIN_MISMATCH == warning.code
    assert "tls_domain '*.fabrikam.com' does not match the smart host 'relay.contoso.net'" in (
        warning.message
    )
    assert "checked against tls_domain, not the host" in warning.message


def test_smart_host_ip_literal_can_never_match() -> None:
    policy = policy_of(outbound=[smart_host_connector("192.0.2.25:25", "[2001:db8::25]:25")])
    messages = [w.message for w in only(policy, LintCode.SMART_HOST_TLS_DOMAIN_MISMATCH)]
    assert 2 == len(messages)
    assert "smart host 192.0.2.25 is an IP address" in messages[0]
    assert "smart host 2001:db8::25 is an IP address" in messages[1]


@pytest.mark.parametrize(
    ("hosts", "tls_domain"),
    [
        (["relay1.fabrikam.com", "relay2.fabrikam.com:587"], "*.fabrikam.com"),
        (["relay.fabrikam.com"], "relay.fabrikam.com"),
    ],
)
def test_smart_hosts_that_tls_domain_matches(hosts: list[str], tls_domain: str) -> None:
    assert [] == lint(policy_of(outbound=[smart_host_connector(*hosts, tls_domain=tls_domain)]))


def test_smart_hosts_without_domain_validation_are_not_checked() -> None:
    connector = {
        **STRICT_OUTBOUND,
        "use_mx_record": False,
        "smart_hosts": ["192.0.2.25"],
        "tls_settings": "certificate_validation",
    }
    del connector["tls_domain"]
    assert [] == lint(policy_of(outbound=[connector]))


# --- order, format, documentation ----------------------------------------------------------


def test_warnings_come_inbound_first_then_by_connector_name() -> None:
    policy = policy_of(
        [
            {**STRICT_INBOUND, "name": "Zeta", "enabled": False},
            {**STRICT_INBOUND, "name": "Alpha", "enabled": False},
        ],
        [{**STRICT_OUTBOUND, "name": "Beta", "enabled": False}],
    )
    assert [
        ("connector-disabled", "inbound", "Alpha"),
        ("connector-disabled", "inbound", "Zeta"),
        ("connector-disabled", "outbound", "Beta"),
    ] == findings(policy)


def test_warning_text_names_severity_code_direction_and_connector() -> None:
    (warning,) = lint(policy_of([{**STRICT_INBOUND, "enabled": False}]))
    assert str(warning).startswith(
        "info[connector-disabled]: inbound connector 'Fabrikam Bank inbound': enabled = false"
    )


def test_every_code_is_documented() -> None:
    # The [trust] codes about revocation are documented with revocation itself.
    revocation_docs = LINT_DOCS.parent / "revocation.md"
    text = LINT_DOCS.read_text(encoding="utf-8") + revocation_docs.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `([a-z-]+)`", text, flags=re.MULTILINE))
    assert {str(code) for code in LintCode} == headings


# --- tlsconnector check -------------------------------------------------------------------

NOISY_POLICY = """
[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.contoso.com"

[[outbound]]
name = "Fabrikam Bank outbound"
enabled = false
recipient_domains = ["fabrikam.com"]
"""


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    path = tmp_path / "noisy.toml"
    path.write_text(NOISY_POLICY)
    return path


def test_check_prints_warnings_on_stderr_and_exits_0(
    noisy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == main(["check", str(noisy)])
    out, err = capsys.readouterr()
    assert f"{noisy}: valid (1 inbound connector, 1 outbound connector)\n" == out
    lines = err.splitlines()
    assert 2 == len(lines)
    assert lines[0].startswith(
        f"{noisy}: warning[certificate-name-outside-domains]: inbound connector "
        "'Fabrikam Bank inbound': tls_sender_certificate_name '*.contoso.com'"
    )
    assert lines[1].startswith(
        f"{noisy}: info[connector-disabled]: outbound connector 'Fabrikam Bank outbound': "
    )


def test_check_strict_exits_1_on_any_warning(
    noisy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 1 == main(["check", "--strict", str(noisy)])
    err = capsys.readouterr().err
    assert err.endswith(f"{noisy}: 2 lint warnings (--strict)\n")


def test_check_strict_counts_informational_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "disabled.toml"
    path.write_text('[[inbound]]\nname = "Old"\nenabled = false\nsender_domains = ["x.org"]\n')
    assert 1 == main(["check", "--strict", str(path)])
    assert capsys.readouterr().err.endswith(f"{path}: 1 lint warning (--strict)\n")


def test_check_strict_exits_1_on_the_new_restrict_beats_allow_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DR site next to a certificate-name connector, and two sites with their own
    certificate names: both are warnings, so --strict fails."""
    path = tmp_path / "sites.toml"
    path.write_text(
        '[[inbound]]\nname = "Fabrikam"\nsender_domains = ["fabrikam.com"]\n'
        'tls_sender_certificate_name = "mx1.fabrikam.com"\n\n'
        '[[inbound]]\nname = "Fabrikam DR site"\nsender_domains = ["fabrikam.com"]\n\n'
        '[[inbound]]\nname = "Fabrikam site 2"\nsender_domains = ["fabrikam.com"]\n'
        'tls_sender_certificate_name = "mx2.fabrikam.com"\n'
    )
    assert 1 == main(["check", "--strict", str(path)])
    lines = capsys.readouterr().err.splitlines()
    assert [
        f"{path}: warning[restricting-overlap]: inbound connector 'Fabrikam': ",
        f"{path}: warning[allow-only-overridden]: inbound connector 'Fabrikam DR site': ",
        f"{path}: warning[allow-only-overridden]: inbound connector 'Fabrikam DR site': ",
        f"{path}: 3 lint warnings (--strict)",
    ] == [line.split(": it ")[0] + ": " if ": it " in line else line for line in lines]


def test_check_strict_on_a_clean_policy_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["check", "--strict", str(FABRIKAM_EXAMPLE)])
    out, err = capsys.readouterr()
    assert "valid (1 inbound connector, 1 outbound connector)" in out
    assert "" == err


def test_check_strict_on_an_invalid_policy_still_lists_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[inbound]]\nname = "X"\nsender_domains = ["*x.com"]\n')
    assert 1 == main(["check", "--strict", str(path)])
    err = capsys.readouterr().err
    assert "connector 'X': sender_domains[0] = '*x.com'" in err
    assert "lint" not in err


def test_docs_show_the_real_check_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/lint.md's first example is NOISY_POLICY checked as `policy.toml`."""
    text = LINT_DOCS.read_text(encoding="utf-8")
    match = re.search(r"```\n\$ tlsconnector check policy.toml\n(.*?)```", text, re.DOTALL)
    assert match is not None
    (tmp_path / "policy.toml").write_text(NOISY_POLICY)
    monkeypatch.chdir(tmp_path)
    assert 0 == main(["check", "policy.toml"])
    out, err = capsys.readouterr()
    assert match.group(1) == out + err


def test_a_certificate_name_longer_than_any_cn_warns() -> None:
    """Section 3 rule 2: a CN has at most 64 characters."""
    long_name = "a" * 60 + ".fabrikam.com"
    inbound = {
        "name": "Long",
        "sender_domains": ["fabrikam.com"],
        "tls_sender_certificate_name": long_name,
    }
    (warning,) = only(policy_of([inbound]), LintCode.CERTIFICATE_NAME_TOO_LONG)
    assert "only a wildcard certificate ('*.fabrikam.com')" in warning.message
    wildcard = dict(inbound, tls_sender_certificate_name="*." + long_name)
    (warning,) = only(policy_of([wildcard]), LintCode.CERTIFICATE_NAME_TOO_LONG)
    assert "no certificate can ever match it" in warning.message
    fine = dict(inbound, tls_sender_certificate_name="*.fabrikam.com")
    assert [] == only(policy_of([fine]), LintCode.CERTIFICATE_NAME_TOO_LONG)


def test_a_long_name_no_wildcard_could_cover_says_so() -> None:
    """A long name under a public suffix, an xn-- first label, or a suffix itself over
    64 characters: not even a wildcard certificate can match it."""
    for long_name in (
        "a" * 60 + ".co.uk",
        "\u00fc" + "a" * 50 + ".fabrikam.com",  # an xn-- first label
        "mail." + "b" * 60 + ".fabrikam.com",
    ):
        inbound = {
            "name": "Long",
            "sender_domains": ["*"],
            "tls_sender_certificate_name": long_name,
        }
        (warning,) = only(policy_of([inbound]), LintCode.CERTIFICATE_NAME_TOO_LONG)
        assert "no certificate can ever match it" in warning.message, long_name


# --- the near-linear lint equals the quadratic reference ----------------------------------
#
# The lint used to compare every connector with every other one (about a minute for
# 16,000 connectors, issue item 7). Below is that algorithm, kept as the reference: it
# compares each connector with every competing one, the literal reading of the rules.
# The rules about one connector's own settings are shared (they never were quadratic).


def reference_lint(policy: Policy) -> list[LintWarning]:
    found: list[LintWarning] = []
    competing_in = [c for c in policy.inbound if _takes_part_inbound(c)]
    for connector in policy.inbound:
        found += _reference_inbound(connector, competing_in)
    competing_out = [c for c in policy.outbound if c.selectable_by_domain]
    for out in policy.outbound:
        found += _reference_outbound(out, competing_out)
    return found


def _reference_inbound(
    connector: InboundConnector, competing: Sequence[InboundConnector]
) -> list[LintWarning]:
    found: list[LintWarning] = []
    if not connector.enabled:
        found.append(
            _warning(
                connector,
                LintCode.CONNECTOR_DISABLED,
                "enabled = false: it takes no part in any decision; remove it, or set "
                "enabled = true to put it in service",
                LintSeverity.INFO,
            )
        )
    elif connector in competing:
        shadowed = _reference_shadowed(
            connector, connector.sender_domains, competing, "sender_domains"
        )
        if shadowed is not None:
            found.append(shadowed)
        if not connector.restricts:
            found += _reference_allow_only_overridden(connector, competing)
        else:
            found += _reference_restricting_overlaps(connector, competing)
    found += _broad_wildcards(connector, connector.sender_domains, "sender_domains")
    name = connector.tls_sender_certificate_name
    if name is not None:
        outside = _name_outside(
            connector,
            name,
            connector.sender_domains,
            "tls_sender_certificate_name",
            "sender_domains",
            LintCode.CERTIFICATE_NAME_OUTSIDE_DOMAINS,
        )
        if outside is not None:
            found.append(outside)
        found += _too_long(connector, name, "tls_sender_certificate_name")
    return found


def _reference_outbound(
    connector: OutboundConnector, competing: Sequence[OutboundConnector]
) -> list[LintWarning]:
    found: list[LintWarning] = []
    if not connector.enabled:
        found.append(
            _warning(
                connector,
                LintCode.CONNECTOR_DISABLED,
                "enabled = false: it takes no part in any decision, and a transport rule "
                "naming it gets connector-unavailable; remove it, or set enabled = true to "
                "put it in service",
                LintSeverity.INFO,
            )
        )
    elif connector.test_mode:
        found.append(
            _warning(
                connector,
                LintCode.CONNECTOR_TEST_MODE,
                "test_mode = true: it is never chosen by recipient domain, only when a "
                "caller (a transport rule) names it; set test_mode = false to put it in "
                "service",
                LintSeverity.INFO,
            )
        )
    elif connector in competing:
        shadowed = _reference_shadowed(
            connector, connector.recipient_domains, competing, "recipient_domains"
        )
        if shadowed is not None:
            found.append(shadowed)
    found += _broad_wildcards(connector, connector.recipient_domains, "recipient_domains")
    if connector.tls_domain is not None and connector.recipient_domains:
        outside = _name_outside(
            connector,
            connector.tls_domain,
            connector.recipient_domains,
            "tls_domain",
            "recipient_domains",
            LintCode.TLS_DOMAIN_OUTSIDE_DOMAINS,
        )
        if outside is not None:
            found.append(outside)
    if connector.tls_domain is not None:
        found += _too_long(connector, connector.tls_domain, "tls_domain")
    found += _smart_hosts(connector)
    return found


def _reference_shadowed(
    connector: InboundConnector | OutboundConnector,
    patterns: Sequence[DomainPattern],
    competing: Sequence[InboundConnector] | Sequence[OutboundConnector],
    field: str,
) -> LintWarning | None:
    claims: list[str] = []
    for pattern in dict.fromkeys(patterns):
        if pattern.kind is PatternKind.ANY or pattern.domain is None:
            return None
        domain = pattern.domain
        own = connector.specificity_for(domain) or pattern.specificity
        stronger: list[tuple[tuple[int, int], str]] = []
        for other in competing:
            level = other.specificity_for(domain) if other is not connector else None
            if level is not None and level > own:
                stronger.append((level, other.name))
        if not stronger:
            return None
        best = max(level for level, _ in stronger)
        winners = ", ".join(repr(printable(name)) for level, name in stronger if level == best)
        claims.append(f"{domain} by {winners}")
    if not claims:
        return None
    return _warning(
        connector,
        LintCode.CONNECTOR_SHADOWED,
        f"every domain in its {field} is claimed by a more specific pattern of another "
        f"connector ({'; '.join(claims)}), so it only governs subdomains that no "
        f"connector lists; if it is a leftover, remove or disable it; if it is meant for "
        f"those subdomains, name them in {field} (for example '*.eu.{_first_domain(patterns)}')",
    )


def _reference_allow_only_overridden(
    connector: InboundConnector, competing: Sequence[InboundConnector]
) -> list[LintWarning]:
    found: list[LintWarning] = []
    mine = dict.fromkeys(connector.sender_domains)
    for other in competing:
        if other is connector or not other.restricts:
            continue
        shared = [p for p in dict.fromkeys(other.sender_domains) if p in mine]
        if not shared:
            continue
        message = _allow_only_message(connector, other, shared)
        found.append(_warning(connector, LintCode.ALLOW_ONLY_OVERRIDDEN, message))
    return found


def _reference_restricting_overlaps(
    connector: InboundConnector, competing: Sequence[InboundConnector]
) -> list[LintWarning]:
    """Every other restricting connector sharing a pattern: the weaker one carries the
    warning, or the first by name when neither is weaker."""
    found: list[LintWarning] = []
    position = next(i for i, c in enumerate(competing) if c is connector)
    for other_position, other in enumerate(competing):
        if other is connector or not other.restricts:
            continue
        shared = [p for p in dict.fromkeys(connector.sender_domains) if p in other.sender_domains]
        if not shared:
            continue
        mine, theirs = _checks(connector), _checks(other)
        missing: list[_Check] | None
        if mine < theirs:
            missing = [check for check in _Check if check in theirs and check not in mine]
        elif theirs < mine or other_position < position:
            continue
        else:
            missing = None
        message = _overlap_message(connector, other, shared, missing)
        found.append(_warning(connector, LintCode.RESTRICTING_OVERLAP, message))
    return found


#: Few domains, so that random connectors share, shadow and tie on them often.
_BASES = ("a.com", "b.com", "x.a.com", "y.x.a.com", "c.org", "a.b.com")


def _random_pattern(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return "*"
    base = rng.choice(_BASES)
    return base if roll < 0.55 else f"*.{base}"


def random_policy(rng: random.Random) -> Policy:
    """A valid policy of a dozen connectors per direction, rich in overlaps."""
    inbound: list[dict[str, Any]] = []
    for i in range(rng.randrange(1, 14)):
        table: dict[str, Any] = {
            # Names whose order by casefold differs from their order here.
            "name": f"{rng.choice('abcXYZ')}{i}",
            "sender_domains": [_random_pattern(rng) for _ in range(rng.randrange(1, 4))],
            "require_tls": rng.random() < 0.5,
        }
        if rng.random() < 0.1:
            table["enabled"] = False
        if rng.random() < 0.1:
            table["type"] = "on_premises"
        if rng.random() < 0.4:
            table["tls_sender_certificate_name"] = rng.choice(
                ["*.a.com", "mail.b.com", "mail.c.net", "*.x.a.com"]
            )
        if rng.random() < 0.3:
            table["sender_ip_addresses"] = [rng.choice(["198.51.100.0/24", "192.0.2.1"])]
            table["restrict_domains_to_ip_addresses"] = True
        inbound.append(table)
    outbound: list[dict[str, Any]] = []
    taken: set[str] = set()  # two selectable connectors sharing a pattern: a load error
    for i in range(rng.randrange(1, 14)):
        table = {"name": f"{rng.choice('abcXYZ')}{i}"}
        roll = rng.random()
        if roll < 0.1:
            table["enabled"] = False
        elif roll < 0.2:
            table["test_mode"] = True
        elif roll < 0.3:
            table["is_transport_rule_scoped"] = True
        selectable = roll >= 0.3
        patterns = [_random_pattern(rng) for _ in range(rng.randrange(1, 4))]
        if selectable:
            patterns = [p for p in dict.fromkeys(patterns) if p not in taken]
            if not patterns:
                continue
            taken.update(patterns)
        table["recipient_domains"] = patterns
        if rng.random() < 0.3:
            table["tls_settings"] = "domain_validation"
            table["tls_domain"] = rng.choice(["*.a.com", "mx.b.com", "*.c.net"])
        outbound.append(table)
    return policy_of(inbound, outbound)


def test_lint_equals_the_quadratic_reference_on_random_policies() -> None:
    """Same codes, same texts, same order as the reference, on 2,000 random policies;
    and the comparison is not vacuous: every competition rule fires many times."""
    rng = random.Random(7)  # noqa: S311 - reproducible inputs, not secrets
    seen: Counter[tuple[LintCode, str]] = Counter()
    seen_overlaps: list[LintWarning] = []
    for _ in range(2_000):
        policy = random_policy(rng)
        warnings = lint(policy)
        assert reference_lint(policy) == warnings
        for warning in warnings:
            seen[(warning.code, str(warning.direction))] += 1
            if warning.code is LintCode.RESTRICTING_OVERLAP:
                seen_overlaps.append(warning)
    overlaps = [w.message for w in seen_overlaps]
    assert sum("so this connector is the weaker one" in m for m in overlaps) > 100
    assert sum("and neither is weaker" in m for m in overlaps) > 100
    for key in (
        (LintCode.CONNECTOR_SHADOWED, "inbound"),
        (LintCode.CONNECTOR_SHADOWED, "outbound"),
        (LintCode.ALLOW_ONLY_OVERRIDDEN, "inbound"),
        (LintCode.RESTRICTING_OVERLAP, "inbound"),
        (LintCode.CONNECTOR_DISABLED, "inbound"),
        (LintCode.CONNECTOR_TEST_MODE, "outbound"),
    ):
        assert seen[key] > 100, key


def test_lint_equals_the_quadratic_reference_on_the_benchmark_policies() -> None:
    """The decision benchmarks' policy, and the lint benchmark's (``make bench``), in
    which every rule comparing connectors fires."""
    plain = Policy.from_mapping(policy_mapping(600), trust=None)
    assert reference_lint(plain) == lint(plain)
    competing = Policy.from_mapping(lint_policy_mapping(600), trust=None)
    warnings = lint(competing)
    assert reference_lint(competing) == warnings
    codes = Counter(str(w.code) for w in warnings)
    assert {"connector-shadowed", "allow-only-overridden", "restricting-overlap"} <= set(codes)


def test_the_lint_benchmark_policy_file_is_its_mapping(tmp_path: Path) -> None:
    """The TOML the lint benchmark loads and lints decodes to the generated mapping."""
    text = lint_policy_toml(100)
    assert lint_policy_mapping(100) == tomllib.loads(text)
    (tmp_path / "policy.toml").write_text(text)
    assert lint(load_policy(tmp_path / "policy.toml", use_system_trust=False)) == lint(
        Policy.from_mapping(lint_policy_mapping(100), trust=None)
    )
