"""What a presented certificate proves, in either direction (section 7).

Shared by inbound and outbound evaluation: trust (validated here, or vouched for by
the MTA) and the CNs to match. Pure: the trust store and the time come in.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import attrs

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._revocation import Revocation
from tlsconnector._validation import (
    ChainVerdict,
    Purpose,
    mta_name_constraint_failure,
    validate_chain,
)

from ._facts import MtaVerifiedCertificate, UndecodableCertificate
from ._memory import BoundedCache

__all__ = ["CHAIN_VERDICTS", "CertificateAssessment", "ChainVerdictCache", "assess_certificate"]

#: Bounds on the memory of chain verdicts (section 8): entries, and bytes.
MAX_CHAIN_VERDICTS = 8192
MAX_CHAIN_VERDICT_BYTES = 16 * 1024 * 1024

EXPIRED = "certificate-expired"
NOT_TRUSTED = "certificate-not-trusted"
UNDECODABLE = "validation-failure"
REVOKED = "certificate-revoked"
REVOCATION_UNKNOWN = "revocation-unknown"
#: Verdict codes passed on as they are; any other refusal is "not trusted".
_PASSED_ON = frozenset({EXPIRED, REVOKED, REVOCATION_UNKNOWN})


@attrs.frozen
class CertificateAssessment:
    """``trust_failure`` is None when the chain is trusted, else ``(code, detail)``
    with code ``certificate-expired``, ``certificate-not-trusted``,
    ``certificate-revoked``, ``revocation-unknown`` (``[trust] revocation = "hard"``)
    or ``validation-failure`` (undecodable certificates)."""

    trust_failure: tuple[str, str] | None
    cns: tuple[str, ...]
    #: "tlsconnector", "mta", or None when nobody verified the chain.
    verified_by: str | None
    #: Trusted although revocation could not be checked (``revocation = "soft"``):
    #: why. The decision lists it as a ``revocation-unknown`` reason, never deciding.
    revocation_note: str | None = None


_MTA_UNCHECKED = (
    "the MTA verified the chain and passed on only the CN: tlsconnector cannot check "
    "the revocation of certificates it does not see"
)


def assess_certificate(
    certificate: PresentedChain | MtaVerifiedCertificate | UndecodableCertificate,
    *,
    trust: TrustStore | None,
    at: dt.datetime,
    purpose: Purpose,
    revocation: Revocation = Revocation.SOFT,
    ocsp_response: bytes | None = None,
) -> CertificateAssessment:
    """Validate a presented chain, or take the MTA's word for it (section 7), and
    check revocation (section 11) under ``revocation``."""
    if isinstance(certificate, UndecodableCertificate):
        detail = f"the presented certificates cannot be decoded: {certificate.reason}"
        return CertificateAssessment((UNDECODABLE, detail), (), None)
    if isinstance(certificate, MtaVerifiedCertificate):
        if certificate.verified:
            # Section 7: an MTA's "verified" does not cover the CA's DNS name
            # constraints on the CN (OpenSSL skips them when the leaf has a DNS SAN).
            cns = certificate.cns
            excluded = None if trust is None else mta_name_constraint_failure(cns, trust)
            if excluded is not None:
                return CertificateAssessment((NOT_TRUSTED, excluded), certificate.cns, "mta")
            # Section 11: revocation cannot be checked on a chain the MTA kept to itself.
            # Hard: fail closed. Soft: noted only when CRLs are configured (asked for).
            if revocation is Revocation.HARD:
                unchecked = (REVOCATION_UNKNOWN, _MTA_UNCHECKED)
                return CertificateAssessment(unchecked, certificate.cns, "mta")
            checks = revocation is Revocation.SOFT and trust is not None and len(trust.crls) > 0
            note = _MTA_UNCHECKED if checks else None
            return CertificateAssessment(None, certificate.cns, "mta", note)
        detail = "the MTA did not verify the certificate chain"
        return CertificateAssessment((NOT_TRUSTED, detail), certificate.cns, None)
    if trust is None or not trust.certificates:
        detail = "no trust anchors are configured ([trust] ca_file)"
        return CertificateAssessment((NOT_TRUSTED, detail), certificate.cns, "tlsconnector")
    verdict = CHAIN_VERDICTS.validate(
        certificate,
        trust=trust,
        at=at,
        purpose=purpose,
        revocation=revocation,
        ocsp_response=ocsp_response,
    )
    failure = None
    if not verdict.trusted:
        code = verdict.code if verdict.code in _PASSED_ON else NOT_TRUSTED
        failure = (code or NOT_TRUSTED, verdict.detail)
    return CertificateAssessment(
        failure, certificate.cns, "tlsconnector", verdict.revocation_unknown
    )


class ChainVerdictCache(BoundedCache[tuple[object, ...], ChainVerdict]):
    """Chain validation results, keyed by certificate bytes, trust store, CRL set
    (its content digest), revocation setting, stapled OCSP response and purpose.

    Memoisation only: the answer is always what :func:`validate_chain` would say.
    A trusted verdict is reused at any time inside its window: the validity of its
    verified path, narrowed by revocation (a CRL or staple becoming current or
    stale, a future revocation date arriving: section 11); any other verdict is
    reused only for the very same second. Bounded in entries and in bytes (keys are digests;
    a verdict counts its detail text plus a fixed overhead): least recently used
    entries go first.
    """

    #: Bytes counted for one entry besides its detail text (key tuple, verdict, times).
    ENTRY_OVERHEAD = 512

    def __init__(
        self, maxsize: int = MAX_CHAIN_VERDICTS, max_bytes: int = MAX_CHAIN_VERDICT_BYTES
    ) -> None:
        super().__init__(maxsize, max_bytes)
        self.maxsize = maxsize

    def validate(
        self,
        chain: PresentedChain,
        *,
        trust: TrustStore,
        at: dt.datetime,
        purpose: Purpose,
        revocation: Revocation = Revocation.SOFT,
        ocsp_response: bytes | None = None,
    ) -> ChainVerdict:
        """:func:`validate_chain`, from the cache when the answer cannot differ."""
        # The validator works in whole seconds; so does the cache.
        second = at.astimezone(dt.UTC).replace(microsecond=0)
        # The purpose by its value: hashing a str is cheaper than hashing an enum member.
        staple = b"" if ocsp_response is None else hashlib.sha256(ocsp_response).digest()
        revoking = (trust.crls.key, revocation.value, staple)
        trusted_key = (chain.key, trust.key, *revoking, purpose.value)
        exact_key = (*trusted_key, second)
        memory = self._memory
        cached = memory.get(trusted_key)
        if cached is not None and _inside(cached, second):
            return cached
        cached = memory.get(exact_key)
        if cached is not None:
            return cached
        verdict = validate_chain(
            chain,
            trust=trust,
            at=at,
            purpose=purpose,
            revocation=revocation,
            ocsp_response=ocsp_response,
        )
        key = trusted_key if verdict.trusted and verdict.valid_from is not None else exact_key
        memory.put(key, verdict, len(verdict.detail) + self.ENTRY_OVERHEAD)
        return verdict


def _inside(verdict: ChainVerdict, second: dt.datetime) -> bool:
    return (
        verdict.valid_from is not None
        and verdict.valid_until is not None
        and verdict.valid_from <= second <= verdict.valid_until
    )


#: The process-wide cache used by the evaluators.
CHAIN_VERDICTS = ChainVerdictCache()
