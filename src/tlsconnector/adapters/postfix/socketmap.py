"""``tlsconnector serve postfix-outbound``: the socketmap service that makes Postfix obey
outbound connectors by pinning (spec section 10; an edge: sockets, clock, threads).

The maps and the pins are pure code in :mod:`tlsconnector.adapters.postfix.outbound`;
this module owns the listening socket (TCP or a Unix socket), the connections, the
probes (:class:`Prober`, which uses :func:`tlsconnector.adapters.smtp.check_host` on
every host and address of a next hop), the background refresh of pins, SIGHUP reload
and the log.

Every line on standard error is one JSON object (the :class:`JsonLog` of ``serve
postfix``) with ``time``, ``event`` and ``pid``. Events: ``listening`` (ready;
carries ``address``), ``answer`` (one per lookup: ``map``, ``key``, ``answer``,
``text``, ``connector``, ``next_hop``, ``codes``, ``source``), ``probe`` (one per
probe: ``next_hop``, ``pins``, ``failures``), ``refresh-failed``, ``policy-invalid``,
``connector-not-served``, ``mx-lookups-unavailable``, ``reload``, ``reload-failed``,
``protocol-error``, ``connection-error``, ``idle-timeout``, ``too-many-connections``,
``too-many-connections-per-client``, ``stopping``, ``stopped``, ``error``. The events a
peer can cause at will are rate-limited as in ``serve postfix``; answer lines never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import importlib
import importlib.util
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import attrs

from tlsconnector._errors import PolicyError, printable, show
from tlsconnector._model import OutboundConnector, Policy, SmartHost, is_ip_address
from tlsconnector._names import canonical_domain
from tlsconnector.adapters.postfix._service import (
    STOP_GRACE,
    ConnectionSlots,
    PidFile,
    StartupError,
    Unservable,
    bind_endpoint,
    peer_of,
    reload_policy,
    remove_socket,
    run_service,
    serve_until_stopped,
)
from tlsconnector.adapters.postfix.outbound import (
    DEFAULT_PIN_LIFETIME,
    DEFAULT_TRANSPORT,
    MAX_REASON_CHARS,
    AnswerKind,
    HopKind,
    HopLookup,
    MapAnswer,
    MapsError,
    NetstringDecoder,
    NextHop,
    OutboundMaps,
    PinCache,
    PinEntry,
    Probe,
    parse_request,
    pins_from_attempts,
)
from tlsconnector.adapters.postfix.server import (
    DEFAULT_IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_CLIENT,
    JsonLog,
)
from tlsconnector.adapters.smtp import HostAttempt, check_host, system_addresses
from tlsconnector.policy_file.loading import load_policy

__all__ = [
    "DEFAULT_PROBE_DEADLINE",
    "MAX_CONCURRENT_PROBES",
    "OutboundServeConfig",
    "OutboundService",
    "Prober",
    "serve_postfix_outbound",
]

#: Seconds one probe of a next hop may take in all (every host and address). Postfix's
#: socketmap client waits 100 s for an answer; the probe must end well before.
DEFAULT_PROBE_DEADLINE = 60.0
MAX_PROBE_DEADLINE = 90.0
#: Seconds each step of one connection may take (connect, each reply, the handshake).
PROBE_STEP_TIMEOUT = 10.0
#: Next hops probed at once (each a thread), for lookups and refreshes together.
MAX_CONCURRENT_PROBES = 8
#: Connections one probe opens at once (to the hosts and addresses of one next hop).
PROBE_CONNECTIONS = 8
#: Hosts (MX hosts) and addresses per host a probe tries (as delivery does).
MAX_PROBE_HOSTS = 10
MAX_PROBE_ADDRESSES = 5
#: A failed probe's TEMP answer is repeated for this long without probing again.
FAILED_PROBE_SECONDS = 30.0
#: Bytes read from a connection at a time (a request is at most MAX_REQUEST_BYTES).
READ_BYTES = 4096
#: The recipient the probe judges for: the connector is named, so only its settings
#: matter, never this address.
PROBE_RECIPIENT = "postmaster@tlsconnector.invalid"
#: What HELO the probe sends.
PROBE_HELO = "localhost"

EXIT_OK = 0
EXIT_USAGE = 2

_T = TypeVar("_T")
MxLookup = Callable[[str, float], Sequence[tuple[int, str]]]
AddressLookup = Callable[[str, float], Sequence[str]]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class OutboundServeConfig:
    """What ``tlsconnector serve postfix-outbound`` was asked to do. ``unix_path`` set:
    listen on that Unix socket; else on ``host``:``port``."""

    policy_path: Path
    host: str = "127.0.0.1"
    port: int = 10041
    unix_path: str | None = None
    pin_lifetime: float = DEFAULT_PIN_LIFETIME
    probe_deadline: float = DEFAULT_PROBE_DEADLINE
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT
    transport: str = DEFAULT_TRANSPORT
    #: ``--socket-mode`` and ``--socket-owner`` (uid, gid; -1 unchanged) of the Unix socket.
    socket_mode: int | None = None
    socket_owner: tuple[int, int] | None = None
    #: ``--pidfile``: written once listening, removed at exit.
    pidfile: Path | None = None


# -- probing ------------------------------------------------------------------------------


def _in_thread(function: Callable[[], _T], *, name: str) -> asyncio.Future[_T]:
    """Run a blocking ``function`` in a daemon thread (a stopping service never waits
    for a probe) and give its result to the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _dnspython_mx(domain: str, timeout: float) -> list[tuple[int, str]]:
    """MX records by dnspython (the ``probe`` extra); an empty list: no MX record."""
    try:
        resolver = importlib.import_module("dns.resolver")
    except ImportError:
        raise LookupError(
            "looking up MX hosts needs dnspython: pip install 'tlsconnector[probe]'"
        ) from None
    try:
        answer = resolver.resolve(domain, "MX", lifetime=timeout)
    except resolver.NoAnswer:
        return []  # the implicit MX (RFC 5321 section 5.1)
    except Exception as exc:
        raise LookupError(f"MX lookup of {domain} failed: {type(exc).__name__}: {exc}") from None
    return [(int(record.preference), str(record.exchange)) for record in answer]


class Prober:
    """Probes a next hop the way Postfix will reach it, and judges every chain.

    A ``[host]:port`` next hop is that host; a domain next hop is its MX hosts (most
    preferred first, at most :data:`MAX_PROBE_HOSTS`; the domain itself when it has no
    MX record). Every address of every host (at most :data:`MAX_PROBE_ADDRESSES` each)
    gets its own connection through :func:`tlsconnector.adapters.smtp.check_host` with
    SNI = the host name: EHLO, STARTTLS, the presented chain judged by
    ``evaluate_outbound`` for the connector, QUIT. Blocking: the service runs it in a
    thread. ``port`` replaces port 25 of MX hosts (tests); ``mx_lookup`` and
    ``address_lookup`` replace DNS (dnspython) and the system resolver
    (:func:`tlsconnector.adapters.smtp.system_addresses`).
    """

    def __init__(
        self,
        *,
        deadline: float = DEFAULT_PROBE_DEADLINE,
        timeout: float = PROBE_STEP_TIMEOUT,
        port: int | None = None,
        mx_lookup: MxLookup | None = None,
        address_lookup: AddressLookup | None = None,
    ) -> None:
        self.deadline = deadline
        self.timeout = timeout
        self.port = port
        self.mx_lookup = mx_lookup or _dnspython_mx
        self.address_lookup = address_lookup or system_addresses

    def probe(
        self, policy: Policy, connector: OutboundConnector, hop: NextHop, *, at: dt.datetime
    ) -> Probe:
        end = time.monotonic() + self.deadline
        failures: list[str] = []
        codes: list[str] = []
        targets: list[tuple[SmartHost, str]] = []
        if hop.kind is HopKind.HOST:
            hosts = [hop.host]
            port = hop.port
        else:
            port = self.port or hop.port
            try:
                hosts = self._mx_hosts(hop.host, min(self.timeout, self.deadline))
            except LookupError as exc:
                text = printable(str(exc), 300)
                return Probe((), (f"{hop}: {text}",), ("mx-lookup-failed",))
        for host in hosts[:MAX_PROBE_HOSTS]:
            if is_ip_address(host):
                addresses = [host]
            else:
                try:
                    left = max(0.001, min(self.timeout, end - time.monotonic()))
                    addresses = list(dict.fromkeys(str(a) for a in self.address_lookup(host, left)))
                except OSError as exc:
                    failures.append(f"{host}: cannot resolve: {printable(str(exc), 200)}")
                    codes.append("connection-failed")
                    continue
                if not addresses:
                    failures.append(f"{host}: has no address")
                    codes.append("connection-failed")
            targets.extend((SmartHost(host, port), a) for a in addresses[:MAX_PROBE_ADDRESSES])
        attempts: list[HostAttempt | None] = [None] * len(targets)

        def check(index: int) -> None:
            target, address = targets[index]
            left = end - time.monotonic()
            if left <= 0:
                return
            attempts[index] = check_host(
                policy,
                PROBE_RECIPIENT,
                target,
                at=at,
                connector=connector.name,
                helo=PROBE_HELO,
                timeout=min(self.timeout, left),
                deadline=left,
                address_lookup=lambda _name, _seconds, address=address: [address],  # type: ignore[misc]
            )

        errors: list[BaseException] = []
        for start in range(0, len(targets), PROBE_CONNECTIONS):
            workers = []
            for index in range(start, min(start + PROBE_CONNECTIONS, len(targets))):

                def run(index: int = index) -> None:
                    try:
                        check(index)
                    except BaseException as exc:  # reported below: an internal error
                        errors.append(exc)

                worker = threading.Thread(target=run, name="tlsconnector-probe", daemon=True)
                worker.start()
                workers.append(worker)
            for worker in workers:
                worker.join(max(0.0, end - time.monotonic()) + 1.0)
        if errors:
            raise errors[0]
        done = []
        for (target, address), attempt in zip(targets, attempts, strict=True):
            if attempt is None:
                failures.append(
                    f"{target} ({address}): deadline-passed: the probe's deadline of "
                    f"{self.deadline:g} s passed first"
                )
                codes.append("deadline-passed")
            else:
                done.append(attempt)
        judged = pins_from_attempts(done, policy=policy, at=at)
        return Probe(
            judged.pins,
            (*judged.failures, *failures),
            tuple(dict.fromkeys((*judged.codes, *codes))),
        )

    def _mx_hosts(self, domain: str, timeout: float) -> list[str]:
        try:
            records = sorted(
                (int(pref), str(name).rstrip(".").lower())
                for pref, name in self.mx_lookup(domain, timeout)
            )
        except LookupError:
            raise
        except Exception as exc:  # never "no MX": a failed lookup is a failure
            raise LookupError(f"MX lookup of {domain} failed: {type(exc).__name__}") from None
        if not records:
            return [domain]
        if len(records) == 1 and records[0][1] == "":
            raise LookupError(f"{domain} publishes a null MX (RFC 7505): it accepts no mail")
        names: list[str] = []
        for _, name in records:
            with contextlib.suppress(Exception):
                canonical = canonical_domain(name)
                if canonical not in names:
                    names.append(canonical)
        if not names:
            raise LookupError(f"{domain} has no usable MX host name")
        return names


# -- the service --------------------------------------------------------------------------


def served_warnings(policy: Policy) -> list[dict[str, Any]]:
    """``connector-not-served`` lines: connectors Postfix cannot reach through this
    service (transport-rule scoped or in test mode: Postfix cannot name a connector)."""
    lines = []
    for connector in policy.outbound:
        if connector.enabled and not connector.selectable_by_domain:
            why = "transport-rule scoped" if connector.is_transport_rule_scoped else "in test mode"
            lines.append(
                {
                    "connector": connector.name,
                    "message": f"outbound connector {show(connector.name)} is {why}: the "
                    "Postfix maps choose connectors by recipient domain only, so no mail "
                    "is routed through it",
                }
            )
    return lines


def _mx_warning(policy: Policy) -> dict[str, Any] | None:
    needs = [
        c.name
        for c in policy.outbound
        if c.selectable_by_domain and c.use_mx_record and c.tls_settings.validates_chain
    ]
    if not needs or importlib.util.find_spec("dns") is not None:
        return None
    return {
        "connectors": needs[:20],
        "message": "dnspython is not installed (pip install 'tlsconnector[probe]'): next hops "
        "of connectors routed by MX cannot be probed, so their TLS lookups answer TEMP "
        "and their mail is deferred",
    }


class OutboundService:
    """Answers Postfix's socketmap lookups for one policy, in one event loop.

    ``lookup`` never raises and never fails open: any error while deciding is a TEMP
    answer. Probes of one next hop are shared by every lookup waiting for it; at most
    :data:`MAX_CONCURRENT_PROBES` run at once. Connections are bounded in all and per
    client address, requests in size (a longer one, or bytes that are not netstrings,
    close the connection), and each connection must send a whole request within the
    idle timeout.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        policy_path: Path,
        log: JsonLog,
        prober: Prober | None = None,
        pin_lifetime: float = DEFAULT_PIN_LIFETIME,
        transport: str = DEFAULT_TRANSPORT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.transport = transport
        self.maps = OutboundMaps.build(policy, transport=transport)  # MapsError
        self.policy_path = policy_path
        self.log = log
        self.prober = prober or Prober()
        self.cache = PinCache(lifetime=pin_lifetime, failure_seconds=FAILED_PROBE_SECONDS)
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.clock = clock
        self.refresh_every = max(1.0, min(30.0, pin_lifetime / 8))
        self._inflight: dict[NextHop, asyncio.Future[MapAnswer]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._connections: ConnectionSlots[asyncio.StreamWriter] = ConnectionSlots(log)

    # -- answering ----------------------------------------------------------------------

    async def lookup(self, name: str, key: str) -> MapAnswer:
        """The answer to one lookup (never raises; an internal error is TEMP)."""
        try:
            if name == "transport":
                return self.maps.transport_answer(key)
            if name == "tlspolicy":
                return await self._tls(key)
            return MapAnswer(
                AnswerKind.PERM,
                f"unknown map name {show(name, 40)}: this service answers 'transport' and "
                "'tlspolicy'",
                codes=("unknown-map",),
            )
        except Exception as exc:  # never fail open
            return MapAnswer.temp(
                f"internal error: {type(exc).__name__}: {exc}", code="internal-error"
            )

    async def _tls(self, key: str) -> MapAnswer:
        found = self.maps.next_hop(key)
        if isinstance(found, MapAnswer):
            return found
        static = self.maps.static_answer(found)
        if static is not None:
            return static
        now = self.clock()
        entry = self.cache.get(found.hop, found.connector, now)
        if entry is not None:
            return _pinned(found, entry, "cache")
        failed = self.cache.failure(found.hop, now)
        if failed is not None:
            return attrs.evolve(failed, source="cache")
        return await self._probe(found, background=False)

    async def _probe(self, lookup: HopLookup, *, background: bool) -> MapAnswer:
        """Probe ``lookup``'s next hop once for every lookup waiting for it."""
        hop = lookup.hop
        task = self._inflight.get(hop)
        if task is None:
            task = asyncio.ensure_future(self._run_probe(lookup, background=background))
            self._inflight[hop] = task

            def done(finished: asyncio.Future[MapAnswer]) -> None:
                if self._inflight.get(hop) is finished:
                    del self._inflight[hop]

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _run_probe(self, lookup: HopLookup, *, background: bool) -> MapAnswer:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
        maps = self.maps
        policy = maps.policy
        hop, connector = lookup.hop, lookup.connector
        async with self._slots:
            at = self.clock()
            probe = await _in_thread(
                lambda: self.prober.probe(policy, connector, hop, at=at),
                name="tlsconnector-next-hop",
            )
        now = self.clock()
        self.log.emit(
            "probe",
            next_hop=str(hop),
            connector=connector.name,
            background=background,
            pins=[
                {
                    "sha256": p.sha256,
                    "host": p.host,
                    "address": p.address,
                    "not_after": p.not_after.isoformat(),
                }
                for p in probe.pins
            ],
            failures=list(probe.failures[:50]),
            codes=list(probe.codes),
        )
        if self.maps is not maps:
            current = self.maps.next_hop(str(hop))
            if not isinstance(current, HopLookup) or current.connector != connector:
                return MapAnswer.temp(
                    f"the policy was reloaded while next hop {hop} was probed; deferring",
                    code="policy-changed",
                    connector=connector.name,
                    next_hop=str(hop),
                )
        trust = policy.trust
        if probe.pins:
            entry = self.cache.store(
                hop,
                connector,
                None if trust is None else trust.key,
                probe.pins,
                now,
                used=not background,
            )
            return _pinned(lookup, entry, "probe")
        answer = MapAnswer(
            AnswerKind.TEMP,
            printable(
                f"connector {show(connector.name)} ({connector.tls_settings}): no host of next "
                f"hop {hop} presented a certificate the connector accepts: "
                + "; ".join(probe.failures or ("no host to probe",)),
                MAX_REASON_CHARS,
            ),
            connector=connector.name,
            next_hop=str(hop),
            codes=("probe-failed", *probe.codes),
            source="probe",
        )
        if background:
            self.cache.refresh_failed(hop, now)
            self.log.emit(
                "refresh-failed",
                next_hop=str(hop),
                connector=connector.name,
                message="refreshing the pins failed; the current pins stay until they expire",
            )
        else:
            self.cache.store_failure(hop, answer, now)
        return answer

    def refresh_due(self) -> int:
        """Start background probes of active next hops whose pins expire soon; how many."""
        started = 0
        running = sum(1 for task in self._background if not task.done())
        for hop, connector in self.cache.due(self.clock()):
            if running + started >= MAX_CONCURRENT_PROBES:
                break
            if hop in self._inflight:
                continue
            task = asyncio.ensure_future(self._probe(HopLookup(hop, connector), background=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            started += 1
        return started

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            try:
                self.refresh_due()
            except Exception as exc:  # the refresh must not stop
                self.log.emit("error", message=f"refresh: {type(exc).__name__}: {exc}")

    # -- reload -------------------------------------------------------------------------

    def reload(self) -> None:
        """Load the policy again; keep the current one when the new one is invalid or
        serves nothing. Pins of next hops whose connector changed are forgotten."""
        built = reload_policy(self.policy_path, self.log, self._maps_of)
        if built is None:
            return
        policy, maps = built
        before = _revocation_key(self.maps.policy)
        self.maps = maps
        if _revocation_key(policy) != before:
            # Pins were judged against the previous CRLs (or revocation setting): a
            # leaf the new CRLs revoke must be probed and judged again.
            forgotten = self.cache.forget_changed(cast("OutboundMaps", _NO_NEXT_HOPS))
        else:
            forgotten = self.cache.forget_changed(maps)
        self.log.emit(
            "reload",
            policy=str(self.policy_path),
            outbound=len(policy.outbound),
            pins_forgotten=forgotten[:100],
            message=f"policy reloaded; pins of {len(forgotten)} next hops forgotten",
        )
        for warning in served_warnings(policy):
            self.log.emit("connector-not-served", **warning)

    def _maps_of(self, policy: Policy) -> tuple[Policy, OutboundMaps]:
        try:
            return policy, OutboundMaps.build(policy, transport=self.transport)
        except MapsError as exc:
            raise Unservable(
                [str(p) for p in exc.problems],
                "the new policy cannot be served; keeping the previous policy",
            ) from None

    # -- connections --------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one Postfix connection: netstring requests in, answers out, in order."""
        peer, client = peer_of(writer.transport)
        if not self._connections.open(
            writer,
            peer,
            client,
            limit=self.max_connections,
            per_client=self.max_connections_per_client,
        ):
            writer.close()
            return
        decoder = NetstringDecoder()
        loop = asyncio.get_running_loop()
        try:
            # One idle deadline per connection, moved forward around each read and
            # each drain (a wait_for per call cost more than the answer itself); none
            # while a lookup probes a next hop (the probe has its own deadline).
            async with asyncio.timeout(None) as idle:
                while True:
                    idle.reschedule(loop.time() + self.idle_timeout)
                    data = await reader.read(READ_BYTES)
                    if not data:
                        if decoder.pending:
                            self.log.emit(
                                "protocol-error",
                                peer=peer,
                                message="connection closed in the middle of a request",
                            )
                        return
                    for payload in decoder.feed(data):
                        idle.reschedule(None)
                        answer, violation = await self._answer(payload, peer)
                        writer.write(answer.wire())
                        idle.reschedule(loop.time() + self.idle_timeout)
                        await writer.drain()
                        if violation is not None:
                            self.log.emit(
                                "protocol-error", peer=peer, message=f"{violation}; closing"
                            )
                            return
                    if decoder.error is not None:
                        self.log.emit(
                            "protocol-error",
                            peer=peer,
                            message=f"{decoder.error}; closing the connection",
                        )
                        return
        except TimeoutError:
            self.log.emit("idle-timeout", peer=peer, seconds=self.idle_timeout)
        except (ConnectionError, OSError) as exc:
            self.log.emit("connection-error", peer=peer, message=printable(str(exc), 200))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never crash the service because of one connection
            self.log.emit("error", peer=peer, message=f"{type(exc).__name__}: {exc}")
        finally:
            self._connections.close(writer)
            writer.close()

    async def _answer(self, payload: bytes, peer: str) -> tuple[MapAnswer, str | None]:
        """Answer one request and log it; a request that is not ``NAME KEY`` is
        answered TEMP and breaks the protocol (the connection closes)."""
        violation = None
        try:
            name, key = parse_request(payload)
        except ValueError as exc:
            name, key = "?", printable(payload.decode("ascii", "backslashreplace"), 300)
            violation = str(exc)
            answer = MapAnswer.temp(f"malformed request: {exc}", code="bad-request")
        else:
            answer = await self.lookup(name, key)
        self.log.emit(
            "answer",
            peer=peer,
            map=printable(name, 40),
            key=printable(key, 300),
            answer=str(answer.kind),
            text=answer.text,
            connector=answer.connector,
            next_hop=answer.next_hop,
            codes=list(answer.codes),
            source=answer.source,
        )
        return answer, violation

    async def run(self, sock: socket.socket, *, announce: Callable[[], None] | None) -> None:
        """Serve on a listening socket until SIGTERM or SIGINT; reload on SIGHUP."""
        self.log.attach(asyncio.get_running_loop())
        try:
            await self._run(sock, announce)
        finally:
            self.log.detach()

    async def _run(self, sock: socket.socket, announce: Callable[[], None] | None) -> None:
        if sock.family == socket.AF_UNIX:
            start = functools.partial(asyncio.start_unix_server, self.handle, sock=sock)
        else:
            start = functools.partial(asyncio.start_server, self.handle, sock=sock)
        refresher = asyncio.ensure_future(self._refresher())
        try:
            server = await serve_until_stopped(
                self.log,
                start=start,
                reload=self.reload,
                announce=announce,
                connections=self._connections,
            )
        finally:
            refresher.cancel()
        for writer in self._connections:
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=STOP_GRACE)
        for task in list(self._background):
            task.cancel()
        self.log.emit("stopped")


def _revocation_key(policy: Policy) -> tuple[bytes | None, str]:
    """What pins depend on beside the anchors (:attr:`PinEntry.trust_key`) and the
    connector: the CRL set's content key and the ``[trust] revocation`` setting."""
    trust = policy.trust
    return (None if trust is None else trust.crls.key, policy.revocation.value)


class _NoNextHops:
    """Stands for maps under which no next hop is known (only what
    :meth:`PinCache.forget_changed` reads): given these, it forgets every pin, which
    the cache has no other way to do."""

    policy = Policy()

    @staticmethod
    def next_hop(_: str) -> None:
        return None


_NO_NEXT_HOPS = _NoNextHops()


def _pinned(lookup: HopLookup, entry: PinEntry, source: str) -> MapAnswer:
    return MapAnswer(
        AnswerKind.OK,
        entry.answer_text(),
        connector=lookup.connector.name,
        next_hop=str(lookup.hop),
        codes=("pinned",),
        source=source,
    )


# -- starting -----------------------------------------------------------------------------


def serve_postfix_outbound(
    config: OutboundServeConfig,
    *,
    log: JsonLog,
    prober: Prober | None = None,
    errors: TextIO | None = None,
) -> int:
    """Run the service until SIGTERM/SIGINT; the exit status (0 after a clean stop, 2
    when it does not start: a policy that cannot be served, an address that cannot be
    bound, a live --pidfile; said in plain text on ``errors``, standard error)."""
    return run_service(
        "tlsconnector serve postfix-outbound", errors, lambda: _serve(config, log, prober)
    )


def _serve(config: OutboundServeConfig, log: JsonLog, prober: Prober | None) -> int:
    shown = show(str(config.policy_path), 200)
    try:
        policy = load_policy(config.policy_path)
        service = OutboundService(
            policy,
            policy_path=config.policy_path,
            log=log,
            prober=prober or Prober(deadline=config.probe_deadline),
            pin_lifetime=config.pin_lifetime,
            transport=config.transport,
            idle_timeout=config.idle_timeout,
            max_connections=config.max_connections,
            max_connections_per_client=config.max_connections_per_client,
        )
    except PolicyError as exc:
        raise StartupError(
            f"not starting: the policy {shown} is invalid", [str(p) for p in exc.problems]
        ) from None
    except MapsError as exc:
        raise StartupError(
            f"not starting: the policy {shown} cannot be served to Postfix",
            [str(p) for p in exc.problems],
        ) from None
    pidfile = None if config.pidfile is None else PidFile(config.pidfile)
    if pidfile is not None:
        pidfile.check()
    endpoint = config.unix_path if config.unix_path is not None else (config.host, config.port)
    try:
        sock, address = bind_endpoint(endpoint, mode=config.socket_mode, owner=config.socket_owner)
    except OSError as exc:
        where = config.unix_path or f"{config.host}:{config.port}"
        raise StartupError(f"not starting: cannot listen on {show(where, 200)}: {exc}") from None
    inode = os.stat(config.unix_path).st_ino if config.unix_path is not None else None

    def announce() -> None:
        log.emit(
            "listening",
            address=address,
            policy=str(config.policy_path),
            transport=config.transport,
            pin_lifetime=config.pin_lifetime,
            message=f"listening on {address}",
        )

    try:
        with sock:
            if pidfile is not None:
                pidfile.write()
            for warning in served_warnings(policy):
                log.emit("connector-not-served", **warning)
            mx = _mx_warning(policy)
            if mx is not None:
                log.emit("mx-lookups-unavailable", **mx)
            asyncio.run(service.run(sock, announce=announce))
    finally:
        if config.unix_path is not None and inode is not None:
            remove_socket(config.unix_path, inode)
        if pidfile is not None:
            pidfile.remove()
    return EXIT_OK
