"""Inbound evaluation: does a partner connector accept this session? (section 5)

Pure: the policy and the session facts in, a decision out. No clock, no files.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from tlsconnector._assessment import CertificateAssessment, assess_certificate
from tlsconnector._chains import PresentedChain
from tlsconnector._model import InboundConnector, Policy
from tlsconnector._names import canonical_domain
from tlsconnector._validation import Purpose

from ._decisions import (
    DEFAULT_REPLIES,
    InboundAction,
    InboundDecision,
    Reason,
    ReasonCode,
    SmtpReply,
    printable,
    render_reply,
)
from ._facts import InboundSession, MtaVerifiedCertificate, UndecodableCertificate

__all__ = [
    "ConnectorRequirement",
    "InboundRequirements",
    "evaluate_inbound",
    "inbound_requirements",
]


def evaluate_inbound(
    policy: Policy,
    session: InboundSession,
    *,
    replies: Mapping[ReasonCode, SmtpReply] = DEFAULT_REPLIES,
) -> InboundDecision:
    """Decide one inbound session under ``policy`` (section 5).

    ``replies`` overrides the SMTP reply per reason code (templates may use
    ``{connector}`` and ``{detail}``); an override keeps its reply class.
    Unexpected errors propagate: an adapter turns them into
    :meth:`InboundDecision.tempfail`, never into an accept.
    """
    candidates = _candidates(policy, session.sender_domain)
    if not candidates:
        sender = session.sender_domain or "the null sender"
        return InboundDecision(
            action=InboundAction.ACCEPT,
            connector=None,
            reasons=(
                Reason(
                    ReasonCode.NO_CONNECTOR,
                    f"no enabled partner connector governs {printable(sender)}",
                ),
            ),
            smtp=None,
        )
    checker = _Checker(policy, session)
    failures: list[tuple[InboundConnector, list[Reason]]] = []
    for connector in candidates:  # sorted by name: the first satisfied one decides
        failed = checker.check(connector)
        if not failed:
            accepted = _accepted(connector.name, checker.verified_by)
            if connector.tls_sender_certificate_name is None:
                return accepted
            # Section 11, soft: revocation unknown is listed, never deciding.
            note = checker.revocation_note(connector.name)
            if note is None:
                return accepted
            return attrs.evolve(accepted, reasons=(*accepted.reasons, note))
        failures.append((connector, failed))
    reasons = tuple(reason for _, failed in failures for reason in failed)
    note = checker.revocation_note(None)
    if note is not None:
        reasons = (*reasons, note)
    # Section 11, hard: a candidate refused only because revocation is unknown may be
    # satisfied once a current CRL answers: a temporary failure, not a reject.
    for connector, failed in failures:
        if all(r.code is ReasonCode.REVOCATION_UNKNOWN for r in failed):
            return InboundDecision(
                action=InboundAction.TEMPFAIL,
                connector=connector.name,
                reasons=reasons,
                smtp=render_reply(failed[0].code, connector.name, failed[0].detail, replies),
                chain_verified_by=checker.verified_by,
            )
    first_connector, first_failed = failures[0]
    reply_reason = first_failed[0]
    return InboundDecision(
        action=InboundAction.REJECT,
        connector=first_connector.name,
        reasons=reasons,
        smtp=render_reply(reply_reason.code, first_connector.name, reply_reason.detail, replies),
        chain_verified_by=checker.verified_by,
    )


@functools.lru_cache(maxsize=4096)
def _accepted(connector: str, verified_by: str | None) -> InboundDecision:
    """The accept decision of a satisfied connector: a frozen value, built once per
    connector name and verifier (speed: most sessions are accepted)."""
    return InboundDecision(
        action=InboundAction.ACCEPT,
        connector=connector,
        reasons=(
            Reason(
                ReasonCode.CONNECTOR_SATISFIED,
                f"every check of connector {printable(connector)!r} holds",
                connector,
            ),
        ),
        smtp=None,
        chain_verified_by=verified_by,
    )


def _candidates(policy: Policy, domain: str | None) -> list[InboundConnector]:
    """Enabled partner connectors matching ``domain`` at the most specific level
    (section 5.2), restricting ones beating allow-only ones (5.3), sorted by name."""
    candidates = policy.inbound_candidates(domain)
    restricting = [c for c in candidates if c.restricts]
    return restricting or list(candidates)


class _Checker:
    """Runs one connector's checks against the session; assesses a certificate once."""

    def __init__(self, policy: Policy, session: InboundSession) -> None:
        self.policy = policy
        self.session = session
        self._assessment: CertificateAssessment | None = None
        self.verified_by: str | None = None
        #: The first connector that looked at the certificate.
        self._assessed_for: str | None = None

    def assess(
        self,
        certificate: PresentedChain | MtaVerifiedCertificate | UndecodableCertificate,
        connector: str,
    ) -> CertificateAssessment:
        if self._assessment is None:
            self._assessment = assess_certificate(
                certificate,
                trust=self.policy.trust,
                at=self.session.at,
                purpose=Purpose.INBOUND,
                revocation=self.policy.revocation,
            )
            self.verified_by = self._assessment.verified_by
            self._assessed_for = connector
        return self._assessment

    def revocation_note(self, connector: str | None) -> Reason | None:
        """The ``revocation-unknown`` note of a soft check (section 11), or None."""
        if self._assessment is None or self._assessment.revocation_note is None:
            return None
        owner = connector if connector is not None else self._assessed_for
        return Reason(ReasonCode.REVOCATION_UNKNOWN, self._assessment.revocation_note, owner)

    def check(self, connector: InboundConnector) -> list[Reason]:
        """Every failed check of ``connector``, in a fixed order (section 5.4)."""
        session = self.session
        name = connector.name
        failed: list[Reason] = []
        if connector.requires_tls and session.tls is None:
            failed.append(
                Reason(ReasonCode.TLS_REQUIRED, "the session did not use STARTTLS", name)
            )
        expected = connector.tls_sender_certificate_name
        if expected is not None:
            certificate = session.tls.certificate if session.tls is not None else None
            if certificate is None:
                failed.append(
                    Reason(
                        ReasonCode.CERTIFICATE_MISSING,
                        "no client certificate was presented",
                        name,
                    )
                )
            else:
                assessment = self.assess(certificate, name)
                if assessment.trust_failure is not None:
                    code, detail = assessment.trust_failure
                    failed.append(Reason(ReasonCode(code), detail, name))
                # The name is enforced whenever it is set (section 5.4): CN only. An
                # MTA that did not verify the chain withholds its CN (Postfix sends an
                # empty ccert_subject): there is no name to compare, and "not trusted"
                # alone says why the session is refused.
                withheld = (
                    isinstance(certificate, MtaVerifiedCertificate)
                    and not certificate.verified
                    and not certificate.cns
                )
                if not withheld and not expected.matches_any(assessment.cns):
                    shown = ", ".join(printable(cn, 70) for cn in assessment.cns) or "no CN"
                    failed.append(
                        Reason(
                            ReasonCode.CERTIFICATE_NAME_MISMATCH,
                            f"certificate CN ({shown}) does not match {str(expected)!r}",
                            name,
                        )
                    )
        if (
            connector.restrict_domains_to_ip_addresses
            and session.peer_ip not in connector.sender_ip_addresses
        ):
            failed.append(
                Reason(
                    ReasonCode.IP_NOT_ALLOWED,
                    f"{session.peer_ip} is not in sender_ip_addresses",
                    name,
                )
            )
        return failed


# --- requirements: what a session must show (section 12) ---------------------------


@attrs.frozen
class ConnectorRequirement:
    """What one deciding connector asks of a session (section 5.4)."""

    connector: str
    #: STARTTLS is required (``require_tls``, or implied by a certificate name).
    tls: bool
    #: The CN pattern a client certificate must match; None: no certificate asked for.
    certificate_name: str | None
    #: Trust anchors the chain must lead to (the policy's store); None when no
    #: certificate is asked for. 0 means no chain can be trusted.
    trust_anchors: int | None
    #: The allowed peer addresses; None: any address.
    ip_addresses: tuple[str, ...] | None

    def to_dict(self) -> dict[str, object]:
        return {
            "connector": self.connector,
            "tls": self.tls,
            "certificate_name": self.certificate_name,
            "trust_anchors": self.trust_anchors,
            "ip_addresses": None if self.ip_addresses is None else list(self.ip_addresses),
        }


@attrs.frozen
class InboundRequirements:
    """The inbound counterpart of :func:`~tlsconnector.plan_routes`: for one sender
    domain, which connectors decide (after specificity and restrict beats allow,
    section 5.2-5.3) and what a session must show to be accepted. With several
    deciding connectors, satisfying any one suffices (section 5.5); ``dropped`` names
    the candidates that restrict beats allow takes out. No connector: the policy does
    not govern the domain (``accept``, ``no-connector``)."""

    domain: str | None
    connectors: tuple[ConnectorRequirement, ...]
    dropped: tuple[str, ...]

    @property
    def governed(self) -> bool:
        return bool(self.connectors)

    @property
    def either_suffices(self) -> bool:
        return len(self.connectors) > 1

    def to_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "governed": self.governed,
            "either_suffices": self.either_suffices,
            "connectors": [c.to_dict() for c in self.connectors],
            "dropped": list(self.dropped),
        }


def inbound_requirements(policy: Policy, sender_domain: str) -> InboundRequirements:
    """What mail from ``sender_domain`` must show (``""`` or ``"<>"``: the null sender).

    Uses the very selection :func:`evaluate_inbound` uses. Raises
    :class:`~tlsconnector.InvalidValue` for an invalid domain.
    """
    domain = None if sender_domain in ("", "<>") else canonical_domain(sender_domain)
    deciding = _candidates(policy, domain)
    anchors = len(policy.trust.certificates) if policy.trust is not None else 0
    names = {c.name for c in deciding}
    dropped = tuple(c.name for c in policy.inbound_candidates(domain) if c.name not in names)
    return InboundRequirements(
        domain=domain,
        connectors=tuple(_requirement(c, anchors) for c in deciding),
        dropped=dropped,
    )


def _requirement(connector: InboundConnector, anchors: int) -> ConnectorRequirement:
    name = connector.tls_sender_certificate_name
    ips = connector.sender_ip_addresses
    return ConnectorRequirement(
        connector=connector.name,
        tls=connector.requires_tls,
        certificate_name=None if name is None else str(name),
        trust_anchors=None if name is None else anchors,
        ip_addresses=tuple(str(r) for r in ips.ranges)
        if connector.restrict_domains_to_ip_addresses
        else None,
    )
