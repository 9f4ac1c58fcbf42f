"""The pure half of ``tlsconnector serve postfix-outbound`` (spec section 10, pinning).

Postfix asks a socketmap service (socketmap_table(5)) two maps:

* ``transport`` (``transport_maps``): the key is a recipient address (or, when that
  is not found, its domain and the domain's parents). A recipient an outbound
  connector governs gets the dedicated transport and the connector's route:
  ``tlsconnector:[mx.example]:25`` (smart hosts, several tried in order, Postfix 3.5
  and later) or ``tlsconnector:example.com`` (MX routing: Postfix looks the MX hosts
  up). Any other recipient: ``NOTFOUND``.
* ``tlspolicy`` (``smtp_tls_policy_maps`` of that transport only): the key is the
  next hop. ``opportunistic`` -> ``may``, ``encryption_only`` -> ``encrypt``, and for
  the two validating modes ``fingerprint match=...`` listing the SHA-256 of exactly
  the leaves the service judged ``deliver`` when it probed the next hop itself.

This module holds what involves no socket, clock or thread: the netstring codec, the
maps of one policy (:class:`OutboundMaps`, which refuses next hops two connectors
share with different TLS settings), turning probe results into pins
(:func:`pins_from_attempts`) and the pin cache (:class:`PinCache`, time passed in).
The server is :mod:`tlsconnector.adapters.postfix.socketmap`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs
from cryptography import x509

from tlsconnector._assessment import CHAIN_VERDICTS
from tlsconnector._chains import PresentedChain
from tlsconnector._errors import FactsError, InvalidValue, printable, show
from tlsconnector._facts import parse_address
from tlsconnector._model import OutboundConnector, Policy, SmartHost, TLSMode, is_ip_address
from tlsconnector._names import canonical_domain
from tlsconnector._outbound import select_outbound
from tlsconnector._validation import Purpose

if TYPE_CHECKING:
    from tlsconnector.adapters.smtp import HostAttempt

__all__ = [
    "DEFAULT_PIN_LIFETIME",
    "DEFAULT_TRANSPORT",
    "MAX_PINNED_NEXT_HOPS",
    "MAX_REPLY_BYTES",
    "MAX_REQUEST_BYTES",
    "AnswerKind",
    "MapAnswer",
    "MapsError",
    "NetstringDecoder",
    "NextHop",
    "OutboundMaps",
    "Pin",
    "PinCache",
    "PinEntry",
    "Probe",
    "encode_netstring",
    "parse_request",
    "pins_from_attempts",
]

#: The longest request netstring accepted (``NAME KEY``, in bytes). Postfix's keys are
#: addresses and next hops (at most a few hundred bytes); a longer one is not Postfix
#: and closes the connection.
MAX_REQUEST_BYTES = 4096
#: The longest reply Postfix's socketmap client accepts (socketmap_table(5): 100000).
MAX_REPLY_BYTES = 100_000
#: The longest reason text of a TEMP or PERM answer, in characters.
MAX_REASON_CHARS = 500
#: How long a pin lives at most (seconds) unless ``--pin-lifetime`` says otherwise.
DEFAULT_PIN_LIFETIME = 3600.0
#: Next hops whose pins are remembered at once; the least recently used goes first.
#: The keys come from Postfix, but a wildcard connector (``*.example.com``) routed by
#: MX gives one next hop per recipient domain, so the number must be bounded.
MAX_PINNED_NEXT_HOPS = 10_000
#: The dedicated transport's name in master.cf.
DEFAULT_TRANSPORT = "tlsconnector"
SMTP_PORT = 25
_DIGITS = frozenset(b"0123456789")


# -- netstrings ---------------------------------------------------------------------------


def encode_netstring(payload: bytes) -> bytes:
    """``payload`` as a netstring: ``LENGTH:PAYLOAD,`` (D. J. Bernstein's format)."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Splits a byte stream into netstrings of at most ``max_length`` bytes.

    :meth:`feed` returns the complete netstrings received so far. Anything that is not
    a netstring (a non-digit length, a leading zero, a length over the bound, a
    missing ``,``) sets :attr:`error` and ends decoding: the connection is to be
    closed, since after garbage no later byte can be framed reliably. The buffer holds
    at most one netstring (``max_length`` plus its framing).
    """

    def __init__(self, max_length: int = MAX_REQUEST_BYTES) -> None:
        self.max_length = max_length
        self._digits = len(str(max_length))
        self._buffer = bytearray()
        self.error: str | None = None

    @property
    def pending(self) -> bool:
        """True while part of a netstring has been received."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buffer = self._buffer
        buffer += data
        found: list[bytes] = []
        while buffer:
            colon = buffer.find(b":", 0, self._digits + 1)
            if colon < 0:
                head = bytes(buffer[: self._digits + 1])
                if not _DIGITS.issuperset(head):
                    return self._fail(found, f"not a netstring: it starts with {show(head, 20)}")
                if len(buffer) > self._digits:
                    return self._fail(
                        found,
                        f"a request longer than {self.max_length} bytes (its length has more "
                        f"than {self._digits} digits; at most {self.max_length} are accepted)",
                    )
                return found  # the length is still arriving
            length_text = bytes(buffer[:colon])
            if not length_text or not _DIGITS.issuperset(length_text):
                return self._fail(
                    found, f"not a netstring: length {show(length_text, 20)} is not a number"
                )
            if length_text.startswith(b"0") and length_text != b"0":
                return self._fail(
                    found, f"not a netstring: length {show(length_text)} has a leading zero"
                )
            length = int(length_text)
            if length > self.max_length:
                return self._fail(
                    found,
                    f"a request of {length} bytes (at most {self.max_length} are accepted)",
                )
            end = colon + 1 + length
            if len(buffer) <= end:
                return found  # the payload or its comma is still arriving
            if buffer[end] != ord(","):
                return self._fail(found, "not a netstring: the payload is not followed by ','")
            found.append(bytes(buffer[colon + 1 : end]))
            del buffer[: end + 1]
        return found

    def _fail(self, found: list[bytes], message: str) -> list[bytes]:
        self.error = message
        self._buffer.clear()
        return found


# -- answers ------------------------------------------------------------------------------


class AnswerKind(enum.StrEnum):
    """The four socketmap answers (socketmap_table(5))."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    #: A temporary failure: Postfix defers the mail and asks again later.
    TEMP = "TEMP"
    #: A permanent lookup error (Postfix too treats it as a configuration problem).
    PERM = "PERM"


@attrs.frozen
class MapAnswer:
    """One answer, with what its log line says about it."""

    kind: AnswerKind
    text: str = ""
    connector: str | None = None
    next_hop: str | None = None
    #: The reason codes behind the answer (``probe-failed``, ``internal-error``...).
    codes: tuple[str, ...] = ()
    #: ``cache`` (pins remembered), ``probe`` (probed for this lookup), or None.
    source: str | None = None

    def wire(self) -> bytes:
        """The netstring Postfix reads. ``NOTFOUND `` keeps its space (the format)."""
        if self.kind is AnswerKind.OK:
            payload = f"OK {self.text}"
        elif self.kind is AnswerKind.NOTFOUND:
            payload = "NOTFOUND "
        else:
            payload = f"{self.kind} {_reason_text(self.text)}"
        data = payload.encode("ascii", "backslashreplace")
        if len(data) + 16 > MAX_REPLY_BYTES:  # never a reply Postfix would refuse
            data = b"TEMP the answer is longer than Postfix accepts"
        return encode_netstring(data)

    @classmethod
    def temp(
        cls,
        reason: str,
        *,
        code: str,
        connector: str | None = None,
        next_hop: str | None = None,
        source: str | None = None,
    ) -> MapAnswer:
        """A temporary failure whose text (escaped, bounded) names the reason."""
        return cls(AnswerKind.TEMP, _reason_text(reason), connector, next_hop, (code,), source)


NOT_FOUND = MapAnswer(AnswerKind.NOTFOUND)


def _reason_text(text: str) -> str:
    """A reason for the wire and the log: printable ASCII, one line, bounded."""
    return printable(text, MAX_REASON_CHARS)


def parse_request(payload: bytes) -> tuple[str, str]:
    """``NAME KEY`` -> ``(name, key)``. Raises :class:`ValueError` naming what is wrong
    (no space, an empty name or key, bytes that are not UTF-8)."""
    name, space, key = payload.partition(b" ")
    if not space or not name or not key:
        raise ValueError(f"request {show(payload, 80)} is not 'NAME KEY'")
    try:
        return name.decode("ascii"), key.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"request {show(payload, 80)} is not UTF-8 text") from None


# -- next hops ----------------------------------------------------------------------------


class HopKind(enum.StrEnum):
    #: A domain: Postfix looks up its MX hosts (MX routing).
    DOMAIN = "domain"
    #: ``[host]:port``: that host, no MX lookup (smart hosts).
    HOST = "host"


@attrs.frozen
class NextHop:
    """A next hop as Postfix names it: a domain (MX) or ``[host]:port``."""

    kind: HopKind
    #: A canonical domain (A-labels, lower case) or an IP address.
    host: str
    port: int = SMTP_PORT

    def __str__(self) -> str:
        if self.kind is HopKind.DOMAIN:
            return self.host if self.port == SMTP_PORT else f"{self.host}:{self.port}"
        return f"[{self.host}]:{self.port}"

    @classmethod
    def of_smart_host(cls, smart_host: SmartHost) -> NextHop:
        return cls(HopKind.HOST, smart_host.host, smart_host.port or SMTP_PORT)

    @classmethod
    def parse(cls, key: str) -> NextHop:
        """A TLS policy lookup key: ``[host]``, ``[host]:port`` (IPv6 also as
        ``[ipv6:...]``), ``domain`` or ``domain:port``. Raises :class:`ValueError`."""
        text = key.strip()
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                raise ValueError(f"next hop {show(key)}: unclosed '['")
            inner, rest = text[1:close], text[close + 1 :]
            if inner[:5].lower() == "ipv6:":
                inner = inner[5:]
            port = _hop_port(key, rest)
            try:
                return cls(HopKind.HOST, str(ipaddress.ip_address(inner)), port)
            except ValueError:
                pass
            return cls(HopKind.HOST, _hop_domain(key, inner), port)
        host, colon, port_text = text.partition(":")
        port = _hop_port(key, colon + port_text)
        return cls(HopKind.DOMAIN, _hop_domain(key, host), port)


def _hop_port(key: str, rest: str) -> int:
    if not rest:
        return SMTP_PORT
    digits = rest[1:]
    if (
        rest[0] != ":"
        or not digits.isdigit()
        or not digits.isascii()
        or not 0 < int(digits) < 65536
    ):
        raise ValueError(f"next hop {show(key)}: {show(rest)} is not ':PORT'")
    return int(digits)


def _hop_domain(key: str, text: str) -> str:
    try:
        return canonical_domain(text)
    except InvalidValue as exc:
        raise ValueError(f"next hop {show(key)}: not a host name: {exc.reason}") from None


# -- the maps of one policy ---------------------------------------------------------------


class MapsError(ValueError):
    """The policy cannot be served to Postfix; ``problems`` says why, each naming the
    connectors and the values involved."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


def _tls_key(connector: OutboundConnector) -> tuple[TLSMode, str | None]:
    domain = connector.tls_domain
    return connector.tls_settings, None if domain is None else str(domain)


def _tls_text(connector: OutboundConnector) -> str:
    mode, domain = _tls_key(connector)
    return f"tls_settings = {mode}" + (f", tls_domain = {domain}" if domain else "")


@attrs.frozen
class HopLookup:
    """What a TLS policy key names: the next hop and the connector that decides it."""

    hop: NextHop
    connector: OutboundConnector


class OutboundMaps:
    """The ``transport`` and ``tlspolicy`` maps of one policy.

    Built with :meth:`build`, which refuses (:class:`MapsError`) a policy that serves
    no outbound mail, and a smart host that two connectors send to with different TLS
    settings: the TLS map is keyed by next hop, so Postfix could not tell which
    connector's settings apply (both connectors are named). Only connectors chosen by
    recipient domain (enabled, not transport-rule scoped, not in test mode) are
    served: Postfix has no way to name a connector.
    """

    def __init__(
        self,
        policy: Policy,
        hosts: dict[NextHop, OutboundConnector],
        *,
        transport: str = DEFAULT_TRANSPORT,
    ) -> None:
        self.policy = policy
        self.transport = transport
        self._hosts = hosts

    @classmethod
    def build(cls, policy: Policy, *, transport: str = DEFAULT_TRANSPORT) -> OutboundMaps:
        served = [c for c in policy.outbound if c.selectable_by_domain]
        if not served:
            raise MapsError(
                [
                    "the policy has no enabled outbound connector chosen by recipient domain "
                    "(not transport-rule scoped, not in test mode), so it governs no "
                    "outbound mail: every recipient would get NOTFOUND and leave by "
                    f"Postfix's ordinary transport ({len(policy.outbound)} outbound "
                    f"connectors in the file)"
                ]
            )
        hosts: dict[NextHop, OutboundConnector] = {}
        problems: list[str] = []
        reported: set[tuple[str, str, NextHop]] = set()
        for connector in served:  # sorted by name (Policy)
            if connector.use_mx_record:
                continue
            for smart_host in connector.smart_hosts:
                hop = NextHop.of_smart_host(smart_host)
                first = hosts.setdefault(hop, connector)
                if first is connector or _tls_key(first) == _tls_key(connector):
                    continue
                pair = (first.name, connector.name, hop)
                if pair in reported:
                    continue
                reported.add(pair)
                problems.append(
                    f"outbound connectors {show(first.name)} ({_tls_text(first)}) and "
                    f"{show(connector.name)} ({_tls_text(connector)}) both send to the "
                    f"smart host {hop}: Postfix's TLS policy is chosen by next hop, so "
                    "one of them would get the other's TLS settings. Give them the same "
                    "tls_settings and tls_domain, or different smart hosts"
                )
        if problems:
            raise MapsError(problems)
        return cls(policy, hosts, transport=transport)

    def connectors(self) -> dict[NextHop, OutboundConnector]:
        """The smart-host next hops and the connector each belongs to."""
        return dict(self._hosts)

    # -- transport ----------------------------------------------------------------------

    def transport_answer(self, key: str) -> MapAnswer:
        """The answer to a ``transport`` lookup of ``key`` (an address, a domain, a
        parent ``.domain`` or ``*``). Never NOTFOUND for a governed recipient: an
        address whose domain cannot be read is a temporary failure."""
        if key.startswith(".") or key == "*":
            # Parents and the wildcard: the address and its domain were answered first.
            return NOT_FOUND
        if "@" in key:
            try:
                _, domain = parse_address(key, field="recipient", allow_null=False)
            except FactsError as exc:
                tail = key.rpartition("@")[2]
                if tail.startswith("["):
                    return NOT_FOUND  # an address literal: no connector names one
                with contextlib.suppress(InvalidValue):
                    # The local part is what cannot be read: a domain that no connector
                    # selects is not governed, whatever the address.
                    if select_outbound(self.policy, canonical_domain(tail))[0] is None:
                        return NOT_FOUND
                return MapAnswer.temp(
                    f"recipient {show(key)} cannot be read ({exc.message}); deferring rather "
                    "than guessing whether a connector governs it",
                    code="bad-key",
                )
            if domain is None or domain.startswith("[") or is_ip_address(domain):
                return NOT_FOUND  # postmaster without a domain, or an address literal
        else:
            try:
                domain = canonical_domain(key)
            except InvalidValue as exc:
                return MapAnswer.temp(
                    f"domain {show(key)} cannot be read ({exc.reason})", code="bad-key"
                )
        connector, _ = select_outbound(self.policy, domain)
        if connector is None:
            return NOT_FOUND
        if connector.use_mx_record:
            route = domain
        else:
            route = ", ".join(str(NextHop.of_smart_host(h)) for h in connector.smart_hosts)
        return MapAnswer(
            AnswerKind.OK,
            f"{self.transport}:{route}",
            connector=connector.name,
            next_hop=route,
        )

    # -- TLS policy ---------------------------------------------------------------------

    def next_hop(self, key: str) -> HopLookup | MapAnswer:
        """What a ``tlspolicy`` key names, or the answer when there is nothing to probe:
        ``NOTFOUND`` for a parent ``.domain``, ``TEMP`` for a next hop no served
        connector routes to (only this service's transport asks this map, so the mail
        was routed to it: deferring is the safe answer)."""
        if key.startswith("."):
            return NOT_FOUND
        try:
            hop = NextHop.parse(key)
        except ValueError as exc:
            return MapAnswer.temp(str(exc), code="bad-key")
        if hop.kind is HopKind.HOST:
            connector = self._hosts.get(hop)
        else:
            found, _ = select_outbound(self.policy, hop.host)
            connector = found if found is not None and found.use_mx_record else None
            if hop.port != SMTP_PORT:
                connector = None  # MX routing never names a port
        if connector is None:
            return MapAnswer.temp(
                f"no outbound connector routes to next hop {show(key)}; deferring (was "
                "the policy changed while the mail was queued?)",
                code="unknown-next-hop",
                next_hop=str(hop),
            )
        return HopLookup(hop, connector)

    @staticmethod
    def static_answer(lookup: HopLookup) -> MapAnswer | None:
        """The answer for a mode that needs no probe (``may``, ``encrypt``), else None."""
        mode = lookup.connector.tls_settings
        if mode.validates_chain:
            return None
        level = "may" if mode is TLSMode.OPPORTUNISTIC else "encrypt"
        return MapAnswer(
            AnswerKind.OK,
            f"{level} servername=hostname",
            connector=lookup.connector.name,
            next_hop=str(lookup.hop),
        )


# -- pins ---------------------------------------------------------------------------------


@attrs.frozen
class Pin:
    """A leaf the service judged ``deliver``: its SHA-256 and its notAfter."""

    sha256: str  # AA:BB:... upper case, as Postfix prints fingerprints
    not_after: dt.datetime
    host: str
    address: str | None


@attrs.frozen
class Probe:
    """What probing one next hop gave: the pins, and why every other host failed."""

    pins: tuple[Pin, ...]
    #: One ``host (address): code: detail`` line per host or address not pinned.
    failures: tuple[str, ...]
    #: Every failure's reason code, in order, without repeats.
    codes: tuple[str, ...] = ()


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate in Postfix's form (``smtp_tls_fingerprint_digest =
    sha256``): upper-case hex pairs joined by ``:``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _verdict_holds_until(
    attempt: HostAttempt, policy: Policy | None, at: dt.datetime | None
) -> dt.datetime | None:
    """Until when the chain's verdict behind a ``deliver`` stays what it was, for the
    modes that validate the chain: the earliest notAfter of the validated path, and
    whatever the revocation check read changing (a CRL's or the staple's nextUpdate,
    a revocation date still to come: section 11). None when nothing bounds it."""
    decision = attempt.decision
    facts = attempt.attempt.tls if attempt.attempt is not None else None
    if policy is None or at is None or decision is None or decision.tls is None:
        return None
    if decision.tls.mode not in (TLSMode.CERTIFICATE_VALIDATION, TLSMode.DOMAIN_VALIDATION):
        return None
    if facts is None or not isinstance(facts.certificate, PresentedChain) or policy.trust is None:
        return None
    # The verdict the decision just reached, from the same cache (no second validation).
    verdict = CHAIN_VERDICTS.validate(
        facts.certificate,
        trust=policy.trust,
        at=at,
        purpose=Purpose.OUTBOUND,
        revocation=policy.revocation,
        ocsp_response=facts.ocsp_response,
    )
    return verdict.valid_until


def pins_from_attempts(
    attempts: Iterable[HostAttempt],
    *,
    policy: Policy | None = None,
    at: dt.datetime | None = None,
) -> Probe:
    """The pins of a probe: the leaf of every attempt whose verdict was ``deliver``
    (never another certificate of the chain), and a line for each other attempt.

    With the ``policy`` and the time ``at`` the attempts were judged with, a pin of a
    connector that validates chains lives no longer than its verdict holds
    (:func:`_verdict_holds_until`): not past an intermediate's notAfter, a CRL's or
    the staple's nextUpdate, or a revocation date the CRLs already announce."""
    pins: dict[str, Pin] = {}
    failures: list[str] = []
    codes: list[str] = []
    for attempt in attempts:
        where = f"{attempt.target}" + (f" ({attempt.address})" if attempt.address else "")
        if attempt.delivers and attempt.chain:
            try:
                leaf = x509.load_der_x509_certificate(attempt.chain[0])
                not_after = leaf.not_valid_after_utc
                holds_until = _verdict_holds_until(attempt, policy, at)
                if holds_until is not None:
                    not_after = min(not_after, holds_until)
            except Exception as exc:  # deliver with an unreadable leaf: never pinned
                failures.append(f"{where}: leaf unreadable ({type(exc).__name__})")
                codes.append("validation-failure")
                continue
            sha = fingerprint(attempt.chain[0])
            if sha not in pins or pins[sha].not_after > not_after:
                pins[sha] = Pin(sha, not_after, str(attempt.target), attempt.address)
            continue
        if attempt.error is not None:
            code, detail = attempt.error.code, attempt.error.detail
        elif attempt.decision is not None and attempt.decision.reasons:
            reason = attempt.decision.reasons[0]
            code, detail = str(reason.code), reason.detail
        else:
            code, detail = "validation-failure", "no certificate was presented"
        failures.append(f"{where}: {code}: {printable(detail, 200)}")
        codes.append(code)
    return Probe(tuple(pins.values()), tuple(failures), tuple(dict.fromkeys(codes)))


@attrs.define
class PinEntry:
    """The pins of one next hop, the connector they were judged for, and their life."""

    connector: OutboundConnector
    #: The trust store's content key when the pins were judged (None: no store).
    trust_key: bytes | None
    pins: tuple[Pin, ...]
    probed_at: dt.datetime
    #: The earliest of the pins' notAfter and ``probed_at`` + the pin lifetime.
    expires_at: dt.datetime
    last_used: dt.datetime
    #: When a background refresh last failed (the old pins stay until they expire).
    refresh_failed_at: dt.datetime | None = None

    def answer_text(self) -> str:
        joined = "|".join(pin.sha256 for pin in self.pins)
        return f"fingerprint match={joined} servername=hostname"


class PinCache:
    """Pins per next hop, with the time passed in (pure; the server reads the clock).

    A pin lives until the earliest of its leaf's notAfter and ``lifetime`` seconds after
    the probe (Postfix checks no date at the fingerprint level, so the date check is
    ours). :meth:`due` lists the next hops looked up within the last ``lifetime`` whose
    pins expire within ``refresh_before`` seconds: the server probes them again in the
    background so that active next hops are answered from the cache. A probe that
    found no deliverable leaf is remembered for ``failure_seconds`` (every lookup in
    that time gets the same TEMP answer without probing again). At most ``max_entries``
    next hops are remembered, the least recently used dropped first.
    """

    def __init__(
        self,
        *,
        lifetime: float = DEFAULT_PIN_LIFETIME,
        failure_seconds: float = 30.0,
        max_entries: int = MAX_PINNED_NEXT_HOPS,
    ) -> None:
        if not lifetime > 0:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        self.lifetime = dt.timedelta(seconds=lifetime)
        self.refresh_before = dt.timedelta(seconds=min(300.0, lifetime / 4))
        self.failure_time = dt.timedelta(seconds=failure_seconds)
        self.max_entries = max_entries
        self._entries: OrderedDict[NextHop, PinEntry] = OrderedDict()
        self._failures: OrderedDict[NextHop, tuple[dt.datetime, MapAnswer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, hop: NextHop, connector: OutboundConnector, now: dt.datetime) -> PinEntry | None:
        """The live entry for ``hop`` judged for ``connector`` (marked used), or None."""
        entry = self._entries.get(hop)
        if entry is None:
            return None
        if entry.connector != connector or now >= entry.expires_at or now < entry.probed_at:
            del self._entries[hop]  # expired, judged under other settings, or the clock went back
            return None
        entry.last_used = now
        self._entries.move_to_end(hop)
        return entry

    def failure(self, hop: NextHop, now: dt.datetime) -> MapAnswer | None:
        """The TEMP answer of a recent failed probe of ``hop``, or None."""
        found = self._failures.get(hop)
        if found is None:
            return None
        at, answer = found
        if not at <= now < at + self.failure_time:
            del self._failures[hop]
            return None
        return answer

    def store(
        self,
        hop: NextHop,
        connector: OutboundConnector,
        trust_key: bytes | None,
        pins: Sequence[Pin],
        now: dt.datetime,
        *,
        used: bool = True,
    ) -> PinEntry:
        """Remember the pins of a successful probe (at least one pin)."""
        if not pins:
            raise ValueError("a pin entry needs at least one pin")
        expires = min(now + self.lifetime, *(pin.not_after for pin in pins))
        previous = self._entries.get(hop)
        last_used = now if used or previous is None else previous.last_used
        entry = PinEntry(connector, trust_key, tuple(pins), now, expires, last_used)
        self._entries[hop] = entry
        self._entries.move_to_end(hop)
        self._failures.pop(hop, None)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def store_failure(self, hop: NextHop, answer: MapAnswer, now: dt.datetime) -> None:
        self._failures[hop] = (now, answer)
        self._failures.move_to_end(hop)
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def refresh_failed(self, hop: NextHop, now: dt.datetime) -> None:
        entry = self._entries.get(hop)
        if entry is not None:
            entry.refresh_failed_at = now

    def due(self, now: dt.datetime) -> list[tuple[NextHop, OutboundConnector]]:
        """Active next hops whose pins expire soon, and not retried too recently."""
        active_since = now - self.lifetime
        found = []
        for hop, entry in self._entries.items():
            if entry.last_used < active_since or entry.expires_at - now > self.refresh_before:
                continue
            failed = entry.refresh_failed_at
            if failed is not None and now < failed + self.failure_time:
                continue
            found.append((hop, entry.connector))
        return found

    def forget_changed(self, maps: OutboundMaps) -> list[str]:
        """Drop what another policy no longer vouches for: entries whose next hop now
        belongs to another connector or whose connector changed, every entry when the
        trust store changed, and every remembered failure. The next hops dropped."""
        trust = maps.policy.trust
        trust_key = None if trust is None else trust.key
        dropped = []
        for hop, entry in list(self._entries.items()):
            lookup = maps.next_hop(str(hop))
            if (
                not isinstance(lookup, HopLookup)
                or lookup.connector != entry.connector
                or entry.trust_key != trust_key
            ):
                del self._entries[hop]
                dropped.append(str(hop))
        self._failures.clear()
        return dropped
