"""Ready-made policy checks: each runs a Hypothesis search and, when the policy breaks
its promise, raises :class:`AssertionError` explaining the smallest counterexample.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._chains import PresentedChain
from tlsconnector._model import InboundConnector, Policy
from tlsconnector._validation import Purpose, validate_chain
from tlsconnector.cli._common import explain
from tlsconnector.testing._strategies import (
    addresses_near,
    inbound_sessions,
    ip_addresses,
    outbound_sessions,
    spellings,
    tls_facts,
)
from tlsconnector.testing._strategies.addresses import _around
from tlsconnector.testing._strategies.domains import _ASCII_LABEL

from .._addresses import IPRange, IPSet
from .._decisions import InboundAction, InboundDecision, OutboundAction, OutboundDecision
from .._facts import (
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
    UndecodableCertificate,
)
from .._inbound import evaluate_inbound
from .._names import CertificateName, canonical_domain
from .._outbound import DEFAULT_RETRY_WINDOW, evaluate_outbound
from ._pki import CertificateAuthority, _session_time

__all__ = [
    "assert_forced_tls",
    "assert_never_delivered_without_validation",
    "assert_only_from_addresses",
    "describe_session",
]

T = TypeVar("T")

# Health checks that say nothing about a policy: minting and validating certificates
# is slow by Hypothesis' standards, and a check may run inside the user's own @given.
_SUPPRESSED = [
    getattr(HealthCheck, name)
    for name in ("too_slow", "data_too_large", "filter_too_much", "nested_given")
    if hasattr(HealthCheck, name)
]


def _search(
    strategy: SearchStrategy[T], check: Callable[[T], None], *, max_examples: int | None
) -> None:
    """Run ``check`` on examples of ``strategy``; the smallest failure propagates."""
    overrides: dict[str, Any] = {
        "deadline": None,
        "report_multiple_bugs": False,
        "suppress_health_check": _SUPPRESSED,
    }
    if max_examples is not None:
        overrides["max_examples"] = max_examples

    @settings(**overrides)
    @given(strategy)
    def search(example: T) -> None:
        check(example)

    search()


# --------------------------------------------------------------------------------------
# Describing facts and decisions for a counterexample


def _describe_tls(tls: TLSFacts | None, *, direction: str) -> str:
    if tls is None:
        return "none (the session did not use STARTTLS)"
    certificate = tls.certificate
    peer = "client" if direction == "inbound" else "server"
    if certificate is None:
        return f"STARTTLS, no {peer} certificate"
    if isinstance(certificate, MtaVerifiedCertificate):
        verified = "verified" if certificate.verified else "NOT verified"
        cns = ", ".join(ascii(cn) for cn in certificate.cns) or "no CN"
        return f"STARTTLS, CN facts from the MTA: {cns} (chain {verified} by the MTA)"
    if isinstance(certificate, UndecodableCertificate):
        return f"STARTTLS, undecodable {peer} certificate ({certificate.reason})"
    return "STARTTLS, " + _describe_chain(certificate)


def _describe_chain(chain: PresentedChain) -> str:
    leaf = chain.leaf
    cns = ", ".join(ascii(cn) for cn in chain.cns) or "no CN"
    return (
        f"presented chain of {len(chain.certificates)} (leaf CN {cns}; issuer "
        f"{leaf.issuer.rfc4514_string()!a}; valid {leaf.not_valid_before_utc.isoformat()}"
        f" .. {leaf.not_valid_after_utc.isoformat()})"
    )


def describe_session(session: InboundSession | OutboundSession) -> str:
    """The facts of a session, one per line, with attacker-controlled text escaped."""
    if isinstance(session, InboundSession):
        lines = [
            f"peer_ip: {session.peer_ip}",
            f"mail_from: {session.mail_from!a}",
            f"tls: {_describe_tls(session.tls, direction='inbound')}",
        ]
    else:
        attempt = session.attempt
        lines = [
            f"recipient: {session.recipient!a}",
            f"connector named: {ascii(session.connector) if session.connector else '(none)'}",
            "connection: "
            + (
                "(none: plan only)"
                if attempt is None
                else _describe_tls(attempt.tls, direction="outbound")
            ),
            f"queued_since: {session.queued_since.isoformat() if session.queued_since else '-'}",
        ]
    lines.append(f"at: {session.at.isoformat()}")
    return "\n".join(lines)


def _failure(
    check: str,
    promise: str,
    why: str,
    session: InboundSession | OutboundSession,
    decision: InboundDecision | OutboundDecision,
) -> AssertionError:
    indent = "\n  "
    return AssertionError(
        f"{check}: {promise}\n"
        f"Why: {why}\n"
        f"Smallest counterexample found:\n"
        f"session:{indent}{describe_session(session).replace(chr(10), indent)}\n"
        f"{explain(decision, label='decision')}"
    )


# --------------------------------------------------------------------------------------
# What the presented certificate proves (the oracle, written without the evaluator)


def _trust_problem(
    tls: TLSFacts | None, policy: Policy, at: dt.datetime, purpose: Purpose
) -> str | None:
    """Why the certificate in ``tls`` does not prove a trusted peer, or None if it does."""
    peer = "client" if purpose is Purpose.INBOUND else "server"
    if tls is None:
        return "the session did not use STARTTLS"
    certificate = tls.certificate
    if certificate is None:
        return f"the session used STARTTLS but no {peer} certificate was presented"
    if isinstance(certificate, UndecodableCertificate):
        return f"the {peer} certificate could not be decoded"
    if isinstance(certificate, MtaVerifiedCertificate):
        return None if certificate.verified else "the MTA did not verify the certificate chain"
    if policy.trust is None or not policy.trust.certificates:
        return "the policy has no trust anchors, so no chain can be validated"
    verdict = validate_chain(certificate, trust=policy.trust, at=at, purpose=purpose)
    return None if verdict.trusted else f"the chain does not validate ({verdict.detail})"


def _cns(tls: TLSFacts | None) -> tuple[str, ...]:
    certificate = tls.certificate if tls is not None else None
    if isinstance(certificate, PresentedChain | MtaVerifiedCertificate):
        return certificate.cns
    return ()


def _name_problem(tls: TLSFacts | None, expected: CertificateName) -> str | None:
    cns = _cns(tls)
    if expected.matches_any(cns):
        return None
    shown = ", ".join(ascii(cn) for cn in cns) or "no CN"
    return f"no certificate CN ({shown}) matches {str(expected)!r}"


_UNGOVERNED = (
    "no connector governs the sender domain, so the policy enforces nothing "
    "(the MTA applies its own rules)"
)


def _edges(ranges: Sequence[IPRange]) -> list[str]:
    return [address for entry in ranges for address in _around(entry)]


def _policy_certificate_names(connectors: Sequence[InboundConnector]) -> tuple[str, ...]:
    """The certificate names the connectors configure, canonical, sorted."""
    return tuple(
        sorted(
            {
                str(c.tls_sender_certificate_name)
                for c in connectors
                if c.tls_sender_certificate_name is not None
            }
        )
    )


def _senders(domain: str, include_subdomains: bool) -> SearchStrategy[str]:
    canonical = canonical_domain(domain)
    names = spellings(canonical)
    if include_subdomains:
        sub = _ASCII_LABEL.map(lambda label: f"{label}.{canonical}")
        names = st.one_of(names, sub.filter(_fits).flatmap(spellings))
    return st.builds(lambda local, d: f"{local}@{d}", st.sampled_from(["a", "payments"]), names)


def _fits(name: str) -> bool:
    return len(name) <= 253


# --------------------------------------------------------------------------------------
# Inbound checks


def assert_forced_tls(
    policy: Policy,
    domain: str,
    *,
    certificate_name: str | None = None,
    include_subdomains: bool = False,
    authority: CertificateAuthority | None = None,
    at: dt.datetime | None = None,
    max_examples: int | None = None,
) -> None:
    """Prove by search that ``policy`` never accepts mail from ``domain`` without TLS
    and a trusted, matching certificate.

    Every inbound session from ``domain`` (any spelling; with ``include_subdomains``
    also from names under it) that ``policy`` accepts must have used STARTTLS and
    presented a certificate that is trusted (its chain validates against the policy's
    trust anchors at the session time, or the MTA verified it) and whose CN matches
    ``certificate_name`` (default: the certificate name of the accepting connector,
    which must have one). An accept because no connector governs the domain counts as
    a failure too: the host MTA would take that mail on its own terms.

    The search varies the peer address, the TLS facts (none, no certificate, MTA
    facts, real chains from ``authority`` and from impostors, valid and not, CNs that
    match and CNs one label off) and the sender's spelling. ``at`` is the session time
    (default: ``authority.valid_at``, a time the authority's PKI is valid, which is
    :data:`~tlsconnector.testing.DEFAULT_TIME` but for an authority built on your own
    CA; :data:`~tlsconnector.testing.DEFAULT_TIME` without ``authority``); a given
    ``at`` is used as it is. ``max_examples`` defaults to the active Hypothesis
    profile's. Raises :class:`AssertionError` describing the smallest session accepted
    against the promise, and the decision.
    """
    at = _session_time(authority, at)
    expected = CertificateName.parse(certificate_name) if certificate_name else None
    canonical = canonical_domain(domain)
    promise = (
        f"mail from {canonical} was accepted without TLS and a trusted certificate "
        f"matching {str(expected)!r}"
        if expected
        else f"mail from {canonical} was accepted without TLS and a trusted, matching certificate"
    )
    sessions = inbound_sessions(
        policy,
        authority=authority,
        at=at,
        senders=_senders(canonical, include_subdomains),
        certificate_names=[str(expected)] if expected else (),
    )

    def check(session: InboundSession) -> None:
        decision = evaluate_inbound(policy, session)
        if decision.action is not InboundAction.ACCEPT:
            return
        if decision.connector is None:
            why: str | None = _UNGOVERNED
        else:
            why = _trust_problem(session.tls, policy, session.at, Purpose.INBOUND)
        if why is None:
            name = expected
            if name is None:
                connector = next((c for c in policy.inbound if c.name == decision.connector), None)
                name = connector.tls_sender_certificate_name if connector is not None else None
            if name is None:
                why = (
                    f"connector {decision.connector!r} accepted it and configures no "
                    "certificate name"
                )
            else:
                why = _name_problem(session.tls, name)
        if why is not None:
            raise _failure("assert_forced_tls", promise, why, session, decision)

    _search(sessions, check, max_examples=max_examples)


def assert_only_from_addresses(
    policy: Policy,
    domain: str,
    addresses: Sequence[str],
    *,
    include_subdomains: bool = False,
    authority: CertificateAuthority | None = None,
    at: dt.datetime | None = None,
    max_examples: int | None = None,
) -> None:
    """Prove by search that ``policy`` accepts mail from ``domain`` only from a peer in
    ``addresses`` (``sender_ip_addresses`` entries: addresses, CIDR blocks, ranges).

    Peer addresses are drawn at the ends of every range in ``addresses`` and in the
    policy, just outside them, in IPv4-mapped spelling, and at random; TLS facts and
    sender spellings vary as in :func:`assert_forced_tls`, at the same session time
    (``at``, default ``authority.valid_at``). An accept because no connector governs
    the domain counts as a failure. Raises :class:`AssertionError` with the smallest
    session accepted from elsewhere.
    """
    at = _session_time(authority, at)
    allowed = IPSet.parse(list(addresses))
    canonical = canonical_domain(domain)
    in_policy = [r for c in policy.inbound for r in c.sender_ip_addresses.ranges]
    edges = list(dict.fromkeys(_edges([*allowed.ranges, *in_policy])))
    outside = [address for address in edges if address not in allowed]
    # Mostly the edges outside the allowed addresses (the likeliest counterexamples),
    # else any edge, else any address.
    choices = [st.sampled_from(outside)] * 2 if outside else []
    near = addresses_near([*allowed.ranges, *in_policy])
    peers = st.one_of(*choices, near, ip_addresses())
    # Mostly credentials that prove a configured name, so that the address decides.
    names = _policy_certificate_names(policy.inbound) or ("mail.example.com",)
    trusted = tls_facts(names, authority=authority, at=at, trusted_only=True)
    tls = st.one_of(trusted, trusted, st.none(), tls_facts(names, authority=authority, at=at))
    sessions = inbound_sessions(
        policy,
        authority=authority,
        at=at,
        senders=_senders(canonical, include_subdomains),
        peer_ips=peers,
        tls=tls,
    )
    listed = ", ".join(str(r) for r in allowed.ranges) or "(nothing)"
    promise = f"mail from {canonical} was accepted from an address outside {listed}"

    def check(session: InboundSession) -> None:
        decision = evaluate_inbound(policy, session)
        if decision.action is InboundAction.ACCEPT and session.peer_ip not in allowed:
            who = (
                _UNGOVERNED
                if decision.connector is None
                else f"connector {decision.connector!r} accepted it"
            )
            why = f"{who}; the peer {session.peer_ip} is not in the allowed addresses"
            raise _failure("assert_only_from_addresses", promise, why, session, decision)

    _search(sessions, check, max_examples=max_examples)


# --------------------------------------------------------------------------------------
# Outbound check


def assert_never_delivered_without_validation(
    policy: Policy,
    domain: str,
    *,
    certificate_name: str | None = None,
    include_subdomains: bool = False,
    connector: str | None = None,
    retry_window: dt.timedelta = DEFAULT_RETRY_WINDOW,
    authority: CertificateAuthority | None = None,
    at: dt.datetime | None = None,
    max_examples: int | None = None,
) -> None:
    """Prove by search that ``policy`` never delivers mail to ``domain`` over a
    connection whose server certificate was not validated.

    Every connection attempt for a recipient at ``domain`` that ends in ``deliver``
    must have used STARTTLS with a server chain that validates against the policy's
    trust anchors at the session time (or that the MTA verified), and, when
    ``certificate_name`` is given, a CN matching it. ``connector`` names the connector
    as a transport rule would (default: chosen by the recipient domain). ``at``: the
    session time, as in :func:`assert_forced_tls` (default ``authority.valid_at``).
    Raises :class:`AssertionError` with the smallest attempt delivered against the
    promise.
    """
    at = _session_time(authority, at)
    expected = CertificateName.parse(certificate_name) if certificate_name else None
    canonical = canonical_domain(domain)
    if connector is not None and (not isinstance(connector, str) or not connector):
        raise ValueError(f"connector must be a connector name, not {connector!r}")
    recipients = _senders(canonical, include_subdomains)
    sessions = outbound_sessions(
        policy,
        authority=authority,
        at=at,
        recipients=recipients,
        plans=False,
        named_connectors=False,
        certificate_names=[str(expected)] if expected else (),
    )
    if connector is not None:
        sessions = sessions.map(lambda s: _named(s, connector))
    suffix = f" and a CN matching {str(expected)!r}" if expected else ""
    promise = f"mail to {canonical} was delivered without a validated certificate{suffix}"

    def check(session: OutboundSession) -> None:
        decision = evaluate_outbound(policy, session, retry_window=retry_window)
        if decision.action is not OutboundAction.DELIVER or session.attempt is None:
            return
        tls = session.attempt.tls
        why = _trust_problem(tls, policy, session.at, Purpose.OUTBOUND)
        if why is None and expected is not None:
            why = _name_problem(tls, expected)
        if why is not None:
            raise _failure(
                "assert_never_delivered_without_validation", promise, why, session, decision
            )

    _search(sessions, check, max_examples=max_examples)


def _named(session: OutboundSession, connector: str) -> OutboundSession:
    return OutboundSession.create(
        recipient=session.recipient,
        at=session.at,
        connector=connector,
        peer_host=session.peer_host,
        attempt=session.attempt,
        queued_since=session.queued_since,
    )
