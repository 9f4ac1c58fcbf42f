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
import contextlib
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TextIO, TypeVar

from tlsconnector._errors import PolicyError, printable, show
from tlsconnector._model import Policy
from tlsconnector.policy_file.loading import load_policy

if TYPE_CHECKING:
    from tlsconnector.adapters.postfix.server import JsonLog

__all__ = [
    "ALL_SIGNALS",
    "DEFAULT_QUEUE_DIRECTORY",
    "EXIT_STARTUP",
    "LISTEN_BACKLOG",
    "STOP_GRACE",
    "STOP_SIGNALS",
    "ConnectionSlots",
    "Endpoint",
    "PidFile",
    "StartupError",
    "Unservable",
    "bind_endpoint",
    "bind_unix",
    "listen_address",
    "listening_socket",
    "peer_of",
    "postfix_queue_directory",
    "reload_policy",
    "remove_socket",
    "resolve_host",
    "run_service",
    "serve_until_stopped",
    "socket_mode",
    "socket_owner",
    "tcp_socket",
    "unix_path_of",
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


# -- start-up errors ----------------------------------------------------------------------


class StartupError(Exception):
    """Why a service does not start (exit status 2): said once, in plain text, on
    standard error, never as a log line (no service runs yet; whoever started it,
    an administrator or a service manager's journal, reads it).

    ``message`` is one sentence naming what is wrong (attacker-free text: paths and
    values shown with :func:`tlsconnector._errors.show`); ``problems`` are the
    details, one per line."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems)

    def text(self, command: str) -> str:
        """The lines to print: ``COMMAND: MESSAGE`` then ``  PROBLEM`` each."""
        lines = [f"{command}: {self.message}"]
        lines.extend(f"  {_one_line(problem)}" for problem in self.problems)
        return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """A problem on one line: its own line breaks never start another line."""
    return text.replace("\r", "\\r").replace("\n", "\n  ")


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
    replaces the policy in force (never fail open). ``--log-file`` is opened again
    first (logrotate), so the reload's own line lands in the new file."""
    log.reopen()
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


# -- where to listen ----------------------------------------------------------------------

#: The queue directory when ``postconf`` is not installed (Postfix's compiled-in default).
DEFAULT_QUEUE_DIRECTORY = "/var/spool/postfix"
#: The longest ``postconf -h queue_directory`` may take at start.
POSTCONF_TIMEOUT = 10.0
#: The longest resolving a ``--listen`` host name may take at start.
RESOLVE_TIMEOUT = 5.0
#: A Unix socket path's longest length in bytes (Linux: 108 bytes with the final NUL).
MAX_UNIX_PATH_BYTES = 107
#: The longest host name ``--listen`` takes (a DNS name's longest text form).
MAX_LISTEN_NAME = 253
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")

#: Where a service listens: ``(ip, port)`` or a Unix socket's absolute path.
Endpoint = tuple[str, int] | str


def postfix_queue_directory(
    run: Callable[[list[str]], str] | None = None,
) -> str:
    """Postfix's ``queue_directory``: ``postconf -h queue_directory`` when postconf is
    installed (bounded by :data:`POSTCONF_TIMEOUT`), else :data:`DEFAULT_QUEUE_DIRECTORY`.
    Raises :class:`ValueError` naming the problem when postconf exists but fails (never
    a guess: a socket in the wrong directory is one Postfix never finds)."""
    if run is None:
        if shutil.which("postconf") is None:
            return DEFAULT_QUEUE_DIRECTORY
        run = _postconf
    try:
        answer = run(["postconf", "-h", "queue_directory"]).strip()
    except subprocess.CalledProcessError as exc:
        # postconf's own reason (its last line on standard error: a missing main.cf,
        # say), not Python's "returned non-zero exit status 1".
        said = str(exc.stderr or "").strip().splitlines()
        reason = said[-1] if said else f"exit status {exc.returncode}"
        raise ValueError(
            f"cannot ask postconf for queue_directory: {printable(reason, 300)}; "
            "give --queue-directory"
        ) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(
            f"cannot ask postconf for queue_directory ({exc}); give --queue-directory"
        ) from None
    if not answer.startswith("/") or "\n" in answer or "\x00" in answer:
        raise ValueError(
            f"postconf -h queue_directory answered {show(answer)}, not an absolute path; "
            "give --queue-directory"
        )
    return answer


def _postconf(argv: list[str]) -> str:
    done = subprocess.run(  # noqa: S603 (a fixed argv: postconf -h queue_directory)
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=POSTCONF_TIMEOUT,
        check=True,
    )
    return done.stdout


def unix_path_of(
    text: str, *, queue_directory: str | None, ask_postfix: Callable[[], str] | None = None
) -> str:
    """The socket path of ``--listen unix:PATH``: an absolute PATH as it is; a relative
    one (Postfix's ``unix:private/policy`` form) under ``queue_directory``, or when that
    is None, under Postfix's queue directory (``ask_postfix``, default
    :func:`postfix_queue_directory`): Postfix resolves such a name there, in or out of
    its chroot. Raises :class:`ValueError` naming the value."""
    path = text[len("unix:") :]
    if not path or "\x00" in path:
        raise ValueError(f"--listen {show(text)}: unix:PATH needs a path")
    if not path.startswith("/"):
        if ".." in path.split("/"):
            raise ValueError(
                f"--listen {show(text)}: a relative path must stay under the queue directory "
                "(no '..')"
            )
        base = queue_directory
        if base is None:
            base = (ask_postfix or postfix_queue_directory)()
        path = os.path.join(base, path)
    if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
        raise ValueError(
            f"--listen {show(text)}: the socket path {show(path)} is longer than "
            f"{MAX_UNIX_PATH_BYTES} bytes (the system's limit)"
        )
    return path


def resolve_host(
    text: str, host: str, *, lookup: Callable[[str, float], list[str]] | None = None
) -> str:
    """The address to listen on for a host name in ``--listen HOST:PORT``: resolved
    once, at start (bounded by :data:`RESOLVE_TIMEOUT`). Every address the name has
    must be a loopback address: a policy service answers anyone who can connect, so a
    name whose DNS answer could change never decides that it listens on a network;
    to listen on one, give its IP address. Of the addresses, the first IPv4 one, else
    the first (Postfix tries each address of a name it connects to). Raises
    :class:`ValueError` naming the value."""
    if not (0 < len(host) <= MAX_LISTEN_NAME and set(host) <= _NAME_CHARACTERS):
        raise ValueError(
            f"--listen {show(text)}: HOST must be an IPv4 address, an [IPv6] address or a host name"
        )
    if lookup is None:
        from tlsconnector.adapters.smtp import system_addresses

        lookup = system_addresses
    try:
        addresses = lookup(host, RESOLVE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"--listen {show(text)}: cannot resolve {show(host)}: {reason}") from None
    if not addresses:
        raise ValueError(f"--listen {show(text)}: {show(host)} has no address")
    outside = [a for a in addresses if not _is_loopback(a)]
    if outside:
        raise ValueError(
            f"--listen {show(text)}: {show(host)} resolves to {', '.join(map(show, outside[:4]))}"
            ", not a loopback address; a host name may only name loopback addresses (give "
            "the IP address to listen on a network)"
        )
    return next((a for a in addresses if ":" not in a), addresses[0])


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def socket_owner(text: str) -> tuple[int, int]:
    """``--socket-owner USER[:GROUP]`` -> ``(uid, gid)`` (gid -1: unchanged). Names or
    numbers; looked up once at start. Raises :class:`ValueError` naming the value."""
    user, colon, group = text.partition(":")
    if not user or (colon and not group):
        raise ValueError(f"--socket-owner {show(text)}: expected USER or USER:GROUP")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"--socket-owner {show(text)}: no user {show(user)}") from None
    gid = -1
    if colon:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"--socket-owner {show(text)}: no group {show(group)}") from None
    return uid, gid


def socket_mode(text: str) -> int:
    """``--socket-mode 0660`` -> 0o660 (octal, at most 0777). Raises :class:`ValueError`."""
    if not (0 < len(text) <= 4 and set(text) <= set("01234567")):
        raise ValueError(
            f"--socket-mode {show(text)}: expected octal permission bits, for example 0660"
        )
    return int(text, 8)


def bind_unix(
    path: str, *, mode: int | None = None, owner: tuple[int, int] | None = None
) -> socket.socket:
    """A listening Unix socket at ``path``. A stale socket there (nobody accepts) is
    replaced; a live one, or a file that is not a socket, is refused. With ``mode``
    the socket is created readable by its owner only, then given ``owner`` (uid, gid)
    and ``mode``, before anyone else can connect."""
    try:
        st_mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st_mode):
            raise OSError(f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: left by a service that stopped
            else:
                raise OSError(f"{path} is in use by another running service")
    if mode is None and owner is None:
        return listening_socket(socket.AF_UNIX, path)
    previous = os.umask(0o177)  # owner only until owner and mode are set
    try:
        sock = listening_socket(socket.AF_UNIX, path)
    finally:
        os.umask(previous)
    try:
        if owner is not None:
            os.chown(path, *owner)
        os.chmod(path, 0o600 if mode is None else mode)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise OSError(f"cannot set the owner or mode of {path}: {exc.strerror}") from None
    return sock


def bind_endpoint(
    endpoint: Endpoint, *, mode: int | None = None, owner: tuple[int, int] | None = None
) -> tuple[socket.socket, str]:
    """The listening socket for ``endpoint`` and its address as logged
    (``unix:PATH``, ``host:port``, ``[v6]:port``)."""
    if isinstance(endpoint, str):
        return bind_unix(endpoint, mode=mode, owner=owner), f"unix:{endpoint}"
    sock = tcp_socket(*endpoint)
    return sock, listen_address(sock)


def remove_socket(path: str, inode: int) -> None:
    """Remove the Unix socket this service bound (the same inode: never another
    service's socket that replaced it)."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


# -- the pid file -------------------------------------------------------------------------

#: The most bytes read from an existing pid file.
MAX_PIDFILE_BYTES = 64


class PidFile:
    """``--pidfile PATH``: the service's process id, written once it listens and
    removed when it stops (only by the process that wrote it, and only while the file
    still holds its pid). A file naming a live process is refused; one naming a
    process that no longer exists (left by a crash) is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid: int | None = None

    def check(self) -> None:
        """Refuse (:class:`StartupError`) when the file names a live process; remove a
        stale one."""
        live = self._live_pid()
        if live is not None:
            raise StartupError(
                f"not starting: --pidfile {show(str(self.path))} names process {live}, "
                "which is running (another instance?)"
            )

    def _live_pid(self) -> int | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_PIDFILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StartupError(
                f"not starting: --pidfile {show(str(self.path))}: {exc.strerror}"
            ) from None
        text = data.decode("ascii", "replace").strip()
        if len(data) <= MAX_PIDFILE_BYTES and text.isdigit() and int(text) > 0:
            pid = int(text)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass  # stale
            except PermissionError:
                return pid  # alive, another user's
            else:
                if pid != os.getpid():
                    return pid
        else:
            raise StartupError(
                f"not starting: --pidfile {show(str(self.path))} exists and holds no process "
                f"id ({show(text, 40)}); remove it if no service runs"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        return None

    def write(self) -> None:
        """Write this process's id (created exclusively: two services started at once
        cannot both hold the file). :class:`StartupError` when that fails."""
        self.check()
        pid = os.getpid()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise StartupError(
                f"not starting: --pidfile {show(str(self.path))} was created by another "
                "process meanwhile"
            ) from None
        except OSError as exc:
            raise StartupError(
                f"not starting: --pidfile {show(str(self.path))}: {exc.strerror}"
            ) from None
        try:
            os.write(fd, f"{pid}\n".encode("ascii"))
        finally:
            os.close(fd)
        self.pid = pid

    def remove(self) -> None:
        """Remove the file if this process wrote it and it still names this process."""
        if self.pid is None or self.pid != os.getpid():
            return  # not written, or a forked worker
        with contextlib.suppress(OSError):
            with open(self.path, "rb") as handle:
                if handle.read(MAX_PIDFILE_BYTES).strip() != str(self.pid).encode("ascii"):
                    return
            os.unlink(self.path)
        self.pid = None


def run_service(command: str, errors: TextIO | None, serve: Callable[[], int]) -> int:
    """``serve()`` with the service's signals held (:func:`with_signals_held`); a
    :class:`StartupError` is printed as plain text on ``errors`` (standard error by
    default) and gives exit status 2."""

    def run() -> int:
        try:
            return serve()
        except StartupError as exc:
            stream = sys.stderr if errors is None else errors
            with contextlib.suppress(OSError, ValueError):
                stream.write(exc.text(command))
                stream.flush()
            return EXIT_STARTUP

    return with_signals_held(run)


#: The exit status of a service that did not start (a usage error).
EXIT_STARTUP = 2
