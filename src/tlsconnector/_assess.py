"""What a presented certificate proves, in either direction (section 7).

Shared by inbound and outbound evaluation: trust (validated here, or vouched for by
the MTA) and the CNs to match. Pure: the trust store and the time come in.
"""

from __future__ import annotations

import datetime as dt

import attrs

from ._certs import PresentedChain, Purpose, TrustStore, validate_chain
from ._facts import MtaVerifiedCertificate, UndecodableCertificate

__all__ = ["CertificateAssessment", "assess_certificate"]

EXPIRED = "certificate-expired"
NOT_TRUSTED = "certificate-not-trusted"
UNDECODABLE = "validation-failure"


@attrs.frozen
class CertificateAssessment:
    """``trust_failure`` is None when the chain is trusted, else ``(code, detail)``
    with code ``certificate-expired``, ``certificate-not-trusted`` or
    ``validation-failure`` (undecodable certificates)."""

    trust_failure: tuple[str, str] | None
    cns: tuple[str, ...]
    #: "tlsconnector", "mta", or None when nobody verified the chain.
    verified_by: str | None


def assess_certificate(
    certificate: PresentedChain | MtaVerifiedCertificate | UndecodableCertificate,
    *,
    trust: TrustStore | None,
    at: dt.datetime,
    purpose: Purpose,
) -> CertificateAssessment:
    """Validate a presented chain, or take the MTA's word for it (section 7)."""
    if isinstance(certificate, UndecodableCertificate):
        detail = f"the presented certificates cannot be decoded: {certificate.reason}"
        return CertificateAssessment((UNDECODABLE, detail), (), None)
    if isinstance(certificate, MtaVerifiedCertificate):
        if certificate.verified:
            return CertificateAssessment(None, certificate.cns, "mta")
        detail = "the MTA did not verify the certificate chain"
        return CertificateAssessment((NOT_TRUSTED, detail), certificate.cns, None)
    if trust is None or not trust.certificates:
        detail = "no trust anchors are configured ([trust] ca_file)"
        return CertificateAssessment((NOT_TRUSTED, detail), certificate.cns, "tlsconnector")
    verdict = validate_chain(certificate, trust=trust, at=at, purpose=purpose)
    failure = None
    if not verdict.trusted:
        failure = (EXPIRED if verdict.code == EXPIRED else NOT_TRUSTED, verdict.detail)
    return CertificateAssessment(failure, certificate.cns, "tlsconnector")
