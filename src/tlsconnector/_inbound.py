"""Inbound evaluation: does a partner connector accept this session? (section 5)

Pure: the policy and the session facts in, a decision out. No clock, no files.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from tlsconnector._assessment import CertificateAssessment, assess_certificate
from tlsconnector._chains import PresentedChain
from tlsconnector._model import InboundConnector, Policy
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

__all__ = ["evaluate_inbound"]


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
            return _accepted(connector.name, checker.verified_by)
        failures.append((connector, failed))
    first_connector, first_failed = failures[0]
    reply_reason = first_failed[0]
    return InboundDecision(
        action=InboundAction.REJECT,
        connector=first_connector.name,
        reasons=tuple(reason for _, failed in failures for reason in failed),
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

    def assess(
        self, certificate: PresentedChain | MtaVerifiedCertificate | UndecodableCertificate
    ) -> CertificateAssessment:
        if self._assessment is None:
            self._assessment = assess_certificate(
                certificate, trust=self.policy.trust, at=self.session.at, purpose=Purpose.INBOUND
            )
            self.verified_by = self._assessment.verified_by
        return self._assessment

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
                assessment = self.assess(certificate)
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
