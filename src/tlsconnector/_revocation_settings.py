"""What a policy sets about revocation (spec section 11): the ``[trust] revocation`` mode
and the bounds of ``[trust] crl_files``.

Apart from :mod:`tlsconnector._revocation` (the checks, which need ``cryptography``), so
that reading and linting a policy without CRLs never imports ``cryptography``: a
command such as ``tlsconnector check`` starts faster. :mod:`tlsconnector._revocation`
exports the same names.
"""

from __future__ import annotations

import enum

__all__ = ["MAX_CRLS", "MAX_CRL_BYTES", "Revocation"]

#: Bounds (section 8). CRLs are operator configuration, but large: a CA's full CRL
#: can hold hundreds of thousands of serials (about 40 bytes each in DER).
MAX_CRL_BYTES = 64 * 1024 * 1024  # one CRL file, PEM or DER
MAX_CRLS = 20_000  # CRLs in one set (the target is 10,000)


class Revocation(enum.StrEnum):
    """``[trust] revocation``: what a certificate without a usable answer gets (section 11)."""

    #: Decided as if not revoked, with a ``revocation-unknown`` reason beside the others.
    SOFT = "soft"
    #: ``revocation-unknown`` fails the check (temporary failure / defer).
    HARD = "hard"
    #: No revocation check at all (the lint warns).
    OFF = "off"
