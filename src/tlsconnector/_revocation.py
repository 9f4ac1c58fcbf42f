"""Revocation (spec section 11): CRLs and stapled OCSP responses, on a validated path.

Pure: the CRLs arrive as bytes or parsed objects, the OCSP response as bytes, the
time as a value. ``cryptography`` parses CRLs and OCSP responses and checks their
signatures; the rules deciding whether one is *usable* are ours, kept small and each
cited beside its code:

* RFC 5280 6.3.3 (CRL processing), 5.2.4 (delta CRL indicator), 5.2.5 (issuing
  distribution point), 5.3.3 (certificate issuer entry extension: indirect CRLs);
* RFC 6960 3.2 (OCSP response acceptance) and 4.2.2.2 (authorized responders).

CRLs are indexed once, at construction: by issuer name (DER bytes), and within each
CRL by serial number, so that checking a certificate costs dictionary lookups and,
the first time a CRL meets an issuer key, one signature check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import CRLEntryExtensionOID, ExtendedKeyUsageOID, ExtensionOID

from ._errors import InvalidValue, show
from ._revocation_settings import MAX_CRL_BYTES, MAX_CRLS, Revocation

__all__ = [
    "CODE_REVOKED",
    "CODE_UNKNOWN",
    "MAX_CRLS",
    "MAX_CRL_BYTES",
    "MAX_OCSP_RESPONSE_BYTES",
    "MAX_REVOKED_ENTRIES",
    "CrlSet",
    "Revocation",
    "RevocationList",
    "RevocationVerdict",
    "check_revocation",
    "load_crls",
]

CODE_REVOKED = "certificate-revoked"
CODE_UNKNOWN = "revocation-unknown"

#: Bounds (section 8; those of the CRL files are in _revocation_settings). A CA's full
#: CRL can hold hundreds of thousands of serials (about 40 bytes each in DER).
MAX_REVOKED_ENTRIES = 4_000_000  # revoked serials over every CRL of a set (target 1,000,000)
#: A stapled OCSP response is attacker input: bounded before it is parsed.
MAX_OCSP_RESPONSE_BYTES = 64 * 1024
#: Single responses and certificates looked at in one OCSP response.
MAX_OCSP_ITEMS = 16


_SECOND = dt.timedelta(seconds=1)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)
_DECODE_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, UnsupportedAlgorithm)
#: CRL extensions whose meaning the checks below take into account (RFC 5280 5.2:
#: a CRL with any other *critical* extension must not be used).
_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.FRESHEST_CRL,
    }
)


def _name(name: x509.Name) -> str:
    try:
        return show(name.rfc4514_string())
    except Exception as exc:  # a message must not fail a decision
        return f"(name not renderable: {type(exc).__name__})"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def load_crls(data: bytes, what: str) -> list[x509.CertificateRevocationList]:
    """The CRLs in ``data``: one DER CRL, or PEM text of one or more ``X509 CRL`` blocks.

    Raises :class:`InvalidValue` naming ``what`` when the data is empty, oversized or
    holds no decodable CRL.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidValue(data, f"{what}: expected bytes")
    data = bytes(data)
    if len(data) > MAX_CRL_BYTES:
        raise InvalidValue(f"<{len(data)} bytes>", f"{what}: larger than {MAX_CRL_BYTES} bytes")
    if not data.strip():
        raise InvalidValue(data, f"{what}: empty")
    try:
        if data.lstrip()[:1] == b"-":
            blocks = _PEM_CRL.findall(data)
            if not blocks:
                raise InvalidValue(f"<{len(data)} bytes>", f"{what}: no PEM X509 CRL block found")
            return [x509.load_pem_x509_crl(block) for block in blocks]
        return [x509.load_der_x509_crl(data)]
    except _DECODE_ERRORS as exc:
        raise InvalidValue(
            f"<{len(data)} bytes>", f"{what}: not a decodable CRL (PEM or DER): {show(str(exc))}"
        ) from exc


@attrs.frozen(eq=False)
class RevocationList:
    """One CRL, decoded and indexed at construction.

    ``unusable`` says why the CRL can never be used (a delta or indirect CRL, one
    without nextUpdate, an unknown critical extension); such a CRL is kept, so the
    lint can name it, but no check ever reads it.
    """

    crl: x509.CertificateRevocationList
    #: The issuer name as DER bytes: the index key.
    issuer: bytes
    this_update: dt.datetime
    next_update: dt.datetime | None
    #: Serial number -> revocation date (UTC, whole seconds).
    revoked: dict[int, dt.datetime] = attrs.field(repr=False)
    unusable: str | None
    idp: x509.IssuingDistributionPoint | None = attrs.field(repr=False)
    #: SHA-256 of the CRL's DER: its identity in the set's key.
    digest: bytes = attrs.field(repr=False)
    # Issuer public key (DER) -> does the signature verify; at most 4 keys remembered.
    _signers: dict[bytes, bool] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_crl(cls, crl: x509.CertificateRevocationList, what: str) -> RevocationList:
        """Decode every field the checks read; :class:`InvalidValue` naming ``what``."""
        try:
            der = crl.public_bytes(serialization.Encoding.DER)
            issuer = crl.issuer.public_bytes()
            this_update = _utc(crl.last_update_utc)
            next_update = crl.next_update_utc
            unusable: str | None = None
            idp: x509.IssuingDistributionPoint | None = None
            for extension in crl.extensions:
                oid = extension.oid
                if oid == ExtensionOID.DELTA_CRL_INDICATOR:
                    # RFC 5280 5.2.4: a delta CRL lists changes only (section 11: complete only).
                    unusable = "a delta CRL (complete CRLs only)"
                elif oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
                    assert isinstance(extension.value, x509.IssuingDistributionPoint)
                    idp = extension.value
                elif extension.critical and oid not in _KNOWN_CRL_EXTENSIONS:
                    # RFC 5280 5.2: an unrecognised critical extension makes the CRL unusable.
                    unusable = f"an unknown critical extension {oid.dotted_string}"
            if idp is not None and unusable is None:
                unusable = _idp_unusable(idp)
            revoked: dict[int, dt.datetime] = {}
            for entry in crl:
                for entry_extension in entry.extensions:
                    if entry_extension.oid == CRLEntryExtensionOID.CERTIFICATE_ISSUER:
                        # RFC 5280 5.3.3: entries of another issuer: an indirect CRL.
                        unusable = unusable or "an indirect CRL (certificate issuer entries)"
                    elif entry_extension.critical and entry_extension.oid not in (
                        CRLEntryExtensionOID.CRL_REASON,
                        CRLEntryExtensionOID.INVALIDITY_DATE,
                    ):
                        unusable = unusable or "an entry with an unknown critical extension"
                date = _utc(entry.revocation_date_utc)
                previous = revoked.get(entry.serial_number)
                revoked[entry.serial_number] = date if previous is None else min(previous, date)
        except _DECODE_ERRORS as exc:
            reason = f"{what}: undecodable CRL: {show(str(exc))}"
            raise InvalidValue(type(exc).__name__, reason) from exc
        if next_update is None:
            # RFC 5280 5.1.2.5 requires nextUpdate; without it nobody can tell when the
            # list stops being current: unusable (fail closed, docs/revocation.md).
            unusable = unusable or "no nextUpdate (its freshness cannot be judged)"
        return cls(
            crl=crl,
            issuer=issuer,
            this_update=this_update,
            next_update=None if next_update is None else _utc(next_update),
            revoked=revoked,
            unusable=unusable,
            idp=idp,
            digest=hashlib.sha256(der).digest(),
        )

    def describe(self) -> str:
        """The CRL in a message: its issuer and its dates."""
        until = "never" if self.next_update is None else self.next_update.isoformat()
        return (
            f"the CRL of {_name(self.crl.issuer)} (thisUpdate {self.this_update.isoformat()}, "
            f"nextUpdate {until})"
        )

    def signed_by(self, public_key: object) -> bool:
        """The CRL's signature verifies with ``public_key`` (RFC 5280 6.3.3 (g)-(h))."""
        try:
            spki = public_key.public_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (AttributeError, TypeError, ValueError):
            return False
        known = self._signers.get(spki)
        if known is not None:
            return known
        try:
            valid = bool(self.crl.is_signature_valid(public_key))  # type: ignore[arg-type]
        except (TypeError, ValueError, UnsupportedAlgorithm):
            valid = False
        if len(self._signers) < 4:
            self._signers[spki] = valid
        return valid

    def scope_problem(self, cert: x509.Certificate) -> str | None:
        """Why this CRL's scope does not cover ``cert``, or None (RFC 5280 6.3.3 (b)(2))."""
        idp = self.idp
        if idp is None:
            return None
        is_ca = _is_ca(cert)
        if idp.only_contains_user_certs and is_ca:
            return "it covers end-entity certificates only"
        if idp.only_contains_ca_certs and not is_ca:
            return "it covers CA certificates only"
        if idp.full_name is not None:
            # (b)(2)(i): the CRL's distribution point must be one the certificate names.
            names = _distribution_point_names(cert)
            if not names.intersection(idp.full_name):
                return "its issuing distribution point is not one the certificate names"
        return None


def _idp_unusable(idp: x509.IssuingDistributionPoint) -> str | None:
    """Why an issuing distribution point makes a CRL unusable everywhere (RFC 5280 5.2.5)."""
    if idp.indirect_crl:
        return "an indirect CRL (complete CRLs of the issuer only)"
    if idp.only_some_reasons is not None:
        return "a CRL for some revocation reasons only (not complete)"
    if idp.only_contains_attribute_certs:
        return "a CRL of attribute certificates only"
    if idp.relative_name is not None:
        return "an issuing distribution point given as a relative name (not supported)"
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _distribution_points(cert: x509.Certificate) -> x509.CRLDistributionPoints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return None


def _distribution_point_names(cert: x509.Certificate) -> set[x509.GeneralName]:
    points = _distribution_points(cert)
    return {name for point in points or () for name in (point.full_name or ())}


def _set_digest(lists: Sequence[RevocationList]) -> bytes:
    digest = hashlib.sha256(b"tlsconnector CRL set v1")
    for item in sorted(item.digest for item in lists):
        digest.update(item)
    return digest.digest()


def _as_lists(items: Iterable[RevocationList]) -> tuple[RevocationList, ...]:
    return tuple(items)


def _check_lists(
    instance: CrlSet, _: attrs.Attribute[tuple[RevocationList, ...]], value: object
) -> None:
    assert isinstance(value, tuple)
    if len(value) > MAX_CRLS:
        raise InvalidValue(f"<{len(value)} CRLs>", f"more than {MAX_CRLS} CRLs")
    entries = 0
    for position, item in enumerate(value):
        if not isinstance(item, RevocationList):
            raise InvalidValue(item, f"CRL #{position + 1}: not a RevocationList")
        entries += len(item.revoked)
    if entries > MAX_REVOKED_ENTRIES:
        raise InvalidValue(
            f"<{entries} revoked serials>",
            f"the CRLs list more than {MAX_REVOKED_ENTRIES} revoked serials in all",
        )


@attrs.frozen
class CrlSet:
    """The CRLs of a policy (``[trust] crl_files``), indexed by issuer name.

    Bounded: at most :data:`MAX_CRLS` CRLs and :data:`MAX_REVOKED_ENTRIES` revoked
    serials in all. ``key`` is a digest of the content (order does not matter): it
    keys cached chain verdicts, so another set of CRLs never reuses an answer.
    """

    lists: tuple[RevocationList, ...] = attrs.field(converter=_as_lists, validator=_check_lists)
    #: When the loader read the files (an edge records it; the core reads no clock):
    #: the lint's default time for "nextUpdate has passed". Not part of the value.
    loaded_at: dt.datetime | None = attrs.field(default=None, eq=False, kw_only=True)
    key: bytes = attrs.field(init=False, eq=False, repr=False)
    _by_issuer: dict[bytes, tuple[RevocationList, ...]] = attrs.field(
        init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", _set_digest(self.lists))
        index: dict[bytes, list[RevocationList]] = {}
        for item in self.lists:
            if item.unusable is None:
                index.setdefault(item.issuer, []).append(item)
        object.__setattr__(self, "_by_issuer", {k: tuple(v) for k, v in index.items()})

    @classmethod
    def from_crls(cls, crls: Iterable[x509.CertificateRevocationList]) -> CrlSet:
        """A set from parsed CRLs; :class:`InvalidValue` when one cannot be decoded."""
        return cls(
            RevocationList.from_crl(crl, f"CRL #{position + 1}")
            for position, crl in enumerate(crls)
        )

    def for_issuer(self, issuer: bytes) -> tuple[RevocationList, ...]:
        """The CRLs (never unusable ones) whose issuer name is ``issuer`` (DER)."""
        return self._by_issuer.get(issuer, ())

    def __len__(self) -> int:
        return len(self.lists)


#: The set without CRLs (the default of a trust store).
NO_CRLS = CrlSet(())


# --- the check ----------------------------------------------------------------------


@attrs.frozen
class RevocationVerdict:
    """What the CRLs and the staple say about a validated path at one time.

    ``revoked``: why a certificate is revoked, or None. ``unknown``: the certificates
    that carry a CRL distribution point but got no usable answer, or None. The answer
    is the same at every second from ``valid_from`` to ``valid_until`` (inclusive;
    None: unbounded on that side).
    """

    revoked: str | None
    unknown: str | None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


class _Window:
    """The times around ``at`` between which nothing the check read changes."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at
        self.start: dt.datetime | None = None
        self.end: dt.datetime | None = None  # exclusive

    def edge(self, moment: dt.datetime) -> None:
        """An answer may change at ``moment`` (it holds from ``moment`` on)."""
        if moment <= self.at:
            if self.start is None or moment > self.start:
                self.start = moment
        elif self.end is None or moment < self.end:
            self.end = moment


def _what(position: int) -> str:
    return "leaf certificate" if position == 0 else f"certificate #{position + 1} of the path"


def check_revocation(
    path: Sequence[x509.Certificate],
    crls: CrlSet,
    at: dt.datetime,
    *,
    ocsp_response: bytes | None = None,
) -> RevocationVerdict:
    """Check every certificate of a validated ``path`` (leaf, intermediates, anchor)
    but the anchor against ``crls`` and, for the leaf, a stapled OCSP response.

    ``at`` is timezone-aware. A certificate is revoked when a usable CRL or a usable
    staple lists it with a revocation date at or before ``at`` (section 11).
    """
    at = _utc(at)
    window = _Window(at)
    unknown: list[str] = []
    for position in range(len(path) - 1):
        cert, issuer = path[position], path[position + 1]
        answered = False
        if position == 0 and ocsp_response is not None:
            staple = _staple_answer(ocsp_response, cert, issuer, at, window)
            if isinstance(staple, _Revoked):
                return _verdict(f"{_what(0)}: {staple.detail}", None, window)
            answered = staple is True
        crl_answer = _crl_answer(cert, issuer, crls, at, window)
        if isinstance(crl_answer, _Revoked):
            return _verdict(f"{_what(position)}: {crl_answer.detail}", None, window)
        answered = answered or crl_answer
        if not answered and _distribution_points(cert) is not None:
            unknown.append(_what(position))
    if unknown:
        detail = (
            f"no usable CRL or OCSP answer at {at.isoformat()} for the "
            + ", ".join(unknown)
            + ", which names a CRL distribution point"
        )
        return _verdict(None, detail, window)
    return _verdict(None, None, window)


def _verdict(revoked: str | None, unknown: str | None, window: _Window) -> RevocationVerdict:
    until = None if window.end is None else window.end - _SECOND
    return RevocationVerdict(revoked, unknown, window.start, until)


@attrs.frozen
class _Revoked:
    detail: str


def _crl_answer(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: CrlSet,
    at: dt.datetime,
    window: _Window,
) -> bool | _Revoked:
    """True when a usable CRL covers ``cert`` and does not list it as revoked at ``at``."""
    candidates = crls.for_issuer(cert.issuer.public_bytes())
    if not candidates:
        return False
    answered = False
    serial = cert.serial_number
    public_key = issuer.public_key()
    for crl in candidates:
        # RFC 5280 6.3.3: the issuer name matched (index); (f)-(g): signed by the
        # certificate's issuer, that is the next certificate of the validated path
        # (a CA with the same name and another key signs nothing usable here).
        if crl.scope_problem(cert) is not None or not crl.signed_by(public_key):
            continue
        assert crl.next_update is not None  # unusable without: never indexed
        window.edge(crl.this_update)
        window.edge(crl.next_update)
        date = crl.revoked.get(serial)
        if date is not None:
            window.edge(date)
        # RFC 5280 6.3.3 (a): current when thisUpdate <= at < nextUpdate (section 11).
        if not crl.this_update <= at < crl.next_update:
            continue
        if date is not None and date <= at:
            return _Revoked(f"revoked at {date.isoformat()} by {crl.describe()}")
        answered = True
    return answered


# --- OCSP staples (RFC 6960) ---------------------------------------------------------

_OCSP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _staple_answer(
    data: bytes,
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    at: dt.datetime,
    window: _Window,
) -> bool | _Revoked:
    """True when the staple is usable and says good; a :class:`_Revoked` when usable and
    revoked at ``at``; False when it cannot be used (never an error: attacker input)."""
    if not isinstance(data, bytes) or not data or len(data) > MAX_OCSP_RESPONSE_BYTES:
        return False
    try:
        response = ocsp.load_der_ocsp_response(data)
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return False
        single = _single_for(response, leaf, issuer)
        if single is None:
            return False  # RFC 6960 3.2 (1): the response must name the certificate
        if not _ocsp_signed(response, issuer, at, window):
            return False  # RFC 6960 3.2 (2)-(4), 4.2.2.2
        this_update = _utc(single.this_update_utc)
        next_update = single.next_update_utc
        if next_update is None:
            return False  # no nextUpdate: freshness unknown (fail closed, as for CRLs)
        next_update = _utc(next_update)
        window.edge(this_update)
        window.edge(next_update)
        status = single.certificate_status
        revoked_at = single.revocation_time_utc
        if status is ocsp.OCSPCertStatus.REVOKED and revoked_at is not None:
            window.edge(_utc(revoked_at))
        # RFC 6960 3.2 (5)-(6), section 11: thisUpdate <= at < nextUpdate.
        if not this_update <= at < next_update:
            return False
        if status is ocsp.OCSPCertStatus.GOOD:
            return True
        if status is ocsp.OCSPCertStatus.REVOKED:
            if revoked_at is None:
                return _Revoked("revoked (stapled OCSP response without a time)")
            revoked_at = _utc(revoked_at)
            if revoked_at <= at:
                return _Revoked(f"revoked at {revoked_at.isoformat()} (stapled OCSP response)")
            return True  # revoked only later: good at ``at``
        return False  # unknown
    except (*_DECODE_ERRORS, InvalidSignature, AttributeError):
        return False


def _single_for(
    response: ocsp.OCSPResponse, leaf: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The single response naming ``leaf``: issuer name and key hashes, serial number."""
    for count, single in enumerate(response.responses):
        if count >= MAX_OCSP_ITEMS:
            return None
        algorithm = _OCSP_HASHES.get(single.hash_algorithm.name)
        if algorithm is None or single.serial_number != leaf.serial_number:
            continue
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm()).build()
        if (
            request.issuer_name_hash == single.issuer_name_hash
            and request.issuer_key_hash == single.issuer_key_hash
        ):
            return single
    return None


def _key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING (RFC 6960 4.2.1 ResponderID byKey)."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    return response.responder_key_hash == _key_hash(cert)


def _ocsp_signed(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, at: dt.datetime, window: _Window
) -> bool:
    """Signed by the issuer, or by a responder certificate the issuer signed for
    OCSPSigning and valid at ``at`` (RFC 6960 4.2.2.2)."""
    if _names_responder(response, issuer) and _signature_ok(response, issuer.public_key()):
        return True
    for count, responder in enumerate(response.certificates):
        if count >= MAX_OCSP_ITEMS:
            return False
        if not _names_responder(response, responder) or responder.issuer != issuer.subject:
            continue
        try:
            responder.verify_directly_issued_by(issuer)
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        not_before = _utc(responder.not_valid_before_utc)
        not_after = _utc(responder.not_valid_after_utc)
        window.edge(not_before)
        window.edge(not_after + _SECOND)
        if not not_before <= at <= not_after:
            continue
        if _signature_ok(response, responder.public_key()):
            return True
    return False


def _signature_ok(response: ocsp.OCSPResponse, public_key: object) -> bool:
    """The response's signature over its tbsResponseData verifies with ``public_key``."""
    data, signature = response.tbs_response_bytes, response.signature
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and algorithm is not None:
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True
