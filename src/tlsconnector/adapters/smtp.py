"""Outbound delivery from Python, with the policy enforced in band (spec section 10).

:func:`deliver` sends one message with :mod:`smtplib` and obeys the outbound verdict
on the connection that carries the message: for each routed host it says EHLO, does
STARTTLS *without* the TLS library's own certificate or name check, asking for a
stapled OCSP response (section 11), reads the chain the server presented and the
staple it sent, asks :func:`tlsconnector.evaluate_outbound`, and sends the message on
that same connection only when the verdict is ``deliver``. Otherwise it
says QUIT and tries the route's next host; when no host delivers, the recipients are
deferred (or failed once the retry window has run out: the verdict says).

The pieces are public for other SMTP clients and for the probe:

* :func:`presented_chain`: the chain an :class:`ssl.SSLSocket` peer presented, as
  facts (:class:`~tlsconnector.PresentedChain`, or
  :class:`~tlsconnector.UndecodableCertificate`);
* :func:`starttls_and_collect`: STARTTLS on a connected :class:`smtplib.SMTP`
  (a gateway's own client) and the :class:`~tlsconnector.ConnectionAttempt` to judge;
* :func:`check_host`: connect to one host, EHLO, STARTTLS, chain, verdict, QUIT,
  without sending anything; the value describes the attempt.

Which TLS library makes the handshake: Python's :mod:`ssl` cannot send the
status_request extension (RFC 6066 section 8), so no server would staple an OCSP
response to it. The handshakes of :func:`deliver`, :func:`check_host`, the probe and
:func:`starttls_and_collect` without ``context=`` are made with pyOpenSSL instead
(``Connection.request_ocsp()``; the stapled bytes are read in the OCSP client callback,
which always lets the handshake go on: the verdict is the core's). Verification stays
off there too (the core judges the chain), TLS 1.2 is the minimum, SNI is the host
name (never an IP literal). After the handshake the client's ``sock`` is a small
socket-like object (:class:`TLSSocket`) with the methods smtplib uses. A caller that
passes its own :class:`ssl.SSLContext` to :func:`starttls_and_collect` keeps the
:mod:`ssl` path: no staple is asked for.

Which API reads the chain (section 10, step 3): on the pyOpenSSL path,
``OpenSSL.SSL.Connection.get_peer_cert_chain()``. On the :mod:`ssl` path, Python 3.13
and later have the public ``ssl.SSLSocket.get_unverified_chain()`` (DER bytes); Python
3.11 and 3.12 have the same function only on the private ``SSLSocket._sslobj`` object,
whose elements are ``_ssl.Certificate`` objects turned into DER with
``public_bytes(_ssl.ENCODING_DER)``. :data:`CHAIN_APIS` names all three; each
:class:`HostAttempt` records the one used. A Python with no :mod:`ssl` chain API gives
:class:`~tlsconnector.UndecodableCertificate` (a ``validation-failure`` where the chain
is checked): never a leaf-only chain.

This is an edge module: it reads the clock (``at=None``), the network and DNS. It
imports only tlsconnector's public API, the standard library, pyOpenSSL and, for MX
lookups, dnspython (optional: ``pip install 'tlsconnector[probe]'``; a clear error
without it).
"""

from __future__ import annotations

import datetime as dt
import email.generator
import email.message
import email.policy
import enum
import importlib
import io
import os
import re
import select
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from tlsconnector import (
    DEFAULT_RETRY_WINDOW,
    ConnectionAttempt,
    FactsError,
    InvalidValue,
    OutboundAction,
    OutboundDecision,
    OutboundSession,
    Policy,
    PresentedChain,
    Reason,
    ReasonCode,
    RouteKind,
    SmartHost,
    TLSConnectorError,
    TLSFacts,
    UndecodableCertificate,
    canonical_domain,
    evaluate_outbound,
)
from tlsconnector._decisions import _DictForm
from tlsconnector._model import is_ip_address

if TYPE_CHECKING:
    from OpenSSL import SSL  # imported when a handshake is made (start-up time)

__all__ = [
    "CHAIN_APIS",
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "MAX_DEADLINE",
    "MAX_HOSTS",
    "MAX_HOST_ADDRESSES",
    "MAX_RECIPIENTS",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE_BYTES",
    "MAX_TIMEOUT",
    "SMTP_PORT",
    "STAGES",
    "AddressLookup",
    "DeliveryReason",
    "DeliveryReport",
    "HostAttempt",
    "MissingDependency",
    "MxLookup",
    "MxLookupFailed",
    "Outcome",
    "RecipientResult",
    "ServerReply",
    "StartTLS",
    "TLSSocket",
    "check_host",
    "deliver",
    "presented_chain",
    "starttls_and_collect",
    "system_addresses",
    "tls_client_context",
]

#: Seconds each step may take: resolving a host, connecting, each reply, the TLS
#: handshake, sending each block of the message.
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
#: Seconds the whole delivery may take: every MX lookup, every host, every address,
#: every step, the message itself. Each step waits at most min(timeout, time left).
DEFAULT_DEADLINE = 600.0
MAX_DEADLINE = 3600.0
SMTP_PORT = 25
#: Routed hosts tried per recipient domain (smart hosts in order, or MX hosts by
#: preference); the rest are not tried. The probe's bound.
MAX_HOSTS = 10
#: Addresses tried per host (its A/AAAA answers in the resolver's order), as Postfix's
#: smtp_mx_address_limit (5); only a refused or failed connection moves to the next one.
MAX_HOST_ADDRESSES = 5
#: Bounds on one SMTP reply a hostile server sends (the probe's bounds; smtplib alone
#: would read any number of 8 KiB continuation lines).
MAX_REPLY_LINE_BYTES = 4096
MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 65536
#: Distinct recipients one call may deliver to.
MAX_RECIPIENTS = 1000
#: The message is sent in blocks of this size, each within the step time-out.
SEND_BLOCK_BYTES = 64 * 1024
#: How much of a server's reply text a result keeps (escaped to printable ASCII).
MAX_REPLY_TEXT = 300

#: The APIs that read a server's presented chain (module docstring): the :mod:`ssl`
#: path's, newest first, then the pyOpenSSL path's (the one that asks for a staple).
CHAIN_APIS = (
    "SSLSocket.get_unverified_chain",
    "SSLSocket._sslobj.get_unverified_chain",
    "OpenSSL.SSL.Connection.get_peer_cert_chain",
)
#: The steps of one host's attempt, in order; :attr:`HostAttempt.stage` names the one
#: an attempt ended in.
STAGES = ("connect", "greeting", "ehlo", "starttls", "tls-handshake", "ehlo after starttls")

_EXTRA = "pip install 'tlsconnector[probe]'"
_PRINTABLE = re.compile(r"[ -~]*")
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9.])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str, limit: int = MAX_REPLY_TEXT) -> str:
    """Untrusted text for a result or a log line: printable ASCII only, bounded.

    The same rule as tlsconnector's own escaping helper (copied: this module imports
    only the public API): anything outside printable ASCII becomes a backslash escape,
    so no server text can forge a line.
    """
    if len(text) <= limit and _PRINTABLE.fullmatch(text) is not None:
        return text
    head = text[: limit + 1]
    escaped = head.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    truncated = len(text) > limit or len(escaped) > limit
    return escaped[:limit] + "..." if truncated else escaped


# -- values ---------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    """What happened to one recipient."""

    DELIVERED = "delivered"
    #: Try again later (the caller keeps the message queued).
    DEFERRED = "deferred"
    #: Bounce: a permanent refusal, or the retry window ran out.
    FAILED = "failed"


class StartTLS(enum.StrEnum):
    """What became of STARTTLS on one connection."""

    #: Offered by the server and used: the connection is encrypted.
    USED = "used"
    #: Not in the EHLO reply (or EHLO refused, so no ESMTP).
    NOT_OFFERED = "not-offered"
    #: Offered, but the server did not answer 220 to it (RFC 3207: 454).
    REFUSED = "refused"
    #: The attempt ended before STARTTLS could be asked.
    NOT_REACHED = "not-reached"


@attrs.frozen
class ServerReply:
    """An SMTP reply the server sent: its code and its text (escaped, bounded)."""

    code: int
    text: str

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (RFC 3463) at the start of the text, if any."""
        found = _ENHANCED.match(self.text)
        if found is None or found.group(1) != str(self.code)[:1]:
            return None
        return found.group(0)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @classmethod
    def of(cls, code: int, raw: bytes | str) -> ServerReply:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return cls(code, _printable(text.replace("\n", " / ")))


@attrs.frozen
class DeliveryReason(_DictForm):
    """One reason behind a result.

    ``code`` is stable: a :class:`~tlsconnector.ReasonCode` value when it comes from
    the verdict (``certificate-host-mismatch``...), or one of this module's codes:
    ``connection-failed``, ``protocol-error``, ``tls-handshake-failed``,
    ``deadline-passed``, ``mx-lookup-failed``, ``domain-not-found``, ``null-mx``,
    ``sender-refused``, ``recipient-refused``, ``data-refused``,
    ``smtputf8-not-supported``, ``delivered``.
    """

    code: str
    detail: str
    connector: str | None = None
    #: The enhanced status code (RFC 3463) this reason stands for, or None.
    enhanced: str | None = None
    #: The routed host the reason is about, or None.
    host: str | None = None

    @classmethod
    def of(cls, reason: Reason, host: str | None = None) -> DeliveryReason:
        return cls(str(reason.code), reason.detail, reason.connector, reason.enhanced, host)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class HostAttempt:
    """One routed host tried: what it showed and the verdict on it.

    The value the probe needs: ``starttls``, the ``chain`` in DER (leaf first), the
    ``attempt`` facts judged and the ``decision``. ``error`` says why the attempt
    ended without a verdict (connection refused, time-out, handshake failure...)
    and ``stage`` the step it ended in; then ``attempt`` and ``decision`` are None.
    """

    #: The host as routed (name or IP literal, with the port connected to).
    target: SmartHost
    #: The IP address connected to, or None when no connection was made.
    address: str | None = None
    greeting: ServerReply | None = None
    starttls: StartTLS = StartTLS.NOT_REACHED
    #: With ``error``, the step that ended the attempt: one of :data:`STAGES`.
    stage: str | None = None
    #: What the server did that the verdict does not rest on (escaped): EHLO refused
    #: (HELO used), STARTTLS refused, data sent after its 220 to STARTTLS (dropped).
    notes: tuple[str, ...] = ()
    chain: tuple[bytes, ...] = ()
    #: Which entry of :data:`CHAIN_APIS` read the chain (None: no TLS, or no API).
    chain_api: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    attempt: ConnectionAttempt | None = None
    #: The verdict for the (first) recipient on this connection.
    decision: OutboundDecision | None = None
    error: DeliveryReason | None = None
    #: The handshake asked for a stapled OCSP response (status_request, RFC 6066 8).
    ocsp_requested: bool = False
    #: The OCSP response the server stapled (DER), as passed to the verdict in
    #: ``attempt.tls.ocsp_response``; None when none came (or one over the core's bound:
    #: ``notes`` says so).
    ocsp_response: bytes | None = None

    @property
    def delivers(self) -> bool:
        return self.decision is not None and self.decision.action is OutboundAction.DELIVER


@attrs.frozen
class RecipientResult:
    """What happened to one recipient."""

    #: The recipient as the caller gave it.
    recipient: str
    outcome: Outcome
    #: The enhanced status code (RFC 3463): ``2.0.0`` when delivered, else the status
    #: of the deciding reason (the verdict's, the server's, or this module's).
    enhanced: str
    #: Every reason, the deciding one first.
    reasons: tuple[DeliveryReason, ...]
    #: The connector that governs the recipient (None: default delivery).
    connector: str | None
    #: The host that delivered or refused the recipient, else the last host tried.
    host: str | None = None
    address: str | None = None
    #: The server's reply for this recipient (RCPT refusal, DATA reply), if any.
    reply: ServerReply | None = None
    #: The verdict on the connection that carried (or last judged) the recipient.
    decision: OutboundDecision | None = None
    attempts: tuple[HostAttempt, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)


@attrs.frozen
class DeliveryReport:
    """One result per distinct recipient, in the order given."""

    results: tuple[RecipientResult, ...]

    def __iter__(self) -> Iterator[RecipientResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def _with(self, outcome: Outcome) -> tuple[str, ...]:
        return tuple(r.recipient for r in self.results if r.outcome is outcome)

    @property
    def delivered(self) -> tuple[str, ...]:
        return self._with(Outcome.DELIVERED)

    @property
    def deferred(self) -> tuple[str, ...]:
        return self._with(Outcome.DEFERRED)

    @property
    def failed(self) -> tuple[str, ...]:
        return self._with(Outcome.FAILED)

    def result_for(self, recipient: str) -> RecipientResult:
        for result in self.results:
            if result.recipient == recipient:
                return result
        raise KeyError(recipient)


class MissingDependency(TLSConnectorError):
    """An optional package this delivery needs is not installed (dnspython for MX)."""


class MxLookupFailed(TLSConnectorError):
    """An MX lookup failed; ``permanent`` when the domain does not exist (NXDOMAIN).

    A custom :data:`MxLookup` raises it; any other exception from a lookup counts as
    a temporary failure (never as "no MX").
    """

    def __init__(self, domain: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(f"{_printable(domain)}: {message}")
        self.domain = domain
        self.message = message
        self.permanent = permanent


#: ``(domain, seconds) -> [(preference, exchange), ...]``; an empty list when the
#: domain has no MX record (the implicit MX is then the domain itself).
MxLookup = Callable[[str, float], Sequence[tuple[int, str]]]
#: ``(host name, seconds) -> [IP address, ...]`` in the order to try; raises OSError
#: when the name does not resolve.
AddressLookup = Callable[[str, float], Sequence[str]]


# -- the chain and STARTTLS, public on their own ----------------------------------------


def tls_client_context() -> ssl.SSLContext:
    """An :mod:`ssl` client context for STARTTLS: it verifies nothing (no chain, no name).

    tlsconnector judges the presented chain afterwards with the policy's rules
    (sections 3, 6, 7), which the TLS library's own check cannot express (CN only,
    single-level wildcards, the policy's trust store). TLS 1.2 is the minimum.

    A handshake with this context sends no status_request: Python's :mod:`ssl` has no
    API for it, so no OCSP staple comes (section 11). :func:`deliver`,
    :func:`check_host` and :func:`starttls_and_collect` without ``context=`` use the
    pyOpenSSL handshake instead, which asks for one with the same settings.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _chain_der(sock: ssl.SSLSocket | TLSSocket) -> tuple[tuple[bytes, ...], str | None]:
    """The DER certificates the peer presented, leaf first, and the API that read them.

    Not cut to any length here: PresentedChain enforces the core's bounds (too many
    certificates is an undecodable chain, never a shortened one), and OpenSSL bounds
    what it receives (its maximum certificate list, 100 KiB by default).
    """
    if isinstance(sock, TLSSocket):
        return sock.chain, CHAIN_APIS[2]
    public = getattr(type(sock), "get_unverified_chain", None)
    if public is not None:  # Python 3.13+: a list of DER bytes
        return tuple(bytes(item) for item in (public(sock) or ())), CHAIN_APIS[0]
    sslobj = getattr(sock, "_sslobj", None)
    private = getattr(sslobj, "get_unverified_chain", None)
    if private is None:
        return (), None
    _ssl = importlib.import_module("_ssl")
    ders = tuple(
        item if isinstance(item, bytes) else bytes(item.public_bytes(_ssl.ENCODING_DER))
        for item in (private() or ())
    )
    return ders, CHAIN_APIS[1]


def _facts(ders: Sequence[bytes], api: str | None) -> PresentedChain | UndecodableCertificate:
    if api is None:
        return UndecodableCertificate(
            "this Python has no API that shows the server's chain (ssl.SSLSocket."
            "get_unverified_chain on 3.13+, or its private counterpart on 3.11/3.12)"
        )
    if not ders:
        return UndecodableCertificate("the server presented no certificate")
    try:
        return PresentedChain.from_der(list(ders))
    except InvalidValue as exc:
        return UndecodableCertificate(exc.reason)


def presented_chain(
    ssl_socket: ssl.SSLSocket | TLSSocket,
) -> PresentedChain | UndecodableCertificate:
    """The chain the peer of a connected client :class:`ssl.SSLSocket` (or
    :class:`TLSSocket`) presented.

    The leaf first, then the intermediates, exactly as sent (nothing verified,
    nothing fetched). A chain that cannot be decoded or exceeds the core's bounds is
    :class:`~tlsconnector.UndecodableCertificate` (``validation-failure`` under a
    mode that checks the chain), as is a Python without a chain API.
    """
    if isinstance(ssl_socket, TLSSocket) and ssl_socket.undecodable is not None:
        return ssl_socket.undecodable
    return _facts(*_chain_der(ssl_socket))


@attrs.frozen
class _Collected:
    state: StartTLS
    tls: TLSFacts | None
    chain: tuple[bytes, ...] = ()
    api: str | None = None
    version: str | None = None
    cipher: str | None = None
    notes: tuple[str, ...] = ()
    ocsp_requested: bool = False


def _collect(
    smtp: smtplib.SMTP, server_hostname: str, context: ssl.SSLContext | None
) -> _Collected:
    return _ask_starttls(smtp) or _handshake(smtp, server_hostname, context)


def _ask_starttls(smtp: smtplib.SMTP) -> _Collected | None:
    """EHLO if not yet said, then STARTTLS when offered: None when the server answered
    220 (the handshake comes next), else what the plaintext session is."""
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("starttls"):
        return _Collected(StartTLS.NOT_OFFERED, None)
    code, text = smtp.docmd("STARTTLS")
    if code == 220:
        return None
    # RFC 3207 section 4: the server declined; the session stays in plaintext.
    note = f"STARTTLS was offered but answered {ServerReply.of(code, text)}"
    return _Collected(StartTLS.REFUSED, None, notes=(note,))


def _handshake(
    smtp: smtplib.SMTP, server_hostname: str, context: ssl.SSLContext | None
) -> _Collected:
    """The TLS handshake after a 220 to STARTTLS, and the facts it showed.

    The one place a handshake is made and its facts read, for deliveries, gateways
    and the probe. ``context`` None: the pyOpenSSL handshake that asks for an OCSP
    staple (section 11), carried beside the chain in the facts; else the caller's
    :mod:`ssl` context (no staple can be asked for).
    """
    # SNI (RFC 6066 section 3) is a host name, never an address literal.
    sni = None if is_ip_address(server_hostname) else server_hostname
    assert smtp.sock is not None
    tls_sock: ssl.SSLSocket | TLSSocket
    if context is None:
        seconds: float | None
        if isinstance(smtp, _Client):  # bounds the handshake as a whole
            seconds = smtp.clock.wait(smtp.clock.step_end(smtp.step_timeout))
        else:
            seconds = smtp.sock.gettimeout()
        tls_sock = TLSSocket.handshake(smtp.sock, sni, seconds)
        # smtplib uses only what TLSSocket offers: sendall, makefile, settimeout, close.
        smtp.sock = tls_sock  # type: ignore[assignment]
    else:
        if isinstance(smtp, _Client):
            smtp.clock.arm(smtp.sock, smtp.step_timeout)  # bounds the handshake as a whole
        tls_sock = context.wrap_socket(smtp.sock, server_hostname=sni)
        smtp.sock = tls_sock
    # RFC 3207 section 4.2: forget what was learnt in plaintext (as smtplib.starttls
    # does); anything the server sent after its 220 is dropped with the old reader
    # (the STARTTLS command injection problem, CVE-2011-0411).
    smtp.file = None
    smtp.helo_resp = None
    smtp.ehlo_resp = None
    smtp.esmtp_features = {}
    smtp.does_esmtp = False
    notes: tuple[str, ...] = ()
    if isinstance(smtp, _Client) and smtp.forget_buffer():
        notes = ("the server sent data after its 220 to STARTTLS: dropped",)
    ders, api = _chain_der(tls_sock)
    cipher = tls_sock.cipher()
    chain = tls_sock.undecodable if isinstance(tls_sock, TLSSocket) else None
    facts = TLSFacts(chain or _facts(ders, api))
    if isinstance(tls_sock, TLSSocket) and tls_sock.ocsp_response:
        try:
            # The core bounds a staple (MAX_OCSP_RESPONSE_BYTES): one over it is no answer.
            facts = TLSFacts(facts.certificate, ocsp_response=tls_sock.ocsp_response)
        except InvalidValue as exc:
            notes += (f"the server stapled an OCSP response not passed on: {exc.reason}",)
    return _Collected(
        StartTLS.USED,
        facts,
        ders,
        api,
        tls_sock.version(),
        cipher[0] if cipher else None,
        notes,
        isinstance(tls_sock, TLSSocket),
    )


def starttls_and_collect(
    smtp: smtplib.SMTP, *, server_hostname: str, context: ssl.SSLContext | None = None
) -> ConnectionAttempt:
    """STARTTLS on a connected client and the facts to judge it with.

    For a gateway with its own :class:`smtplib.SMTP` client: after ``connect()`` (and
    EHLO, said here if not yet), this does STARTTLS when the server offers it, without
    verifying anything (the core judges the chain) and with SNI = ``server_hostname``
    (not sent for an IP literal), and returns the
    :class:`~tlsconnector.ConnectionAttempt` to pass to
    :func:`~tlsconnector.evaluate_outbound`: ``tls=None`` when STARTTLS was not offered
    or was refused (the session is then still in plaintext), else the presented chain
    and the OCSP response the server stapled, if any. Send the message on this
    connection only when the verdict is ``deliver``.

    Without ``context`` the handshake is pyOpenSSL's, asking for a staple (TLS 1.2 at
    least), and ``smtp.sock`` becomes a :class:`TLSSocket`: smtplib goes on working on
    it (``sendmail``, ``quit``...), and it has ``version()``, ``cipher()``, ``chain``
    and ``ocsp_response``. With ``context`` (an :class:`ssl.SSLContext`, for example
    :func:`tls_client_context`) the handshake is :mod:`ssl`'s, as before, and
    ``smtp.sock`` an :class:`ssl.SSLSocket`; Python's :mod:`ssl` cannot ask for a
    staple, so none comes (``ocsp_response`` stays None).

    The handshake is bounded by the client's time-out (as a whole on the pyOpenSSL
    path). The client's EHLO state is reset as :meth:`smtplib.SMTP.starttls` resets
    it, so its next command says EHLO again (RFC 3207 section 4.2). A failed handshake
    raises :class:`ssl.SSLError` or :class:`OSError` (:class:`TimeoutError` when it
    timed out; the connection is unusable); a refused EHLO raises
    :class:`smtplib.SMTPException`, as smtplib does.
    """
    if not isinstance(smtp, smtplib.SMTP):
        raise TypeError(f"smtp must be an smtplib.SMTP, not {type(smtp).__name__}")
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise TypeError(f"context must be an ssl.SSLContext or None, not {type(context).__name__}")
    _check_host_name(server_hostname, "server_hostname")
    return ConnectionAttempt(_collect(smtp, server_hostname, context).tls)


def _check_host_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 255 or _CONTROL.search(value):
        raise ValueError(f"{field} must be a host name of 1 to 255 characters, not {value!r}")


# -- the TLS connection that asks for a staple ------------------------------------------

_T = TypeVar("_T")


def _ready(fileno: int, *, write: bool, seconds: float | None) -> bool:
    """Wait until the socket can be read (or written), at most ``seconds`` (None: no
    bound); False when the time passed first. poll, not select: no FD_SETSIZE limit."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLOUT if write else select.POLLIN)
        wait_ms = None if seconds is None else max(0, int(seconds * 1000) + 1)
        return bool(poller.poll(wait_ms))
    readers, writers, _ = select.select(
        [] if write else [fileno], [fileno] if write else [], [], seconds
    )
    return bool(readers or writers)


def _openssl_text(exc: SSL.Error) -> str:
    """What an OpenSSL error says: the reasons of its error queue entries."""
    entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [str(entry[-1]) for entry in entries if isinstance(entry, tuple) and entry]
    return _printable("; ".join(r for r in reasons if r) or str(exc) or type(exc).__name__, 200)


def _os_error_of(exc: SSL.Error) -> OSError:
    """The OSError smtplib expects for an OpenSSL error (smtplib turns an OSError into
    SMTPServerDisconnected): never a silent end of data for a broken session."""
    from OpenSSL import SSL

    if isinstance(exc, SSL.ZeroReturnError):  # close_notify came: no more writing
        return BrokenPipeError(32, "the server closed the TLS session")
    if isinstance(exc, SSL.SysCallError):
        number = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
        if number > 0:
            return OSError(number, os.strerror(number))
        # The connection ended without close_notify: a truncated session (RFC 8446 6.1).
        return ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "the TLS session ended without close_notify")
    return ssl.SSLError(ssl.SSL_ERROR_SSL, _openssl_text(exc))


class TLSSocket:
    """A client TLS connection made with pyOpenSSL, which asks for an OCSP staple.

    What :mod:`smtplib` uses of a socket (``sendall``, ``send``, ``recv``,
    ``makefile("rb")``, ``settimeout``, ``gettimeout``, ``fileno``, ``close``), with a
    socket's time-out rules: each call waits at most the time-out (None: no bound;
    :class:`TimeoutError` when it passes). OpenSSL's errors become :class:`OSError`
    (:class:`ssl.SSLError` for a TLS failure, :class:`ssl.SSLEOFError` when the
    session ends without close_notify, :class:`BrokenPipeError` when writing after
    the server closed it); only the server's close_notify reads as the end of data.

    What the handshake showed: :meth:`version`, :meth:`cipher` (as
    :class:`ssl.SSLSocket` has them), ``chain`` (the DER certificates presented, leaf
    first) and ``ocsp_response`` (the stapled OCSP response, DER; ``b""`` when none).
    """

    #: The most bytes one write hands to OpenSSL.
    _WRITE_BYTES = 16384

    def __init__(self, sock: socket.socket, connection: SSL.Connection) -> None:
        self._sock = sock
        self._connection = connection
        self._timeout: float | None = None
        self._closed = False
        self.chain: tuple[bytes, ...] = ()
        #: Set when the presented chain cannot be turned into DER.
        self.undecodable: UndecodableCertificate | None = None
        self.ocsp_response = b""

    @classmethod
    def handshake(
        cls, sock: socket.socket, server_name: str | None, seconds: float | None
    ) -> TLSSocket:
        """The client handshake on a connected socket, within ``seconds`` in all (None:
        unbounded), asking for an OCSP staple; SNI ``server_name`` (None: not sent).

        Verifies nothing, as :func:`tls_client_context`: the core judges the chain
        (sections 6, 7, 11). TLS 1.2 at least. Raises :class:`OSError`
        (:class:`ssl.SSLError`, :class:`TimeoutError`) when it fails.
        """
        from cryptography.hazmat.primitives.serialization import Encoding
        from OpenSSL import SSL

        staples: list[bytes] = []

        def staple(connection: SSL.Connection, data: bytes, _: object) -> bool:
            staples.append(bytes(data))
            return True  # go on: the staple is a fact for the core, never a verdict here

        # One context per connection: its callback records this connection's staple
        # (and pyOpenSSL forbids changing a context once a connection used it).
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | getattr(SSL, "OP_NO_RENEGOTIATION", 0))
        context.set_ocsp_client_callback(staple)
        sock.setblocking(False)  # every wait is ours, bounded (poll)
        connection = SSL.Connection(context, sock)
        if server_name is not None:
            # As the ssl module encodes server_hostname (RFC 6066 3: no trailing dot).
            connection.set_tlsext_host_name(server_name.rstrip(".").encode("idna"))
        connection.request_ocsp()
        connection.set_connect_state()
        tls = cls(sock, connection)
        tls._timeout = seconds
        tls._call(connection.do_handshake)
        tls.ocsp_response = staples[-1] if staples else b""
        try:
            certificates = connection.get_peer_cert_chain(as_cryptography=True) or []
            tls.chain = tuple(c.public_bytes(Encoding.DER) for c in certificates)
        except ValueError as exc:  # cryptography cannot read a certificate OpenSSL took
            tls.undecodable = UndecodableCertificate(
                f"a presented certificate cannot be decoded: {_printable(str(exc), 200)}"
            )
        return tls

    def _call(self, operation: Callable[[], _T]) -> _T:
        """Run an OpenSSL call, waiting (within the time-out) while it wants to read or
        write; its errors as OSError."""
        from OpenSSL import SSL

        end = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            try:
                return operation()
            except SSL.WantReadError:
                want_write = False
            except SSL.WantWriteError:
                want_write = True
            except SSL.Error as exc:
                raise _os_error_of(exc) from None
            left = None if end is None else end - time.monotonic()
            if (left is not None and left <= 0) or not _ready(
                self._sock.fileno(), write=want_write, seconds=left
            ):
                raise TimeoutError("timed out")

    # -- what smtplib uses of a socket

    def settimeout(self, value: float | None) -> None:
        if value is not None and not value >= 0:
            raise ValueError(f"timeout must be None or at least 0, not {value!r}")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to ``bufsize`` bytes; ``b""`` only after the server's close_notify."""
        if flags:
            raise ValueError("recv flags are not supported on a TLS connection")
        self._check_open()
        from OpenSSL import SSL

        def read() -> bytes:
            try:
                return self._connection.recv(bufsize)
            except SSL.ZeroReturnError:  # the server's close_notify: the end of data
                return b""

        return self._call(read)

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        if flags:
            raise ValueError("send flags are not supported on a TLS connection")
        self._check_open()
        view = memoryview(data).cast("B")[: self._WRITE_BYTES]
        if not view:
            return 0
        return self._call(lambda: self._connection.send(view))

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        """Every byte, or an OSError; each write waits at most the time-out."""
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            sent += self.send(view[sent:], flags)

    def makefile(
        self, mode: str = "r", buffering: int | None = None, **_: Any
    ) -> io.BufferedReader:
        """A binary reader (smtplib asks for ``"rb"``); closing it leaves the connection
        open, as with :meth:`socket.socket.makefile`."""
        if mode not in ("r", "rb"):
            raise ValueError(f"a TLS connection is read as binary ('rb'), not {mode!r}")
        size = buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE
        return io.BufferedReader(_TLSReader(self), size)

    def close(self) -> None:
        """Send close_notify (best effort, without waiting), then close the socket."""
        if self._closed:
            return
        self._closed = True
        from OpenSSL import SSL

        try:
            self._connection.shutdown()
        except (SSL.Error, OSError):
            pass  # nothing to wait for: the session is over either way
        finally:
            self._sock.close()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(9, "the TLS connection is closed")  # EBADF, as a closed socket

    # -- what the handshake showed, as ssl.SSLSocket has it

    def version(self) -> str | None:
        return self._connection.get_protocol_version_name()

    def cipher(self) -> tuple[str, str, int] | None:
        name = self._connection.get_cipher_name()
        if name is None:
            return None
        return (
            name,
            self._connection.get_cipher_version() or "",
            self._connection.get_cipher_bits() or 0,
        )


class _TLSReader(io.RawIOBase):
    """The raw stream under :meth:`TLSSocket.makefile`."""

    def __init__(self, tls: TLSSocket) -> None:
        super().__init__()
        self._tls = tls

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._tls.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# -- the deadline and a bounded smtplib client ------------------------------------------


class _DeadlinePassed(Exception):
    """The delivery's overall deadline passed during a step."""


class _BadReply(smtplib.SMTPException):
    """The server sent something that is not an SMTP reply, or one over a bound."""


@attrs.frozen
class _Clock:
    seconds: float
    until: float

    @classmethod
    def start(cls, seconds: float) -> _Clock:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.until - time.monotonic()

    def step_end(self, timeout: float) -> float:
        return min(time.monotonic() + timeout, self.until)

    def wait(self, end: float) -> float:
        """Seconds a blocking call may take to reach ``end``; raises when none."""
        remaining = end - time.monotonic()
        if remaining <= 0:
            if end >= self.until:
                raise _DeadlinePassed
            raise TimeoutError("timed out")
        return remaining

    def arm(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(self.wait(self.step_end(timeout)))


class _Client(smtplib.SMTP):
    """smtplib's client with every read and write bounded by the step time-out and the
    delivery's deadline, and every reply bounded in lines and bytes.

    smtplib keeps the protocol (EHLO parsing, MAIL/RCPT/DATA, dot-stuffing, SIZE);
    only reading replies and sending bytes are replaced. Connected by the caller
    (``sock`` set, then the greeting read with :meth:`getreply`).
    """

    def __init__(self, clock: _Clock, timeout: float, helo: str) -> None:
        super().__init__(local_hostname=helo, timeout=timeout)  # no host: no connection
        self.clock = clock
        self.step_timeout = timeout
        self._buffer = b""
        self._buffer_sock: object = None

    def forget_buffer(self) -> bool:
        """Drop what was read and not yet used; True when there was something."""
        dropped = bool(self._buffer)
        self._buffer = b""
        self._buffer_sock = self.sock
        return dropped

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        data = s.encode(self.command_encoding) if isinstance(s, str) else bytes(s)
        try:
            for start in range(0, len(data), SEND_BLOCK_BYTES):
                self.clock.arm(self.sock, self.step_timeout)
                self.sock.sendall(data[start : start + SEND_BLOCK_BYTES])
        except (_DeadlinePassed, TimeoutError):
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise smtplib.SMTPServerDisconnected(f"connection lost: {_os_error(exc)}") from None

    def getreply(self) -> tuple[int, bytes]:
        """One reply (RFC 5321 section 4.2), all its lines within one step's time."""
        end = self.clock.step_end(self.step_timeout)
        texts: list[bytes] = []
        size = 0
        try:
            while True:
                line = self._line(end)
                size += len(line) + 2
                code = line[:3]
                if len(line) < 3 or not code.isdigit() or line[3:4] not in (b"", b" ", b"-"):
                    shown = _printable(line.decode("ascii", "replace"), 80)
                    raise _BadReply(f"not an SMTP reply: {shown!r}")
                texts.append(line[4:].strip(b" \t"))
                if line[3:4] != b"-":
                    return int(code), b"\n".join(texts)
                if size > MAX_REPLY_BYTES:
                    raise _BadReply(f"a reply of more than {MAX_REPLY_BYTES} bytes")
                if len(texts) >= MAX_REPLY_LINES:
                    raise _BadReply(f"a reply of more than {MAX_REPLY_LINES} lines")
        except BaseException:
            self.close()
            raise

    def _line(self, end: float) -> bytes:
        if self._buffer_sock is not self.sock:
            self.forget_buffer()
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                if len(line) > MAX_REPLY_LINE_BYTES:
                    break
                return line.rstrip(b"\r")
            if len(self._buffer) > MAX_REPLY_LINE_BYTES:
                break
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("connection closed")
            self.sock.settimeout(self.clock.wait(end))
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                if end >= self.clock.until:
                    raise _DeadlinePassed from None
                raise
            except OSError as exc:
                raise smtplib.SMTPServerDisconnected(f"connection lost: {_os_error(exc)}") from None
            if not chunk:
                raise smtplib.SMTPServerDisconnected("the server closed the connection")
            self._buffer += chunk
        raise _BadReply(f"a reply line longer than {MAX_REPLY_LINE_BYTES} bytes")

    def quit_quietly(self) -> None:
        """QUIT, best effort (the outcome never depends on the goodbye), then close."""
        try:
            if self.sock is not None:
                self.docmd("QUIT")
        except (_DeadlinePassed, OSError, smtplib.SMTPException):
            pass
        finally:
            self.close()


def _os_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return _printable(exc.strerror or str(exc) or type(exc).__name__, 200)


# -- routing ------------------------------------------------------------------------------


@attrs.frozen
class _Run:
    """What every step of one delivery (or one probe) shares: one deadline."""

    policy: Policy
    clock: _Clock
    timeout: float
    helo: str
    port: int | None
    retry_window: dt.timedelta
    mx_lookup: MxLookup | None
    address_lookup: AddressLookup | None
    #: None: the pyOpenSSL handshake that asks for an OCSP staple (section 11).
    context: ssl.SSLContext | None

    @classmethod
    def start(
        cls,
        policy: Policy,
        options: tuple[str, float, float, int | None, dt.timedelta],
        mx_lookup: MxLookup | None = None,
        address_lookup: AddressLookup | None = None,
    ) -> _Run:
        """Check the options (helo, timeout, deadline, port, retry window), start the
        deadline's clock."""
        helo, timeout, deadline, port, retry_window = options
        _check_options(helo, timeout, deadline, port, retry_window)
        clock = _Clock.start(deadline)
        context = None  # every delivery and probe asks for a staple
        return cls(
            policy, clock, timeout, helo, port, retry_window, mx_lookup, address_lookup, context
        )


def _dnspython_lookup(domain: str, timeout: float) -> list[tuple[int, str]]:
    resolver, exception = _load_dnspython()
    try:
        answer = resolver.resolve(domain, "MX", lifetime=timeout)
    except resolver.NoAnswer:
        return []  # the domain exists without MX: the implicit MX (RFC 5321 5.1)
    except resolver.NXDOMAIN:
        raise MxLookupFailed(
            domain, "the domain does not exist (NXDOMAIN)", permanent=True
        ) from None
    except exception.DNSException as exc:
        raise MxLookupFailed(domain, f"MX lookup failed: {_printable(str(exc), 200)}") from None
    return [(int(record.preference), str(record.exchange)) for record in answer]


def _load_dnspython() -> tuple[Any, Any]:
    try:
        return importlib.import_module("dns.resolver"), importlib.import_module("dns.exception")
    except ImportError:
        raise MissingDependency(
            f"delivering by MX needs dnspython to look up MX records: {_EXTRA}, or pass mx_lookup="
        ) from None


@attrs.frozen
class _RouteFailure(Exception):
    reason: DeliveryReason
    permanent: bool


def _targets(run: _Run, plan: OutboundDecision) -> list[SmartHost]:
    """The hosts of a planned route, in the order to try them (all of them: the caller
    tries at most :data:`MAX_HOSTS`). Raises :class:`_RouteFailure` for a failed MX
    lookup, :class:`_DeadlinePassed`, and :class:`MissingDependency`."""
    assert plan.route is not None
    if plan.route.kind is RouteKind.MX:
        hosts = _mx_hosts(plan.route.hosts[0], run.mx_lookup, run.clock, run.timeout)
        return [SmartHost(h) for h in hosts]
    return [SmartHost.parse(h) for h in plan.route.hosts]


def _mx_hosts(domain: str, lookup: MxLookup | None, clock: _Clock, timeout: float) -> list[str]:
    """The hosts for ``domain``, most preferred first (RFC 5321 section 5.1); equal
    preferences by name, so a delivery (and a probe) is repeatable. The lookup may
    take the step time-out or the time left, whichever is less."""
    wait = min(timeout, clock.left())
    if wait <= 0:
        raise _DeadlinePassed
    try:
        records = list((lookup or _dnspython_lookup)(domain, wait))
        hosts = sorted((int(pref), str(name).rstrip(".").lower()) for pref, name in records)
    except MissingDependency:
        raise
    except Exception as exc:  # an error while routing is a temporary failure, never a route
        if clock.left() <= 0:
            raise _DeadlinePassed from None  # the lookup ran out of the call's time
        if isinstance(exc, MxLookupFailed):
            permanent = exc.permanent
            code, status = (
                ("domain-not-found", "5.4.4") if permanent else ("mx-lookup-failed", "4.4.3")
            )
            detail = _printable(exc.message)
        else:
            permanent, code, status = False, "mx-lookup-failed", "4.4.3"
            detail = f"MX lookup failed: {_printable(str(exc) or type(exc).__name__, 200)}"
        reason = DeliveryReason(code, detail, None, status, domain)
        raise _RouteFailure(reason, permanent) from None
    if not hosts:
        return [domain]
    if len(hosts) == 1 and hosts[0][1] == "":
        # RFC 7505 section 4.1: a null MX; bounce with 5.1.10.
        reason = DeliveryReason(
            "null-mx",
            "the domain publishes a null MX (RFC 7505): it accepts no mail",
            None,
            "5.1.10",
            domain,
        )
        raise _RouteFailure(reason, True)
    names: list[str] = []
    for _, name in hosts:
        try:
            canonical = canonical_domain(name)
        except InvalidValue:
            continue  # not a usable host name; an MTA skips it too
        if canonical not in names:
            names.append(canonical)
    if not names:
        reason = DeliveryReason("mx-lookup-failed", "no usable MX host name", None, "4.4.3", domain)
        raise _RouteFailure(reason, False)
    return names


def system_addresses(host: str, timeout: float) -> list[str]:
    """The host's addresses in the resolver's order (the default ``address_lookup``,
    also of the probes of ``serve postfix-outbound``). getaddrinfo takes no time-out, so
    it runs in a daemon thread waited for at most ``timeout`` (a late answer is
    abandoned; the thread ends with the resolver's own time-outs); :class:`TimeoutError`
    when it passes, the resolver's :class:`OSError` when it fails."""
    answer: list[list[Any] | OSError] = []

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, SMTP_PORT, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    worker = threading.Thread(target=resolve, name="tlsconnector-smtp-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        raise TimeoutError(f"resolving the name timed out after {timeout:g} s")
    found = answer[0]
    if isinstance(found, OSError):
        raise found
    addresses: list[str] = []
    for _, _, _, _, sockaddr in found:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


def _addresses(run: _Run, target: SmartHost) -> list[str]:
    if is_ip_address(target.host):
        return [target.host]
    end = run.clock.step_end(run.timeout)
    wait = run.clock.wait(end)
    lookup = run.address_lookup or system_addresses
    try:
        found = [str(a) for a in lookup(target.host, wait)]
    except TimeoutError as exc:
        if end >= run.clock.until:
            raise _DeadlinePassed from None
        raise _Refused(_printable(str(exc) or "resolving the name timed out", 200)) from None
    if not found:
        raise _Refused("the host has no address")
    return found


def _connect(run: _Run, target: SmartHost, port: int) -> tuple[socket.socket, str]:
    """A TCP connection to the first of the host's addresses (at most
    :data:`MAX_HOST_ADDRESSES`) that accepts; raises :class:`_Refused` when none does."""
    addresses = _addresses(run, target)
    errors: list[str] = []
    for candidate in addresses[:MAX_HOST_ADDRESSES]:
        end = run.clock.step_end(run.timeout)
        try:
            return socket.create_connection((candidate, port), run.clock.wait(end)), candidate
        except TimeoutError:
            if end >= run.clock.until:
                raise _DeadlinePassed from None
            errors.append(f"{candidate}: timed out")
        except OSError as exc:
            errors.append(f"{candidate}: {_os_error(exc)}")
    if addresses == [target.host]:  # an address literal: its one error says it all
        raise _Refused(errors[0].removeprefix(f"{target.host}: "))
    detail = "; ".join(errors)
    if len(addresses) > MAX_HOST_ADDRESSES:
        detail += (
            f"; {len(addresses) - MAX_HOST_ADDRESSES} more addresses not tried "
            f"(at most {MAX_HOST_ADDRESSES} are)"
        )
    raise _Refused(detail)


# -- one host: connect, EHLO, STARTTLS, chain, verdict ------------------------------------


class _Refused(Exception):
    """The server (or the network) refused a step: the text says how."""


def _failure(run: _Run, stage: str, exc: BaseException, host: str) -> DeliveryReason:
    """The reason an attempt ended at ``stage`` (one of :data:`STAGES`) with ``exc``."""
    if isinstance(exc, _DeadlinePassed) or (
        isinstance(exc, TimeoutError) and run.clock.left() <= 0
    ):
        detail = f"the deadline of {run.clock.seconds:g} s passed during the {stage}"
        return DeliveryReason("deadline-passed", detail, None, "4.4.2", host)
    if isinstance(exc, TimeoutError):
        text = f"timed out after {run.timeout:g} s"
    else:
        text = _exception_text(exc)
    if stage == "connect":
        return DeliveryReason("connection-failed", f"cannot connect: {text}", None, "4.4.1", host)
    if stage == "tls-handshake":
        detail = f"the TLS handshake failed: {text}"
        return DeliveryReason("tls-handshake-failed", detail, None, "4.7.5", host)
    return DeliveryReason("protocol-error", f"{stage}: {text}", None, "4.4.2", host)


def _open(
    run: _Run, target: SmartHost, sessions: Sequence[OutboundSession]
) -> tuple[HostAttempt, _Client | None, list[OutboundDecision]]:
    """Connect to ``target`` and judge the connection for each session.

    Returns the attempt, the live client (after the EHLO that follows STARTTLS) when
    at least one verdict is ``deliver``, and the verdicts (in session order; empty
    when the attempt ended without one). Never raises for the server's faults.
    """
    name = str(target)
    port = target.port or run.port or SMTP_PORT
    seen = _Seen(SmartHost(target.host, port))
    client: _Client | None = None
    stage = "connect"
    try:
        sock, seen.address = _connect(run, target, port)
        client = _Client(run.clock, run.timeout, run.helo)
        client.sock = sock
        stage = "greeting"
        code, text = client.getreply()
        seen.greeting = ServerReply.of(code, text)
        if code != 220:
            raise _Refused(f"the server refused the session: {seen.greeting}")
        stage = "ehlo"
        seen.hello(client)
        stage = "starttls"
        plaintext = _ask_starttls(client)
        if plaintext is not None:
            seen.collected = plaintext
        else:
            stage = "tls-handshake"
            seen.collected = _handshake(client, target.host, run.context)
            stage = "ehlo after starttls"
            seen.hello(client)
    except (_DeadlinePassed, _Refused, OSError) as exc:  # OSError: ssl and smtplib's too
        if client is not None:
            client.close()  # after a failure the session is not worth a QUIT
        return seen.record(error=_failure(run, stage, exc, name), stage=stage), None, []
    assert client is not None
    peer_host = name if len(name) <= 255 else target.host
    attempt = ConnectionAttempt(seen.collected.tls)
    decisions = [
        evaluate_outbound(
            run.policy,
            attrs.evolve(s, peer_host=peer_host, attempt=attempt),
            retry_window=run.retry_window,
        )
        for s in sessions
    ]
    record = seen.record(attempt=attempt, decision=decisions[0] if decisions else None)
    if not any(d.action is OutboundAction.DELIVER for d in decisions):
        client.quit_quietly()
        return record, None, decisions
    return record, client, decisions


@attrs.define
class _Seen:
    """What one attempt has shown so far."""

    target: SmartHost
    address: str | None = None
    greeting: ServerReply | None = None
    collected: _Collected = _Collected(StartTLS.NOT_REACHED, None)
    notes: list[str] = attrs.Factory(list)

    def hello(self, client: _Client) -> None:
        """EHLO, or HELO when EHLO is refused (no ESMTP, so no STARTTLS)."""
        code, text = client.ehlo()
        if code == 250:
            return
        refused = ServerReply.of(code, text)
        code, text = client.helo()
        if code != 250:
            raise _Refused(f"the server refused EHLO and HELO: {ServerReply.of(code, text)}")
        self.notes.append(f"EHLO was refused ({refused}): HELO said instead (no ESMTP)")

    def record(
        self,
        attempt: ConnectionAttempt | None = None,
        decision: OutboundDecision | None = None,
        *,
        error: DeliveryReason | None = None,
        stage: str | None = None,
    ) -> HostAttempt:
        c = self.collected
        # Positional, in the field order of HostAttempt (mypy checks each type).
        return HostAttempt(
            self.target,
            self.address,
            self.greeting,
            c.state,
            stage,
            (*c.notes, *self.notes),
            c.chain,
            c.api,
            c.version,
            c.cipher,
            attempt,
            decision,
            error,
            c.ocsp_requested,
            c.tls.ocsp_response if c.tls is not None else None,
        )


def _exception_text(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return str(ServerReply.of(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return _os_error(exc)
    if isinstance(exc, _Refused):  # made of escaped parts, one per address at most
        return _printable(str(exc), 2000)
    return _printable(str(exc) or type(exc).__name__, 200)


def _check(run: _Run, target: SmartHost, session: OutboundSession) -> HostAttempt:
    """One host judged for one session, nothing sent: the engine of :func:`check_host`
    and of the probe (which shares one deadline over every host of a route)."""
    record, client, _ = _open(run, target, [session])
    if client is not None:
        client.quit_quietly()
    return record


def check_host(
    policy: Policy,
    recipient: str,
    host: str | SmartHost,
    *,
    at: dt.datetime | None = None,
    connector: str | None = None,
    port: int | None = None,
    helo: str = "localhost",
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    queued_since: dt.datetime | None = None,
    retry_window: dt.timedelta = DEFAULT_RETRY_WINDOW,
    address_lookup: AddressLookup | None = None,
) -> HostAttempt:
    """Connect to one host, EHLO, STARTTLS, read the chain, judge it, QUIT.

    Sends no mail. The value describes the attempt (address, STARTTLS, chain, the
    API that read it, the verdict for ``recipient``) or why it ended without a
    verdict (``error``, at ``stage``). Raises only for bad arguments.
    """
    options = (helo, timeout, deadline, port, retry_window)
    run = _Run.start(policy, options, address_lookup=address_lookup)
    target = host if isinstance(host, SmartHost) else _smart_host(host)
    session = OutboundSession.create(
        recipient=recipient, at=_now(at), connector=connector, queued_since=queued_since
    )
    return _check(run, target, session)


def _smart_host(text: str) -> SmartHost:
    try:
        return SmartHost.parse(text)
    except InvalidValue as exc:
        raise ValueError(f"host {_printable(text, 80)!r}: {exc.reason}") from None


# -- delivery -----------------------------------------------------------------------------


@attrs.frozen
class _Recipient:
    given: str
    session: OutboundSession

    @property
    def address(self) -> str:
        return self.session.recipient


@attrs.frozen
class _Final:
    outcome: Outcome
    reasons: tuple[DeliveryReason, ...]
    host: str | None = None
    address: str | None = None
    reply: ServerReply | None = None
    decision: OutboundDecision | None = None


def deliver(
    policy: Policy,
    message: bytes | email.message.Message,
    *,
    sender: str,
    recipients: Sequence[str],
    at: dt.datetime | None = None,
    connector: str | None = None,
    queued_since: dt.datetime | None = None,
    retry_window: dt.timedelta = DEFAULT_RETRY_WINDOW,
    helo: str = "localhost",
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    port: int | None = None,
    mx_lookup: MxLookup | None = None,
    address_lookup: AddressLookup | None = None,
) -> DeliveryReport:
    """Deliver ``message`` to ``recipients``, obeying the outbound policy in band.

    Recipients are grouped by domain (each may fall under another connector, or under
    ``connector`` when named, as a transport rule names one). Per domain the route is
    planned with :func:`~tlsconnector.evaluate_outbound`; each host (at most
    :data:`MAX_HOSTS`, each at most :data:`MAX_HOST_ADDRESSES` addresses) is judged on
    its own connection, and the message goes over that connection only for a
    ``deliver`` verdict. ``at`` is the time the verdicts use (None: now, read here);
    ``queued_since`` and ``retry_window`` decide when a failure bounces.

    Each step waits at most ``timeout`` seconds and the whole call at most
    ``deadline`` seconds. ``port`` replaces port 25 for hosts routed without one
    (tests). ``mx_lookup`` and ``address_lookup`` replace DNS (dnspython) and the
    system resolver.

    Never raises for a partner's fault: every refusal, time-out, TLS or protocol
    failure is a :class:`RecipientResult`. Raises :class:`ValueError`,
    :class:`TypeError` or :class:`~tlsconnector.FactsError` for bad arguments, and
    :class:`MissingDependency` when an MX route needs dnspython and it is missing.
    """
    run = _Run.start(
        policy, (helo, timeout, deadline, port, retry_window), mx_lookup, address_lookup
    )
    payload_source = _check_message(message)
    mail_from = _check_sender(sender)
    groups = _groups(recipients, _now(at), connector, queued_since)
    plans = {domain: _plan(run, members[0]) for domain, members in groups.items()}
    if mx_lookup is None and any(
        p.route is not None and p.route.kind is RouteKind.MX for p in plans.values()
    ):
        _load_dnspython()  # a missing dependency is the caller's to fix: say so now
    finals: dict[str, _Final] = {}
    attempts: dict[str, tuple[HostAttempt, ...]] = {}
    for domain, members in groups.items():
        done, tried = _deliver_domain(run, plans[domain], members, mail_from, payload_source)
        finals.update(done)
        for member in members:
            attempts[member.given] = tried
    results = []
    for members in groups.values():
        for member in members:
            final = _expire(finals[member.given], member.session, retry_window)
            results.append(_result(member, final, attempts[member.given]))
    order = {r: i for i, r in enumerate(dict.fromkeys(recipients))}
    results.sort(key=lambda r: order[r.recipient])
    return DeliveryReport(tuple(results))


def _plan(run: _Run, member: _Recipient) -> OutboundDecision:
    return evaluate_outbound(run.policy, member.session, retry_window=run.retry_window)


def _deliver_domain(
    run: _Run,
    plan: OutboundDecision,
    members: list[_Recipient],
    sender: str,
    message: bytes | email.message.Message,
) -> tuple[dict[str, _Final], tuple[HostAttempt, ...]]:
    finals: dict[str, _Final] = {}
    if plan.route is None:  # a named connector is unavailable: nothing to route by
        reasons = tuple(DeliveryReason.of(r) for r in plan.reasons)
        status = plan.smtp.enhanced if plan.smtp is not None else "4.3.5"
        reasons = tuple(attrs.evolve(r, enhanced=r.enhanced or status) for r in reasons)
        return {m.given: _Final(Outcome.DEFERRED, reasons, decision=plan) for m in members}, ()
    try:
        targets = _targets(run, plan)
    except _RouteFailure as exc:
        outcome = Outcome.FAILED if exc.permanent else Outcome.DEFERRED
        return {m.given: _Final(outcome, (exc.reason,), decision=plan) for m in members}, ()
    except _DeadlinePassed:
        reason = DeliveryReason(
            "deadline-passed",
            f"the delivery's deadline of {run.clock.seconds:g} s passed before the MX lookup ended",
            plan.connector,
            "4.4.2",
            plan.route.hosts[0],
        )
        return {m.given: _Final(Outcome.DEFERRED, (reason,), decision=plan) for m in members}, ()
    tried: list[HostAttempt] = []
    failures: list[DeliveryReason] = []
    last: dict[str, OutboundDecision] = {}
    pending = list(members)
    for index, target in enumerate(targets[:MAX_HOSTS]):
        if run.clock.left() <= 0:
            failures.append(
                DeliveryReason(
                    "deadline-passed",
                    f"the delivery's deadline of {run.clock.seconds:g} s passed; not tried: "
                    + ", ".join(str(t) for t in targets[index:MAX_HOSTS]),
                    plan.connector,
                    "4.4.2",
                    str(target),
                )
            )
            break
        record, client, decisions = _open(run, target, [m.session for m in pending])
        tried.append(record)
        if record.error is not None:
            failures.append(attrs.evolve(record.error, connector=plan.connector))
            continue
        by_recipient = dict(zip((m.given for m in pending), decisions, strict=True))
        last.update(by_recipient)
        sendable = [m for m in pending if by_recipient[m.given].action is OutboundAction.DELIVER]
        if decisions[0].action is not OutboundAction.DELIVER:
            # The verdict's failures (those with a status), for this host.
            failures.extend(
                DeliveryReason.of(r, str(target)) for r in decisions[0].reasons if r.enhanced
            )
        if client is None:
            continue
        done = _transaction(run, client, record, sendable, sender, message, by_recipient)
        finals.update(done)
        pending = [m for m in pending if m.given not in finals]
        if not pending:
            break
    if len(targets) > MAX_HOSTS and pending:
        failures.append(
            DeliveryReason(
                "connection-failed",
                f"{len(targets) - MAX_HOSTS} more routed hosts not tried (at most {MAX_HOSTS} are)",
                plan.connector,
                "4.4.1",
                None,
            )
        )
    for member in pending:
        finals[member.given] = _undelivered(member, failures, last.get(member.given), tried)
    return finals, tuple(tried)


def _undelivered(
    member: _Recipient,
    failures: list[DeliveryReason],
    decision: OutboundDecision | None,
    tried: list[HostAttempt],
) -> _Final:
    """No host took the recipient: deferred (the verdict, or the last failure, decides
    the status); failed when the last verdict says so (retry window)."""
    if not failures:
        failures = [DeliveryReason("connection-failed", "no routed host to try", None, "4.4.1")]
    last_host = tried[-1] if tried else None
    host = str(last_host.target) if last_host is not None else failures[-1].host
    address = last_host.address if last_host is not None else None
    # The deciding reason is the last one: the last host's failure (as an MTA reports).
    reasons = (failures[-1], *failures[:-1])
    if (
        decision is not None
        and decision.action is OutboundAction.FAIL
        and tried
        and (tried[-1].decision is not None)
    ):
        reasons = tuple(DeliveryReason.of(r, host) for r in decision.reasons) + tuple(
            f for f in failures if f.code not in {str(r.code) for r in decision.reasons}
        )
        return _Final(Outcome.FAILED, reasons, host, address, None, decision)
    return _Final(Outcome.DEFERRED, reasons, host, address, None, decision)


def _status_of(reply: ServerReply) -> str:
    return reply.enhanced or f"{str(reply.code)[:1]}.0.0"


def _outcome_of(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.DELIVERED
    if 500 <= code < 600:
        return Outcome.FAILED
    return Outcome.DEFERRED  # 4xx, and anything else a server should not send


def _transaction(
    run: _Run,
    client: _Client,
    record: HostAttempt,
    members: list[_Recipient],
    sender: str,
    message: bytes | email.message.Message,
    decisions: dict[str, OutboundDecision],
) -> dict[str, _Final]:
    """MAIL, RCPT for each recipient the verdict delivers, DATA, on the judged
    connection. Once MAIL was sent the outcome is final for this call (no other host
    gets the message, so a 4xx never becomes a duplicate)."""
    host = str(record.target)
    finals: dict[str, _Final] = {}
    international = not all(s.isascii() for s in (sender, *(m.address for m in members)))

    def final(
        member: _Recipient, outcome: Outcome, reason: DeliveryReason, reply: ServerReply | None
    ) -> _Final:
        reasons = (reason, *(DeliveryReason.of(r, host) for r in decisions[member.given].reasons))
        return _Final(outcome, reasons, host, record.address, reply, decisions[member.given])

    def everyone(
        outcome: Outcome, reason: DeliveryReason, reply: ServerReply | None, who: list[_Recipient]
    ) -> dict[str, _Final]:
        return {m.given: final(m, outcome, reason, reply) for m in who}

    connector = decisions[members[0].given].connector
    stage = "MAIL FROM"
    accepted: list[_Recipient] = []
    try:
        if international and not client.has_extn("smtputf8"):
            reason = DeliveryReason(
                "smtputf8-not-supported",
                "the addresses need SMTPUTF8 (RFC 6531) and the server does not offer it",
                connector,
                "5.6.7",
                host,
            )
            client.quit_quietly()
            return everyone(Outcome.FAILED, reason, None, members)
        payload = _payload(message, international)
        options: list[str] = []
        if international:
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        elif not payload.isascii() and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if client.has_extn("size"):
            options.append(f"SIZE={len(payload)}")
        code, text = client.mail(sender, options)
        if code != 250:
            reply = ServerReply.of(code, text)
            reason = DeliveryReason(
                "sender-refused", f"MAIL FROM refused: {reply}", connector, _status_of(reply), host
            )
            client.quit_quietly()
            return everyone(
                _outcome_of(code) if code >= 400 else Outcome.DEFERRED, reason, reply, members
            )
        stage = "RCPT TO"
        for member in members:
            code, text = client.rcpt(member.address)
            if code in (250, 251):
                accepted.append(member)
                continue
            reply = ServerReply.of(code, text)
            reason = DeliveryReason(
                "recipient-refused", f"RCPT TO refused: {reply}", connector, _status_of(reply), host
            )
            outcome = _outcome_of(code) if code >= 400 else Outcome.DEFERRED
            finals[member.given] = final(member, outcome, reason, reply)
        if not accepted:
            client.quit_quietly()
            return finals
        stage = "DATA"
        code, text = client.docmd("DATA")
        if code != 354:
            reply = ServerReply.of(code, text)
            reason = DeliveryReason(
                "data-refused", f"DATA refused: {reply}", connector, _status_of(reply), host
            )
            client.quit_quietly()
            outcome = _outcome_of(code) if code >= 400 else Outcome.DEFERRED
            return finals | everyone(outcome, reason, reply, accepted)
        stage = "message"
        client.send(_dot_stuffed(payload))
        code, text = client.getreply()
    except _DeadlinePassed:
        reason = DeliveryReason(
            "deadline-passed",
            f"the delivery's deadline of {run.clock.seconds:g} s passed during the {stage}",
            connector,
            "4.4.2",
            host,
        )
        client.close()
        return finals | everyone(
            Outcome.DEFERRED, reason, None, [m for m in members if m.given not in finals]
        )
    except (smtplib.SMTPException, OSError) as exc:
        detail = (
            f"timed out after {run.timeout:g} s during the {stage}"
            if isinstance(exc, TimeoutError)
            else f"{stage}: {_exception_text(exc)}"
        )
        reason = DeliveryReason("protocol-error", detail, connector, "4.4.2", host)
        client.close()
        return finals | everyone(
            Outcome.DEFERRED, reason, None, [m for m in members if m.given not in finals]
        )
    reply = ServerReply.of(code, text)
    client.quit_quietly()
    if code == 250:
        reason = DeliveryReason("delivered", f"accepted: {reply}", connector, "2.0.0", host)
        return finals | everyone(Outcome.DELIVERED, reason, reply, accepted)
    reason = DeliveryReason(
        "data-refused", f"the message was refused: {reply}", connector, _status_of(reply), host
    )
    outcome = _outcome_of(code) if code >= 400 else Outcome.DEFERRED
    return finals | everyone(outcome, reason, reply, accepted)


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _payload(message: bytes | email.message.Message, international: bool) -> bytes:
    """The message as bytes with CRLF line ends, as smtplib's send_message flattens it
    (Bcc and Resent-Bcc removed; UTF-8 headers when SMTPUTF8 is used)."""
    if isinstance(message, email.message.Message):
        copy = email.message_from_bytes(message.as_bytes(), policy=message.policy)
        del copy["Bcc"]
        del copy["Resent-Bcc"]
        with io.BytesIO() as out:
            policy = message.policy
            if international:
                base = policy if isinstance(policy, email.policy.EmailPolicy) else email.policy.SMTP
                policy = base.clone(utf8=True)
            email.generator.BytesGenerator(out, policy=policy).flatten(copy, linesep="\r\n")
            return out.getvalue()
    # Bare CR or LF become CRLF, as smtplib does for str messages: a lone LF can never
    # end the data early at a server that accepts it (SMTP smuggling).
    return _LINE_END.sub(b"\r\n", bytes(message))


def _dot_stuffed(payload: bytes) -> bytes:
    """RFC 5321 section 4.5.2 transparency, and the end of data (smtplib's own rules)."""
    data = re.sub(rb"(?m)^\.", b"..", payload)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _expire(final: _Final, session: OutboundSession, window: dt.timedelta) -> _Final:
    """A deferral after the retry window is a bounce (section 6), whatever the cause,
    except an unavailable named connector (no delivery was attempted)."""
    if final.outcome is not Outcome.DEFERRED or session.queued_since is None:
        return final
    if any(r.code == str(ReasonCode.CONNECTOR_UNAVAILABLE) for r in final.reasons):
        return final
    queued = session.at - session.queued_since
    if queued < window:
        return final
    expired = DeliveryReason(
        str(ReasonCode.MESSAGE_EXPIRED),
        f"queued for {_hours(queued)}; the retry window is {_hours(window)}",
        final.reasons[0].connector if final.reasons else None,
        "5.4.7",
        final.host,
    )
    return attrs.evolve(final, outcome=Outcome.FAILED, reasons=(expired, *final.reasons))


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


def _result(member: _Recipient, final: _Final, tried: tuple[HostAttempt, ...]) -> RecipientResult:
    if final.outcome is Outcome.DELIVERED:
        enhanced = "2.0.0"
    elif final.reasons and final.reasons[0].enhanced:
        enhanced = final.reasons[0].enhanced
    else:
        enhanced = "5.0.0" if final.outcome is Outcome.FAILED else "4.0.0"
    decision = final.decision
    connector = decision.connector if decision is not None else None
    return RecipientResult(
        member.given,
        final.outcome,
        enhanced,
        final.reasons,
        connector,
        final.host,
        final.address,
        final.reply,
        decision,
        tried,
    )


# -- arguments ----------------------------------------------------------------------------


def _now(at: dt.datetime | None) -> dt.datetime:
    # The edge reads the clock; the core never does (section 1).
    return dt.datetime.now(dt.UTC) if at is None else at


def _check_options(
    helo: str, timeout: float, deadline: float, port: int | None, retry_window: dt.timedelta
) -> None:
    if (
        not isinstance(helo, str)
        or not 0 < len(helo) <= 255
        or not all("!" <= c <= "~" for c in helo)
    ):
        raise ValueError(f"helo must be 1 to 255 printable ASCII characters, not {helo!r}")
    _check_seconds("timeout", timeout, MAX_TIMEOUT)
    _check_seconds("deadline", deadline, MAX_DEADLINE)
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        raise ValueError(f"port must be 1 to 65535, not {port!r}")
    if not isinstance(retry_window, dt.timedelta) or retry_window <= dt.timedelta(0):
        raise ValueError(f"retry_window must be a positive timedelta, not {retry_window!r}")


def _check_seconds(field: str, value: object, bound: float) -> None:
    """A number of seconds, more than 0 and at most ``bound`` (NaN is neither)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= bound:
        raise ValueError(
            f"{field} must be more than 0 and at most {bound:g} seconds, not {value!r}"
        )


def _check_message(message: object) -> bytes | email.message.Message:
    if isinstance(message, email.message.Message):
        return message
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    raise TypeError(
        "message must be bytes or an email.message.Message, not "
        f"{type(message).__name__} (encode text yourself: its charset is yours to choose)"
    )


def _check_sender(sender: object) -> str:
    if not isinstance(sender, str):
        raise FactsError("sender", sender, "must be a string ('' for the null sender)")
    text = sender[1:-1] if sender.startswith("<") and sender.endswith(">") else sender
    if len(text) > 1024:
        raise FactsError("sender", sender, "longer than 1024 characters")
    if _CONTROL.search(text):
        raise FactsError("sender", sender, "contains control characters")
    if text and "@" not in text:
        raise FactsError("sender", sender, "has no @domain ('' is the null sender)")
    return text


def _groups(
    recipients: Sequence[str],
    at: dt.datetime,
    connector: str | None,
    queued_since: dt.datetime | None,
) -> dict[str, list[_Recipient]]:
    if isinstance(recipients, str) or not isinstance(recipients, Sequence):
        raise TypeError("recipients must be a list of addresses, not a single string")
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise ValueError("recipients is empty: nothing to deliver")
    if len(unique) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients ({len(unique)})")
    groups: dict[str, list[_Recipient]] = {}
    for index, recipient in enumerate(unique):
        try:
            session = OutboundSession.create(
                recipient=recipient, at=at, connector=connector, queued_since=queued_since
            )
        except FactsError as exc:
            if exc.field != "recipient":
                raise
            raise FactsError(f"recipients[{index}]", recipient, exc.message) from None
        groups.setdefault(session.recipient_domain, []).append(_Recipient(recipient, session))
    return groups
