"""Outbound evaluation (specification sections 6, 7 and 9): the regulated-partner scenario.

Contoso sends mail to Fabrikam Bank through an outbound connector that demands TLS to
a server whose certificate chains to Fabrikam's partner CA and whose CN is one label
under fabrikam.com. Certificates are real, minted once for this module with
``certmint``; every session happens at ``certmint.NOW`` unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tlsconnector import (
    DEFAULT_RETRY_WINDOW,
    ConnectionAttempt,
    FactsError,
    MtaVerifiedCertificate,
    OutboundAction,
    OutboundDecision,
    OutboundSession,
    Policy,
    PresentedChain,
    Route,
    RouteKind,
    TLSFacts,
    TLSMode,
    TLSPlan,
    TrustStore,
    evaluate_outbound,
    load_policy,
    plan_routes,
)
from tlsconnector.cli import main

from certmint import CA, NOW, self_signed

ROOT = CA("Fabrikam Partner Root CA")
INTER = ROOT.intermediate("Fabrikam Issuing CA")
TRUST = TrustStore.from_pem(ROOT.cert_pem())
AT = "2026-11-26T12:00:00Z"  # certmint.NOW

_LAST_YEAR = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
_JUNE = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # before certmint.NOW
_NEXT_YEAR = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)  # after certmint.NOW
_SERVER1 = INTER.issue("server1.fabrikam.com")

#: Every certificate condition of the scenario: the presented chain, leaf first.
CHAINS: dict[str, str] = {
    "trusted": _SERVER1.chain_pem(),
    "self-signed": self_signed("server1.fabrikam.com").chain_pem(),
    "expired": INTER.issue(
        "server1.fabrikam.com", not_before=_LAST_YEAR, not_after=_JUNE
    ).chain_pem(),
    "not-yet-valid": INTER.issue("server1.fabrikam.com", not_before=_NEXT_YEAR).chain_pem(),
    "wrong-cn": INTER.issue("mail.contoso.com").chain_pem(),
    "name-only-in-san": INTER.issue(
        "Fabrikam Mail Gateway", san=["server1.fabrikam.com"]
    ).chain_pem(),
    "wildcard-cn": INTER.issue("*.fabrikam.com").chain_pem(),
    "apex-cn": INTER.issue("fabrikam.com").chain_pem(),
    "two-label-cn": INTER.issue("a.b.fabrikam.com").chain_pem(),
    "missing-intermediate": _SERVER1.chain_pem(intermediates=False),
    "eku-client-auth-only": INTER.issue(
        "server1.fabrikam.com", eku=[ExtendedKeyUsageOID.CLIENT_AUTH]
    ).chain_pem(),
    "eku-code-signing": INTER.issue(
        "server1.fabrikam.com", eku=[ExtendedKeyUsageOID.CODE_SIGNING]
    ).chain_pem(),
    "no-eku": INTER.issue("server1.fabrikam.com", eku=None).chain_pem(),
    "self-signed-wrong-cn": self_signed("mail.contoso.com").chain_pem(),
    "expired-wrong-cn": INTER.issue(
        "mail.contoso.com", not_before=_LAST_YEAR, not_after=_JUNE
    ).chain_pem(),
    "idn": INTER.issue("mx.xn--bcher-kva.example").chain_pem(),
}
UNDECODABLE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

NAME = "Fabrikam Bank outbound"
MODES = [str(mode) for mode in TLSMode]  # weakest first


def fabrikam(mode: str = "domain_validation", **overrides: Any) -> dict[str, Any]:
    """The scenario connector in ``mode``; only domain_validation carries tls_domain."""
    raw: dict[str, Any] = {"name": NAME, "recipient_domains": ["fabrikam.com"]}
    raw["tls_settings"] = mode
    if mode == "domain_validation":
        raw["tls_domain"] = "*.fabrikam.com"
    raw.update(overrides)
    return raw


def policy(*connectors: dict[str, Any], trust: TrustStore | None = TRUST) -> Policy:
    return Policy.from_mapping({"outbound": list(connectors)}, trust=trust)


def chain(name: str) -> ConnectionAttempt:
    return ConnectionAttempt(TLSFacts(PresentedChain.from_pem(CHAINS[name])))


NO_TLS = ConnectionAttempt(None)


def session(
    attempt: ConnectionAttempt | None = None,
    *,
    recipient: str = "finance@fabrikam.com",
    at: dt.datetime = NOW,
    **kw: Any,
) -> OutboundSession:
    return OutboundSession.create(recipient=recipient, at=at, attempt=attempt, **kw)


def decide(
    attempt: ConnectionAttempt | None,
    *connectors: dict[str, Any],
    retry_window: dt.timedelta = DEFAULT_RETRY_WINDOW,
    **kw: Any,
) -> OutboundDecision:
    the_policy = policy(*(connectors or (fabrikam(),)))
    return evaluate_outbound(the_policy, session(attempt, **kw), retry_window=retry_window)


def from_json(obj: dict[str, Any], *connectors: dict[str, Any]) -> OutboundDecision:
    line = {"recipient": "finance@fabrikam.com", "at": AT, **obj}
    return evaluate_outbound(
        policy(*(connectors or (fabrikam(),))), OutboundSession.from_json(line)
    )


def enhanced(decision: OutboundDecision) -> tuple[str | None, ...]:
    return tuple(r.enhanced for r in decision.reasons)


# --- Every TLS mode against every certificate condition ------------------------------

SELECTED = "connector-selected"
DELIVER = ("deliver", (SELECTED,))


def defer(*codes: str) -> tuple[str, tuple[str, ...]]:
    """A defer: the failing reasons first, then the reason the connector was chosen."""
    return ("defer", (*codes, SELECTED))


NOT_TRUSTED = defer("certificate-not-trusted")
EXPIRED = defer("certificate-expired")
MISMATCH = defer("certificate-host-mismatch")

#: condition -> expected (action, reason codes) for opportunistic, encryption_only,
#: certificate_validation, domain_validation (tls_domain "*.fabrikam.com").
TABLE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "trusted": (DELIVER, DELIVER, DELIVER, DELIVER),
    "self-signed": (DELIVER, DELIVER, NOT_TRUSTED, NOT_TRUSTED),
    "expired": (DELIVER, DELIVER, EXPIRED, EXPIRED),
    "not-yet-valid": (DELIVER, DELIVER, NOT_TRUSTED, NOT_TRUSTED),
    "wrong-cn": (DELIVER, DELIVER, DELIVER, MISMATCH),
    # Section 3: the SAN is never read.
    "name-only-in-san": (DELIVER, DELIVER, DELIVER, MISMATCH),
    # Section 3: "*.fabrikam.com" vs "*.fabrikam.com": the two patterns are equal.
    "wildcard-cn": (DELIVER, DELIVER, DELIVER, DELIVER),
    "apex-cn": (DELIVER, DELIVER, DELIVER, MISMATCH),
    "two-label-cn": (DELIVER, DELIVER, DELIVER, MISMATCH),
    # Section 7: nothing is fetched; the peer must present its intermediates.
    "missing-intermediate": (DELIVER, DELIVER, NOT_TRUSTED, NOT_TRUSTED),
    # Section 7: an outbound peer's EKU, when present, must include serverAuth.
    "eku-client-auth-only": (DELIVER, DELIVER, NOT_TRUSTED, NOT_TRUSTED),
    "eku-code-signing": (DELIVER, DELIVER, NOT_TRUSTED, NOT_TRUSTED),
    "no-eku": (DELIVER, DELIVER, DELIVER, DELIVER),
    # Every failed check is reported, trust first.
    "self-signed-wrong-cn": (
        DELIVER,
        DELIVER,
        NOT_TRUSTED,
        defer("certificate-not-trusted", "certificate-host-mismatch"),
    ),
    "expired-wrong-cn": (
        DELIVER,
        DELIVER,
        EXPIRED,
        defer("certificate-expired", "certificate-host-mismatch"),
    ),
}


@pytest.mark.parametrize(
    ("mode", "condition", "expected"),
    [
        pytest.param(mode, condition, row[i], id=f"{mode}-{condition}")
        for condition, row in TABLE.items()
        for i, mode in enumerate(MODES)
    ],
)
def test_every_mode_against_every_certificate_condition(
    mode: str, condition: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    decision = decide(chain(condition), fabrikam(mode))
    assert expected == (str(decision.action), decision.codes)
    assert NAME == decision.connector
    assert Route(RouteKind.MX, ("fabrikam.com",)) == decision.route
    domain = "*.fabrikam.com" if mode == "domain_validation" else None
    assert TLSPlan(mode, domain) == decision.tls


@pytest.mark.parametrize("condition", ["self-signed", "expired", "wrong-cn", "eku-code-signing"])
def test_certificate_failures_defer_with_4_7_5(condition: str) -> None:
    decision = decide(chain(condition))
    assert OutboundAction.DEFER == decision.action
    assert ("4.7.5", None) == enhanced(decision)
    assert decision.smtp is not None
    assert (451, "4.7.5") == (decision.smtp.code, decision.smtp.enhanced)


@pytest.mark.parametrize("condition", ["self-signed", "expired", "wrong-cn", "eku-code-signing"])
def test_certificate_failures_bounce_with_5_7_5_after_the_retry_window(condition: str) -> None:
    decision = decide(chain(condition), queued_since=NOW - dt.timedelta(hours=25))
    assert OutboundAction.FAIL == decision.action
    assert "message-expired" == decision.codes[0]
    assert ("5.4.7", "5.7.5", None) == enhanced(decision)
    assert decision.smtp is not None
    assert (554, "5.4.7") == (decision.smtp.code, decision.smtp.enhanced)


def test_a_chain_checked_by_tlsconnector_says_so() -> None:
    assert "tlsconnector" == decide(chain("trusted")).chain_verified_by
    assert "tlsconnector" == decide(chain("wrong-cn")).chain_verified_by


def test_without_trust_anchors_no_chain_validates() -> None:
    """Fail closed: certificate checks without a trust store never deliver."""
    the_policy = policy(fabrikam(), trust=None)
    decision = evaluate_outbound(the_policy, session(chain("trusted")))
    assert defer("certificate-not-trusted") == (str(decision.action), decision.codes)


def test_validity_is_checked_at_the_session_time() -> None:
    later = dt.datetime(2028, 6, 1, tzinfo=dt.UTC)  # after the default notAfter
    decision = decide(chain("trusted"), at=later)
    assert EXPIRED == (str(decision.action), decision.codes)


# --- No TLS, TLS without certificate facts, undecodable certificates -----------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("opportunistic", DELIVER),  # plaintext allowed
        ("encryption_only", defer("starttls-not-supported")),
        ("certificate_validation", defer("starttls-not-supported")),
        ("domain_validation", defer("starttls-not-supported")),
    ],
)
def test_no_starttls_per_mode(mode: str, expected: tuple[str, tuple[str, ...]]) -> None:
    decision = from_json({"tls": None}, fabrikam(mode))
    assert expected == (str(decision.action), decision.codes)
    if decision.action is OutboundAction.DEFER:
        assert ("4.7.4", None) == enhanced(decision)
        assert decision.smtp is not None
        assert (451, "4.7.4") == (decision.smtp.code, decision.smtp.enhanced)
    else:
        assert decision.smtp is None


@pytest.mark.parametrize("mode", MODES[1:])
def test_no_starttls_bounces_with_5_7_4_after_the_retry_window(mode: str) -> None:
    decision = from_json({"tls": None, "queued_since": "2026-11-25T11:00:00Z"}, fabrikam(mode))
    assert OutboundAction.FAIL == decision.action
    assert ("message-expired", "starttls-not-supported", SELECTED) == decision.codes
    assert ("5.4.7", "5.7.4", None) == enhanced(decision)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("opportunistic", DELIVER),
        ("encryption_only", DELIVER),  # any certificate, or none known
        ("certificate_validation", defer("validation-failure")),
        ("domain_validation", defer("validation-failure")),
    ],
)
def test_tls_without_certificate_facts(mode: str, expected: tuple[str, tuple[str, ...]]) -> None:
    """``"tls": {}``: TLS was used, but nothing is known to validate."""
    decision = from_json({"tls": {}}, fabrikam(mode))
    assert expected == (str(decision.action), decision.codes)


@pytest.mark.parametrize(
    "pem",
    [
        UNDECODABLE,
        "not PEM at all",
        "",
        CHAINS["trusted"][:200] + "\n-----END CERTIFICATE-----\n",  # truncated
    ],
    ids=["bad-der", "no-pem", "empty", "truncated"],
)
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("opportunistic", DELIVER),
        ("encryption_only", DELIVER),
        ("certificate_validation", defer("validation-failure")),
        ("domain_validation", defer("validation-failure")),
    ],
)
def test_undecodable_certificates_are_a_validation_failure_not_an_exception(
    pem: str, mode: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    decision = from_json({"tls": {"peer_chain_pem": pem}}, fabrikam(mode))
    assert expected == (str(decision.action), decision.codes)
    if decision.action is OutboundAction.DEFER:
        assert ("4.7.5", None) == enhanced(decision)


def test_a_peer_chain_pem_that_is_not_a_string_is_malformed_facts() -> None:
    with pytest.raises(FactsError, match="peer_chain_pem") as info:
        from_json({"tls": {"peer_chain_pem": 5}})
    assert "tls.peer_chain_pem" == info.value.field


# --- Facts already verified by the MTA (section 7) -----------------------------------


@pytest.mark.parametrize(
    ("cns", "verified", "expected", "verified_by"),
    [
        (["server1.fabrikam.com"], True, DELIVER, "mta"),
        (["Fabrikam Bank", "server1.fabrikam.com"], True, DELIVER, "mta"),
        (["*.fabrikam.com"], True, DELIVER, "mta"),
        (["mail.contoso.com"], True, MISMATCH, "mta"),
        (["server1.fabrikam.com"], False, NOT_TRUSTED, None),
        (
            ["mail.contoso.com"],
            False,
            defer("certificate-not-trusted", "certificate-host-mismatch"),
            None,
        ),
        ([], True, MISMATCH, "mta"),
    ],
)
def test_mta_verified_cn_facts(
    cns: list[str], verified: bool, expected: tuple[str, tuple[str, ...]], verified_by: str | None
) -> None:
    decision = from_json({"tls": {"peer_cn": cns, "peer_verified": verified}})
    assert expected == (str(decision.action), decision.codes)
    assert verified_by == decision.chain_verified_by


@pytest.mark.parametrize(("verified", "action"), [(True, "deliver"), (False, "defer")])
def test_mta_facts_under_certificate_validation_check_trust_only(
    verified: bool, action: str
) -> None:
    facts = TLSFacts(MtaVerifiedCertificate(("mail.contoso.com",), verified))
    decision = decide(ConnectionAttempt(facts), fabrikam("certificate_validation"))
    assert action == decision.action


# --- peer_host is recorded, never matched (section 6) --------------------------------


def test_peer_host_takes_no_part_in_the_name_check_a_good_cert_delivers() -> None:
    decision = decide(chain("trusted"), peer_host="mx.evil.example")
    assert OutboundAction.DELIVER == decision.action
    assert "mx.evil.example" == decision.peer_host
    assert "mx.evil.example" == decision.to_dict()["peer_host"]


def test_peer_host_takes_no_part_in_the_name_check_a_bad_cn_still_defers() -> None:
    decision = decide(chain("wrong-cn"), peer_host="server1.fabrikam.com")
    assert MISMATCH == (str(decision.action), decision.codes)
    assert "server1.fabrikam.com" == decision.peer_host


def test_peer_host_is_recorded_even_for_a_plan_and_an_unavailable_connector() -> None:
    assert "mx1.fabrikam.com" == decide(None, peer_host="mx1.fabrikam.com").peer_host
    decision = decide(NO_TLS, peer_host="mx1.fabrikam.com", connector="Nope")
    assert "mx1.fabrikam.com" == decision.peer_host


# --- Connector selection (sections 2 and 6) ------------------------------------------


EXACT = {"name": "Exact", "recipient_domains": ["fabrikam.com"]}
SUBTREE = {"name": "Subtree", "recipient_domains": ["*.fabrikam.com"]}
EU = {"name": "EU", "recipient_domains": ["*.eu.fabrikam.com"]}
ANY = {"name": "Any", "recipient_domains": ["*"]}


@pytest.mark.parametrize(
    ("recipient", "connector"),
    [
        ("a@fabrikam.com", "Exact"),  # exact beats *.fabrikam.com
        ("a@us.fabrikam.com", "Subtree"),
        ("a@eu.fabrikam.com", "EU"),  # *.suffix covers the domain itself
        ("a@x.y.eu.fabrikam.com", "EU"),  # ... and every subdomain
        ("a@EU.Fabrikam.COM.", "EU"),  # canonical comparison
        ("a@fabrikam.org", "Any"),
    ],
)
def test_the_most_specific_pattern_wins(recipient: str, connector: str) -> None:
    decision = decide(None, EXACT, SUBTREE, EU, ANY, recipient=recipient)
    assert connector == decision.connector
    assert (SELECTED,) == decision.codes


def test_specificity_does_not_depend_on_the_order_of_connectors() -> None:
    for connectors in [(ANY, EU, SUBTREE, EXACT), (SUBTREE, ANY, EXACT, EU)]:
        assert "EU" == decide(None, *connectors, recipient="a@eu.fabrikam.com").connector


def test_disabled_connectors_are_dropped_before_specificity() -> None:
    decision = decide(None, {**EXACT, "enabled": False}, SUBTREE, recipient="a@fabrikam.com")
    assert "Subtree" == decision.connector


@pytest.mark.parametrize(
    "flag", [{"is_transport_rule_scoped": True}, {"test_mode": True}], ids=["rule-scoped", "test"]
)
def test_rule_scoped_and_test_mode_connectors_are_never_chosen_by_domain(
    flag: dict[str, bool],
) -> None:
    special = {"name": "Special", "recipient_domains": ["fabrikam.com"], **flag}
    assert "Subtree" == decide(None, special, SUBTREE).connector
    decision = decide(None, special)
    assert decision.connector is None
    assert ("no-connector",) == decision.codes


@pytest.mark.parametrize(
    "flag", [{"is_transport_rule_scoped": True}, {"test_mode": True}, {}],
    ids=["rule-scoped", "test", "plain"],
)  # fmt: skip
def test_a_named_connector_is_used_whatever_the_domain(flag: dict[str, bool]) -> None:
    special = {"name": "Special", "recipient_domains": ["contoso.com"], **flag}
    decision = decide(None, special, SUBTREE, connector="Special")
    assert "Special" == decision.connector
    assert ("connector-named",) == decision.codes


def test_a_rule_scoped_connector_without_domains_is_used_when_named() -> None:
    scoped = fabrikam("encryption_only", recipient_domains=[], is_transport_rule_scoped=True)
    decision = decide(NO_TLS, scoped, recipient="a@other.example", connector=NAME)
    assert OutboundAction.DEFER == decision.action
    assert ("starttls-not-supported", "connector-named") == decision.codes


def test_connector_names_compare_case_insensitively() -> None:
    decision = decide(None, connector="FABRIKAM BANK OUTBOUND")
    assert NAME == decision.connector


@pytest.mark.parametrize(
    "attempt",
    [None, NO_TLS, chain("trusted")],
    ids=["plan-only", "no-tls", "good-chain"],
)
@pytest.mark.parametrize(
    ("connectors", "named", "reported"),
    [
        ((fabrikam(enabled=False),), NAME, NAME),
        ((fabrikam(),), "Unknown connector", None),
    ],
    ids=["disabled", "unknown"],
)
def test_a_named_connector_that_is_disabled_or_unknown_defers(
    attempt: ConnectionAttempt | None,
    connectors: tuple[dict[str, Any], ...],
    named: str,
    reported: str | None,
) -> None:
    decision = decide(
        attempt, *connectors, connector=named, queued_since=NOW - dt.timedelta(days=9)
    )
    assert OutboundAction.DEFER == decision.action
    assert ("connector-unavailable",) == decision.codes
    assert reported == decision.connector
    assert decision.route is None
    assert decision.tls is None
    assert decision.smtp is not None
    assert 4 == decision.smtp.code // 100


def test_no_connector_routes_by_mx_with_opportunistic_tls() -> None:
    decision = decide(None, fabrikam(), recipient="someone@other.example")
    assert OutboundAction.ROUTE == decision.action
    assert decision.connector is None
    assert ("no-connector",) == decision.codes
    assert Route(RouteKind.MX, ("other.example",)) == decision.route
    assert TLSPlan("opportunistic", None) == decision.tls


def test_no_connector_delivers_in_plaintext() -> None:
    decision = decide(NO_TLS, fabrikam(), recipient="someone@other.example")
    assert ("deliver", ("no-connector",)) == (str(decision.action), decision.codes)


# --- Routes and TLS plans (section 6) ------------------------------------------------


def test_mx_route_hosts_is_the_canonical_recipient_domain() -> None:
    decision = decide(None, SUBTREE, recipient="a@Mail.Fabrikam.COM.")
    assert Route(RouteKind.MX, ("mail.fabrikam.com",)) == decision.route


def test_smart_hosts_are_routed_in_configured_order() -> None:
    hosts = ["mx2.fabrikam.com", "192.0.2.25:2525", "[2001:db8::25]:25", "2001:db8::26"]
    connector = fabrikam(use_mx_record=False, smart_hosts=hosts)
    decision = decide(None, connector)
    assert Route(RouteKind.SMART_HOST, tuple(hosts)) == decision.route
    assert {"kind": "smart_host", "hosts": hosts} == decision.to_dict()["route"]


def test_the_scenario_plan() -> None:
    decision = decide(None)
    assert OutboundAction.ROUTE == decision.action
    assert NAME == decision.connector
    assert (SELECTED,) == decision.codes
    assert Route(RouteKind.MX, ("fabrikam.com",)) == decision.route
    assert TLSPlan("domain_validation", "*.fabrikam.com") == decision.tls
    assert decision.smtp is None


BUECHER = {
    "name": "Bücher",
    "recipient_domains": ["bücher.example"],
    "tls_settings": "domain_validation",
    "tls_domain": "*.bücher.example",
}


@pytest.mark.parametrize(
    "recipient", ["user@bücher.example", "user@bücher.EXAMPLE", "user@xn--bcher-kva.example"]
)
def test_idn_domains_are_planned_in_a_label_form(recipient: str) -> None:
    decision = decide(None, BUECHER, recipient=recipient)
    assert "Bücher" == decision.connector
    assert Route(RouteKind.MX, ("xn--bcher-kva.example",)) == decision.route
    assert TLSPlan("domain_validation", "*.xn--bcher-kva.example") == decision.tls


def test_an_idn_tls_domain_matches_the_a_label_cn() -> None:
    decision = decide(chain("idn"), BUECHER, recipient="user@bücher.example")
    assert OutboundAction.DELIVER == decision.action


def test_a_tls_domain_is_planned_lower_case() -> None:
    connector = fabrikam(tls_domain="Server1.FABRIKAM.com.")
    assert TLSPlan("domain_validation", "server1.fabrikam.com") == decide(None, connector).tls


def test_upper_case_non_ascii_is_not_folded() -> None:
    """Section 2: ASCII lower case only; ``BÜCHER`` is refused rather than guessed at."""
    with pytest.raises(FactsError) as info:
        session(recipient="user@BÜCHER.example")
    assert "recipient" == info.value.field


# --- The retry window (section 6) ----------------------------------------------------

SECOND = dt.timedelta(seconds=1)
MICROSECOND = dt.timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("window", "queued_for", "action"),
    [
        (None, dt.timedelta(hours=24) - SECOND, "defer"),
        (None, dt.timedelta(hours=24) - MICROSECOND, "defer"),
        (None, dt.timedelta(hours=24), "fail"),  # "for the retry window or longer"
        (None, dt.timedelta(hours=24) + SECOND, "fail"),
        (None, dt.timedelta(days=30), "fail"),
        (dt.timedelta(hours=4), dt.timedelta(hours=4) - SECOND, "defer"),
        (dt.timedelta(hours=4), dt.timedelta(hours=4), "fail"),
        (dt.timedelta(hours=4), dt.timedelta(hours=5), "fail"),
        (dt.timedelta(hours=48), dt.timedelta(hours=24), "defer"),
        (None, dt.timedelta(0), "defer"),
        (None, -dt.timedelta(hours=1), "defer"),  # queued "in the future": not expired
    ],
)
def test_retry_window_edges(
    window: dt.timedelta | None, queued_for: dt.timedelta, action: str
) -> None:
    decision = decide(
        chain("wrong-cn"),
        retry_window=window or DEFAULT_RETRY_WINDOW,
        queued_since=NOW - queued_for,
    )
    assert action == decision.action
    if action == "fail":
        assert ("message-expired", "certificate-host-mismatch", SELECTED) == decision.codes
    else:
        assert MISMATCH[1] == decision.codes


def test_the_default_retry_window_is_24_hours() -> None:
    assert dt.timedelta(hours=24) == DEFAULT_RETRY_WINDOW


def test_without_queued_since_the_window_never_expires() -> None:
    decision = decide(chain("wrong-cn"), at=dt.datetime(2027, 12, 1, tzinfo=dt.UTC))
    assert OutboundAction.DEFER == decision.action


@pytest.mark.parametrize("queued_for", [dt.timedelta(hours=1), dt.timedelta(days=365)])
def test_a_delivering_attempt_delivers_whatever_the_queue_time(queued_for: dt.timedelta) -> None:
    decision = decide(chain("trusted"), queued_since=NOW - queued_for)
    assert DELIVER == (str(decision.action), decision.codes)


def test_a_plan_is_a_plan_whatever_the_queue_time() -> None:
    decision = decide(None, queued_since=NOW - dt.timedelta(days=365))
    assert OutboundAction.ROUTE == decision.action


def test_the_retry_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry_window"):
        decide(NO_TLS, retry_window=dt.timedelta(0))


def test_queue_times_in_other_offsets_are_compared_in_utc() -> None:
    decision = from_json({"tls": None, "queued_since": "2026-11-26T00:00:00+12:00"})
    assert OutboundAction.FAIL == decision.action  # exactly 24 h before AT


# --- Session facts in JSON (section 9) -----------------------------------------------


def test_tls_absent_asks_for_a_plan_only() -> None:
    decision = from_json({"peer_host": "mx1.fabrikam.com"})
    assert OutboundAction.ROUTE == decision.action
    assert decision.chain_verified_by is None


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"recipient": "no-domain"}, "recipient"),
        ({"recipient": "user@192.0.2.1"}, "recipient"),
        ({"recipient": "user@BÜCHER.example"}, "recipient"),
        ({"connector": ""}, "connector"),
        ({"connector": 5}, "connector"),
        ({"peer_host": 5}, "peer_host"),
        ({"tls": "yes"}, "tls"),
        ({"tls": {"peer_cn": ["x"]}}, "tls.peer_verified"),
        ({"tls": {"cipher": "x"}}, "tls.cipher"),
        ({"queued_since": "yesterday"}, "queued_since"),
        ({"at": "2026-11-26T12:00:00"}, "at"),  # no UTC offset
        ({"rcpt_to": []}, "rcpt_to"),  # an inbound key
    ],
)
def test_malformed_outbound_facts_name_the_field(line: dict[str, Any], field: str) -> None:
    with pytest.raises(FactsError) as info:
        from_json(line)
    assert field == info.value.field


def test_a_session_line_needs_a_recipient() -> None:
    with pytest.raises(FactsError) as info:
        OutboundSession.from_json({"at": AT})
    assert "recipient" == info.value.field


@pytest.mark.parametrize("key", ["at", "queued_since"])
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_out_of_range_is_malformed_facts_not_a_crash(key: str, moment: str) -> None:
    with pytest.raises(FactsError) as info:
        from_json({key: moment, "tls": None})
    assert key == info.value.field


def test_at_defaults_to_the_callers_clock() -> None:
    obj = {"recipient": "finance@fabrikam.com", "tls": None}
    assert NOW == OutboundSession.from_json(obj, default_at=NOW).at
    with pytest.raises(FactsError) as info:
        OutboundSession.from_json(obj)
    assert "at" == info.value.field


# --- Decision JSON (section 9) --------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "kw", "action"),
    [
        (None, {}, "route"),
        (chain("trusted"), {}, "deliver"),
        (chain("wrong-cn"), {}, "defer"),
        (NO_TLS, {"queued_since": NOW - dt.timedelta(days=2)}, "fail"),
        (None, {"connector": "Unknown"}, "defer"),
    ],
)
def test_decision_json_has_the_documented_keys(
    attempt: ConnectionAttempt | None, kw: dict[str, Any], action: str
) -> None:
    decision = decide(attempt, **kw)
    obj = decision.to_dict()
    assert json.loads(json.dumps(obj)) == obj
    assert {"action", "connector", "reasons", "route", "tls"} <= set(obj)
    assert action == obj["action"]
    assert obj["connector"] is None or isinstance(obj["connector"], str)
    assert list(decision.codes) == [r["code"] for r in obj["reasons"]]
    assert all({"code", "detail"} <= set(r) for r in obj["reasons"])
    if obj["route"] is not None:
        assert {"kind": "mx", "hosts": ["fabrikam.com"]} == obj["route"]
        assert {"mode": "domain_validation", "domain": "*.fabrikam.com"} == obj["tls"]
    else:
        assert obj["tls"] is None


def test_failing_reasons_carry_their_enhanced_status_code_in_json() -> None:
    obj = decide(chain("wrong-cn"), queued_since=NOW - dt.timedelta(days=2)).to_dict()
    assert [
        ("message-expired", "5.4.7"),
        ("certificate-host-mismatch", "5.7.5"),
        (SELECTED, None),
    ] == [(r["code"], r.get("enhanced")) for r in obj["reasons"]]


# --- The whole path from a policy file and the command line (section 9) ---------------

POLICY_TOML = """
[trust]
ca_file = "partners-ca.pem"

[[outbound]]
name = "Fabrikam Bank outbound"
enabled = true
type = "partner"
comment = "Forced TLS with Fabrikam Bank"
recipient_domains = ["fabrikam.com"]
use_mx_record = true
smart_hosts = []
tls_settings = "domain_validation"
tls_domain = "*.fabrikam.com"
is_transport_rule_scoped = false
test_mode = false

[[outbound]]
name = "Fabrikam relay (rule-scoped)"
recipient_domains = []
is_transport_rule_scoped = true
use_mx_record = false
smart_hosts = ["relay.fabrikam.com:2525", "[2001:db8::25]:25"]
tls_settings = "certificate_validation"
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    (tmp_path / "partners-ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML, encoding="utf-8")
    return path


def test_the_scenario_from_a_policy_file(policy_file: Path) -> None:
    loaded = load_policy(policy_file, use_system_trust=False)
    good = evaluate_outbound(loaded, session(chain("trusted")))
    assert DELIVER == (str(good.action), good.codes)
    bad = evaluate_outbound(loaded, session(chain("wrong-cn")))
    assert MISMATCH == (str(bad.action), bad.codes)
    scoped = evaluate_outbound(loaded, session(None, connector="Fabrikam relay (rule-scoped)"))
    assert Route(RouteKind.SMART_HOST, ("relay.fabrikam.com:2525", "[2001:db8::25]:25")) == (
        scoped.route
    )
    assert [NAME, None] == [d.connector for d in plan_routes(loaded, ["fabrikam.com", "x.org"])]


def jsonl(tmp_path: Path, lines: list[dict[str, Any] | bytes]) -> Path:
    path = tmp_path / "sessions.jsonl"
    encoded = [x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines]
    path.write_bytes(b"".join(line + b"\n" for line in encoded))
    return path


def line(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"recipient": "finance@fabrikam.com", "at": AT}
    obj.update(overrides)
    return obj


def outbound_json(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, list[dict[str, Any]], str]:
    status = main(["outbound", *argv, "--json"])
    captured = capsys.readouterr()
    return status, [json.loads(x) for x in captured.out.splitlines()], captured.err


def test_cli_outbound_sessions_one_json_object_per_line(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = jsonl(
        tmp_path,
        [
            line(),
            line(tls={"peer_chain_pem": CHAINS["trusted"]}, peer_host="mx1.fabrikam.com"),
            line(tls={"peer_chain_pem": CHAINS["wrong-cn"]}),
            line(tls=None, queued_since="2026-11-25T12:00:00Z"),
            line(tls={"peer_chain_pem": UNDECODABLE}),
            line(recipient="someone@other.example", tls=None),
            line(connector="Nope"),
        ],
    )
    status, out, _ = outbound_json(
        capsys, "--policy", str(policy_file), "--sessions", str(sessions)
    )
    assert 0 == status
    assert ["route", "deliver", "defer", "fail", "defer", "deliver", "defer"] == [
        d["action"] for d in out
    ]
    assert [
        [SELECTED],
        [SELECTED],
        ["certificate-host-mismatch", SELECTED],
        ["message-expired", "starttls-not-supported", SELECTED],
        ["validation-failure", SELECTED],
        ["no-connector"],
        ["connector-unavailable"],
    ] == [[r["code"] for r in d["reasons"]] for d in out]
    assert "mx1.fabrikam.com" == out[1]["peer_host"]
    assert {"mode": "domain_validation", "domain": "*.fabrikam.com"} == out[0]["tls"]


def test_cli_outbound_malformed_lines_keep_the_output_aligned(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = jsonl(
        tmp_path,
        [
            line(tls=None),
            b"{not json",
            line(recipient="no-domain"),
            line(tls={"peer_chain_pem": CHAINS["trusted"]}),
            line(surprise=1),
            b"[]",
            line(),
        ],
    )
    status, out, err = outbound_json(
        capsys, "--policy", str(policy_file), "--sessions", str(sessions)
    )
    assert 1 == status
    assert 7 == len(out)
    errors = {o["error"]["line"]: o["error"] for o in out if "error" in o}
    assert [2, 3, 5, 6] == sorted(errors)
    assert all("action" not in o for o in out if "error" in o)
    assert "recipient" == errors[3]["field"]
    assert "surprise" == errors[5]["field"]
    assert ["defer", "deliver", "route"] == [o["action"] for o in out if "action" in o]
    assert "line 3: recipient" in err
    assert "Traceback" not in err


def test_cli_outbound_retry_window_in_hours(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = jsonl(tmp_path, [line(tls=None, queued_since="2026-11-26T08:00:00Z")])
    argv = ["--policy", str(policy_file), "--sessions", str(sessions)]
    assert ["defer"] == [d["action"] for d in outbound_json(capsys, *argv)[1]]
    assert ["fail"] == [d["action"] for d in outbound_json(capsys, *argv, "--retry-window", "4")[1]]
    argv += ["--retry-window", "4.5"]
    assert ["defer"] == [d["action"] for d in outbound_json(capsys, *argv)[1]]


@pytest.fixture
def cert_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("trusted", "wrong-cn"):
        path = tmp_path / f"{name}.pem"
        path.write_text(CHAINS[name])
        files[name] = str(path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(UNDECODABLE)
    files["undecodable"] = str(garbage)
    return files


@pytest.mark.parametrize(
    ("flags", "action", "codes"),
    [
        ([], "route", [SELECTED]),
        (["--cert", "@trusted"], "deliver", [SELECTED]),
        (["--cert", "@wrong-cn"], "defer", ["certificate-host-mismatch", SELECTED]),
        (["--cert", "@undecodable"], "defer", ["validation-failure", SELECTED]),
        (["--tls"], "defer", ["validation-failure", SELECTED]),
        (["--no-tls"], "defer", ["starttls-not-supported", SELECTED]),
        (["--peer-cn", "server1.fabrikam.com"], "deliver", [SELECTED]),
        (
            ["--peer-cn", "server1.fabrikam.com", "--peer-unverified"],
            "defer",
            ["certificate-not-trusted", SELECTED],
        ),
        (
            ["--no-tls", "--queued-since", "2026-11-25T12:00:00Z"],
            "fail",
            ["message-expired", "starttls-not-supported", SELECTED],
        ),
        (
            ["--no-tls", "--queued-since", "2026-11-26T06:00:00Z", "--retry-window", "6"],
            "fail",
            ["message-expired", "starttls-not-supported", SELECTED],
        ),
        (["--no-tls", "--connector", "Nope"], "defer", ["connector-unavailable"]),
        (
            ["--no-tls", "--connector", "fabrikam relay (rule-scoped)"],
            "defer",
            ["starttls-not-supported", "connector-named"],
        ),
    ],
)
def test_cli_outbound_single_recipient(
    policy_file: Path,
    cert_files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    action: str,
    codes: list[str],
) -> None:
    flags = [cert_files[f[1:]] if f.startswith("@") else f for f in flags]
    argv = ["--policy", str(policy_file), "--recipient", "finance@fabrikam.com", "--at", AT]
    status, (decision,), _ = outbound_json(capsys, *argv, "--peer-host", "mx1.fabrikam.com", *flags)
    assert 0 == status
    assert action == decision["action"]
    assert codes == [r["code"] for r in decision["reasons"]]
    assert "mx1.fabrikam.com" == decision["peer_host"]


def test_cli_outbound_single_recipient_readable(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "finance@fabrikam.com"]
    assert 0 == main([*argv, "--no-tls", "--at", AT])
    out = capsys.readouterr().out
    assert "DEFER by connector 'Fabrikam Bank outbound'" in out
    assert "starttls-not-supported [4.7.4]" in out


def test_cli_outbound_bad_recipient_exits_1(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "user@BÜCHER.example"]
    assert 1 == main([*argv, "--at", AT])
    assert "recipient" in capsys.readouterr().err


@pytest.mark.parametrize("hours", ["inf", "1e20"])
def test_cli_outbound_an_absurd_retry_window_is_a_usage_error(
    policy_file: Path, capsys: pytest.CaptureFixture[str], hours: str
) -> None:
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "finance@fabrikam.com"]
    assert 2 == main([*argv, "--no-tls", "--at", AT, "--retry-window", hours])


@pytest.mark.parametrize("hours", ["0", "-1", "nan"])
def test_cli_outbound_a_non_positive_retry_window_is_a_usage_error(
    policy_file: Path, capsys: pytest.CaptureFixture[str], hours: str
) -> None:
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "finance@fabrikam.com"]
    assert 2 == main([*argv, "--no-tls", "--at", AT, "--retry-window", hours])
    assert "retry-window" in capsys.readouterr().err


def test_cli_routes_prints_a_table(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["routes", "--policy", str(policy_file), "fabrikam.com", "other.example"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [
        ["DOMAIN", "CONNECTOR", "ROUTE", "TLS", "CN", "MUST", "MATCH"],
        ["fabrikam.com", "Fabrikam", "Bank", "outbound", "mx", "fabrikam.com",
         "domain_validation", "*.fabrikam.com"],
        ["other.example", "(none)", "mx", "other.example", "opportunistic", "-"],
    ] == rows  # fmt: skip


def test_cli_routes_json(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["routes", "--policy", str(policy_file), "--json", "Fabrikam.COM.", "bücher.example"]
    assert 0 == main(argv)
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert ["Fabrikam.COM.", "bücher.example"] == [o["domain"] for o in out]
    assert ["route", "route"] == [o["action"] for o in out]
    assert {"kind": "mx", "hosts": ["fabrikam.com"]} == out[0]["route"]
    assert {"kind": "mx", "hosts": ["xn--bcher-kva.example"]} == out[1]["route"]
    assert [NAME, None] == [o["connector"] for o in out]


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_routes_an_invalid_domain_exits_1(
    policy_file: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    argv = ["routes", "--policy", str(policy_file), "fabrikam.com", "a..b", "other.example"]
    assert 1 == main([*argv, "--json"] if as_json else argv)
    captured = capsys.readouterr()
    assert "a..b" in captured.err
    out = captured.out.splitlines()
    if as_json:
        objs = [json.loads(x) for x in out]
        assert ["fabrikam.com", None, "other.example"] == [o.get("domain") for o in objs]
        assert "error" in objs[1]
        assert "action" not in objs[1]
    else:
        assert ["DOMAIN", "fabrikam.com", "other.example"] == [x.split()[0] for x in out]


def test_cli_outbound_a_time_out_of_range_is_an_error_line(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = jsonl(tmp_path, [line(at="0001-01-01T00:00:00+01:00"), line()])
    status, out, _ = outbound_json(
        capsys, "--policy", str(policy_file), "--sessions", str(sessions)
    )
    assert 1 == status
    assert [True, False] == ["error" in o for o in out]


def test_cli_outbound_at_is_not_silently_ignored_with_sessions(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = {"recipient": "finance@fabrikam.com", "tls": None, "queued_since": "2000-01-01T12:00:00Z"}
    sessions = jsonl(tmp_path, [obj])
    argv = [
        "--policy",
        str(policy_file),
        "--sessions",
        str(sessions),
        "--at",
        "2000-01-02T00:00:00Z",
    ]
    status, out, _ = outbound_json(capsys, *argv)
    # Either refused as a usage error, or used as the default time (12 h queued: defer).
    assert 2 == status or ["defer"] == [o.get("action") for o in out]


def test_cli_outbound_readable_output_escapes_the_peer_host(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "finance@fabrikam.com"]
    argv += ["--no-tls", "--at", AT, "--peer-host", "mx\x1b[2J\nline 2: DELIVER"]
    assert 0 == main(argv)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\nline 2: DELIVER" not in out
