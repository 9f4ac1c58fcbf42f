"""The outbound probe, an edge: connect to a partner's mail server, EHLO, STARTTLS,
collect the certificate chain it presents and judge it with the policy (section 6).

EOP's ``Validate-OutboundConnector`` counterpart. It sends no mail: after STARTTLS and
the second EHLO it says QUIT. Every step has a time-out, the whole probe (MX lookup,
every host, every address, every step) one overall deadline; every reply is bounded, and
so is the number of hosts and addresses tried.

The probe never verifies a certificate during the handshake: it accepts whatever the
server presents and hands the whole chain to :func:`~tlsconnector.evaluate_outbound`,
so the verdict is exactly the one a delivery would get. Python 3.11's ``ssl`` module
shows only the peer's leaf, so the TLS side uses pyOpenSSL (``get_peer_cert_chain``);
the MX lookup uses dnspython. Both are optional (``tlsconnector[probe]``) and imported
only when a probe runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib
import selectors
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import attrs
from cryptography import x509

from tlsconnector._chains import MAX_CHAIN_CERTIFICATES, PresentedChain
from tlsconnector._decisions import OutboundAction, OutboundDecision, RouteKind, printable
from tlsconnector._errors import InvalidValue, TLSConnectorError
from tlsconnector._facts import ConnectionAttempt, OutboundSession, TLSFacts, UndecodableCertificate
from tlsconnector._model import Policy, SmartHost
from tlsconnector._names import canonical_domain
from tlsconnector._outbound import evaluate_outbound, plan_outbound

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "MAX_DEADLINE",
    "MAX_HOSTS",
    "MAX_HOST_ADDRESSES",
    "SMTP_PORT",
    "CertificateSummary",
    "DeadlinePassed",
    "MxLookup",
    "ProbeError",
    "ProbeReport",
    "ProbeResult",
    "Unreachable",
    "probe_server",
    "resolve_mx",
    "run_probe",
]

#: Seconds allowed for each step: connecting, each reply, the TLS handshake.
DEFAULT_TIMEOUT = 30.0
#: RFC 5321 section 4.5.3.2 allows minutes per reply; a probe should not wait that long.
MAX_TIMEOUT = 600.0
#: Seconds allowed for the whole probe: the MX lookup, every host, every address, every
#: step. Each step waits at most min(step time-out, time left), so neither many hosts
#: nor a server answering each step just in time keeps a probe busy longer.
DEFAULT_DEADLINE = 120.0
MAX_DEADLINE = 600.0
SMTP_PORT = 25
#: Bounds on what a hostile server can make the probe hold (section 8).
MAX_REPLY_LINE_BYTES = 4096
MAX_REPLY_LINES = 100
#: One reply, all its lines: 100 lines of RFC 5321's 512 octets fit (section 4.5.3.1.5).
MAX_REPLY_BYTES = 65536
#: Routed hosts tried (smart hosts, or MX hosts in preference order); the rest are not.
MAX_HOSTS = 10
#: Addresses tried per host (its A/AAAA answers, in the resolver's order), as Postfix's
#: smtp_mx_address_limit (5) bounds the addresses its SMTP client tries.
MAX_HOST_ADDRESSES = 5
PROBE_EXTRA = "pip install 'tlsconnector[probe]'"

T = TypeVar("T")


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
    if not beyond:
        return ""
    hosts = "host" if beyond == 1 else "hosts"
    return f"; {beyond} more routed {hosts} not tried (at most {MAX_HOSTS} are tried)"


@attrs.frozen
class _Clock:
    """The probe's overall deadline, on the monotonic clock."""

    #: The deadline as given, in seconds (for messages).
    seconds: float
    #: ``time.monotonic()`` when it passes.
    until: float

    @classmethod
    def start(cls, seconds: float) -> _Clock:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.until - time.monotonic()

    def step_end(self, timeout: float) -> float:
        """When a step starting now must end: its time-out, or the deadline if sooner."""
        return min(time.monotonic() + timeout, self.until)

    def timed_out(self, stage: str, target: str, end: float, timeout: float) -> ProbeError:
        """The error for a step that ended at ``end`` without completing."""
        if end >= self.until:
            return DeadlinePassed(stage, target, self.seconds)
        return ProbeError(stage, target, f"timed out after {timeout:g} s")


@attrs.frozen
class CertificateSummary:
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

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class ProbeResult:
    """What one SMTP server showed: greeting, STARTTLS, the chain it presented."""

    #: The host and port connected to, as routed (a host name, or an IP literal).
    target: SmartHost
    #: The IP address the connection reached.
    address: str
    greeting: str
    #: ``offered`` and used, ``not-offered`` in the EHLO reply, or ``refused`` (the
    #: server offered STARTTLS but did not answer 220 to it).
    starttls: str
    #: None: no TLS (the attempt's ``tls: null``); else the presented chain.
    tls: TLSFacts | None
    chain: tuple[bytes, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def attempt(self) -> ConnectionAttempt:
        return ConnectionAttempt(self.tls)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.target.host,
            "port": self.target.port or SMTP_PORT,
            "address": self.address,
            "greeting": self.greeting,
            "starttls": self.starttls,
            "tls": (
                None if self.tls is None else {"version": self.tls_version, "cipher": self.cipher}
            ),
            "chain": [CertificateSummary.from_der(der).to_json() for der in self.chain],
            "chain_pem": "".join(ssl.DER_cert_to_PEM_cert(der) for der in self.chain) or None,
            "notes": list(self.notes),
        }


@attrs.frozen
class Unreachable:
    """A routed host the probe could not connect to (it went on to the next one)."""

    target: SmartHost
    message: str

    def to_json(self) -> dict[str, Any]:
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


#: Looks up a domain's MX records: ``(preference, exchange)`` pairs, an empty list
#: when the domain exists but has no MX; raises :class:`ProbeError` otherwise.
MxLookup = Callable[[str, float], Sequence[tuple[int, str]]]


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
    hosts and MX routes look up the recipient domain's MX (dnspython, or ``mx_lookup``).
    Hosts are tried in route order, at most :data:`MAX_HOSTS`; one that refuses the
    connection is skipped (as an MTA would); the first that answers is probed. Each step
    waits at most ``timeout`` seconds, the whole probe at most ``deadline`` seconds.
    Raises :class:`ProbeError` when nothing could be probed (:class:`DeadlinePassed`
    when the deadline passed first) and :class:`~tlsconnector.FactsError` for a bad
    recipient.
    """
    _check_timeout(timeout)
    _check_deadline(deadline)
    clock = _Clock.start(deadline)
    session = OutboundSession.create(recipient=recipient, at=at, connector=connector)
    plan = plan_outbound(policy, session.recipient_domain, named=connector)
    if plan.route is None:  # the named connector is unavailable: defer, no connection
        return ProbeReport(plan, None)
    openssl = _load_openssl()
    if host is not None:
        targets = [host]
    elif plan.route.kind is RouteKind.SMART_HOST:
        targets = [SmartHost.parse(text) for text in plan.route.hosts]
    else:
        domain = session.recipient_domain
        wait = min(timeout, clock.left())
        if wait <= 0:
            raise DeadlinePassed("resolve", domain, deadline)
        try:
            names = resolve_mx(domain, timeout=wait, lookup=mx_lookup)
        except ProbeError:
            if clock.left() <= 0:
                raise DeadlinePassed("resolve", domain, deadline) from None
            raise
        targets = [SmartHost(name) for name in names]
    tried, beyond = targets[:MAX_HOSTS], len(targets) - MAX_HOSTS
    unreachable: list[Unreachable] = []
    for index, target in enumerate(tried):
        if clock.left() <= 0:
            raise DeadlinePassed(
                "connect",
                None,
                deadline,
                skipped=unreachable,
                not_tried=tried[index:],
                beyond=max(beyond, 0),
            )
        try:
            result = _probe_one(target, timeout, clock, helo, openssl)
        except DeadlinePassed as exc:
            raise DeadlinePassed(
                exc.stage,
                exc.target,
                deadline,
                skipped=unreachable,
                not_tried=tried[index + 1 :],
                beyond=max(beyond, 0),
            ) from None
        except ProbeError as exc:
            if exc.stage != "connect":
                raise
            unreachable.append(Unreachable(target, exc.message))
            continue
        peer_host = str(target) if len(str(target)) <= 255 else target.host
        judged = OutboundSession.create(
            recipient=recipient,
            at=at,
            connector=connector,
            peer_host=peer_host,
            attempt=result.attempt,
        )
        return ProbeReport(evaluate_outbound(policy, judged), result, tuple(unreachable))
    if len(unreachable) == 1:
        only = unreachable[0]
        raise ProbeError("connect", str(only.target), only.message)
    skipped = "; ".join(f"{u.target}: {u.message}" for u in unreachable)
    message = f"no routed host could be reached ({skipped}){_beyond_text(max(beyond, 0))}"
    raise ProbeError("connect", None, message)


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {timeout!r}"
        )


def _check_deadline(deadline: float) -> None:
    if not 0 < deadline <= MAX_DEADLINE:
        raise ValueError(
            f"deadline must be more than 0 and at most {MAX_DEADLINE:g} seconds, not {deadline!r}"
        )


def _load_openssl() -> ModuleType:
    try:
        return importlib.import_module("OpenSSL.SSL")
    except ImportError:
        raise ProbeError(
            "dependency",
            None,
            "the probe needs pyOpenSSL to see the whole certificate chain a server "
            f"presents: {PROBE_EXTRA}",
        ) from None


# -- MX lookup (RFC 5321 section 5.1) ------------------------------------------------


def resolve_mx(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, lookup: MxLookup | None = None
) -> list[str]:
    """The hosts to try for ``domain``, most preferred first (RFC 5321 section 5.1).

    No MX record: the domain itself (the implicit MX). A null MX (RFC 7505, one record
    whose exchange is ``.``): :class:`ProbeError`, the domain accepts no mail. Hosts of
    equal preference are ordered by name, so a probe is repeatable (an MTA would
    shuffle them).
    """
    records = (lookup or _dnspython_lookup)(domain, timeout)
    hosts = sorted((preference, exchange.rstrip(".").lower()) for preference, exchange in records)
    if not hosts:
        return [domain]
    if len(hosts) == 1 and hosts[0][1] == "":
        raise ProbeError("resolve", domain, "publishes a null MX (RFC 7505): it accepts no mail")
    names: list[str] = []
    for _, name in hosts:
        try:
            canonical = canonical_domain(name)
        except InvalidValue:
            continue  # not a usable host name; an MTA would skip it too
        if canonical not in names:
            names.append(canonical)
    if not names:
        raise ProbeError("resolve", domain, "no usable MX host name")
    return names


def _dnspython_lookup(domain: str, timeout: float) -> list[tuple[int, str]]:
    try:
        resolver = importlib.import_module("dns.resolver")
        exception = importlib.import_module("dns.exception")
    except ImportError:
        raise ProbeError(
            "dependency",
            domain,
            f"looking up MX hosts needs dnspython: {PROBE_EXTRA}, or give --host",
        ) from None
    try:
        answer = resolver.resolve(domain, "MX", lifetime=timeout)
    except resolver.NoAnswer:
        return []  # the domain exists without MX: the implicit MX is the domain itself
    except resolver.NXDOMAIN:
        raise ProbeError("resolve", domain, "the domain does not exist (NXDOMAIN)") from None
    except exception.DNSException as exc:
        raise ProbeError("resolve", domain, f"MX lookup failed: {exc}") from None
    return [(int(record.preference), str(record.exchange)) for record in answer]


# -- The SMTP dialogue ---------------------------------------------------------------


def probe_server(
    target: SmartHost,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    helo: str = "localhost",
    openssl: ModuleType | None = None,
) -> ProbeResult:
    """Connect to one server, EHLO, STARTTLS when offered, EHLO again, QUIT.

    The handshake accepts any certificate (no verification): the chain is collected
    for tlsconnector to judge. Each step waits at most ``timeout`` seconds, the whole
    at most ``deadline`` seconds. Raises :class:`ProbeError` naming the failed stage
    (:class:`DeadlinePassed` when the deadline passed first).
    """
    _check_timeout(timeout)
    _check_deadline(deadline)
    clock = _Clock.start(deadline)
    return _probe_one(target, timeout, clock, helo, openssl)


def _probe_one(
    target: SmartHost, timeout: float, clock: _Clock, helo: str, openssl: ModuleType | None
) -> ProbeResult:
    if not 0 < len(helo) <= 255 or not all("!" <= c <= "~" for c in helo):
        raise ValueError(f"helo must be 1 to 255 printable ASCII characters, not {helo!r}")
    ssl_module = openssl if openssl is not None else _load_openssl()
    sock = _connect(target, timeout, clock)
    with sock:
        wire = _Wire(sock, timeout, clock, str(target), ssl_module)
        return wire.dialogue(target, helo)


def _connect(target: SmartHost, timeout: float, clock: _Clock) -> socket.socket:
    """A TCP connection to the first of the host's addresses (at most
    :data:`MAX_HOST_ADDRESSES`) that accepts; each attempt waits at most the step
    time-out or the time left."""
    name = str(target)
    port = target.port or SMTP_PORT
    addresses = _addresses(target.host, port, timeout, clock, name)
    errors: list[OSError] = []
    for family, address in addresses[:MAX_HOST_ADDRESSES]:
        end = clock.step_end(timeout)
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise clock.timed_out("connect", name, end, timeout)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError) and end >= clock.until:
                raise DeadlinePassed("connect", name, clock.seconds) from None
            errors.append(exc)
            continue
        return sock
    message = f"cannot connect: {_os_error(errors[0])}"
    if len(addresses) > 1:
        message += f" (first of {len(errors)} addresses tried"
        if len(addresses) > MAX_HOST_ADDRESSES:
            message += (
                f"; {len(addresses) - MAX_HOST_ADDRESSES} more not tried, "
                f"at most {MAX_HOST_ADDRESSES} are"
            )
        message += ")"
    raise ProbeError("connect", name, message)


def _addresses(
    host: str, port: int, timeout: float, clock: _Clock, name: str
) -> list[tuple[int, Any]]:
    """The host's addresses, each once, in the resolver's order (RFC 6724 sorting).

    The system resolver cannot be given a time-out, so a host name is resolved in a
    daemon thread waited for at most the step time-out or the time left; a resolver
    that answers later is abandoned (its thread ends with the resolver's own time-outs).
    """
    end = clock.step_end(timeout)
    answer: list[list[Any] | OSError] = []

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    if _is_ip(host):
        resolve()  # an address literal: nothing to look up
    else:
        worker = threading.Thread(target=resolve, name="tlsconnector-probe-resolve", daemon=True)
        worker.start()
        worker.join(max(end - time.monotonic(), 0))
    if not answer:
        if end >= clock.until:
            raise DeadlinePassed("connect", name, clock.seconds)
        message = f"cannot connect: resolving the name timed out after {timeout:g} s"
        raise ProbeError("connect", name, message)
    found = answer[0]
    if isinstance(found, OSError):
        raise ProbeError("connect", name, f"cannot connect: {_os_error(found)}")
    seen: set[tuple[int, Any]] = set()
    addresses: list[tuple[int, Any]] = []
    for family, _, _, _, address in found:
        if (family, address) not in seen:
            seen.add((family, address))
            addresses.append((family, address))
    if not addresses:
        raise ProbeError("connect", name, "cannot connect: the host has no address")
    return addresses


def _os_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


class _Wire:
    """One SMTP client connection: non-blocking socket; every step ends at its time-out
    or the probe's deadline, whichever comes first."""

    def __init__(
        self, sock: socket.socket, timeout: float, clock: _Clock, name: str, openssl: ModuleType
    ):
        self.sock = sock
        self.timeout = timeout
        self.clock = clock
        self.name = name
        self.SSL = openssl
        self.tls: Any = None  # an OpenSSL.SSL.Connection after STARTTLS
        self.buffer = b""
        self.notes: list[str] = []
        sock.setblocking(False)

    def dialogue(self, target: SmartHost, helo: str) -> ProbeResult:
        address = str(self.sock.getpeername()[0])
        code, lines = self.reply("greeting")
        greeting = f"{code} {lines[0]}"
        if code != 220:
            raise ProbeError("greeting", self.name, f"the server refused the session: {greeting}")
        offered = self.hello(helo)
        facts: TLSFacts | None = None
        state = "not-offered"
        chain: tuple[bytes, ...] = ()
        version = cipher = None
        if offered:
            self.send("STARTTLS")
            code, lines = self.reply("starttls")
            if code != 220:
                # RFC 3207 section 4: 454 "TLS not available"; the attempt has no TLS.
                state = "refused"
                self.notes.append(f"STARTTLS was offered but answered {code} {lines[0]}")
            else:
                state = "offered"
                if self.buffer:
                    # Anything sent before the handshake is not protected: drop it
                    # (the STARTTLS command injection problem, CVE-2011-0411).
                    self.notes.append("the server sent data after its 220 to STARTTLS: ignored")
                    self.buffer = b""
                chain, version, cipher = self.handshake(target)
                facts = TLSFacts(_certificate_facts(chain))
                self.after_tls(helo)
        self.quit()
        return ProbeResult(
            target=target,
            address=address,
            greeting=printable(greeting, 300),
            starttls=state,
            tls=facts,
            chain=chain,
            tls_version=version,
            cipher=cipher,
            notes=tuple(self.notes),
        )

    def hello(self, helo: str) -> bool:
        """EHLO (HELO when EHLO is refused); True when STARTTLS is offered."""
        self.send(f"EHLO {helo}")
        code, lines = self.reply("ehlo")
        if code == 250:
            return any(line.split()[:1] == ["STARTTLS"] for line in (x.upper() for x in lines[1:]))
        self.notes.append(f"EHLO was refused ({code} {lines[0]}): no ESMTP, so no STARTTLS")
        self.send(f"HELO {helo}")
        code, lines = self.reply("ehlo")
        if code != 250:
            raise ProbeError("ehlo", self.name, f"the server refused HELO: {code} {lines[0]}")
        return False

    def handshake(self, target: SmartHost) -> tuple[tuple[bytes, ...], str | None, str | None]:
        SSL = self.SSL
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        # Accept any certificate: tlsconnector judges the chain afterwards (section 6).
        context.set_verify(SSL.VERIFY_NONE)
        connection = SSL.Connection(context, self.sock)
        if not _is_ip(target.host):
            connection.set_tlsext_host_name(target.host.encode("ascii"))  # SNI, RFC 6066
        connection.set_connect_state()
        self.tls = connection
        try:
            self.io(connection.do_handshake, "tls-handshake", self.clock.step_end(self.timeout))
        except SSL.Error as exc:
            raise ProbeError(
                "tls-handshake", self.name, f"the TLS handshake failed: {_ssl_error(exc)}"
            ) from None
        crypto = importlib.import_module("OpenSSL.crypto")
        presented = connection.get_peer_cert_chain() or []
        chain = tuple(
            bytes(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))
            for cert in presented[: MAX_CHAIN_CERTIFICATES + 1]
        )
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name()
        return chain, version, cipher

    def after_tls(self, helo: str) -> None:
        """RFC 3207 section 4.2: forget what was learnt in plaintext, EHLO again."""
        try:
            self.send(f"EHLO {helo}")
            code, lines = self.reply("ehlo")
        except DeadlinePassed:
            raise  # the probe ran out of time before it finished: no verdict
        except ProbeError as exc:
            self.notes.append(f"EHLO after STARTTLS failed: {exc.message}")
            return
        if code != 250:
            self.notes.append(f"EHLO after STARTTLS was answered {code} {lines[0]}")

    def quit(self) -> None:
        """Best effort: the verdict does not depend on how the server says goodbye."""
        with contextlib.suppress(ProbeError):
            self.send("QUIT")
            self.reply("quit")
        if self.tls is not None:
            with contextlib.suppress(self.SSL.Error, OSError):
                self.tls.shutdown()

    # -- bounded, deadline-driven I/O

    def io(self, operation: Callable[[], T], stage: str, end: float) -> T:
        """Run a non-blocking operation until it completes or the step's end."""
        while True:
            try:
                return operation()
            except (BlockingIOError, self.SSL.WantReadError):
                self.wait(selectors.EVENT_READ, end, stage)
            except self.SSL.WantWriteError:
                self.wait(selectors.EVENT_WRITE, end, stage)

    def wait(self, event: int, end: float, stage: str) -> None:
        remaining = end - time.monotonic()
        if remaining > 0:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, event)
                if selector.select(remaining):
                    return
        raise self.clock.timed_out(stage, self.name, end, self.timeout)

    def send(self, line: str) -> None:
        data = line.encode("ascii") + b"\r\n"
        verb = line.split(" ", 1)[0].lower()
        stage = "ehlo" if verb == "helo" else verb
        end = self.clock.step_end(self.timeout)
        while data:
            try:
                sent = self.io(functools.partial(self._send_some, data), stage, end)
            except (OSError, self.SSL.Error) as exc:
                raise ProbeError(stage, self.name, f"connection lost: {_any_error(exc)}") from None
            data = data[sent:]

    def _send_some(self, data: bytes) -> int:
        if self.tls is not None:
            return int(self.tls.send(data))
        return self.sock.send(data)

    def _recv_some(self) -> bytes:
        if self.tls is not None:
            try:
                return bytes(self.tls.recv(4096))
            except self.SSL.ZeroReturnError:
                return b""
        return self.sock.recv(4096)

    def reply(self, stage: str) -> tuple[int, list[str]]:
        """One SMTP reply (RFC 5321 section 4.2): its code and the text of each line.

        The whole reply, every line of it, must arrive within the step's time (its
        time-out or the time left) and within :data:`MAX_REPLY_LINES` lines and
        :data:`MAX_REPLY_BYTES` bytes."""
        end = self.clock.step_end(self.timeout)
        lines: list[str] = []
        size = 0
        while True:
            raw = self._line(stage, end)
            if len(raw) < 3 or not raw[:3].isdigit() or raw[3:4] not in (b"", b" ", b"-"):
                shown = printable(raw.decode("ascii", "replace"), 80)
                raise ProbeError(stage, self.name, f"not an SMTP reply: {shown!r}")
            lines.append(printable(raw[4:].decode("ascii", "replace"), 300))
            if raw[3:4] != b"-":
                return int(raw[:3]), lines
            size += len(raw) + 2  # with its CRLF
            if size > MAX_REPLY_BYTES:
                raise ProbeError(stage, self.name, f"a reply of more than {MAX_REPLY_BYTES} bytes")
            if len(lines) >= MAX_REPLY_LINES:
                raise ProbeError(stage, self.name, f"a reply of more than {MAX_REPLY_LINES} lines")

    def _line(self, stage: str, end: float) -> bytes:
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line, self.buffer = self.buffer[:newline], self.buffer[newline + 1 :]
                if len(line) > MAX_REPLY_LINE_BYTES:
                    break
                return line.rstrip(b"\r")
            if len(self.buffer) > MAX_REPLY_LINE_BYTES:
                break
            try:
                chunk = self.io(self._recv_some, stage, end)
            except (OSError, self.SSL.Error) as exc:
                raise ProbeError(stage, self.name, f"connection lost: {_any_error(exc)}") from None
            if not chunk:
                raise ProbeError(stage, self.name, "the server closed the connection")
            self.buffer += chunk
        raise ProbeError(stage, self.name, f"a reply line longer than {MAX_REPLY_LINE_BYTES} bytes")


def _certificate_facts(
    chain: Sequence[bytes],
) -> PresentedChain | UndecodableCertificate | None:
    """The outbound facts for a presented chain: undecodable is a verdict of its own
    (``validation-failure``, section 7), never a crash."""
    if not chain:
        return None
    try:
        return PresentedChain.from_der(list(chain))
    except InvalidValue as exc:
        return UndecodableCertificate(exc.reason)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _ssl_error(exc: Exception) -> str:
    """pyOpenSSL errors carry a list of (library, function, reason) tuples."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return printable("; ".join(str(item[-1]) for item in args), 300)
    if isinstance(exc.args, tuple) and len(exc.args) == 2 and isinstance(exc.args[1], str):
        return printable(exc.args[1], 300)  # SysCallError: (errno, text)
    return printable(str(exc) or type(exc).__name__, 300)


def _any_error(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return _os_error(exc)
    return _ssl_error(exc)
