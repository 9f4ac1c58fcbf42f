"""What the two Postfix services share (an edge): the listening socket, the signals
(SIGHUP reloads, SIGTERM and SIGINT stop), the run until a stop signal, the reload of
the policy file and the bounds on connections.

``serve postfix`` (:mod:`tlsconnector.adapters.postfix.server`) and ``serve
postfix-outbound`` (:mod:`tlsconnector.adapters.postfix.socketmap`) differ in their
protocol, their answers and how they stop their connections; everything here behaves
the same in both.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from tlsconnector._errors import PolicyError
from tlsconnector._model import Policy
from tlsconnector.policy_file.loading import load_policy

if TYPE_CHECKING:
    from tlsconnector.adapters.postfix.server import JsonLog

__all__ = [
    "ALL_SIGNALS",
    "LISTEN_BACKLOG",
    "STOP_GRACE",
    "STOP_SIGNALS",
    "ConnectionSlots",
    "Unservable",
    "listen_address",
    "listening_socket",
    "peer_of",
    "reload_policy",
    "serve_until_stopped",
    "tcp_socket",
    "with_signals_held",
]

LISTEN_BACKLOG = 128
#: How long a stopping server waits for its connections to finish.
STOP_GRACE = 5.0

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ALL_SIGNALS = {signal.SIGHUP, *STOP_SIGNALS}

_T = TypeVar("_T")
_C = TypeVar("_C", bound=Hashable)


# -- signals and the run ------------------------------------------------------------------


def with_signals_held(run: Callable[[], int]) -> int:
    """``run()`` with SIGHUP, SIGTERM and SIGINT held until its handlers exist (a
    reload sent while the service starts must not kill it: SIGHUP's default action);
    the signal mask is restored afterwards."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)
    try:
        return run()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def serve_until_stopped(
    log: JsonLog,
    *,
    start: Callable[[], Awaitable[asyncio.Server]],
    reload: Callable[[], None],
    announce: Callable[[], None] | None,
    connections: Sized,
) -> asyncio.Server:
    """Install the handlers (SIGHUP: ``reload``; SIGTERM, SIGINT: stop), let the held
    signals in, ``start`` serving, ``announce`` (the ready line), and wait for a stop
    signal; then log ``stopping`` and close the server to new connections. The
    caller closes its connections and logs ``stopped``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reload)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # The signals were blocked until the handlers existed (with_signals_held).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ALL_SIGNALS)
    server = await start()
    if announce is not None:
        announce()
        log.flush()
    await stop.wait()
    log.emit("stopping", connections=len(connections))
    server.close()
    return server


# -- reload -------------------------------------------------------------------------------


class Unservable(Exception):
    """A valid policy a service cannot serve: the reload keeps the policy in force."""

    def __init__(self, problems: list[str], message: str) -> None:
        super().__init__(message)
        self.problems = problems
        self.message = message


def reload_policy(path: Path, log: JsonLog, build: Callable[[Policy], _T]) -> _T | None:
    """Load the policy file again and build what a service serves from it, or None
    after a ``reload-failed`` line: an invalid policy, one ``build`` refuses
    (:class:`Unservable`), or any unexpected error never stops the service nor
    replaces the policy in force (never fail open)."""
    try:
        return build(load_policy(path))
    except PolicyError as exc:
        problems = [str(p) for p in exc.problems]
        message = "the new policy is invalid; keeping the previous policy"
    except Unservable as exc:
        problems, message = exc.problems, exc.message
    except Exception as exc:  # an unexpected error must not stop the service
        problems = [f"{type(exc).__name__}: {exc}"]
        message = "could not load the new policy; keeping the previous policy"
    log.emit("reload-failed", policy=str(path), problems=problems, message=message)
    return None


# -- sockets and connections --------------------------------------------------------------


def listening_socket(family: socket.AddressFamily, address: str | tuple[str, int]) -> socket.socket:
    """A non-blocking stream socket listening on ``address`` (closed again when that
    fails); TCP sockets may take an address a stopped service left in TIME_WAIT."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening socket on an IPv4 or IPv6 ``host`` (see :func:`listening_socket`)."""
    return listening_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))


def listen_address(sock: socket.socket) -> str:
    """A TCP socket's address as logged: ``host:port``, ``[v6]:port``."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_of(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """The peer as logged (``host:port``) and its address (the per-client key)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        address = str(peer[0])
        host = f"[{address}]" if ":" in address else address
        return f"{host}:{peer[1]}", address
    return str(peer), str(peer)


class ConnectionSlots(Generic[_C]):
    """The connections a service serves and how many each client address holds.

    :meth:`open` refuses a connection beyond ``limit`` in all or ``per_client`` for
    its client (logging ``too-many-connections`` or ``too-many-connections-per-client``;
    the caller closes it). The limits are given at each call: the service's own
    attributes stay the one place that holds them.
    """

    def __init__(self, log: JsonLog) -> None:
        self.log = log
        self._client_of: dict[_C, str] = {}
        self._per_client: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._client_of)

    def __iter__(self) -> Iterator[_C]:
        """The open connections (a copy: closing them while iterating is safe)."""
        return iter(list(self._client_of))

    def open(self, connection: _C, peer: str, client: str, *, limit: int, per_client: int) -> bool:
        if len(self._client_of) >= limit:
            # Bounded memory: a flood of connections cannot grow the service without
            # limit. Closing makes Postfix use its default action (a 4xx).
            self.log.emit("too-many-connections", peer=peer, limit=limit)
            return False
        count = self._per_client.get(client, 0)
        if count >= per_client:
            # One peer must not hold every slot for the idle timeout.
            self.log.emit("too-many-connections-per-client", peer=peer, limit=per_client)
            return False
        self._per_client[client] = count + 1
        self._client_of[connection] = client
        return True

    def close(self, connection: _C) -> None:
        """Free ``connection``'s slot (nothing when it holds none)."""
        client = self._client_of.pop(connection, None)
        if client is None:
            return
        left = self._per_client.get(client, 1) - 1
        if left > 0:
            self._per_client[client] = left
        else:
            self._per_client.pop(client, None)
