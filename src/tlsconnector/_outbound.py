"""Outbound evaluation: connector selection, route, TLS plan, delivery verdict (section 6).

Pure: the policy and the facts of one message to one recipient (and, optionally, one
connection attempt) in, a decision out. The time and the queue time are facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import attrs

from tlsconnector._assessment import assess_certificate
from tlsconnector._model import OutboundConnector, Policy, TLSMode
from tlsconnector._validation import Purpose

from ._decisions import (
    OutboundAction,
    OutboundDecision,
    Reason,
    ReasonCode,
    Route,
    RouteKind,
    SmtpReply,
    TLSPlan,
    printable,
)
from ._facts import ConnectionAttempt, OutboundSession
from ._names import canonical_domain

__all__ = [
    "DEFAULT_RETRY_WINDOW",
    "evaluate_outbound",
    "plan_outbound",
    "plan_routes",
    "select_outbound",
]

#: How long a message may stay queued before a failing attempt bounces it (section 6).
DEFAULT_RETRY_WINDOW = dt.timedelta(hours=24)

# Enhanced status codes (RFC 3463; RFC 8689 and RFC 7672 use the same 4.7.x / 5.7.x):
# STARTTLS missing 4.7.4 / 5.7.4, certificate failures 4.7.5 / 5.7.5, expired 5.4.7.
_STARTTLS_STATUS = ("4.7.4", "5.7.4")
_CERTIFICATE_STATUS = ("4.7.5", "5.7.5")
_EXPIRED_STATUS = "5.4.7"


def select_outbound(
    policy: Policy, domain: str, *, named: str | None = None
) -> tuple[OutboundConnector | None, Reason]:
    """Choose the outbound connector for a canonical recipient ``domain`` (section 6).

    Returns the connector (None for default MX delivery) and the reason for the
    choice; a named connector that is unknown or disabled gives None with reason
    ``connector-unavailable``.
    """
    if named is not None:
        # A transport rule names its connector: used even when rule-scoped or in test mode.
        connector = policy.outbound_named(named)
        if connector is None or not connector.enabled:
            state = "is not defined" if connector is None else "is disabled"
            return None, Reason(
                ReasonCode.CONNECTOR_UNAVAILABLE,
                f"the named connector {printable(named)!r} {state}",
                connector.name if connector is not None else None,
            )
        return connector, Reason(
            ReasonCode.CONNECTOR_NAMED, "the caller named this connector", connector.name
        )
    # Ties at the most specific level are refused at load time; a policy built by a
    # program with a tie still gets a deterministic answer: the first by name.
    found = policy.outbound_candidates(domain)
    best = found[0] if found else None
    if best is None:
        return None, Reason(
            ReasonCode.NO_CONNECTOR,
            f"no outbound connector serves {domain}: MX delivery with opportunistic TLS",
        )
    connector = best
    return connector, Reason(
        ReasonCode.CONNECTOR_SELECTED,
        f"{domain} matches the recipient domains of this connector",
        connector.name,
    )


@attrs.frozen
class _Plan:
    connector: OutboundConnector | None
    selection: Reason
    route: Route
    tls: TLSPlan


def _plan(policy: Policy, domain: str, named: str | None) -> _Plan | Reason:
    """The route and TLS plan, or the ``connector-unavailable`` reason."""
    connector, selection = select_outbound(policy, domain, named=named)
    if selection.code is ReasonCode.CONNECTOR_UNAVAILABLE:
        return selection
    if connector is None:
        route = Route(RouteKind.MX, (domain,))
        return _Plan(None, selection, route, TLSPlan(TLSMode.OPPORTUNISTIC, None))
    if connector.use_mx_record:
        route = Route(RouteKind.MX, (domain,))
    else:
        route = Route(RouteKind.SMART_HOST, tuple(str(h) for h in connector.smart_hosts))
    expected = connector.tls_domain
    tls = TLSPlan(connector.tls_settings, str(expected) if expected is not None else None)
    return _Plan(connector, selection, route, tls)


def _unavailable(reason: Reason, peer_host: str | None) -> OutboundDecision:
    return OutboundDecision(
        action=OutboundAction.DEFER,
        connector=reason.connector,
        reasons=(reason,),
        route=None,
        tls=None,
        smtp=SmtpReply(451, "4.3.5", f"Outbound connector unavailable: {reason.detail}"),
        peer_host=peer_host,
    )


def plan_outbound(policy: Policy, domain: str, *, named: str | None = None) -> OutboundDecision:
    """The plan for a canonical recipient ``domain``: action ``route`` with the route
    and the TLS requirements, or ``defer`` when a named connector is unavailable."""
    plan = _plan(policy, domain, named)
    if isinstance(plan, Reason):
        return _unavailable(plan, None)
    return OutboundDecision(
        action=OutboundAction.ROUTE,
        connector=plan.connector.name if plan.connector is not None else None,
        reasons=(plan.selection,),
        route=plan.route,
        tls=plan.tls,
    )


def evaluate_outbound(
    policy: Policy,
    session: OutboundSession,
    *,
    retry_window: dt.timedelta = DEFAULT_RETRY_WINDOW,
) -> OutboundDecision:
    """Decide one outbound message to one recipient (section 6).

    Without a connection attempt (``session.attempt`` None) the answer is the plan:
    action ``route``. With one, the verdict is ``deliver``, ``defer``, or ``fail`` once
    the message has been queued for ``retry_window`` or longer.
    """
    if retry_window <= dt.timedelta(0):
        raise ValueError(f"retry_window must be positive, not {retry_window}")
    plan = _plan(policy, session.recipient_domain, session.connector)
    if isinstance(plan, Reason):
        return _unavailable(plan, session.peer_host)
    connector = plan.connector
    name = connector.name if connector is not None else None
    action = OutboundAction.ROUTE
    reasons: tuple[Reason, ...] = (plan.selection,)
    smtp: SmtpReply | None = None
    verified_by: str | None = None
    if session.attempt is not None:
        failures, verified_by, note = _attempt_failures(policy, connector, session, session.attempt)
        # Section 11, soft: revocation unknown is listed after the others, never deciding.
        notes = () if note is None else (note,)
        queued = session.at - session.queued_since if session.queued_since is not None else None
        if not failures:
            action = OutboundAction.DELIVER
            reasons = (plan.selection, *notes)
        elif queued is not None and queued >= retry_window:
            action = OutboundAction.FAIL
            expired = Reason(
                ReasonCode.MESSAGE_EXPIRED,
                f"queued for {_hours(queued)}; the retry window is {_hours(retry_window)}",
                name,
                _EXPIRED_STATUS,
            )
            permanent = tuple(_with_status(r, permanent=True) for r in failures)
            reasons = (expired, *permanent, plan.selection, *notes)
            smtp = SmtpReply(554, _EXPIRED_STATUS, f"Message expired: {_summary(name, failures)}")
        else:
            action = OutboundAction.DEFER
            transient = tuple(_with_status(r, permanent=False) for r in failures)
            reasons = (*transient, plan.selection, *notes)
            smtp = SmtpReply(451, transient[0].enhanced or "4.7.5", _summary(name, failures))
    return OutboundDecision(
        action=action,
        connector=name,
        reasons=reasons,
        route=plan.route,
        tls=plan.tls,
        smtp=smtp,
        peer_host=session.peer_host,
        chain_verified_by=verified_by,
    )


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


def _summary(connector: str | None, failures: Iterable[Reason]) -> str:
    codes = ", ".join(str(r.code) for r in failures)
    owner = f'connector "{printable(connector)}"' if connector else "default delivery"
    return f"TLS requirements of {owner} not met ({codes})"


def _with_status(reason: Reason, *, permanent: bool) -> Reason:
    pair = (
        _STARTTLS_STATUS
        if reason.code is ReasonCode.STARTTLS_NOT_SUPPORTED
        else _CERTIFICATE_STATUS
    )
    return Reason(reason.code, reason.detail, reason.connector, pair[1 if permanent else 0])


def _attempt_failures(
    policy: Policy,
    connector: OutboundConnector | None,
    session: OutboundSession,
    attempt: ConnectionAttempt,
) -> tuple[list[Reason], str | None, Reason | None]:
    """Every TLS requirement of the connector's mode the attempt missed, in order; who
    verified the chain; the ``revocation-unknown`` note of a soft check, or None."""
    name = connector.name if connector is not None else None
    mode = connector.tls_settings if connector is not None else TLSMode.OPPORTUNISTIC
    if not mode.requires_tls:
        return [], None, None  # opportunistic: plaintext allowed, nothing validated
    if attempt.tls is None:
        detail = f"tls_settings = {mode} requires STARTTLS; the connection did not use it"
        return [Reason(ReasonCode.STARTTLS_NOT_SUPPORTED, detail, name)], None, None
    if not mode.validates_chain:
        return [], None, None  # encryption_only: any certificate, self-signed included
    certificate = attempt.tls.certificate
    if certificate is None:
        detail = "the connection used TLS but no server certificate was given to check"
        return [Reason(ReasonCode.VALIDATION_FAILURE, detail, name)], None, None
    assessment = assess_certificate(
        certificate,
        trust=policy.trust,
        at=session.at,
        purpose=Purpose.OUTBOUND,
        revocation=policy.revocation,
        ocsp_response=attempt.tls.ocsp_response,
    )
    note = (
        None
        if assessment.revocation_note is None
        else Reason(ReasonCode.REVOCATION_UNKNOWN, assessment.revocation_note, name)
    )
    failures: list[Reason] = []
    if assessment.trust_failure is not None:
        code, detail = assessment.trust_failure
        # certificate-revoked and (hard) revocation-unknown defer with 4.7.5 like every
        # certificate failure; their TLSRPT result type is validation-failure (section 11).
        failures.append(Reason(ReasonCode(code), detail, name))
        if code == ReasonCode.VALIDATION_FAILURE:
            return failures, assessment.verified_by, note
    expected = connector.tls_domain if connector is not None else None
    # CN only, against tls_domain only; peer_host takes no part (section 6).
    if mode is TLSMode.DOMAIN_VALIDATION and (
        expected is None or not expected.matches_any(assessment.cns)
    ):
        shown = ", ".join(printable(cn, 70) for cn in assessment.cns) or "no CN"
        failures.append(
            Reason(
                ReasonCode.CERTIFICATE_HOST_MISMATCH,
                f"certificate CN ({shown}) does not match tls_domain {str(expected)!r}",
                name,
            )
        )
    return failures, assessment.verified_by, note


def plan_routes(policy: Policy, domains: Iterable[str]) -> list[OutboundDecision]:
    """The plan for each recipient domain: which connector, which route, which TLS.

    For administrators checking routing before go-live. Raises
    :class:`~tlsconnector.InvalidValue` for an invalid domain.
    """
    return [plan_outbound(policy, canonical_domain(domain)) for domain in domains]
