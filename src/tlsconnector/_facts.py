"""Session facts: what the mail software knows about one SMTP transaction.

Facts are normalised once, here, at construction; the evaluators compare only
canonical forms. Malformed facts raise :class:`~tlsconnector.FactsError` naming
the field. The time is always a fact passed in; nothing here reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from tlsconnector._chains import PresentedChain

from ._addresses import IPAddress, parse_peer_ip
from ._errors import MISSING, FactsError, InvalidValue
from ._memory import BoundedMemory
from ._names import canonical_domain
from ._revocation import MAX_OCSP_RESPONSE_BYTES

__all__ = [
    "ConnectionAttempt",
    "InboundSession",
    "MtaVerifiedCertificate",
    "OutboundSession",
    "TLSFacts",
    "UndecodableCertificate",
    "parse_address",
    "parse_time",
]

# Control characters never belong in an address; a space may (Postfix hands over a
# quoted local part such as "john doe"@x unquoted, as john doe@x).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Bounds on attacker-sized facts (section 8).
MAX_ADDRESS_LENGTH = 1024
MAX_RECIPIENTS = 10_000
MAX_CN_FACTS = 16
#: A CN fact longer than this is malformed (a usable CN has at most 64 characters).
MAX_CN_LENGTH = 1024


@attrs.frozen
class MtaVerifiedCertificate:
    """Certificate facts from an MTA that handled the handshake itself (section 7).

    ``verified`` says whether the MTA verified the chain; CNs that are not verified
    count as an untrusted certificate (``certificate-not-trusted``).
    """

    cns: tuple[str, ...]
    verified: bool
    fingerprint: str | None = None

    def __attrs_post_init__(self) -> None:
        # Never fail open on a programming slip: "false" is not False (section 8).
        if not isinstance(self.verified, bool):
            raise InvalidValue(self.verified, "verified must be True or False")
        if not isinstance(self.cns, tuple):
            raise InvalidValue(self.cns, "cns must be a tuple of strings")
        if len(self.cns) > MAX_CN_FACTS:
            raise InvalidValue(len(self.cns), f"more than {MAX_CN_FACTS} CNs")
        for cn in self.cns:
            if not isinstance(cn, str):
                raise InvalidValue(cn, "a CN must be a string")
            if len(cn) > MAX_CN_LENGTH:
                raise InvalidValue(cn, f"a CN longer than {MAX_CN_LENGTH} characters")
        if self.fingerprint is not None and not isinstance(self.fingerprint, str):
            raise InvalidValue(self.fingerprint, "fingerprint must be a string or None")


@attrs.frozen
class UndecodableCertificate:
    """Outbound only: the server presented certificates that cannot be decoded.

    Inbound, an undecodable chain is malformed facts (the session is refused with a
    :class:`FactsError`); outbound, it is a delivery fact of its own, reported as
    ``validation-failure`` (section 7).
    """

    reason: str


@attrs.frozen
class TLSFacts:
    """The session used STARTTLS. ``certificate`` is None when no client certificate
    was presented, a :class:`PresentedChain` (leaf first) when the peer's chain is
    known, or :class:`MtaVerifiedCertificate` facts.

    ``ocsp_response``: outbound only, the OCSP response the server stapled (DER bytes,
    at most :data:`MAX_OCSP_RESPONSE_BYTES`), checked for the leaf of a presented chain
    (section 11); ``tls.ocsp_response`` (base64) in JSON facts.
    """

    certificate: PresentedChain | MtaVerifiedCertificate | UndecodableCertificate | None = None
    ocsp_response: bytes | None = None

    def __attrs_post_init__(self) -> None:
        known = (PresentedChain, MtaVerifiedCertificate, UndecodableCertificate)
        if self.certificate is not None and not isinstance(self.certificate, known):
            raise InvalidValue(
                self.certificate,
                "certificate must be a PresentedChain, MtaVerifiedCertificate, "
                "UndecodableCertificate or None",
            )
        staple = self.ocsp_response
        if staple is not None:
            if not isinstance(staple, bytes):
                raise InvalidValue(staple, "ocsp_response must be bytes (DER) or None")
            if not staple or len(staple) > MAX_OCSP_RESPONSE_BYTES:
                raise InvalidValue(
                    f"<{len(staple)} bytes>",
                    f"ocsp_response must hold 1 to {MAX_OCSP_RESPONSE_BYTES} bytes",
                )

    @classmethod
    def from_json(
        cls,
        value: object,
        *,
        field: str = "tls",
        keep_undecodable: bool = False,
        allow_ocsp: bool = False,
    ) -> TLSFacts:
        """Decode the ``tls`` object of section 9: ``{}``, ``{"peer_chain_pem": ...}``
        or ``{"peer_cn": [...], "peer_verified": bool}``; with ``allow_ocsp`` (outbound
        attempts) also ``"ocsp_response"``, a stapled OCSP response in base64."""
        if type(value) is not dict and not isinstance(value, Mapping):
            raise FactsError(field, value, "must be an object or null")
        for key in value:
            if key not in _TLS_KEYS:
                allowed = sorted(_TLS_KEYS if allow_ocsp else _TLS_KEYS - {"ocsp_response"})
                message = f"unknown key (allowed: {', '.join(allowed)})"
                raise FactsError(f"{field}.{key}", value[key], message)
        if "ocsp_response" in value:
            if not allow_ocsp:
                raise FactsError(
                    f"{field}.ocsp_response",
                    value["ocsp_response"],
                    "only outbound connection attempts carry a stapled OCSP response",
                )
            staple = _staple_from_json(value["ocsp_response"], f"{field}.ocsp_response")
            rest = {k: v for k, v in value.items() if k != "ocsp_response"}
            facts = cls.from_json(rest, field=field, keep_undecodable=keep_undecodable)
            return attrs.evolve(facts, ocsp_response=staple)
        if "peer_chain_pem" in value:
            if "peer_cn" in value or "peer_verified" in value:
                raise FactsError(
                    f"{field}.peer_chain_pem",
                    "(chain)",
                    "give either peer_chain_pem or peer_cn/peer_verified, not both",
                )
            pem = value["peer_chain_pem"]
            if not isinstance(pem, str):
                raise FactsError(f"{field}.peer_chain_pem", pem, "must be a string of PEM text")
            try:
                return cls(_chain_from_pem(pem))
            except InvalidValue as exc:
                if keep_undecodable:
                    return cls(UndecodableCertificate(exc.reason))
                raise FactsError(f"{field}.peer_chain_pem", "(PEM text)", exc.reason) from None
        if "peer_cn" in value or "peer_verified" in value:
            cns = value.get("peer_cn", MISSING)
            verified = value.get("peer_verified", MISSING)
            if not isinstance(cns, list) or not all(isinstance(c, str) for c in cns):
                raise FactsError(f"{field}.peer_cn", cns, "must be an array of strings")
            if not isinstance(verified, bool):
                raise FactsError(
                    f"{field}.peer_verified", verified, "is required with peer_cn: true or false"
                )
            fingerprint = value.get("peer_fingerprint")
            if fingerprint is not None and not isinstance(fingerprint, str):
                raise FactsError(f"{field}.peer_fingerprint", fingerprint, "must be a string")
            try:
                return cls(MtaVerifiedCertificate(tuple(cns), verified, fingerprint))
            except InvalidValue as exc:
                raise FactsError(f"{field}.peer_cn", exc.value, exc.reason) from None
        if "peer_fingerprint" in value:
            raise FactsError(
                f"{field}.peer_fingerprint", value["peer_fingerprint"], "needs peer_cn"
            )
        return cls(None)


#: The keys of a session's JSON object and of its ``tls`` object (section 9).
_INBOUND_KEYS = frozenset({"peer_ip", "mail_from", "rcpt_to", "tls", "at", "helo", "recorded"})
_OUTBOUND_KEYS = frozenset({"recipient", "connector", "peer_host", "tls", "queued_since", "at"})


def _session_object(
    obj: object, keys: frozenset[str], required: tuple[str, ...]
) -> Mapping[Any, Any]:
    """``obj`` as one session's JSON object (section 9): a mapping of known ``keys``
    only, with every ``required`` one."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise FactsError("(session)", obj, "must be a JSON object")
    for key in obj:
        if key not in keys:
            message = f"unknown key (allowed: {', '.join(sorted(keys))})"
            raise FactsError(str(key), obj[key], message)
    for key in required:
        if key not in obj:
            raise FactsError(key, MISSING, "is required")
    return obj


def _session_time(obj: Mapping[Any, Any], default_at: dt.datetime | None) -> dt.datetime:
    """A session's ``at``, else ``default_at`` (the caller's clock: the CLI reads it, the
    core never does); without either, the session is malformed."""
    if "at" in obj:
        return parse_time(obj["at"])
    if default_at is not None:
        return default_at
    raise FactsError("at", MISSING, "is required")


_TLS_KEYS = frozenset(
    {"peer_chain_pem", "peer_cn", "peer_verified", "peer_fingerprint", "ocsp_response"}
)
#: Base64 text of a staple of MAX_OCSP_RESPONSE_BYTES, with room for line breaks.
_MAX_STAPLE_TEXT = 2 * MAX_OCSP_RESPONSE_BYTES


def _staple_from_json(value: object, field: str) -> bytes:
    """A stapled OCSP response from its base64 text (section 11)."""
    if not isinstance(value, str):
        raise FactsError(field, value, "must be a string (base64 of the DER response)")
    if len(value) > _MAX_STAPLE_TEXT:
        raise FactsError(field, f"<{len(value)} characters>", "too long for an OCSP response")
    try:
        staple = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FactsError(field, value, "not base64") from None
    if not staple or len(staple) > MAX_OCSP_RESPONSE_BYTES:
        raise FactsError(
            field,
            f"<{len(staple)} bytes>",
            f"must hold 1 to {MAX_OCSP_RESPONSE_BYTES} bytes of DER",
        )
    return staple


#: Bounds on the memory of parsed PEM chains (section 8): entries, and the PEM text
#: they were parsed from, in characters. Before, entries alone bounded it, and hostile
#: batches of 1 MiB chains grew a worker to about 1.5 GiB.
MAX_PEM_CHAINS = 2048
MAX_PEM_CHAIN_BYTES = 32 * 1024 * 1024


class _PemChains:
    """Parse a presented chain once per distinct PEM text (a chain is immutable).

    Keyed by the SHA-256 of the text, never by the text itself; bounded in entries and
    in bytes (:data:`MAX_PEM_CHAINS`, :data:`MAX_PEM_CHAIN_BYTES`). The certificates
    of the chains are shared with every other chain presenting them (see
    ``PresentedChain.from_pem``). Decoding failures are not remembered and are raised
    again each time.
    """

    def __init__(self) -> None:
        self.memory: BoundedMemory[bytes, PresentedChain] = BoundedMemory(
            max_entries=MAX_PEM_CHAINS, max_bytes=MAX_PEM_CHAIN_BYTES
        )

    def __call__(self, pem: str) -> PresentedChain:
        key = hashlib.sha256(pem.encode("utf-8", "surrogatepass")).digest()
        chain = self.memory.get(key)
        if chain is None:
            chain = PresentedChain.from_pem(pem)
            self.memory.put(key, chain, len(pem))
        return chain

    def cache_clear(self) -> None:
        self.memory.clear()


_chain_from_pem = _PemChains()


def parse_time(value: object, *, field: str = "at") -> dt.datetime:
    """An ISO 8601 time with a UTC offset (``Z`` allowed), as a UTC datetime."""
    if type(value) is dt.datetime and value.tzinfo is dt.UTC:
        return value  # speed: already what this returns (a session's time, parsed)
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise FactsError(field, value, "not an ISO 8601 date and time") from None
    else:
        raise FactsError(field, value, "must be an ISO 8601 date and time string")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise FactsError(field, value, "needs a UTC offset, for example 2026-11-26T12:00:00Z")
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise FactsError(field, value, "outside the range of representable times") from None


def parse_address(value: object, *, field: str, allow_null: bool) -> tuple[str, str | None]:
    """Parse an envelope address; return ``(address, canonical domain or None)``.

    ``""`` and ``"<>"`` are the null sender when ``allow_null``. Surrounding angle
    brackets are removed. The domain follows section 2's normalisation; an address
    without a domain is accepted only for the recipient ``postmaster`` (RFC 5321 section
    4.5.1).
    """
    if not isinstance(value, str):
        raise FactsError(field, value, "must be a string")
    return _parse_address(value, field, allow_null)


@functools.lru_cache(maxsize=8192)
def _parse_address(value: str, field: str, allow_null: bool) -> tuple[str, str | None]:
    """:func:`parse_address` of a string, memoised (speed: a partner's senders and a
    gateway's recipients recur in session after session). Refusals are raised, never
    remembered."""
    if len(value) > MAX_ADDRESS_LENGTH:
        raise FactsError(field, value, f"longer than {MAX_ADDRESS_LENGTH} characters")
    text = value
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text == "":
        if allow_null:
            return "", None
        raise FactsError(field, value, "an empty address is only allowed as the sender")
    if _CONTROL.search(text) is not None:  # one regex scan, not a loop per char
        raise FactsError(field, value, "contains control characters")
    local, at, domain = text.rpartition("@")
    if not at:
        # RFC 5321 4.5.1: "postmaster" without a domain is a valid recipient only.
        if not allow_null and text.isascii() and text.lower() == "postmaster":
            return text, None
        raise FactsError(field, value, "has no @domain")
    if not local:
        raise FactsError(field, value, "has an empty local part")
    if domain.startswith("["):
        # RFC 5321 4.1.3 address literal: no domain name, so only "*" can match it.
        literal = _address_literal(domain)
        if literal is None:
            raise FactsError(field, value, "bad address literal (want [IPv4] or [IPv6:...])")
        return f"{local}@{literal}", literal
    if " " in domain:
        raise FactsError(field, value, "contains a space in the domain")
    try:
        canonical = canonical_domain(domain)
    except InvalidValue as exc:
        raise FactsError(field, value, f"bad domain: {exc.reason}") from None
    return f"{local}@{canonical}", canonical


def _address_literal(text: str) -> str | None:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` in canonical form, else None."""
    if not (text.startswith("[") and text.endswith("]")) or len(text) > 64:
        return None
    inner = text[1:-1]
    if "%" in inner:  # zone identifiers are invalid facts (section 4)
        return None
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        return None


#: :func:`parse_peer_ip`, memoised (speed: partners' servers recur); the addresses
#: it returns are immutable values. Refusals are raised, never remembered.
_peer_ip = functools.lru_cache(maxsize=8192)(parse_peer_ip)


@attrs.frozen
class InboundSession:
    """Facts about one inbound SMTP transaction (section 5)."""

    peer_ip: IPAddress
    #: The envelope sender in canonical form; "" for the null sender.
    mail_from: str
    #: The sender's canonical domain; None for the null sender.
    sender_domain: str | None
    rcpt_to: tuple[str, ...]
    #: None: the session did not use STARTTLS.
    tls: TLSFacts | None
    at: dt.datetime
    helo: str | None = None

    @classmethod
    def create(
        cls,
        *,
        peer_ip: str | IPAddress,
        mail_from: str,
        tls: TLSFacts | None,
        at: dt.datetime,
        rcpt_to: Sequence[str] = (),
        helo: str | None = None,
    ) -> InboundSession:
        """Validate and normalise raw facts. Raises :class:`FactsError` naming the field."""
        ip: IPAddress
        if type(peer_ip) is ipaddress.IPv4Address:
            ip = peer_ip  # speed: already parsed, and str() then parsing gives it back
        elif type(peer_ip) is ipaddress.IPv6Address and peer_ip.scope_id is None:
            # Speed: as above; an IPv4-mapped address still becomes IPv4 (section 4).
            mapped = peer_ip.ipv4_mapped
            ip = peer_ip if mapped is None else mapped
        else:
            try:
                ip = _peer_ip(peer_ip if type(peer_ip) is str else str(peer_ip))
            except InvalidValue as exc:
                raise FactsError("peer_ip", peer_ip, exc.reason) from None
        sender, domain = parse_address(mail_from, field="mail_from", allow_null=True)
        if (
            type(rcpt_to) is not list
            and type(rcpt_to) is not tuple
            and (isinstance(rcpt_to, str) or not isinstance(rcpt_to, Sequence))
        ):
            raise FactsError("rcpt_to", rcpt_to, "must be an array of addresses")
        if len(rcpt_to) > MAX_RECIPIENTS:
            raise FactsError("rcpt_to", len(rcpt_to), f"more than {MAX_RECIPIENTS} recipients")
        recipients = tuple(
            parse_address(r, field=f"rcpt_to[{i}]", allow_null=False)[0]
            for i, r in enumerate(rcpt_to)
        )
        if tls is not None and not isinstance(tls, TLSFacts):
            raise FactsError("tls", tls, "must be TLSFacts or None")
        if tls is not None and isinstance(tls.certificate, UndecodableCertificate):
            # Inbound, an undecodable client chain is malformed facts (section 8).
            raise FactsError("tls.peer_chain_pem", "(certificates)", tls.certificate.reason)
        if helo is not None and (not isinstance(helo, str) or len(helo) > MAX_ADDRESS_LENGTH):
            raise FactsError("helo", helo, "must be a string of at most 1024 characters")
        return cls(
            peer_ip=ip,
            mail_from=sender,
            sender_domain=domain,
            rcpt_to=recipients,
            tls=tls,
            at=parse_time(at),
            helo=helo,
        )

    @classmethod
    def from_json(cls, obj: object, *, default_at: dt.datetime | None = None) -> InboundSession:
        """Decode one JSON Lines session object (section 9).

        ``at`` falls back to ``default_at`` (the caller's clock: the CLI reads it, the
        core never does); without either, the session is malformed.
        """
        lean = _lean(obj, default_at, build=True)
        if type(lean) is cls:
            return lean  # speed: every value already known valid (see _lean_inbound)
        obj = _session_object(obj, _INBOUND_KEYS, ("peer_ip", "mail_from"))
        raw_tls = obj.get("tls")
        tls = None if raw_tls is None else TLSFacts.from_json(raw_tls)
        at = _session_time(obj, default_at)
        rcpt_to = obj.get("rcpt_to", [])
        if not isinstance(rcpt_to, list):
            raise FactsError("rcpt_to", rcpt_to, "must be an array of addresses")
        if not isinstance(obj["peer_ip"], str):
            raise FactsError("peer_ip", obj["peer_ip"], "must be a string")
        return cls.create(
            peer_ip=obj["peer_ip"],
            mail_from=obj["mail_from"],
            rcpt_to=rcpt_to,
            tls=tls,
            at=at,
            helo=obj.get("helo"),
        )


@attrs.frozen
class ConnectionAttempt:
    """One outbound connection attempt: ``tls`` is None when STARTTLS was not used."""

    tls: TLSFacts | None


@attrs.frozen
class OutboundSession:
    """Facts about one outbound message to one recipient (section 6).

    ``attempt`` None asks for a plan only (route and TLS requirements).
    """

    recipient: str
    recipient_domain: str
    at: dt.datetime
    #: A connector named by the caller, as a transport rule does.
    connector: str | None = None
    peer_host: str | None = None
    attempt: ConnectionAttempt | None = None
    #: When the message was first queued; None: the retry window cannot have expired.
    queued_since: dt.datetime | None = None

    @classmethod
    def create(
        cls,
        *,
        recipient: str,
        at: dt.datetime,
        connector: str | None = None,
        peer_host: str | None = None,
        attempt: ConnectionAttempt | None = None,
        queued_since: dt.datetime | None = None,
    ) -> OutboundSession:
        """Validate and normalise raw facts. Raises :class:`FactsError` naming the field."""
        address, domain = parse_address(recipient, field="recipient", allow_null=False)
        if domain is None:
            raise FactsError("recipient", recipient, "needs a domain to route to")
        if connector is not None and (not isinstance(connector, str) or not connector):
            raise FactsError("connector", connector, "must be a connector name or null")
        if peer_host is not None and (
            not isinstance(peer_host, str) or not 0 < len(peer_host) <= 255
        ):
            raise FactsError("peer_host", peer_host, "must be a string of 1 to 255 characters")
        if attempt is not None and not isinstance(attempt, ConnectionAttempt):
            raise FactsError("tls", attempt, "must be a ConnectionAttempt or None")
        return cls(
            recipient=address,
            recipient_domain=domain,
            at=parse_time(at),
            connector=connector,
            peer_host=peer_host,
            attempt=attempt,
            queued_since=(
                None if queued_since is None else parse_time(queued_since, field="queued_since")
            ),
        )

    @classmethod
    def from_json(cls, obj: object, *, default_at: dt.datetime | None = None) -> OutboundSession:
        """Decode one JSON Lines outbound object (section 9): ``tls`` absent asks for a
        plan; ``null`` is a connection without TLS; an object has the inbound form."""
        obj = _session_object(obj, _OUTBOUND_KEYS, ("recipient",))
        attempt: ConnectionAttempt | None = None
        if "tls" in obj:
            raw_tls = obj["tls"]
            attempt = ConnectionAttempt(
                None
                if raw_tls is None
                else TLSFacts.from_json(raw_tls, keep_undecodable=True, allow_ocsp=True)
            )
        at = _session_time(obj, default_at)
        queued = obj.get("queued_since")
        return cls.create(
            recipient=obj["recipient"],
            at=at,
            connector=obj.get("connector"),
            peer_host=obj.get("peer_host"),
            attempt=attempt,
            queued_since=None if queued is None else parse_time(queued, field="queued_since"),
        )


# --- The lean reader: is an inbound session line valid, and what is its sender domain --

#: Bounds on the lean reader's memories of values already found valid (section 8):
#: entries per memory (each is emptied when full), and the length of a value it
#: remembers (a longer one is checked every time). Speed only: each memory holds the
#: answer of the real parser for that value, which depends on the value alone.
MAX_VALID_VALUES = 32_768
MAX_VALID_VALUE_LENGTH = 256
#: ... and on the characters of the values each memory holds (emptied when over): with
#: entries and lengths alone, long attacker-shaped values could hold about 200 MiB per
#: process; with this, at most about 12 MiB per memory (tracemalloc), 40 MiB for all five.
MAX_VALID_CHARACTERS = 1024 * 1024

#: The keys of a ``tls`` object carrying MTA-verified certificate facts.
_CN_KEYS = frozenset({"peer_cn", "peer_verified", "peer_fingerprint"})


class _Memory(dict[Any, Any]):
    """One memory of valid values: a dict (lookups at C speed) that counts the
    characters of what it keeps and is emptied when a bound would be passed."""

    __slots__ = ("characters",)

    def __init__(self) -> None:
        super().__init__()
        self.characters = 0

    def clear(self) -> None:
        super().clear()
        self.characters = 0

    def remember(self, size: int, key: object, answer: object) -> None:
        if size > MAX_VALID_VALUE_LENGTH:
            return
        if len(self) >= MAX_VALID_VALUES or self.characters + size > MAX_VALID_CHARACTERS:
            self.clear()
        self[key] = answer
        self.characters += size


class _ValidValues:
    """Values a real parser accepted, each with what it answered (a per-process memory,
    at most :data:`MAX_VALID_VALUES` entries of at most :data:`MAX_VALID_VALUE_LENGTH`
    characters each, at most :data:`MAX_VALID_CHARACTERS` in each memory). A refusal
    is never remembered: the line is read the full way, which raises it."""

    __slots__ = ("cn_facts", "peer_ips", "recipients", "senders", "times")

    def __init__(self) -> None:
        self.peer_ips = _Memory()  # text -> IPAddress
        self.senders = _Memory()  # text -> (canonical address, domain)
        self.recipients = _Memory()  # text -> canonical address
        self.times = _Memory()  # text -> datetime
        #: (peer_cn, peer_verified, peer_fingerprint) -> the TLS facts they make.
        self.cn_facts = _Memory()

    def clear(self) -> None:
        for memory in (self.peer_ips, self.senders, self.recipients, self.times):
            memory.clear()
        self.cn_facts.clear()


_valid = _ValidValues()
_NO_TLS_FACTS = TLSFacts(None)


def _remember(memory: _Memory, value: str, key: object, answer: object) -> None:
    memory.remember(len(value), key, answer)


def _checked(memory: _Memory, value: str, parse: Callable[[str], Any]) -> Any:
    """``parse(value)``, remembered; None when the parser refuses it (the caller reads
    the line the full way, which raises the error). The callers ask the memory first
    with ``or``: the parsers' answers are truthy, and one that was not would only be
    parsed again."""
    try:
        answer = parse(value)
    except (FactsError, InvalidValue):
        return None
    _remember(memory, value, value, answer)
    return answer


def _sender(text: str) -> tuple[str, str | None]:
    return _parse_address(text, "mail_from", True)


def _recipient(text: str) -> str:
    return _parse_address(text, "rcpt_to", False)[0]


def _lean_inbound(
    obj: object, default_at: dt.datetime | None, *, build: bool
) -> InboundSession | tuple[str | None] | None:
    """What :meth:`InboundSession.from_json` answers for ``obj`` when every condition
    here shows that it accepts it: the session (``build``) or ``(sender domain,)``;
    None: not known here, the caller reads the line the full way (which raises the
    error, if any). Every value is checked by the parser the full way calls, once per
    distinct value (:class:`_ValidValues`)."""
    if type(obj) is not dict or not _INBOUND_KEYS.issuperset(obj):
        return None
    get = obj.get
    peer_ip, sender = get("peer_ip"), get("mail_from")
    if type(peer_ip) is not str or type(sender) is not str:
        return None
    valid = _valid
    ip = valid.peer_ips.get(peer_ip) or _checked(valid.peer_ips, peer_ip, _peer_ip)
    if ip is None:
        return None
    parsed = valid.senders.get(sender) or _checked(valid.senders, sender, _sender)
    if parsed is None:
        return None
    recipients: list[str] = []
    if "rcpt_to" in obj:
        given = obj["rcpt_to"]
        if type(given) is not list or len(given) > MAX_RECIPIENTS:
            return None
        memory = valid.recipients
        for recipient in given:
            if type(recipient) is not str:
                return None
            canonical = memory.get(recipient) or _checked(memory, recipient, _recipient)
            if canonical is None:
                return None
            recipients.append(canonical)
    if "at" in obj:
        text = obj["at"]
        if type(text) is not str:
            return None
        at = valid.times.get(text) or _checked(valid.times, text, parse_time)
        if at is None:
            return None
    elif type(default_at) is dt.datetime and default_at.tzinfo is dt.UTC:
        at = default_at
    else:
        return None
    helo = get("helo")
    if helo is not None and (type(helo) is not str or len(helo) > MAX_ADDRESS_LENGTH):
        return None
    raw_tls = get("tls")
    tls: TLSFacts | None = None
    if raw_tls is not None:
        if type(raw_tls) is not dict:
            return None
        if not raw_tls:
            tls = _NO_TLS_FACTS
        else:
            tls = (
                _lean_chain_facts(raw_tls)
                if "peer_chain_pem" in raw_tls
                else _lean_cn_facts(raw_tls, build=build)
            )
            if tls is None:
                return None
    if not build:
        return (parsed[1],)
    return InboundSession(
        peer_ip=ip,
        mail_from=parsed[0],
        sender_domain=parsed[1],
        rcpt_to=tuple(recipients),
        tls=tls,
        at=at,
        helo=helo,
    )


def _lean_cn_facts(tls: dict[str, Any], *, build: bool) -> TLSFacts | None:
    """A non-empty ``tls`` object as :meth:`TLSFacts.from_json` reads MTA-verified
    certificate facts (not ``build``: any TLS facts, once they are known valid); None:
    not such facts, or not known here."""
    if not _CN_KEYS.issuperset(tls):
        return None
    cns, verified = tls.get("peer_cn"), tls.get("peer_verified")
    if type(cns) is not list or type(verified) is not bool or len(cns) > MAX_CN_FACTS:
        return None
    for cn in cns:
        if type(cn) is not str or len(cn) > MAX_CN_LENGTH:
            return None
    fingerprint = tls.get("peer_fingerprint")
    if fingerprint is not None and type(fingerprint) is not str:
        return None
    if not build:
        return _NO_TLS_FACTS  # valid: what they make is not asked for
    key = (tuple(cns), verified, fingerprint)
    memory = _valid.cn_facts
    facts = memory.get(key)
    if facts is None:
        facts = TLSFacts(MtaVerifiedCertificate(key[0], verified, fingerprint))
        # Bounded as the other memories, by the characters of its CN facts.
        size = sum(map(len, key[0])) + (len(fingerprint) if fingerprint else 0)
        memory.remember(size, key, facts)
    return facts


def _lean_chain_facts(tls: dict[str, Any]) -> TLSFacts | None:
    """A ``tls`` object of exactly one PEM chain, as :meth:`TLSFacts.from_json` reads it
    (the chain parsed once per distinct text, :data:`MAX_PEM_CHAINS`); None: other keys
    beside it, or a chain that does not decode (the full way raises the error)."""
    if len(tls) != 1:
        return None
    pem = tls["peer_chain_pem"]
    if type(pem) is not str:
        return None
    try:
        return TLSFacts(_chain_from_pem(pem))
    except InvalidValue:
        return None


def _lean(
    obj: object, default_at: dt.datetime | None, *, build: bool
) -> InboundSession | tuple[str | None] | None:
    try:
        return _lean_inbound(obj, default_at, build=build)
    except Exception:  # an edge (a parser's own bug): the full way raises what it raises
        return None


def inbound_sender_domain(obj: object, *, default_at: dt.datetime | None = None) -> str | None:
    """The sender domain of one JSON Lines inbound session object, which is validated
    exactly as :meth:`InboundSession.from_json` validates it (the same
    :class:`FactsError` for a malformed one), without building the session: for a
    caller that decides only some sessions (``diff`` skips those both policies read
    alike). Values met before are not parsed again (:data:`MAX_VALID_VALUES`)."""
    return inbound_sender_domain_or_session(obj, default_at=default_at)[0]


def inbound_sender_domain_or_session(
    obj: object, *, default_at: dt.datetime | None = None
) -> tuple[str | None, InboundSession | None]:
    """:func:`inbound_sender_domain`, with the session when it had to be built (a line
    the lean reader leaves to :meth:`InboundSession.from_json`), so that a caller who
    decides it does not read it again."""
    lean = _lean(obj, default_at, build=False)
    if type(lean) is tuple:
        return lean[0], None
    session = InboundSession.from_json(obj, default_at=default_at)
    return session.sender_domain, session
