"""A test PKI for the strategies: real certificates, minted fast and cached.

Leaves share one pooled key (``tlsconnector._mint``); each authority mints its root
and intermediate once, and every chain it issues is cached by what was asked for, so
Hypothesis can draw (and shrink through) hundreds of chains in a test run.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import threading
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .._certs import PresentedChain, TrustStore
from .._facts import TLSFacts
from .._mint import CA, DEFAULT_NOT_AFTER, DEFAULT_NOT_BEFORE, NOW, self_signed

__all__ = [
    "DEFAULT_TIME",
    "EKU_CLIENT_AUTH",
    "EKU_EMAIL_ONLY",
    "EKU_SERVER_AUTH",
    "EKU_TLS_BOTH",
    "CertificateAuthority",
    "Issuer",
    "MintedChain",
    "default_authority",
]

#: The session time the strategies use unless told otherwise (2026-11-26T12:00Z); the
#: default validity of minted certificates (2026-01-01 .. 2027-12-31) covers it.
DEFAULT_TIME = NOW

#: Extended key usage lists for :meth:`CertificateAuthority.issue` (None: no extension).
EKU_TLS_BOTH: tuple[x509.ObjectIdentifier, ...] = (
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
)
EKU_SERVER_AUTH: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,)
EKU_CLIENT_AUTH: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,)
#: Usable for neither direction (spec section 7).
EKU_EMAIL_ONLY: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,)

#: Chains kept per authority; the oldest are dropped beyond this.
_CACHE_LIMIT = 4096


class Issuer(enum.Enum):
    """Who signed a minted chain, as seen from a policy trusting the authority's root."""

    #: The authority's intermediate: the chain validates (given valid dates and EKU).
    TRUSTED = "trusted"
    #: An impostor CA with the same names but its own keys: never validates.
    IMPOSTOR = "impostor"
    #: A self-signed leaf: never validates.
    SELF_SIGNED = "self-signed"


@attrs.frozen
class MintedChain:
    """A real certificate chain, leaf first, with what it was minted with.

    ``presented`` is the decoded :class:`~tlsconnector.PresentedChain`; ``pem`` is the
    text a session's ``tls.peer_chain_pem`` carries.
    """

    pem: str
    cns: tuple[str, ...]
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    #: The EKU purposes; None when the leaf has no EKU extension.
    eku: tuple[x509.ObjectIdentifier, ...] | None
    issuer: Issuer
    #: Whether the intermediate was presented after the leaf.
    with_intermediate: bool
    presented: PresentedChain = attrs.field(eq=False, repr=False)

    def tls_facts(self) -> TLSFacts:
        """The session facts of a STARTTLS session presenting this chain."""
        return TLSFacts(self.presented)

    def to_json(self) -> dict[str, str]:
        """The ``tls`` object of a JSON Lines session (specification section 9)."""
        return {"peer_chain_pem": self.pem}

    def describe(self) -> str:
        """One line for a counterexample: CNs, issuer, validity, EKU, SAN."""
        eku = "no EKU" if self.eku is None else "EKU " + "+".join(_eku_name(o) for o in self.eku)
        cns = ", ".join(ascii(cn) for cn in self.cns) or "no CN"
        parts = [
            f"chain with CN {cns}",
            f"issued by {self.issuer.value}"
            + ("" if self.with_intermediate else " (intermediate not presented)"),
            f"valid {self.not_before.isoformat()} .. {self.not_after.isoformat()}",
            eku,
        ]
        if self.sans:
            parts.append("SAN " + ", ".join(ascii(s) for s in self.sans))
        return "; ".join(parts)


def _eku_name(oid: x509.ObjectIdentifier) -> str:
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


_Key = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[x509.ObjectIdentifier, ...] | None,
    dt.datetime,
    dt.datetime,
    Issuer,
    bool,
]


class CertificateAuthority:
    """A test PKI: a root (the trust anchor) and an intermediate that issues leaves.

    Every chain is real X.509 minted with ``cryptography``. Chains are cached by their
    parameters, so drawing the same chain again costs nothing. :attr:`impostor` is a
    second PKI with the same names but its own keys: its chains never validate against
    this authority's :attr:`trust_store`.

    >>> authority = CertificateAuthority("Example Partner Root CA")
    >>> chain = authority.issue("mail.partner.example")
    >>> chain.presented.cns
    ('mail.partner.example',)
    """

    def __init__(self, name: str = "tlsconnector.testing Root CA") -> None:
        self.name = name
        self._root = CA(name)
        self._intermediate = self._root.intermediate(f"{name} - Issuing CA")
        self.trust_store = TrustStore.from_pem(self._root.cert_pem())
        self._cache: dict[_Key, MintedChain] = {}
        self._lock = threading.Lock()
        self._impostor: CertificateAuthority | None = None

    @property
    def root_pem(self) -> str:
        """The trust anchor as PEM (what a policy's ``[trust] ca_file`` holds)."""
        return self._root.cert_pem()

    @property
    def impostor(self) -> CertificateAuthority:
        """A PKI with the same CA names and different keys (created on first use)."""
        with self._lock:
            if self._impostor is None:
                self._impostor = CertificateAuthority(self.name)
            return self._impostor

    def issue(
        self,
        cns: str | Sequence[str] | None,
        *,
        sans: Sequence[str] = (),
        eku: Sequence[x509.ObjectIdentifier] | None = EKU_TLS_BOTH,
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
        issuer: Issuer = Issuer.TRUSTED,
        with_intermediate: bool = True,
    ) -> MintedChain:
        """Mint (or fetch from the cache) a chain for a leaf with these subject CNs.

        ``cns``: one CN, several (one CN attribute each, in order) or None (no CN).
        ``sans``: DNS names for a subjectAltName extension (none when empty).
        ``issuer``: :attr:`Issuer.IMPOSTOR` signs with :attr:`impostor`'s intermediate,
        :attr:`Issuer.SELF_SIGNED` makes a self-signed leaf (no intermediate).
        """
        cn_tuple = () if cns is None else (cns,) if isinstance(cns, str) else tuple(cns)
        key: _Key = (
            cn_tuple,
            tuple(sans),
            None if eku is None else tuple(eku),
            not_before,
            not_after,
            issuer,
            with_intermediate,
        )
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        chain = self._mint(key, cns_given=cns is not None)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = chain
        return chain

    def _mint(self, key: _Key, *, cns_given: bool) -> MintedChain:
        cns, sans, eku, not_before, not_after, issuer, with_intermediate = key
        subject: list[str] | None = list(cns) if cns_given else None
        san = list(sans) if sans else None
        eku_list = None if eku is None else list(eku)
        if issuer is Issuer.SELF_SIGNED:
            leaf = self_signed(
                subject, san=san, eku=eku_list, not_before=not_before, not_after=not_after
            )
            with_intermediate = False
        else:
            ca = self._intermediate if issuer is Issuer.TRUSTED else self.impostor._intermediate
            leaf = ca.issue(
                subject, san=san, eku=eku_list, not_before=not_before, not_after=not_after
            )
        pem = leaf.chain_pem(intermediates=with_intermediate)
        return MintedChain(
            pem=pem,
            cns=cns,
            sans=sans,
            not_before=not_before,
            not_after=not_after,
            eku=eku,
            issuer=issuer,
            with_intermediate=with_intermediate,
            presented=PresentedChain.from_pem(pem),
        )


@functools.cache
def default_authority() -> CertificateAuthority:
    """The authority the strategies use when none is given (one per process).

    A policy that should trust the chains the strategies mint uses its
    :attr:`~CertificateAuthority.trust_store`.
    """
    return CertificateAuthority()
