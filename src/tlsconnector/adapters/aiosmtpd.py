"""The aiosmtpd adapter: the same enforcement as the Postfix service, inside a Python
SMTP server built on aiosmtpd (``pip install 'tlsconnector[aiosmtpd]'``).

* :func:`smtp_kwargs` builds the ``aiosmtpd.controller.Controller`` / ``SMTP`` keyword
  arguments: a TLS context that asks for a client certificate and verifies it against
  the policy's trust anchors, and ``require_starttls=False``: plaintext is refused per
  sender, not per server.
* :class:`TLSConnectorHandler` wraps your delivery handler: it decides every ``RCPT``
  with :func:`~tlsconnector.evaluate_inbound` and answers with the decision's SMTP
  reply (``530 5.7.0`` for a plaintext sender whose connector requires TLS, and only
  for those); accepted recipients go on to your handler, and ``DATA`` is yours. A
  failed TLS handshake is logged as one line.

Limit of Python's ``ssl``: it verifies a client certificate it asks for in the
handshake and cannot hand an untrusted one on to the policy. A sender presenting a
certificate that does not verify against the policy's trust anchors (self-signed,
another CA, serverAuth-only EKU) fails the handshake, whatever connector it falls
under, even one without a certificate name.

The client certificate is checked twice. Python's ``ssl`` module verifies it in the
handshake against the policy's trust anchors (an untrusted certificate aborts the
handshake); then the adapter hands the core the chain the client sent, leaf first
(:class:`~tlsconnector.PresentedChain`), and the core validates it again with
tlsconnector's own rules (spec section 7: path, dates at the session's time, EKU, and
name constraints applied to the CN, which OpenSSL skips when the leaf has a DNS SAN).
See docs/aiosmtpd.md for what each check decides.

This module never imports aiosmtpd at run time (the handler is duck-typed), and
``import tlsconnector`` never imports this module.
"""

from __future__ import annotations

import _ssl
import datetime as dt
import itertools
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

import tlsconnector
from tlsconnector._chains import MAX_CHAIN_CERTIFICATES, PresentedChain
from tlsconnector._model import ConnectorType, Policy

from .._decisions import (
    DEFAULT_REPLIES,
    InboundAction,
    InboundDecision,
    ReasonCode,
    SmtpReply,
    printable,
)
from .._errors import FactsError, InvalidValue
from .._facts import InboundSession, TLSFacts
from .._inbound import evaluate_inbound
from ._recording import Recorder, policy_digest, session_json
from ._replies import refusal_line

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = [
    "Clock",
    "DecisionHook",
    "Recorder",
    "TLSConnectorHandler",
    "reply_line",
    "requires_starttls",
    "server_tls_context",
    "smtp_kwargs",
    "tls_facts",
    "utc_now",
]

log = logging.getLogger("tlsconnector.adapters.aiosmtpd")

#: Returns the current time, timezone-aware. Injected so tests control the time.
Clock = Callable[[], dt.datetime]
#: Called with every decision (after it is made, before it is answered).
DecisionHook = Callable[["Session", "Envelope", str, InboundDecision], None]

_OWN_HOOKS = frozenset({"handle_RCPT", "handle_DATA", "handle_exception"})


def utc_now() -> dt.datetime:
    """The default clock: the current time in UTC."""
    return dt.datetime.now(dt.UTC)


def requires_starttls(policy: Policy) -> bool:
    """True when any enabled partner inbound connector requires TLS (section 5.4).

    >>> from tlsconnector import Policy
    >>> requires_starttls(Policy.from_mapping(
    ...     {"inbound": [{"name": "Fabrikam", "sender_domains": ["fabrikam.com"]}]}, trust=None))
    True
    >>> requires_starttls(Policy.from_mapping({}, trust=None))
    False
    """
    return any(
        connector.enabled and connector.type is ConnectorType.PARTNER and connector.requires_tls
        for connector in policy.inbound
    )


def server_tls_context(
    policy: Policy,
    *,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    password: str | bytes | None = None,
) -> ssl.SSLContext:
    """A server TLS context that asks clients for a certificate.

    ``verify_mode`` is ``CERT_OPTIONAL`` with the policy's trust anchors loaded: a
    client may send no certificate (the policy then decides ``certificate-missing``
    where a name is required), but a certificate it sends must verify against the
    anchors, or the ``ssl`` module aborts the handshake. A policy without trust
    anchors gets ``CERT_NONE``: no certificate could ever verify, so none is asked for.

    TLS session resumption is switched off (no session tickets, ``OP_NO_TICKET``): a
    resumed session carries the client's leaf but not the intermediates it sent, and
    :func:`tls_facts` needs the chain to validate it again.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile, password)
    anchors = policy.trust.certificates if policy.trust is not None else ()
    if anchors:
        context.load_verify_locations(
            cadata="".join(
                cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in anchors
            )
        )
        context.verify_mode = ssl.CERT_OPTIONAL
        # A resumed session has no peer chain (OpenSSL keeps only the leaf in a
        # session): no tickets (TLS 1.2 and 1.3), so every session is a full handshake.
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def smtp_kwargs(
    policy: Policy,
    *,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    password: str | bytes | None = None,
    require_starttls: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for ``aiosmtpd.controller.Controller`` or ``aiosmtpd.smtp.SMTP``.

    ``tls_context`` from :func:`server_tls_context`; ``require_starttls`` is False by
    default: plaintext sessions come in, and :class:`TLSConnectorHandler` answers
    ``530 5.7.0 Must issue a STARTTLS command first`` at RCPT only to senders whose
    connector requires TLS (section 5), so senders no connector governs still reach
    you without TLS. ``require_starttls=True`` makes aiosmtpd answer ``530`` to every
    MAIL before STARTTLS, for every client (Postfix's ``smtpd_tls_security_level =
    encrypt``); :func:`requires_starttls` says whether the policy has a connector
    that requires TLS at all.
    """
    return {
        "tls_context": server_tls_context(
            policy, certfile=certfile, keyfile=keyfile, password=password
        ),
        "require_starttls": require_starttls,
    }


def tls_facts(session: Session) -> TLSFacts | None:
    """The TLS facts of an aiosmtpd session: None without STARTTLS.

    The client certificate becomes a :class:`~tlsconnector.PresentedChain`: the leaf
    (``getpeercert(binary_form=True)``), then the other certificates the client sent,
    in its order (``_presented_chain_der``); never a certificate the server added
    from its own store. :func:`~tlsconnector.evaluate_inbound` validates it against the
    policy's trust anchors, so the decision's ``chain_verified_by`` is
    ``"tlsconnector"``. Where the Python build exposes no chain, the chain is the leaf
    alone (a leaf from an intermediate then has no path: ``certificate-not-trusted``).

    Raises :class:`FactsError` (a temporary failure at the handler) when the session's
    TLS state cannot be read, a certificate cannot be decoded or a bound is exceeded,
    or when a chain API exists but gives no chain for a session with a certificate
    (a resumed TLS session: OpenSSL keeps only the leaf).
    """
    info = session.ssl
    if info is None:
        return None
    ssl_object = info.get("ssl_object") if isinstance(info, Mapping) else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        raise FactsError("tls", None, "the TLS session exposes no ssl_object")
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return TLSFacts(None)
    sent = _presented_chain_der(ssl_object)
    if sent is None:
        certificates = [leaf]  # no chain API in this Python: the leaf alone (docs)
    elif not sent:
        resumed = "a resumed TLS session" if ssl_object.session_reused else "unknown reason"
        raise FactsError(
            "tls.client_chain",
            None,
            f"the certificates the client sent are not available ({resumed}): "
            "the chain cannot be validated",
        )
    else:
        # The leaf first, then what the client sent after it; bounded: one more than
        # the chain bound, so an overlong chain is reported as one, not cut short.
        others = (der for der in sent if der != leaf)
        certificates = [leaf, *itertools.islice(others, MAX_CHAIN_CERTIFICATES)]
    try:
        chain = PresentedChain.from_der(certificates)
    except InvalidValue as exc:
        field = "tls.client_certificate" if len(certificates) == 1 else "tls.client_chain"
        raise FactsError(field, "(DER)", exc.reason) from None
    return TLSFacts(chain)


def _presented_chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes] | None:
    """The certificates the TLS peer sent, as DER, in its order (on a server, the
    client's leaf first): ``[]`` when the session has none to give (a resumed session
    keeps only the leaf), ``None`` when this Python exposes no chain at all.

    Python 3.13 has ``get_unverified_chain()``; 3.11 and 3.12 have it on the private
    ``_sslobj``. The *unverified* chain is what the peer sent; the verified one would
    add the trust anchor from the server's own store. At most
    ``MAX_CHAIN_CERTIFICATES + 1`` certificates are converted.
    """
    limit = MAX_CHAIN_CERTIFICATES + 1
    public = getattr(ssl_object, "get_unverified_chain", None)
    if callable(public):  # Python 3.13+: a list of DER bytes, [] when unknown
        raw: object = public()
    else:
        private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
        if not callable(private):
            return None
        raw = private()  # Python 3.11/3.12: _ssl.Certificate objects, or None
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise FactsError("tls.client_chain", type(raw).__name__, "not a list of certificates")
    ders: list[bytes] = []
    for position, item in enumerate(itertools.islice(raw, limit)):
        der = item if isinstance(item, bytes) else _certificate_der(item)
        if der is None:
            raise FactsError(
                "tls.client_chain",
                type(item).__name__,
                f"certificate #{position + 1}: not a certificate",
            )
        ders.append(der)
    return ders


def _certificate_der(item: object) -> bytes | None:
    """The DER of an ``_ssl.Certificate``; None for anything else."""
    public_bytes = getattr(item, "public_bytes", None)
    if not callable(public_bytes):
        return None
    der = public_bytes(_ssl.ENCODING_DER)
    return der if isinstance(der, bytes) else None


class TLSConnectorHandler:
    """An aiosmtpd handler that enforces a policy at RCPT and delegates the rest.

    ``delivery`` is your own aiosmtpd handler; it must have ``handle_DATA``. Its other
    hooks (``handle_EHLO``, ``handle_MAIL``, ``handle_exception``, ``auth_*`` ...) are
    exposed unchanged; its ``handle_RCPT``, if any, runs only for recipients the policy
    accepts. ``clock`` gives the session time (default: UTC now). ``on_decision`` is
    called with every decision, for logging or auditing.

    ``record``, a :class:`Recorder` (``Recorder("sessions.jsonl")``), records every
    decided RCPT for replay (``tlsconnector inbound --sessions``, ``tlsconnector
    diff``): the facts, the client's chain as PEM (``peer_chain_pem``), the time and
    the decision under ``recorded``. Recording never waits and never changes a
    decision; close the recorder (:meth:`Recorder.close`) when the server stops.
    A write error (a full disk, a file that cannot be opened) is counted
    (:meth:`Recorder.stats`) and, unless the recorder has an ``on_error`` of its own,
    logged as one WARNING line on ``tlsconnector.adapters.aiosmtpd``
    (``tlsconnector: record-error ...``), at most once per 10 seconds with the count
    of the records lost meanwhile, as the Postfix service logs ``record-error``. It is
    never a temporary failure.

    Never fails open: malformed facts, an error while deciding or an exception from
    ``on_decision`` give ``451 4.3.0``, never an accept.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        delivery: Any,
        clock: Clock = utc_now,
        replies: Mapping[ReasonCode, SmtpReply] = DEFAULT_REPLIES,
        on_decision: DecisionHook | None = None,
        record: Recorder | None = None,
    ) -> None:
        if not callable(getattr(delivery, "handle_DATA", None)):
            raise TypeError("delivery must be an aiosmtpd handler with a handle_DATA method")
        self.policy = policy
        self.delivery = delivery
        self.clock = clock
        self.replies = replies
        self.on_decision = on_decision
        self.record = record
        if record is not None and record.on_error is None:
            # Called from the recorder's thread (logging is thread-safe); the recorder
            # rate-limits its reports and ignores what the callback raises.
            record.on_error = _record_error_logger(record)
        self._digest: tuple[Policy, str] | None = None
        self._delivery_rcpt = getattr(delivery, "handle_RCPT", None)
        self._delivery_exception = getattr(delivery, "handle_exception", None)
        # aiosmtpd finds hooks with dir(handler): show the delivery handler's own.
        for name in dir(delivery):
            if name in _OWN_HOOKS or not name.startswith(("handle_", "auth_")):
                continue
            hook = getattr(delivery, name)
            if callable(hook):
                setattr(self, name, hook)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Decide this recipient; refuse with the decision's reply, or go on."""
        decision = self.decide(session, envelope, address)
        if decision.action is not InboundAction.ACCEPT:
            return reply_line(decision)
        if self._delivery_rcpt is not None:
            status: str = await self._delivery_rcpt(
                server, session, envelope, address, rcpt_options
            )
            return status
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Hand the message to the delivery handler (every recipient was accepted)."""
        status: str = await self.delivery.handle_DATA(server, session, envelope)
        return status

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's hook for an exception in a session.

        A failed TLS handshake (aiosmtpd's ``TLSSetupException``, caused by an
        ``ssl.SSLError`` or a lost connection) is logged as one warning line naming
        the TLS error, not a traceback; aiosmtpd then closes the connection. Any other
        exception goes to the delivery handler's ``handle_exception`` when it has one,
        else is logged with its traceback and answered as aiosmtpd does
        (``500 Error: (Name) text``).
        """
        if type(error).__name__ == "TLSSetupException":
            log.warning("tlsconnector: TLS handshake failed: %s", _handshake_error(error))
            return "454 4.7.0 TLS not available due to temporary reason"
        if self._delivery_exception is not None:
            status: str = await self._delivery_exception(error)
            return status
        log.error("tlsconnector: SMTP session exception", exc_info=error)
        return f"500 Error: ({type(error).__name__}) {printable(str(error), 200)}"

    def decide(self, session: Session, envelope: Envelope, address: str) -> InboundDecision:
        """The decision for one RCPT (section 5); a tempfail on any error."""
        facts: InboundSession | None = None
        policy = self.policy
        at: dt.datetime | None = None
        try:
            at = self.clock()
            facts = InboundSession.create(
                peer_ip=_peer_ip(session.peer),
                mail_from=envelope.mail_from,  # type: ignore[arg-type]  # None: FactsError
                rcpt_to=[address],
                tls=tls_facts(session),
                at=at,
                helo=session.host_name,
            )
            decision = evaluate_inbound(policy, facts, replies=self.replies)
        except FactsError as exc:
            decision = InboundDecision.tempfail(
                f"malformed session facts: {exc}", code=ReasonCode.MALFORMED_FACTS
            )
        except Exception as exc:  # never fail open: an error while deciding is a tempfail
            log.exception("tlsconnector: error while deciding")
            decision = InboundDecision.tempfail(
                f"internal error while deciding: {type(exc).__name__}: {exc}"
            )
        try:
            if self.on_decision is not None:
                self.on_decision(session, envelope, address, decision)
        except Exception as exc:
            log.exception("tlsconnector: on_decision failed")
            decision = InboundDecision.tempfail(f"on_decision failed: {type(exc).__name__}: {exc}")
        _log_decision(session, envelope, address, decision)
        if self.record is not None:
            self._record(policy, facts, decision, at)
        return decision

    def _record(
        self,
        policy: Policy,
        facts: InboundSession | None,
        decision: InboundDecision,
        at: dt.datetime | None,
    ) -> None:
        """Record one decided RCPT; never raises (the decision is already made)."""
        recorder = self.record
        if recorder is None:
            return
        try:
            if self._digest is None or self._digest[0] is not policy:
                self._digest = (policy, policy_digest(policy))
            recorded = None
            if facts is not None and decision.action is not InboundAction.TEMPFAIL:
                recorded = session_json(facts)
            when = at if at is not None else utc_now()
            recorder.record(recorded, decision, policy=self._digest[1], at=when)
        except Exception:  # a record must never change or stop a decision
            log.exception("tlsconnector: recording a decision failed")


#: The longest record-error message logged (the rest is cut, and says so).
MAX_RECORD_ERROR_CHARS = 1000


def _record_error_logger(recorder: Recorder) -> Callable[[str], None]:
    """The recorder's ``on_error`` when the user gave none: one WARNING line per
    report, with the record's path, escaped and bounded."""
    path = printable(str(recorder.path), 300)

    def on_error(message: str) -> None:
        log.warning(
            "tlsconnector: record-error path=%s: %s",
            path,
            printable(message, MAX_RECORD_ERROR_CHARS),
        )

    return on_error


def _handshake_error(error: BaseException) -> str:
    """The TLS error behind a failed handshake, as one escaped line of at most 300
    characters: the verification message when OpenSSL gives one."""
    cause = error.__cause__ or error.__context__
    if cause is None:
        return "(no reason given)"
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
    text = f"{type(cause).__name__}: {reason or cause}"
    return printable(text, 300)


def _peer_ip(peer: object) -> str:
    """aiosmtpd's ``session.peer``: ``(host, port)`` (IPv6 adds flow and scope)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def reply_line(decision: InboundDecision) -> str:
    """The SMTP reply for a refusal: ``CODE X.Y.Z text``, checked, not trusted
    (anything malformed becomes ``451 4.3.0``)."""
    return refusal_line(decision)


def _log_decision(
    session: Session, envelope: Envelope, address: str, decision: InboundDecision
) -> None:
    log.info(
        "tlsconnector: %s peer=%s from=%s rcpt=%s connector=%s reasons=%s",
        decision.action,
        printable(_peer_ip(session.peer), 60),
        printable(str(envelope.mail_from), 120),
        printable(address, 120),
        printable(decision.connector) if decision.connector else "-",
        ",".join(decision.codes),
    )


# Exceptions raised here show their public names in tracebacks (tlsconnector.FactsError).
tlsconnector._publish_loaded()
