"""The Postfix policy server: asyncio, many connections, SIGHUP reload, workers (an edge).

``tlsconnector serve postfix`` runs :func:`serve_postfix`. The protocol and the
decisions are pure code in :mod:`tlsconnector.adapters.postfix`; this module owns the
sockets, the clock, the signals, the processes and the log.

Every line on standard error is one JSON object with ``time`` (UTC), ``event`` and
``pid``. Events: ``listening`` (ready; carries ``address``), ``decision`` (one per
RCPT request), ``protocol-error`` (a malformed request; the connection is closed),
``connection-error``, ``idle-timeout``, ``reload``, ``reload-failed``,
``policy-invalid``, ``worker-exited``, ``stopping``, ``stopped``, ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from ._decisions import InboundDecision
from ._errors import PolicyError
from ._model import Policy
from ._policy_file import load_policy
from .adapters.postfix import (
    PolicyAnswer,
    RequestParser,
    decide_request,
    decision_record,
    format_reply,
    reply_for,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "JsonLog",
    "PolicyServer",
    "ServeConfig",
    "parse_listen",
    "serve_postfix",
]

#: A connection that sends no complete request for this long is closed (Postfix
#: itself drops idle policy connections after ``smtpd_policy_service_max_idle``, 300 s).
DEFAULT_IDLE_TIMEOUT = 300.0
#: Connections served at once by one worker; Postfix keeps a few per smtpd process.
#: Beyond this a new connection is closed at once (Postfix then applies
#: smtpd_policy_service_default_action: a temporary failure, never an accept).
MAX_CONNECTIONS = 1000
MAX_WORKERS = 64
LISTEN_BACKLOG = 128
READ_CHUNK = 16 * 1024
#: How long a stopping server waits for its connections to finish.
STOP_GRACE = 5.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ALL_SIGNALS = {signal.SIGHUP, *_STOP_SIGNALS}


@attrs.frozen
class ServeConfig:
    """What ``tlsconnector serve postfix`` was asked to do."""

    policy_path: Path
    host: str
    port: int
    workers: int = 1
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``. HOST is an IPv4 address or a bracketed IPv6
    address (``[::1]:10040``); PORT is 0-65535 (0: the system picks a free port).
    Raises :class:`ValueError` with a message naming the value."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, for example 127.0.0.1:10040")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"--listen {text!r}: {host!r} is not an IPv6 address") from None
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(
                f"--listen {text!r}: HOST must be an IPv4 address or [IPv6] address"
            ) from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen {text!r}: PORT must be a number from 0 to 65535")
    return host, int(port_text)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JsonLog:
    """One JSON object per line, flushed at once. A log that cannot be written is
    dropped rather than allowed to fail a decision."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.stream = stream
        self.clock = clock

    def emit(self, event: str, **fields: Any) -> None:
        moment = self.clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record = {"time": moment, "event": event, "pid": os.getpid(), **fields}
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(line + "\n")
            self.stream.flush()


def _connectors(policy: Policy) -> int:
    return len(policy.inbound) + len(policy.outbound)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


class PolicyServer:
    """Serves the policy protocol to any number of connections in one event loop."""

    def __init__(
        self,
        policy: Policy,
        *,
        policy_path: Path,
        log: JsonLog,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], dt.datetime] = _utc_now,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.policy = policy
        self.policy_path = policy_path
        self.log = log
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.max_connections = max_connections
        self._connections: set[asyncio.Task[None]] = set()

    def answer(self, request: dict[str, str]) -> str:
        """Decide one request and log the decision; the reply text after ``action=``."""
        try:
            result = decide_request(self.policy, request, at=self.clock())
        except Exception as exc:  # decide_request already maps errors; never fail open
            decision = InboundDecision.tempfail(f"internal error: {type(exc).__name__}: {exc}")
            result = PolicyAnswer(reply_for(decision), decision)
        if result.decision is not None:
            self.log.emit("decision", **decision_record(request, result))
        return result.reply

    def reload(self) -> None:
        """Load the policy file again; keep the current policy when the new one is invalid."""
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as exc:
            self.log.emit(
                "reload-failed",
                policy=str(self.policy_path),
                problems=[str(p) for p in exc.problems],
                message="the new policy is invalid; keeping the previous policy",
            )
            return
        except Exception as exc:  # an unexpected error must not stop the service
            self.log.emit(
                "reload-failed",
                policy=str(self.policy_path),
                problems=[f"{type(exc).__name__}: {exc}"],
                message="could not load the new policy; keeping the previous policy",
            )
            return
        if _connectors(self.policy) and not _connectors(policy):
            # An empty file (an editor that truncates before writing, a SIGHUP during
            # a copy) loads as a valid policy that governs nothing: every session would
            # be accepted. Never fail open: keep the policy in force.
            self.log.emit(
                "reload-failed",
                policy=str(self.policy_path),
                problems=["the new policy has no connectors"],
                message="refusing to replace a policy with connectors by one without any; "
                "keeping the previous policy (write the file under another name, then "
                "rename it over the old one)",
            )
            return
        self.policy = policy
        self.log.emit(
            "reload",
            policy=str(self.policy_path),
            inbound=len(policy.inbound),
            message="policy reloaded",
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One Postfix connection: requests in, answers out, until EOF or an error."""
        peer = _peer(writer)
        if len(self._connections) >= self.max_connections:
            # Bounded memory: a flood of connections cannot grow the service without
            # limit. Closing makes Postfix use its default action (a 4xx).
            self.log.emit("too-many-connections", peer=peer, limit=self.max_connections)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._converse(reader, writer, peer)
        except TimeoutError:
            self.log.emit("idle-timeout", peer=peer, seconds=self.idle_timeout)
        except (ConnectionError, OSError) as exc:
            self.log.emit("connection-error", peer=peer, message=str(exc))
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception as exc:  # never crash the server because of one connection
            self.log.emit("error", peer=peer, message=f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
            if task is not None:
                self._connections.discard(task)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        parser = RequestParser()
        loop = asyncio.get_running_loop()
        # One timeout for the whole connection, moved forward for every request rather
        # than a new one per request (cheaper on the per-request path).
        async with asyncio.timeout(None) as deadline:
            while True:
                # A whole request must arrive within the idle timeout: this bounds both
                # an idle connection and one that trickles a request byte by byte.
                deadline.reschedule(loop.time() + self.idle_timeout)
                requests: list[dict[str, str]] = []
                while not requests and parser.error is None:
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        if parser.pending:
                            self.log.emit(
                                "protocol-error",
                                peer=peer,
                                message="connection closed in the middle of a request",
                            )
                        return
                    requests = parser.feed(data)
                for request in requests:
                    writer.write(format_reply(self.answer(request)))
                # The answers must leave within the idle timeout too; drain() only
                # waits when the socket's buffer is over its high-water mark.
                deadline.reschedule(loop.time() + self.idle_timeout)
                await writer.drain()
                if parser.error is not None:
                    self.log.emit(
                        "protocol-error",
                        peer=peer,
                        message=f"{parser.error}; closing the connection",
                    )
                    return

    async def run(self, sock: socket.socket, *, announce: Callable[[], None] | None) -> None:
        """Serve on a listening socket until SIGTERM or SIGINT; reload on SIGHUP.

        ``announce`` is called once the signal handlers are in place (the ready line).
        """
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        # The signals were blocked until the handlers existed (serve_postfix).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _ALL_SIGNALS)
        server = await asyncio.start_server(self.handle, sock=sock, limit=READ_CHUNK)
        if announce is not None:
            announce()
        await stop.wait()
        self.log.emit("stopping", connections=len(self._connections))
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=STOP_GRACE)
        await server.wait_closed()
        self.log.emit("stopped")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_postfix(config: ServeConfig, *, log: JsonLog) -> int:
    """Run the Postfix policy service until SIGTERM/SIGINT; the exit status.

    0 after a clean stop; 2 when the policy is invalid or the address cannot be
    bound; 1 when a worker process died unexpectedly (the whole service stops so the
    service manager restarts it; Postfix meanwhile applies its default action).
    """
    # Hold SIGHUP, SIGTERM and SIGINT until their handlers exist: a reload sent while
    # the service starts must not kill it (SIGHUP's default action).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        return _serve(config, log)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _serve(config: ServeConfig, log: JsonLog) -> int:
    try:
        policy = load_policy(config.policy_path)
    except PolicyError as exc:
        log.emit(
            "policy-invalid",
            policy=str(config.policy_path),
            problems=[str(p) for p in exc.problems],
            message="not starting: the policy is invalid",
        )
        return EXIT_USAGE
    try:
        sock = _bind(config.host, config.port)
    except OSError as exc:
        log.emit("error", message=f"cannot listen on {config.host}:{config.port}: {exc}")
        return EXIT_USAGE
    address = _address(sock)

    def announce() -> None:
        log.emit(
            "listening",
            address=address,
            workers=config.workers,
            policy=str(config.policy_path),
            message=f"listening on {address}",
        )

    def make_server() -> PolicyServer:
        return PolicyServer(
            policy,
            policy_path=config.policy_path,
            log=log,
            idle_timeout=config.idle_timeout,
            max_connections=config.max_connections,
        )

    with sock:
        if config.workers == 1:
            asyncio.run(make_server().run(sock, announce=announce))
            return EXIT_OK
        return _supervise(sock, config.workers, make_server, announce, log)


def _supervise(
    sock: socket.socket,
    workers: int,
    make_server: Callable[[], PolicyServer],
    announce: Callable[[], None],
    log: JsonLog,
) -> int:
    """Fork ``workers`` processes that accept on the one pre-bound socket; forward
    SIGHUP to them, stop them on SIGTERM/SIGINT, stop all when one dies."""
    # The signals stay blocked (serve_postfix) until each process has its handlers:
    # a SIGHUP that arrives early then waits instead of killing a worker.
    children: set[int] = set()
    for _ in range(workers):
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            log.emit("error", message=f"cannot start a worker process: {exc}")
            _Supervisor(children).forward(signal.SIGTERM)
            for child in children:
                os.waitpid(child, 0)
            return EXIT_FAILED
        if pid == 0:  # the worker
            status = EXIT_FAILED
            try:
                asyncio.run(make_server().run(sock, announce=None))
                status = EXIT_OK
            except BaseException as exc:
                log.emit("error", message=f"worker failed: {type(exc).__name__}: {exc}")
            finally:
                os._exit(status)
        children.add(pid)

    supervisor = _Supervisor(children)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, supervisor.on_stop)
    signal.signal(signal.SIGHUP, supervisor.on_hup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _ALL_SIGNALS)
    announce()
    while children:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not supervisor.stopping:
            log.emit(
                "worker-exited",
                worker=pid,
                status=code,
                message="a worker stopped unexpectedly; stopping the service",
            )
            supervisor.status = EXIT_FAILED
            supervisor.on_stop(signal.SIGTERM, None)
    log.emit("stopped")
    return supervisor.status


class _Supervisor:
    """The parent's signal handlers. They only set a flag and forward signals: no
    logging, since a handler may interrupt a log write of the main loop."""

    def __init__(self, children: set[int]) -> None:
        self.children = children
        self.stopping = False
        self.status = EXIT_OK

    def forward(self, signum: int) -> None:
        for child in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    def on_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        self.forward(signal.SIGTERM)

    def on_hup(self, signum: int, _frame: object) -> None:
        self.forward(signal.SIGHUP)
