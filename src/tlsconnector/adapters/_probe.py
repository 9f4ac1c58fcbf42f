"""The outbound probe, an edge: connect to a partner's mail server, EHLO, STARTTLS,
collect the certificate chain it presents and judge it with the policy (section 6).

EOP's ``Validate-OutboundConnector`` counterpart. It sends no mail: after STARTTLS and
the second EHLO it says QUIT.

The probe runs on the delivery engine of :mod:`tlsconnector.adapters.smtp`, the one a
delivery uses: the same route (smart hosts, or MX hosts by preference then name), the
same smtplib dialogue and STARTTLS without the TLS library's checks, the same chain
API, the same per-step time-outs under one overall deadline, the same bounds on hosts,
addresses and replies. Only the probe's own choices live here: a host that refuses
the connection is skipped and the first that answers is the answer (a delivery would
go on to the next host after any failure), its deadline's default and bound, and its
report. The MX lookup needs dnspython (optional: ``tlsconnector[probe]``), imported
only when a lookup runs.

The engine's handshake asks for an OCSP staple (section 11); the staple the server
sent travels beside the chain in the facts judged (``tls.ocsp_response``), and the
report says whether one was asked for and what came (``tls.ocsp_requested``,
``tls.ocsp_response`` in base64).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ssl
import warnings
from collections.abc import Sequence
from typing import Any

import attrs
from cryptography import x509

from tlsconnector._chains import MAX_CHAIN_CERTIFICATES
from tlsconnector._decisions import OutboundAction, OutboundDecision, _DictForm, printable
from tlsconnector._errors import TLSConnectorError
from tlsconnector._facts import ConnectionAttempt, OutboundSession, TLSFacts
from tlsconnector._model import Policy, SmartHost
from tlsconnector._outbound import DEFAULT_RETRY_WINDOW, plan_outbound
from tlsconnector.adapters import smtp
from tlsconnector.adapters.smtp import (
    DEFAULT_TIMEOUT,
    MAX_HOST_ADDRESSES,
    MAX_HOSTS,
    MAX_REPLY_BYTES,
    MAX_REPLY_LINE_BYTES,
    MAX_REPLY_LINES,
    MAX_TIMEOUT,
    SMTP_PORT,
    HostAttempt,
    MissingDependency,
    MxLookup,
    StartTLS,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "MAX_DEADLINE",
    "MAX_HOSTS",
    "MAX_HOST_ADDRESSES",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE_BYTES",
    "MAX_SHOWN_CERTIFICATES",
    "MAX_TIMEOUT",
    "SMTP_PORT",
    "CertificateSummary",
    "DeadlinePassed",
    "MxLookup",
    "ProbeError",
    "ProbeReport",
    "ProbeResult",
    "Unreachable",
    "resolve_mx",
    "run_probe",
]

#: Seconds allowed for the whole probe: the MX lookup, every host, every address, every
#: step. Each step waits at most min(step time-out, time left), so neither many hosts
#: nor a server answering each step just in time keeps a probe busy longer. A probe is
#: interactive: its default and its bound are shorter than a delivery's.
DEFAULT_DEADLINE = 120.0
MAX_DEADLINE = 600.0
#: Presented certificates shown in a report: one more than the core judges, so a chain
#: over the core's bound shows that it is (the verdict is on the whole chain).
MAX_SHOWN_CERTIFICATES = MAX_CHAIN_CERTIFICATES + 1
PROBE_EXTRA = "pip install 'tlsconnector[probe]'"

#: The engine's steps (smtp.STAGES) as the probe's errors have always named them.
_STAGE = {"ehlo after starttls": "ehlo"}


class ProbeError(TLSConnectorError):
    """The probe could not reach a verdict.

    ``stage`` is one of ``dependency``, ``resolve``, ``connect``, ``greeting``, ``ehlo``,
    ``starttls``, ``tls-handshake``; ``target`` names the host (or domain) involved.
    """

    def __init__(self, stage: str, target: str | None, message: str) -> None:
        where = f"{printable(target)}: " if target else ""
        super().__init__(f"{where}{message}")
        self.stage = stage
        self.target = target
        self.message = message


class DeadlinePassed(ProbeError):
    """The probe's overall deadline passed before it reached a verdict.

    ``stage`` is the step that ran out; ``not_tried`` the routed hosts (within
    :data:`MAX_HOSTS`) it never got to. Like any :class:`ProbeError`, no verdict.
    """

    def __init__(
        self,
        stage: str,
        target: str | None,
        deadline: float,
        *,
        skipped: Sequence[Unreachable] = (),
        not_tried: Sequence[SmartHost] = (),
        beyond: int = 0,
    ) -> None:
        message = f"the probe's deadline of {deadline:g} s passed"
        if skipped:
            message += "; skipped: " + "; ".join(f"{u.target}: {u.message}" for u in skipped)
        if not_tried:
            message += "; not tried: " + ", ".join(str(host) for host in not_tried)
        message += _beyond_text(beyond)
        super().__init__(stage, target, message)
        self.deadline = deadline
        self.skipped = tuple(skipped)
        self.not_tried = tuple(not_tried)
        self.beyond = beyond


def _beyond_text(beyond: int) -> str:
    if beyond <= 0:
        return ""
    hosts = "host" if beyond == 1 else "hosts"
    return f"; {beyond} more routed {hosts} not tried (at most {MAX_HOSTS} are tried)"


@attrs.frozen
class CertificateSummary(_DictForm):
    """What a person needs to recognise one presented certificate."""

    sha256: str
    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    #: Why the certificate could not be decoded, or None.
    error: str | None = None

    @classmethod
    def from_der(cls, der: bytes) -> CertificateSummary:
        digest = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cert = x509.load_der_x509_certificate(der)
                subject = printable(cert.subject.rfc4514_string())
                issuer = printable(cert.issuer.rfc4514_string())
        except (ValueError, TypeError) as exc:
            return cls(digest, None, None, None, None, printable(str(exc)))
        return cls(
            digest,
            subject,
            issuer,
            cert.not_valid_before_utc.isoformat(),
            cert.not_valid_after_utc.isoformat(),
        )

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class ProbeResult(_DictForm):
    """What one SMTP server showed: greeting, STARTTLS, the chain it presented."""

    #: The host and port connected to, as routed (a host name, or an IP literal).
    target: SmartHost
    #: The IP address the connection reached.
    address: str
    greeting: str
    #: ``offered`` and used, ``not-offered`` in the EHLO reply, or ``refused`` (the
    #: server offered STARTTLS but did not answer 220 to it).
    starttls: str
    #: None: no TLS (the attempt's ``tls: null``); else the presented chain and the
    #: stapled OCSP response (``tls.ocsp_response``), as the verdict was given them.
    tls: TLSFacts | None
    chain: tuple[bytes, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    notes: tuple[str, ...] = ()
    #: The handshake asked for an OCSP staple (status_request).
    ocsp_requested: bool = False

    @classmethod
    def of(cls, host: HostAttempt) -> ProbeResult:
        """The report's view of an attempt the engine judged."""
        assert host.attempt is not None
        assert host.address is not None
        return cls(
            target=host.target,
            address=host.address,
            greeting=str(host.greeting),
            starttls="offered" if host.starttls is StartTLS.USED else str(host.starttls),
            tls=host.attempt.tls,
            chain=host.chain[:MAX_SHOWN_CERTIFICATES],
            tls_version=host.tls_version,
            cipher=host.cipher,
            notes=host.notes,
            ocsp_requested=host.ocsp_requested,
        )

    @property
    def attempt(self) -> ConnectionAttempt:
        return ConnectionAttempt(self.tls)

    @property
    def ocsp_response(self) -> bytes | None:
        """The OCSP response the server stapled (DER), as passed to the verdict."""
        return None if self.tls is None else self.tls.ocsp_response

    def to_dict(self) -> dict[str, Any]:
        staple = self.ocsp_response
        return {
            "host": self.target.host,
            "port": self.target.port or SMTP_PORT,
            "address": self.address,
            "greeting": self.greeting,
            "starttls": self.starttls,
            "tls": (
                None
                if self.tls is None
                else {
                    "version": self.tls_version,
                    "cipher": self.cipher,
                    "ocsp_requested": self.ocsp_requested,
                    # Base64 of the DER, as the session fact tls.ocsp_response.
                    "ocsp_response": None if staple is None else base64.b64encode(staple).decode(),
                }
            ),
            "chain": [CertificateSummary.from_der(der).to_dict() for der in self.chain],
            "chain_pem": "".join(ssl.DER_cert_to_PEM_cert(der) for der in self.chain) or None,
            "notes": list(self.notes),
        }


@attrs.frozen
class Unreachable(_DictForm):
    """A routed host the probe could not connect to (it went on to the next one)."""

    target: SmartHost
    message: str

    def to_dict(self) -> dict[str, Any]:
        port = self.target.port or SMTP_PORT
        return {"host": self.target.host, "port": port, "message": self.message}


@attrs.frozen
class ProbeReport:
    """The verdict, and the evidence it rests on.

    ``result`` is None when no connection was needed: the named connector is
    unavailable, so the policy defers without connecting.
    """

    decision: OutboundDecision
    result: ProbeResult | None
    unreachable: tuple[Unreachable, ...] = ()

    @property
    def delivers(self) -> bool:
        return self.decision.action is OutboundAction.DELIVER


def run_probe(
    policy: Policy,
    recipient: str,
    *,
    at: dt.datetime,
    connector: str | None = None,
    host: SmartHost | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    helo: str = "localhost",
    mx_lookup: MxLookup | None = None,
) -> ProbeReport:
    """Probe where mail to ``recipient`` would go and judge what the server presents.

    ``host`` overrides the route; otherwise smart-host routes use the connector's smart
    hosts and MX routes look up the recipient domain's MX (dnspython, or ``mx_lookup``),
    as :func:`tlsconnector.adapters.smtp.deliver` does. Hosts are tried in route order,
    at most :data:`MAX_HOSTS`; one that cannot be connected to is skipped (as an MTA
    would); the first that answers is probed. Each step waits at most ``timeout``
    seconds, the whole probe at most ``deadline`` seconds. Raises :class:`ProbeError`
    when nothing could be probed (:class:`DeadlinePassed` when the deadline passed
    first), :class:`~tlsconnector.FactsError` for a bad recipient and
    :class:`ValueError` for a bad time-out, deadline or EHLO name.
    """
    smtp._check_seconds("deadline", deadline, MAX_DEADLINE)  # the engine's is a delivery's
    run = smtp._Run.start(
        policy, (helo, timeout, deadline, None, DEFAULT_RETRY_WINDOW), mx_lookup=mx_lookup
    )
    session = OutboundSession.create(recipient=recipient, at=at, connector=connector)
    plan = plan_outbound(policy, session.recipient_domain, named=connector)
    if plan.route is None:  # the named connector is unavailable: defer, no connection
        return ProbeReport(plan, None)
    targets = [host] if host is not None else _route(run, plan, session.recipient_domain)
    tried, beyond = targets[:MAX_HOSTS], len(targets) - MAX_HOSTS
    unreachable: list[Unreachable] = []
    for index, target in enumerate(tried):
        if run.clock.left() <= 0:
            raise DeadlinePassed(
                "connect",
                None,
                deadline,
                skipped=unreachable,
                not_tried=tried[index:],
                beyond=beyond,
            )
        seen = smtp._check(run, target, session)
        if seen.error is None:
            assert seen.decision is not None
            return ProbeReport(seen.decision, ProbeResult.of(seen), tuple(unreachable))
        assert seen.stage is not None
        stage = _STAGE.get(seen.stage, seen.stage)
        if seen.error.code == "deadline-passed":
            raise DeadlinePassed(
                stage,
                str(target),
                deadline,
                skipped=unreachable,
                not_tried=tried[index + 1 :],
                beyond=beyond,
            )
        # The engine writes a failed step as "stage: what happened"; the probe's error
        # names the stage on its own.
        message = seen.error.detail.removeprefix(f"{seen.stage}: ")
        if seen.error.code != "connection-failed":
            raise ProbeError(stage, str(target), message)  # it answered: that is the answer
        unreachable.append(Unreachable(target, message))
    if len(unreachable) == 1:
        only = unreachable[0]
        raise ProbeError("connect", str(only.target), only.message)
    skipped = "; ".join(f"{u.target}: {u.message}" for u in unreachable)
    message = f"no routed host could be reached ({skipped}){_beyond_text(beyond)}"
    raise ProbeError("connect", None, message)


def _route(run: smtp._Run, plan: OutboundDecision, domain: str) -> list[SmartHost]:
    """The route's hosts, as the engine finds them; a failure is the probe's error."""
    try:
        return smtp._targets(run, plan)
    except _ROUTE_ERRORS as exc:
        raise _route_error(exc, domain, run.clock.seconds) from None


_ROUTE_ERRORS = (smtp._DeadlinePassed, smtp._RouteFailure, MissingDependency)


def _route_error(exc: Exception, domain: str, deadline: float) -> ProbeError:
    if isinstance(exc, smtp._RouteFailure):
        return ProbeError("resolve", domain, exc.reason.detail)
    if isinstance(exc, MissingDependency):
        message = f"looking up MX hosts needs dnspython: {PROBE_EXTRA}, or give --host"
        return ProbeError("dependency", domain, message)
    return DeadlinePassed("resolve", domain, deadline)


def resolve_mx(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, lookup: MxLookup | None = None
) -> list[str]:
    """The hosts to try for ``domain``, most preferred first (RFC 5321 section 5.1),
    exactly as a probe or a delivery finds them, within ``timeout`` seconds.

    No MX record: the domain itself (the implicit MX). A null MX (RFC 7505, one record
    whose exchange is ``.``): :class:`ProbeError`, the domain accepts no mail. Hosts of
    equal preference are ordered by name, so a probe is repeatable (an MTA would
    shuffle them).
    """
    try:
        return smtp._mx_hosts(domain, lookup, smtp._Clock.start(timeout), timeout)
    except _ROUTE_ERRORS as exc:
        raise _route_error(exc, domain, timeout) from None
