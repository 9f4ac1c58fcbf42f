"""Postfix's SMTP access policy delegation protocol, without sockets (sans-IO).

Postfix (``check_policy_service``, see Postfix's SMTPD_POLICY_README) sends a request
as ``name=value`` lines ended by an empty line and reads back ``action=...`` and an
empty line; one connection carries many requests. This module holds everything
between the bytes and the decision, as pure code the server in
:mod:`tlsconnector.adapters.postfix.server` drives:

* :class:`RequestParser` frames requests out of a byte stream, with bounds on line
  length, request size and attribute count (section 8: bounded work on attacker
  input). A framing error is a :class:`ProtocolError`: the server logs it and closes
  the connection, and Postfix falls back to its ``smtpd_policy_service_default_action``.
* :func:`facts_from_postfix` maps Postfix's attributes to an
  :class:`~tlsconnector.InboundSession` (section 5, with MTA-verified certificate
  facts, section 7).
* :func:`decide_request` is the whole request -> decision -> reply mapping: ``DUNNO``
  when tlsconnector accepts, the decision's SMTP reply otherwise, ``451 4.3.0`` when
  the facts are malformed or deciding failed. It never answers ``OK``.

>>> parser = RequestParser()
>>> parser.feed(b"request=smtpd_access_policy\\nprotocol_state=CONNECT\\n\\n")
[{'request': 'smtpd_access_policy', 'protocol_state': 'CONNECT'}]
>>> decode_xtext("Fabrikam+20Bank", field="ccert_subject")
'Fabrikam Bank'
>>> format_reply("DUNNO")
b'action=DUNNO\\n\\n'
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import attrs

from tlsconnector._addresses import IPAddress, parse_peer_ip
from tlsconnector._decisions import (
    DEFAULT_REPLIES,
    InboundAction,
    InboundDecision,
    ReasonCode,
    SmtpReply,
    printable,
)
from tlsconnector._errors import FactsError, InvalidValue, TLSConnectorError
from tlsconnector._facts import InboundSession, MtaVerifiedCertificate, TLSFacts
from tlsconnector._inbound import evaluate_inbound
from tlsconnector._model import Policy
from tlsconnector.adapters._replies import MAX_REPLY_TEXT, refusal_line

__all__ = [
    "ALWAYS_SENT_AT_RCPT",
    "DECISION_ATTRIBUTES",
    "MAX_ATTRIBUTES",
    "MAX_LINE_BYTES",
    "MAX_REQUEST_BYTES",
    "PolicyAnswer",
    "ProtocolError",
    "RequestParser",
    "decide_request",
    "decision_key",
    "decision_record",
    "decode_xtext",
    "facts_from_postfix",
    "format_reply",
    "reply_for",
]

#: Bounds on one request (section 8). Postfix's own requests are a few hundred bytes
#: with about 40 attributes; its ``line_length_limit`` is 2048 by default.
MAX_REQUEST_BYTES = 64 * 1024
MAX_ATTRIBUTES = 1000
MAX_LINE_BYTES = 8 * 1024

#: The only request type Postfix sends (SMTPD_POLICY_README, "Protocol description").
POLICY_REQUEST = "smtpd_access_policy"
#: tlsconnector decides at RCPT TO, where Postfix knows sender, recipient and TLS facts.
DECIDING_STATE = "RCPT"
#: The protocol states Postfix 3.7 sends (postfix-notes: SMTPD_POLICY_README).
POSTFIX_STATES = frozenset(
    {"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}
)
#: Attributes Postfix sends in every request (SMTPD_POLICY_README; empty when it does
#: not know the value) that the RCPT decision needs: a request without one is not
#: from Postfix.
ALWAYS_SENT_AT_RCPT = ("client_address", "sender", "recipient")
#: "No decision here, go on with the next restriction" (access(5)). Never ``OK``: an
#: ``OK`` would end smtpd_recipient_restrictions and skip Postfix's own relay checks.
DUNNO = "DUNNO"

#: How much of an attribute a log record keeps.
MAX_LOGGED_VALUE = 512

_NAME = re.compile(rb"[A-Za-z0-9_.\-]{1,128}")
#: A whole request whose every line is ``name=value`` with a valid name.
_WHOLE_REQUEST = re.compile(rb"(?:[A-Za-z0-9_.\-]{1,128}=[^\n]*\n)+")
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){0,127}")
_HEX = frozenset("0123456789ABCDEFabcdef")

Request = dict[str, str]


class ProtocolError(TLSConnectorError):
    """A request that does not follow the policy protocol (a line without ``=``, an
    oversize line or request, too many attributes, a bad or repeated attribute name,
    an unknown request type). The connection cannot be trusted any further."""


class RequestParser:
    """Frames policy requests out of the bytes of one connection (sans-IO).

    :meth:`feed` returns the requests completed by the new bytes. After a framing
    error it stops: :attr:`error` holds the :class:`ProtocolError`, the requests
    completed before it are still returned (they deserve their answers), and every
    later call returns nothing.

    Lines end with ``\\n``; one ``\\r`` before it is tolerated (hand-typed requests).
    Attribute values that are not UTF-8 are kept with their bad bytes as lone
    surrogates (``surrogateescape``); :func:`facts_from_postfix` refuses them, with
    a temporary failure, when it needs that attribute.
    """

    def __init__(
        self,
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_attributes: int = MAX_ATTRIBUTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.max_request_bytes = max_request_bytes
        self.max_attributes = max_attributes
        self.max_line_bytes = max_line_bytes
        self.error: ProtocolError | None = None
        self._buffer = bytearray()
        self._current: Request = {}
        self._request_bytes = 0

    @property
    def pending(self) -> bool:
        """True while part of a request has been received but not its end."""
        return bool(self._buffer) or bool(self._current)

    def feed(self, data: bytes) -> list[Request]:
        """Add received bytes; return the requests they complete, in order."""
        if self.error is not None:
            return []
        self._buffer += data
        completed: list[Request] = []
        try:
            self._parse(completed)
        except ProtocolError as exc:
            self.error = exc
            self._buffer.clear()
            self._current = {}
        return completed

    def _parse(self, completed: list[Request]) -> None:
        start = 0
        buffer = self._buffer
        try:
            while True:
                if not self._current and not self._request_bytes:
                    # Fast path: a whole, well-formed request at once (one regex
                    # match and one split instead of a loop per line). Anything the
                    # fast path is unsure of goes through the line-by-line path
                    # below, which gives the precise error.
                    end = buffer.find(b"\n\n", start)
                    if end >= 0:
                        request = self._whole(bytes(buffer[start : end + 1]))
                        if request is not None:
                            start = end + 2
                            self._current = request
                            completed.append(self._finish())
                            continue
                end = buffer.find(b"\n", start)
                if end < 0:
                    self._check_partial(len(self._buffer) - start)
                    return
                line = bytes(self._buffer[start:end])
                self._account(end + 1 - start)
                start = end + 1
                request = self._line(line)
                if request is not None:
                    completed.append(request)
        finally:
            del self._buffer[:start]

    def _whole(self, block: bytes) -> Request | None:
        """One request's lines (each ended by ``\\n``) as a request, or None when the
        block needs the careful path (CR, a bound reached, a bad or repeated name)."""
        if len(block) > self.max_request_bytes or b"\r" in block:
            return None
        if _WHOLE_REQUEST.fullmatch(block) is None:
            return None
        # Speed: a block shorter than the line bound cannot hold an overlong line.
        if len(block) >= self.max_line_bytes and (
            max(map(len, block[:-1].split(b"\n"))) >= self.max_line_bytes
        ):
            return None
        # "\n" and "=" never occur inside a multi-byte UTF-8 sequence, so decoding the
        # block at once gives each value exactly as decoding it alone would, and its
        # lines are the block's lines.
        pairs = block[:-1].decode("utf-8", "surrogateescape").split("\n")
        if len(pairs) > self.max_attributes:
            return None
        request: Request = dict([pair.split("=", 1) for pair in pairs])
        return request if len(request) == len(pairs) else None

    def _check_partial(self, size: int) -> None:
        if size >= self.max_line_bytes:
            raise ProtocolError(f"a line is longer than {self.max_line_bytes} bytes")
        if self._request_bytes + size > self.max_request_bytes:
            raise ProtocolError(f"a request is larger than {self.max_request_bytes} bytes")

    def _account(self, size: int) -> None:
        if size > self.max_line_bytes:
            raise ProtocolError(f"a line is longer than {self.max_line_bytes} bytes")
        self._request_bytes += size
        if self._request_bytes > self.max_request_bytes:
            raise ProtocolError(f"a request is larger than {self.max_request_bytes} bytes")

    def _line(self, line: bytes) -> Request | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return self._finish()
        name, equals, value = line.partition(b"=")
        if not equals:
            raise ProtocolError(f"a line has no '=': {_shown(line)}")
        if not _NAME.fullmatch(name):
            raise ProtocolError(f"bad attribute name: {_shown(name)}")
        key = name.decode("ascii")
        if key in self._current:
            # Postfix never repeats an attribute; two values would be ambiguous.
            raise ProtocolError(f"attribute {key!r} given twice in one request")
        if len(self._current) >= self.max_attributes:
            raise ProtocolError(f"a request has more than {self.max_attributes} attributes")
        self._current[key] = value.decode("utf-8", "surrogateescape")
        return None

    def _finish(self) -> Request:
        request, self._current, self._request_bytes = self._current, {}, 0
        if not request:
            raise ProtocolError("an empty request (a blank line without attributes)")
        kind = request.get("request")
        if kind != POLICY_REQUEST:
            raise ProtocolError(
                f"request={_shown_text(kind)}: only request={POLICY_REQUEST} is understood"
            )
        return request


def _shown(raw: bytes, limit: int = 60) -> str:
    """Attacker bytes for a log message: escaped, quoted, bounded."""
    text = ascii(raw[:limit])[1:]  # b'...' -> '...'
    return text[:-1] + "...'" if len(raw) > limit else text


def _shown_text(value: str | None) -> str:
    return "(absent)" if value is None else ascii(value[:60])


def _text(request: Mapping[str, str], name: str) -> str:
    """An attribute's value ("" when absent); refuses values that are not UTF-8."""
    value = request.get(name, "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FactsError(name, value, "is not UTF-8 text") from None
    return value


def decode_xtext(text: str, *, field: str) -> str:
    """Decode Postfix's xtext (RFC 3461 section 4): ``+HH`` is the byte 0xHH of the
    UTF-8 text, every other character stands for itself. Postfix writes upper-case
    hex; lower case is accepted too. A ``+`` not followed by two hex digits, or bytes
    that are not UTF-8, raise :class:`FactsError` naming ``field``."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "+":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise FactsError(field, text, f"bad xtext escape at character {i}")
            out.append(int(pair, 16))
            i += 3
        else:
            out += char.encode("utf-8")
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FactsError(
            field, text, f"xtext decodes to bytes that are not UTF-8 ({exc.reason})"
        ) from None


def _peer_ip(request: Mapping[str, str]) -> IPAddress:
    value = _text(request, "client_address")
    if value == "":
        raise FactsError("client_address", value, "is required")
    if value == "unknown":
        # Postfix's placeholder when it could not learn the peer's address: without
        # an address no IP restriction can be checked, so the session is not decided.
        raise FactsError("client_address", value, "Postfix does not know the client address")
    try:
        return parse_peer_ip(value)
    except InvalidValue as exc:
        raise FactsError("client_address", value, exc.reason) from None


def _tls(request: Mapping[str, str]) -> TLSFacts | None:
    protocol = _text(request, "encryption_protocol")
    subject = _text(request, "ccert_subject")
    fingerprint = _text(request, "ccert_fingerprint")
    if not protocol:
        for name, value in (("ccert_subject", subject), ("ccert_fingerprint", fingerprint)):
            if value:
                raise FactsError(name, value, "a client certificate without encryption_protocol")
        return None
    if fingerprint and not _FINGERPRINT.fullmatch(fingerprint):
        raise FactsError("ccert_fingerprint", fingerprint, "not a fingerprint like AA:BB:...")
    if subject:
        # Postfix sends the first subject CN, and only after the client's chain
        # verified against smtpd_tls_CAfile (section 7: facts verified by the MTA).
        cn = decode_xtext(subject, field="ccert_subject")
        try:
            verified = MtaVerifiedCertificate((cn,), verified=True, fingerprint=fingerprint or None)
        except InvalidValue as exc:  # e.g. a CN over the fact bound
            raise FactsError("ccert_subject", subject, exc.reason) from None
        return TLSFacts(verified)
    if fingerprint:
        # A certificate was presented but did not verify: Postfix withholds the CN
        # and still sends the fingerprint. Unverified facts count as untrusted.
        return TLSFacts(MtaVerifiedCertificate((), verified=False, fingerprint=fingerprint))
    return TLSFacts(None)


#: Fields of :meth:`InboundSession.create` -> the Postfix attribute they come from.
_FIELD_NAMES = {"peer_ip": "client_address", "mail_from": "sender", "rcpt_to[0]": "recipient"}


def facts_from_postfix(request: Mapping[str, str], *, at: dt.datetime) -> InboundSession:
    """The inbound session facts of one RCPT-state policy request.

    ``client_address`` -> peer IP; ``sender`` -> MAIL FROM (empty: the null sender);
    ``recipient`` -> the one recipient of this RCPT TO; ``encryption_protocol``
    empty or absent -> no TLS; a non-empty ``ccert_subject`` (xtext) -> a CN the MTA
    verified; an empty ``ccert_subject`` with a ``ccert_fingerprint`` -> an untrusted
    certificate; TLS with neither -> no client certificate. ``at`` is the caller's
    clock. Raises :class:`FactsError` naming the Postfix attribute.
    """
    for name in ("sender", "recipient"):
        if name not in request:
            raise FactsError(name, None, "is required at protocol_state=RCPT")
    peer_ip = _peer_ip(request)
    sender = _text(request, "sender")
    recipient = _text(request, "recipient")
    tls = _tls(request)
    try:
        return InboundSession.create(
            peer_ip=peer_ip, mail_from=sender, rcpt_to=(recipient,), tls=tls, at=at
        )
    except FactsError as exc:
        field = _FIELD_NAMES.get(exc.field, exc.field)
        raise FactsError(field, exc.value, exc.message) from None


#: Every attribute :func:`decide_request` reads. Its answer is a function of the
#: policy and of these values alone: Postfix sends facts it verified itself (a CN,
#: a fingerprint), never a chain, so no certificate is validated and the clock
#: plays no part. A service may therefore reuse an answer for a request whose
#: :func:`decision_key` is equal, under the same policy (tests/adapters/test_postfix_adapter.py
#: checks that no other attribute and no time changes an answer).
DECISION_ATTRIBUTES = (
    "protocol_state",
    "client_address",
    "sender",
    "recipient",
    "encryption_protocol",
    "ccert_subject",
    "ccert_fingerprint",
)


def decision_key(request: Mapping[str, str]) -> tuple[str | None, ...]:
    """The values of :data:`DECISION_ATTRIBUTES` (None when absent), in that order."""
    get = request.get
    return (
        get("protocol_state"),
        get("client_address"),
        get("sender"),
        get("recipient"),
        get("encryption_protocol"),
        get("ccert_subject"),
        get("ccert_fingerprint"),
    )


@attrs.frozen
class PolicyAnswer:
    """The answer to one request: ``reply`` is the text after ``action=``;
    ``decision`` is None when tlsconnector does not decide at this protocol state.

    ``breaks_protocol`` is True for a request Postfix never sends (no or an unknown
    ``protocol_state``; at ``RCPT``, no ``client_address``, ``sender`` or
    ``recipient`` attribute): it still gets its ``451`` answer, and then a service
    closes the connection, as for a framing error (the peer is not Postfix, or no
    longer speaks its protocol).
    """

    reply: str
    decision: InboundDecision | None
    breaks_protocol: bool = False


def decide_request(
    policy: Policy,
    request: Mapping[str, str],
    *,
    at: dt.datetime,
    replies: Mapping[ReasonCode, SmtpReply] = DEFAULT_REPLIES,
) -> PolicyAnswer:
    """Answer one policy request (pure: the policy and the time come in).

    Only ``protocol_state=RCPT`` is decided; every other state gets ``DUNNO``. A
    request without ``protocol_state``, malformed facts or an error while deciding
    give ``451 4.3.0`` (:meth:`InboundDecision.tempfail`): never an accept, never a
    permanent refusal because of an error (section 5).
    """
    state = request.get("protocol_state")
    if state is None:
        return _violation("protocol_state is missing: cannot tell when Postfix asks")
    if state != DECIDING_STATE:
        if state not in POSTFIX_STATES:
            # Postfix sends only the states it knows; anything else is not understood,
            # and what is not understood is not let through (section 5).
            return _violation(f"unknown protocol_state {_shown_text(state)}")
        return PolicyAnswer(DUNNO, None)
    for name in ALWAYS_SENT_AT_RCPT:
        if name not in request:
            # Postfix sends these attributes in every request (empty when unknown).
            return _violation(f"{name} is missing at protocol_state=RCPT")
    try:
        session = facts_from_postfix(request, at=at)
    except FactsError as exc:
        return _tempfail(f"malformed facts from Postfix: {exc}", code=ReasonCode.MALFORMED_FACTS)
    try:
        decision = evaluate_inbound(policy, session, replies=replies)
    except Exception as exc:  # never fail open: an error while deciding is a tempfail
        return _tempfail(f"internal error while deciding: {type(exc).__name__}: {exc}")
    return PolicyAnswer(reply_for(decision), decision)


def _violation(detail: str) -> PolicyAnswer:
    decision = InboundDecision.tempfail(detail, code=ReasonCode.MALFORMED_FACTS)
    return PolicyAnswer(reply_for(decision), decision, breaks_protocol=True)


def _tempfail(detail: str, *, code: ReasonCode = ReasonCode.INTERNAL_ERROR) -> PolicyAnswer:
    decision = InboundDecision.tempfail(detail, code=code)
    return PolicyAnswer(reply_for(decision), decision)


def reply_for(decision: InboundDecision) -> str:
    """The Postfix action for a decision: ``DUNNO`` for accept, else ``CODE X.Y.Z text``.

    The reply is checked, not trusted: a 4xx/5xx code of the right class for the
    action (a reject is 4xx or 5xx, a tempfail 4xx), a well-formed enhanced status
    code of the same class, and one line of printable ASCII text; anything else
    becomes the ``451 4.3.0`` temporary failure.
    """
    if decision.action is InboundAction.ACCEPT:
        return DUNNO
    return refusal_line(decision)


def format_reply(reply: str) -> bytes:
    """The bytes sent back to Postfix: ``action=REPLY`` and an empty line."""
    line = printable(reply, limit=MAX_REPLY_TEXT + 20)
    return f"action={line}\n\n".encode("ascii")


def decision_record(request: Mapping[str, str], answer: PolicyAnswer) -> dict[str, Any]:
    """The fields of the log line for one decided request (the server adds the time).

    Values are bounded; JSON escaping (``ensure_ascii``) keeps attacker bytes inert.
    """

    def attribute(name: str) -> str | None:
        value = request.get(name)
        return None if value is None else value[:MAX_LOGGED_VALUE]

    decision = answer.decision
    return {
        "client": attribute("client_address"),
        "sender": attribute("sender"),
        "recipient": attribute("recipient"),
        "queue_id": attribute("queue_id"),
        "action": str(decision.action) if decision is not None else None,
        "reply": answer.reply,
        "connector": decision.connector if decision is not None else None,
        "codes": list(decision.codes) if decision is not None else [],
        "details": [r.detail for r in decision.reasons] if decision is not None else [],
        "ccert_subject": attribute("ccert_subject"),
        "ccert_fingerprint": attribute("ccert_fingerprint"),
    }
