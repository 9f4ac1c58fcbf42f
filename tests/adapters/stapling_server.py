"""A real SMTP server on 127.0.0.1 that staples an OCSP response to its TLS handshake
(test helper for tests/adapters/test_smtp_ocsp.py).

Python's ssl module cannot staple, so the server's TLS is pyOpenSSL's
(``Context.set_ocsp_server_callback``). It speaks just enough SMTP to take a message
(EHLO, STARTTLS, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and records, per connection,
every command it got, whether the client asked for a staple, and each message.
Every wait is bounded (``WAIT``), and so is every loop.

OpenSSL 4 as a server staples only a response it can match to the leaf by serial
number: one about another serial (or one it cannot parse) never leaves the server.
A test of "a staple for another certificate" therefore staples one naming the leaf's
serial under another issuer (its CertID names another certificate, RFC 6960 4.1.1).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from certmint import Leaf

WAIT = 10.0  # upper bound on any wait of the server
MAX_CONNECTIONS = 8
MAX_COMMANDS = 50
MAX_LINE = 4096
MAX_MESSAGE = 1024 * 1024

_T = TypeVar("_T")


@attrs.define
class Connection:
    """What the server saw on one connection."""

    #: Every command line, in order (the verb and its arguments, as sent).
    commands: list[str] = attrs.Factory(list)
    #: The client's ClientHello carried status_request (pyOpenSSL calls the server's
    #: OCSP callback only then).
    staple_requested: bool = False
    #: (MAIL FROM argument, RCPT TO arguments, message bytes) per message taken.
    messages: list[tuple[str, list[str], bytes]] = attrs.Factory(list)

    @property
    def verbs(self) -> list[str]:
        return [c.split(" ", 1)[0].split(":", 1)[0].upper() for c in self.commands]


class _Lines:
    """Lines from a plain socket or a pyOpenSSL connection, within ``WAIT`` each."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._buffer = b""

    def line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                return None
            chunk = self._read()
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    @property
    def pending(self) -> bytes:
        return self._buffer


def _commands(lines: _Lines, record: Connection) -> Iterator[tuple[str, str]]:
    """Each command line with its verb (``MAIL FROM:<a>`` gives ``MAIL``), the line
    recorded first; at most MAX_COMMANDS, until the client stops sending lines."""
    for _ in range(MAX_COMMANDS):
        line = lines.line()
        if line is None:
            return
        command = line.decode("ascii", "replace")
        record.commands.append(command)
        yield command, command.split(" ", 1)[0].split(":", 1)[0].upper()


def _retry(sock: socket.socket, operation: Callable[[], _T]) -> _T:
    """A pyOpenSSL call on a non-blocking socket, waiting at most ``WAIT`` in all."""
    end = time.monotonic() + WAIT
    while True:
        try:
            return operation()
        except SSL.WantReadError:
            readers, writers = [sock], []
        except SSL.WantWriteError:
            readers, writers = [], [sock]
        left = end - time.monotonic()
        if left <= 0 or not any(select.select(readers, writers, [], left)[:2]):
            raise TimeoutError("the stapling server timed out")


class StaplingServer:
    """Serves connections one after another in a thread until :meth:`stop`.

    ``staple``: the DER OCSP response stapled to every handshake that asks for one
    (None: nothing stapled). ``cut_after_data``: after reading a message, close the
    connection without a reply and without TLS close_notify (a truncated session).
    """

    def __init__(self, leaf: Leaf, staple: bytes | None, *, cut_after_data: bool = False) -> None:
        self.leaf = leaf
        self.staple = staple
        self.cut_after_data = cut_after_data
        self.connections: list[Connection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self._listener.close()

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return [m for c in self.connections for m in c.messages]

    # -- the server

    def _serve(self) -> None:
        served = 0
        while not self._stop.is_set() and served < MAX_CONNECTIONS:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            served += 1
            record = Connection()
            self.connections.append(record)
            with sock, contextlib.suppress(OSError, SSL.Error):
                sock.settimeout(WAIT)
                self._session(sock, record)

    def _context(self, record: Connection) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate(self.leaf.cert)
        for intermediate in self.leaf.intermediates:
            context.add_extra_chain_cert(intermediate)
        key = self.leaf.key
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        context.use_privatekey(key)

        def staple(connection: SSL.Connection, data: object) -> bytes:
            record.staple_requested = True
            return self.staple or b""  # b"": no staple

        context.set_ocsp_server_callback(staple)
        return context

    def _session(self, sock: socket.socket, record: Connection) -> None:
        sock.sendall(b"220 stapling.test ESMTP\r\n")
        plain = _Lines(lambda: sock.recv(4096))
        for _, verb in _commands(plain, record):
            if verb == "EHLO":
                sock.sendall(b"250-stapling.test\r\n250 STARTTLS\r\n")
            elif verb == "STARTTLS":
                sock.sendall(b"220 2.0.0 go ahead\r\n")
                if plain.pending:
                    return  # data before the handshake: refuse it (CVE-2011-0411)
                self._tls_session(sock, record)
                return
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                sock.sendall(b"530 5.7.0 STARTTLS first\r\n")

    def _tls_session(self, sock: socket.socket, record: Connection) -> None:
        sock.setblocking(False)
        tls = SSL.Connection(self._context(record), sock)
        tls.set_accept_state()
        _retry(sock, tls.do_handshake)

        def read() -> bytes:
            try:
                return _retry(sock, lambda: tls.recv(4096))
            except SSL.ZeroReturnError:
                return b""

        def send(data: bytes) -> None:
            sent = 0
            while sent < len(data):
                chunk = data[sent:]
                sent += _retry(sock, lambda: tls.send(chunk))  # noqa: B023 (called at once)

        lines = _Lines(read)
        sender, recipients = "", []
        for command, verb in _commands(lines, record):
            if verb == "EHLO":
                send(b"250-stapling.test\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip(), []
                send(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip())
                send(b"250 2.1.5 ok\r\n")
            elif verb == "DATA":
                send(b"354 go ahead\r\n")
                message = b""
                while (body := lines.line()) is not None and body != b".":
                    message += body + b"\r\n"
                    if len(message) > MAX_MESSAGE:
                        return
                if body is None:
                    return  # the message never ended: nothing taken
                record.messages.append((sender, recipients, message))
                if self.cut_after_data:
                    sock.shutdown(socket.SHUT_RDWR)  # no reply, no close_notify
                    return
                send(b"250 2.0.0 queued as 4711\r\n")
            elif verb in ("RSET", "NOOP"):
                send(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                send(b"221 2.0.0 bye\r\n")
                with contextlib.suppress(SSL.Error):
                    tls.shutdown()
                return
            else:
                send(b"500 5.5.2 unknown command\r\n")


@contextlib.contextmanager
def stapling_server(
    leaf: Leaf, staple: bytes | None, *, cut_after_data: bool = False
) -> Iterator[StaplingServer]:
    server = StaplingServer(leaf, staple, cut_after_data=cut_after_data)
    try:
        yield server
    finally:
        server.stop()
