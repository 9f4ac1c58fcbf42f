"""Property tests for outbound evaluation (specification sections 2, 6, 7 and 9).

Each test states one guarantee a user of tlsconnector can rely on, whatever the
outbound connectors and the delivery facts. Certificates are real and minted once, at
import (never inside a Hypothesis example). Example counts come from the Hypothesis
profile (``ci`` by default, ``long`` on demand).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import (
    ConnectionAttempt,
    DomainPattern,
    MtaVerifiedCertificate,
    OutboundAction,
    OutboundSession,
    Policy,
    PolicyError,
    PresentedChain,
    TLSFacts,
    TLSMode,
    TrustStore,
    UndecodableCertificate,
    evaluate_outbound,
)

from certmint import CA, NOW, self_signed

# --------------------------------------------------------------------------------------
# Real certificates, minted once for the whole module.

ROOT = CA("Fabrikam Partner Root CA")
INTER = ROOT.intermediate("Fabrikam Issuing CA")
TRUST = TrustStore.from_pem(ROOT.cert_pem())

_PAST = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
_SERVER1 = INTER.issue("server1.fabrikam.com")
_CHAIN_PEMS = {
    "server1": _SERVER1.chain_pem(),
    "eu": INTER.issue("mx.eu.fabrikam.com").chain_pem(),
    "contoso": INTER.issue("mail.contoso.com").chain_pem(),
    "apex": INTER.issue("fabrikam.com").chain_pem(),
    "two-labels": INTER.issue("a.b.fabrikam.com").chain_pem(),
    "wildcard-cn": INTER.issue("*.fabrikam.com").chain_pem(),
    "san-only": INTER.issue(None, san=["server1.fabrikam.com"]).chain_pem(),
    "idn": INTER.issue("mx.xn--bcher-kva.example").chain_pem(),
    "expired": INTER.issue(
        "server1.fabrikam.com", not_before=_PAST[0], not_after=_PAST[1]
    ).chain_pem(),
    "no-intermediate": _SERVER1.chain_pem(intermediates=False),
    "self-signed": self_signed("server1.fabrikam.com").chain_pem(),
}
_TLS_FACTS: list[TLSFacts | None] = [
    None,  # connected without STARTTLS
    TLSFacts(None),  # TLS, no certificate facts
    TLSFacts(UndecodableCertificate("garbage")),
    *(TLSFacts(PresentedChain.from_pem(text)) for text in _CHAIN_PEMS.values()),
    *(
        TLSFacts(MtaVerifiedCertificate((cn,), verified))
        for cn in ("server1.fabrikam.com", "mail.contoso.com", "fabrikam.com")
        for verified in (True, False)
    ),
]

# --------------------------------------------------------------------------------------
# Small pools, so that generated connectors and sessions actually meet.

PATTERNS = [
    "fabrikam.com",
    "*.fabrikam.com",
    "eu.fabrikam.com",
    "*.eu.fabrikam.com",
    "*",
    "contoso.com",
    "bücher.example",
    "*.xn--bcher-kva.example",
]
TLS_DOMAINS = ["*.fabrikam.com", "server1.fabrikam.com", "mail.contoso.com", "*.bücher.example"]
NAMES = ["Alpha", "bravo", "Charlie", "delta", "Echo"]
RECIPIENTS = [
    "a@fabrikam.com",
    "b@eu.fabrikam.com",
    "c@x.eu.fabrikam.com",
    "d@us.fabrikam.com",
    "e@contoso.com",
    "f@bücher.example",
    "g@mx.xn--bcher-kva.example",
    "h@other.example",
]
SMART_HOSTS = ["mx1.fabrikam.com", "192.0.2.25:2525", "[2001:db8::25]:25"]

attempts = st.one_of(
    st.none(),  # a plan only
    st.sampled_from(_TLS_FACTS).map(ConnectionAttempt),
)


@st.composite
def tls_settings(draw: st.DrawFn) -> dict[str, str]:
    """A valid ``tls_settings`` (with ``tls_domain`` exactly for domain_validation)."""
    mode = draw(st.sampled_from(TLSMode))
    if mode is TLSMode.DOMAIN_VALIDATION:
        return {"tls_settings": str(mode), "tls_domain": draw(st.sampled_from(TLS_DOMAINS))}
    if draw(st.booleans()):
        return {"tls_settings": str(mode)}
    return {}  # the default, opportunistic


@st.composite
def route_settings(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {}
    hosts = draw(st.lists(st.sampled_from(SMART_HOSTS), min_size=1, max_size=3, unique=True))
    return {"use_mx_record": False, "smart_hosts": hosts}


@st.composite
def outbound_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    """``[[outbound]]`` tables with no tie: each canonical pattern has one owner."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True))
    patterns = draw(
        st.lists(
            st.sampled_from(PATTERNS),
            max_size=len(PATTERNS),
            unique_by=lambda p: str(DomainPattern.parse(p)),
        )
    )
    owners = draw(st.lists(st.sampled_from(names), min_size=len(patterns), max_size=len(patterns)))
    tables = []
    for name in names:
        mine = [p for p, owner in zip(patterns, owners, strict=True) if owner == name]
        raw: dict[str, Any] = {"name": name, **draw(tls_settings()), **draw(route_settings())}
        flags = draw(st.sampled_from(["", "disabled", "rule-scoped", "test-mode"]))
        if flags == "disabled":
            raw["enabled"] = False
        elif flags == "rule-scoped":
            raw["is_transport_rule_scoped"] = True
        elif flags == "test-mode":
            raw["test_mode"] = True
        if mine or flags != "rule-scoped":
            raw["recipient_domains"] = mine or [f"{name.lower()}.example"]
        tables.append(raw)
    return tables


@st.composite
def sessions(draw: st.DrawFn) -> OutboundSession:
    # Mostly at NOW (certificates valid); sometimes long before or after.
    at = NOW + dt.timedelta(hours=draw(st.one_of(st.just(0), st.integers(-24 * 400, 24 * 600))))
    queued = draw(st.one_of(st.none(), st.integers(0, 72).map(lambda h: dt.timedelta(hours=h))))
    return OutboundSession.create(
        recipient=draw(st.sampled_from(RECIPIENTS)),
        at=at,
        connector=draw(st.one_of(st.none(), st.sampled_from([*NAMES, "ECHO", "Unknown"]))),
        peer_host=draw(st.one_of(st.none(), st.just("mx1.fabrikam.com"))),
        attempt=draw(attempts),
        queued_since=None if queued is None else at - queued,
    )


def load(tables: list[dict[str, Any]]) -> Policy:
    return Policy.from_mapping({"outbound": tables}, trust=TRUST)


# --------------------------------------------------------------------------------------
# Selection never depends on the order of connectors in the file.


@given(tables=outbound_tables(), data=st.data())
def test_decisions_do_not_depend_on_the_order_of_connectors(
    tables: list[dict[str, Any]], data: st.DataObject
) -> None:
    session = data.draw(sessions())
    permuted = data.draw(st.permutations(tables))
    expected = evaluate_outbound(load(tables), session)
    assert expected == evaluate_outbound(load(permuted), session)


@given(
    tables=st.lists(
        st.fixed_dictionaries(
            {"recipient_domains": st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2)},
            optional={"enabled": st.booleans(), "test_mode": st.booleans()},
        ),
        min_size=1,
        max_size=4,
    ),
    data=st.data(),
)
def test_whether_a_policy_loads_does_not_depend_on_the_order_of_connectors(
    tables: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Ties are found whatever the order, and reported the same way (section 6.2)."""
    named = [{"name": name, **table} for name, table in zip(NAMES, tables, strict=False)]
    permuted = data.draw(st.permutations(named))

    def outcome(raw: list[dict[str, Any]]) -> object:
        try:
            return load(raw)
        except PolicyError as exc:
            return sorted(
                (p.connector or "", p.field, repr(p.value), p.message) for p in exc.problems
            )

    assert outcome(named) == outcome(permuted)


# --------------------------------------------------------------------------------------
# A stricter TLS mode never delivers where a weaker one defers.

MODES = list(TLSMode)  # opportunistic < encryption_only < certificate_validation < domain_v.


@given(
    recipient_domains=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2),
    route=route_settings(),
    tls_domain=st.sampled_from(TLS_DOMAINS),
    attempt=st.sampled_from(_TLS_FACTS).map(ConnectionAttempt),
    recipient=st.sampled_from(RECIPIENTS),
    named=st.booleans(),
    queued_hours=st.one_of(st.none(), st.integers(0, 48)),
)
def test_a_stricter_mode_never_delivers_where_a_weaker_one_does_not(
    recipient_domains: list[str],
    route: dict[str, Any],
    tls_domain: str,
    attempt: ConnectionAttempt,
    recipient: str,
    named: bool,
    queued_hours: int | None,
) -> None:
    queued = None if queued_hours is None else NOW - dt.timedelta(hours=queued_hours)
    session = OutboundSession.create(
        recipient=recipient,
        at=NOW,
        connector="Fabrikam" if named else None,
        attempt=attempt,
        queued_since=queued,
    )
    decisions = []
    for mode in MODES:
        raw: dict[str, Any] = {"name": "Fabrikam", "recipient_domains": recipient_domains}
        raw.update(route, tls_settings=str(mode))
        if mode is TLSMode.DOMAIN_VALIDATION:
            raw["tls_domain"] = tls_domain
        decisions.append(evaluate_outbound(load([raw]), session))
    # The connector and the route never depend on the mode.
    assert len({(d.connector, d.route) for d in decisions}) == 1
    for weaker, stricter in itertools.combinations(decisions, 2):  # every pair, in order
        if stricter.action is OutboundAction.DELIVER:
            assert OutboundAction.DELIVER == weaker.action
        # Every check a weaker mode fails, a stricter mode fails too.
        assert set(weaker.codes) <= set(stricter.codes)


# --------------------------------------------------------------------------------------
# Determinism and the JSON contract (section 9).


@given(tables=outbound_tables(), session=sessions())
def test_decisions_are_deterministic(
    tables: list[dict[str, Any]], session: OutboundSession
) -> None:
    first = evaluate_outbound(load(tables), session)
    assert first == evaluate_outbound(load(tables), session)
    assert first.to_dict() == evaluate_outbound(load(tables), session).to_dict()


@given(tables=outbound_tables(), session=sessions())
def test_decision_json_round_trips(tables: list[dict[str, Any]], session: OutboundSession) -> None:
    obj = evaluate_outbound(load(tables), session).to_dict()
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    assert text.isascii()  # ensure_ascii: odd Unicode never reaches the output raw
    assert obj == json.loads(text)
    assert obj["action"] in {str(action) for action in OutboundAction}
    assert all(isinstance(r["code"], str) and isinstance(r["detail"], str) for r in obj["reasons"])
    if obj["route"] is not None:
        assert obj["route"]["kind"] in {"mx", "smart_host"}
        assert obj["route"]["hosts"]
        assert {"mode", "domain"} == set(obj["tls"])


@given(tables=outbound_tables(), session=sessions())
def test_an_attempt_never_changes_the_plan(
    tables: list[dict[str, Any]], session: OutboundSession
) -> None:
    """Connector, route and TLS plan come from the policy and the recipient alone."""
    policy = load(tables)
    decision = evaluate_outbound(policy, session)
    plan = evaluate_outbound(policy, OutboundSession.create(
        recipient=session.recipient, at=session.at, connector=session.connector
    ))  # fmt: skip
    assert (plan.connector, plan.route, plan.tls) == (
        decision.connector,
        decision.route,
        decision.tls,
    )
    if plan.action is OutboundAction.ROUTE:
        assert plan.reasons == decision.reasons[-1:]
    else:
        assert ("connector-unavailable",) == plan.codes == decision.codes


@given(tables=outbound_tables(), session=sessions())
def test_the_tls_plan_domain_is_canonical(
    tables: list[dict[str, Any]], session: OutboundSession
) -> None:
    decision = evaluate_outbound(load(tables), session)
    if decision.tls is not None and decision.tls.domain is not None:
        domain = decision.tls.domain
        assert domain.isascii()
        assert domain == domain.lower()
    if decision.tls is not None:
        # Only domain_validation names a certificate domain (section 6).
        assert (decision.tls.domain is not None) == (decision.tls.mode == "domain_validation")


@given(tables=outbound_tables(), session=sessions())
def test_only_a_failing_attempt_defers_or_fails(
    tables: list[dict[str, Any]], session: OutboundSession
) -> None:
    """``fail`` needs a queue time of at least the window; every non-deliver carries a
    4xx (defer) or 5xx (fail) enhanced code on its first reason."""
    decision = evaluate_outbound(load(tables), session)
    if session.attempt is None:
        assert decision.action in {OutboundAction.ROUTE, OutboundAction.DEFER}
    if decision.action is OutboundAction.FAIL:
        assert session.queued_since is not None
        assert session.at - session.queued_since >= dt.timedelta(hours=24)
        assert ("message-expired", "5.4.7") == (decision.codes[0], decision.reasons[0].enhanced)
        assert all((r.enhanced or "").startswith("5.") for r in decision.reasons[:-1])
    if decision.action is OutboundAction.DEFER:
        assert decision.smtp is not None
        assert 4 == decision.smtp.code // 100
