"""The Postfix policy server: asyncio, many connections, SIGHUP reload, workers (an edge).

``tlsconnector serve postfix`` runs :func:`serve_postfix`. The protocol and the
decisions are pure code in :mod:`tlsconnector.adapters.postfix`; this module owns the
sockets, the clock, the signals, the processes and the log.

Every line on standard error is one JSON object with ``time`` (UTC), ``event`` and
``pid``. Events: ``listening`` (ready; carries ``address``), ``decision`` (one per
RCPT request), ``protocol-error`` (a malformed request; the connection is closed),
``connection-error``, ``idle-timeout``, ``too-many-connections``,
``too-many-connections-per-client``, ``reload``, ``reload-failed``,
``policy-invalid``, ``name-constrained-ca``, ``log-suppressed``, ``log-dropped``,
``worker-exited``, ``stopping``, ``stopped``, ``error``; with ``--record``,
``record-error`` (writing a record failed; at most one per 10 s, the rest counted) and
``record-stopped`` (the counts, at the end).

With a :class:`~tlsconnector.adapters._recording.Recorder` (``--record``), every
answered RCPT request, from the memory of answers too, is recorded for replay
(``tlsconnector inbound --sessions``, ``tlsconnector diff``); recording never waits
and never changes an answer.

The events a peer can cause at will (:data:`RATE_LIMITED_EVENTS`) are logged at most
:data:`LOG_BURST` times per kind in :data:`LOG_WINDOW` seconds; the rest are counted
and the count logged (``log-suppressed``). Decision lines are never rate-limited.
While the server runs, lines are written by a thread of their own from a bounded
buffer (:data:`LOG_BUFFER_BYTES`), so a reader that does not keep up never stalls
deciding; lines that do not fit are dropped, counted and the count logged
(``log-dropped``) as soon as there is room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import os
import re
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii as _encode_json_text
from pathlib import Path
from typing import Any, TextIO

import attrs
from cryptography import x509

from tlsconnector._chains import describe
from tlsconnector._decisions import InboundAction, InboundDecision
from tlsconnector._errors import PolicyError, show
from tlsconnector._facts import MAX_ADDRESS_LENGTH
from tlsconnector._model import ConnectorType, Policy
from tlsconnector._revocation import Revocation
from tlsconnector.adapters._recording import (
    DEFAULT_RECORD_KEEP,
    DEFAULT_RECORD_MAX_BYTES,
    BackgroundWriter,
    Recorder,
    policy_digest,
    write_all,
)
from tlsconnector.adapters.postfix._service import (
    ALL_SIGNALS,
    STOP_GRACE,
    STOP_SIGNALS,
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
from tlsconnector.adapters.postfix.protocol import (
    MAX_LOGGED_VALUE,
    PolicyAnswer,
    RequestParser,
    decide_request,
    decision_key,
    decode_xtext,
    format_reply,
    reply_for,
)
from tlsconnector.policy_file.loading import load_policy

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
#: Connections served at once by one worker for one client address, so one peer
#: cannot hold every slot. Postfix opens one connection per smtpd process (at most
#: default_process_limit, 100, per master.cf service), all from the same address.
MAX_CONNECTIONS_PER_CLIENT = 100
#: Log events a peer can cause at will (one per connection or per malformed
#: request): at most LOG_BURST lines of each kind per LOG_WINDOW seconds are
#: written, the others counted and the count logged (``log-suppressed``).
RATE_LIMITED_EVENTS = frozenset(
    {
        "protocol-error",
        "connection-error",
        "idle-timeout",
        "too-many-connections",
        "too-many-connections-per-client",
        "error",
    }
)
LOG_BURST = 50
LOG_WINDOW = 10.0
#: Log bytes waiting for a slow reader of standard error, per process; lines that do
#: not fit are dropped and counted (``log-dropped``), never waited for.
LOG_BUFFER_BYTES = 1024 * 1024
#: How long a stopping process waits for its log lines to be written.
LOG_DRAIN_SECONDS = 5.0
MAX_WORKERS = 64
#: Answers remembered per policy (see :class:`PolicyServer`), and the longest
#: request (its deciding attributes, in characters) whose answer is remembered:
#: Postfix's are a few hundred characters, so the memory stays within a few MiB,
#: and within about 40 MiB per worker even when a hostile client fills it with keys
#: of four-byte characters.
MAX_REMEMBERED_ANSWERS = 8_192
MAX_REMEMBERED_KEY_CHARS = 1_024
#: Bytes of received requests handled at a time: between two pieces, a connection
#: whose answers are not being read is no longer served (bounded buffers).
PIECE_BYTES = 16 * 1024

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@attrs.frozen
class ServeConfig:
    """What ``tlsconnector serve postfix`` was asked to do."""

    policy_path: Path
    host: str
    port: int
    workers: int = 1
    #: Listen on this Unix socket instead of ``host``:``port`` (an absolute path).
    unix_path: str | None = None
    #: ``--socket-mode`` and ``--socket-owner`` (uid, gid; -1 unchanged) of the Unix socket.
    socket_mode: int | None = None
    socket_owner: tuple[int, int] | None = None
    #: ``--pidfile``: written once listening, removed at exit.
    pidfile: Path | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT
    #: Record every decided RCPT here (``--record``; one worker only), rotated by size.
    record_path: Path | None = None
    record_max_bytes: int = DEFAULT_RECORD_MAX_BYTES
    record_keep: int = DEFAULT_RECORD_KEEP
    #: Replace local parts by HMAC-SHA256 under this key (``--record-redact-local-parts``).
    record_redact_key: bytes | None = attrs.field(default=None, repr=False)


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
    """One JSON object per line. A log that cannot be written is dropped rather than
    allowed to fail a decision, and never allowed to stall one.

    Unattached, every line is written and flushed at once. While a policy server
    runs, the log is attached to its event loop: the lines of one turn of the loop
    (every decision of the requests that arrived together) are written together at
    the end of that turn. To a file descriptor, they are handed to a writer thread
    through a buffer of at most ``buffer_bytes``: a reader of standard error that
    stops reading blocks that thread, never the event loop; lines that do not fit are
    dropped and counted, and a ``log-dropped`` line with the count takes their place
    once there is room again.

    :meth:`emit` of a kind in :data:`RATE_LIMITED_EVENTS` writes at most ``burst``
    lines of that kind per ``window`` seconds (of the ``monotonic`` clock); the others
    are counted and a ``log-suppressed`` line gives the count when the window ends
    (attached: on a timer; unattached: before the next line of that kind).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        burst: int = LOG_BURST,
        window: float = LOG_WINDOW,
        buffer_bytes: int = LOG_BUFFER_BYTES,
        text: bool = False,
        path: str | None = None,
    ) -> None:
        self.stream = stream
        #: ``--log-file``: the file :meth:`reopen` opens again (None: nothing to reopen).
        self.path = path
        #: ``--log-format text``: each line as ``time key=value ...`` (see :func:`text_line`).
        self.text = text
        self.clock = clock
        self.monotonic = monotonic
        self.burst = burst
        self.window = window
        self.buffer_bytes = buffer_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[str] = []
        self._budgets: dict[str, _Budget] = {}
        self._writer: _LineWriter | None = None

    @staticmethod
    def stamp(moment: dt.datetime) -> str:
        """The ``time`` field: UTC, milliseconds, ``Z``."""
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def emit(self, event: str, **fields: Any) -> None:
        if event in RATE_LIMITED_EVENTS and not self._admit(event):
            return
        self._emit(event, fields)

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        self.write(self.line(event, **fields))

    def line(self, event: str, **fields: Any) -> str:
        """One log line (without its newline): time, event, pid, then ``fields``."""
        record = {"time": self.stamp(self.clock()), "event": event, "pid": os.getpid(), **fields}
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)

    # --- rate limit ---------------------------------------------------------------

    def _admit(self, event: str) -> bool:
        now = self.monotonic()
        budget = self._budgets.get(event)
        if budget is not None and now >= budget.start + self.window:
            self._close_window(event, budget)
            budget = None
        if budget is None:
            budget = self._budgets[event] = _Budget(now)
        if budget.logged < self.burst:
            budget.logged += 1
            return True
        budget.suppressed += 1
        if budget.suppressed == 1 and self._loop is not None:
            delay = max(0.0, budget.start + self.window - now)
            budget.timer = self._loop.call_later(delay, self._close_window, event, budget)
        return False

    def _close_window(self, event: str, budget: _Budget) -> None:
        """End ``event``'s window: log how many lines it suppressed (if any)."""
        if self._budgets.get(event) is not budget:
            return  # already closed
        del self._budgets[event]
        if budget.timer is not None:
            budget.timer.cancel()
        if budget.suppressed:
            self._emit(
                "log-suppressed",
                {
                    "kind": event,
                    "suppressed": budget.suppressed,
                    "seconds": self.window,
                    "message": f"{budget.suppressed} {event} lines were not logged (at most "
                    f"{self.burst} of each kind per {self.window:g} s)",
                },
            )

    # --- writing ------------------------------------------------------------------

    def write(self, line: str) -> None:
        """Write one line (a JSON object, without its newline)."""
        if self.text:
            line = text_line(line)
        if self._loop is None:
            self._write_lines([line])
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        """Write the lines waiting for the end of the loop's turn."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        writer = self._writer
        if writer is None:
            self._write_lines(lines)
            return
        writer.put([_encode_line(line) for line in lines], self._dropped_line)

    def _dropped_line(self, count: int) -> bytes:
        line = self.line(
            "log-dropped",
            dropped=count,
            message=f"{count} log lines were dropped: the log was not read fast enough "
            f"(at most {self.buffer_bytes} bytes wait)",
        )
        return _encode_line(text_line(line) if self.text else line)

    def _write_lines(self, lines: list[str]) -> None:
        """Write whole lines. To a file descriptor (standard error as a pipe or a file),
        the bytes go with ``os.write`` in writes of whole lines of at most
        :data:`PIPE_BUF` bytes where possible: such a write to a pipe is never
        interleaved with another process's (the workers share standard error), and a
        short write (a signal during a blocked write) is continued, never dropped."""
        with contextlib.suppress(OSError, ValueError):
            fd = self._fd()
            if fd is None:
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()
                return
            self.stream.flush()  # what went through the text layer goes first
            for batch in _batches(_encode_line(line) for line in lines):
                write_all(fd, batch)

    def _fd(self) -> int | None:
        try:
            return self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.StringIO and the like
            return None

    def reopen(self, *, quiet: bool = False) -> None:
        """Open :attr:`path` again in place of the file written so far (``--log-file``
        after logrotate moved it away: the services call this on SIGHUP). The new
        file takes the old one's descriptor (``dup2``), so the writer thread goes on
        writing without noticing; a line being written when it happens lands in one
        file or the other, whole. A file that cannot be opened is an ``error`` line,
        and the lines keep going to the file opened before.

        ``quiet``: from a signal handler (the supervisor of ``--workers``), which must
        not touch the stream's buffer or write a line: only system calls, and a failure
        leaves the old file in place without a word."""
        fd = self._fd()
        if self.path is None or fd is None:
            return
        try:
            new = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            if not quiet:
                self.emit(
                    "error",
                    message=f"--log-file {show(self.path)}: cannot open it again: "
                    f"{exc.strerror or exc}; still writing to the file opened before",
                )
            return
        if not quiet:
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()  # what the text layer holds goes to the old file
        try:
            os.dup2(new, fd)
        finally:
            os.close(new)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        fd = self._fd()
        if fd is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()  # what went through the text layer goes first
            self._writer = _LineWriter(fd, self.buffer_bytes)

    def detach(self) -> None:
        """Log what the rate limit suppressed, write every waiting line (waiting at
        most :data:`LOG_DRAIN_SECONDS` for a reader), then write synchronously."""
        for event, budget in list(self._budgets.items()):
            self._close_window(event, budget)
        self.flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(timeout=LOG_DRAIN_SECONDS)
        self._loop = None


#: A text log value written as it is (anything else is quoted and escaped).
_BARE_VALUE = re.compile(r"[A-Za-z0-9._:/@+,\[\]*-]+")
_TEXT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def text_line(line: str) -> str:
    r"""A JSON log line as text (``--log-format text``): the time, then ``key=value``
    for every other field in order. A value of letters, digits and ``._:/@+,[]*-`` is
    written as it is; any other text in double quotes, with ``\\``, ``\"``, ``\n``,
    ``\r``, ``\t`` and ``\xNN``/``\uNNNN`` escapes for every other control or
    non-ASCII character (one event is always one line, and what a peer sent cannot
    forge a field); a list or object as compact JSON, quoted; null as ``-``."""
    try:
        record = json.loads(line)
    except ValueError:
        return _quoted(line)
    if not isinstance(record, dict):
        return _quoted(line)
    parts = [str(record.pop("time", "-"))]
    for key, value in record.items():
        parts.append(f"{key}={_text_value(value)}")
    return " ".join(parts)


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    if value != "-" and _BARE_VALUE.fullmatch(value):
        return value
    return _quoted(value)


def _quoted(text: str) -> str:
    out = []
    for char in text:
        escaped = _TEXT_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


#: Syslog facility ``mail`` and the severities of the log's events (RFC 5424 6.2.1).
SYSLOG_FACILITY_MAIL = 2
_SYSLOG_ERR, _SYSLOG_WARNING, _SYSLOG_INFO = 3, 4, 6
_SYSLOG_ERRORS = frozenset({"error", "worker-exited", "reload-failed", "policy-invalid"})
_SYSLOG_WARNINGS = frozenset(
    {
        *RATE_LIMITED_EVENTS,
        "log-dropped",
        "log-suppressed",
        "name-constrained-ca",
        "record-error",
        "connector-not-served",
        "mx-lookups-unavailable",
        "refresh-failed",
    }
)
_EVENT_NAME = re.compile(r'(?:^|[ ,{])"?event(?:=|":")([a-z-]+)')
#: The longest syslog message sent (longer lines are cut, and say so).
MAX_SYSLOG_BYTES = 8 * 1024
DEFAULT_SYSLOG_SOCKET = "/dev/log"


class SyslogStream:
    """``--log syslog``: each log line is one datagram to the local syslog socket
    (``/dev/log``), facility mail, ident ``tlsconnector[pid]``, severity by event
    (errors ``err``, events a peer can cause and warnings ``warning``, others
    ``info``). Sent without ever blocking: a datagram the socket cannot take at once
    (a syslog daemon that does not keep up, or none) is dropped and counted, and the
    count sent in a line of its own as soon as one can be sent. A line over
    :data:`MAX_SYSLOG_BYTES` is cut. The rate limits of :class:`JsonLog` apply before.
    Has no ``fileno``: :class:`JsonLog` writes to it from the event loop."""

    def __init__(self, path: str = DEFAULT_SYSLOG_SOCKET, *, ident: str = "tlsconnector") -> None:
        self.path = path
        self.ident = ident
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line:
                self._send(line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()

    def _send(self, line: str) -> None:
        if self.dropped and self._datagram(
            _SYSLOG_WARNING,
            f'event=log-dropped dropped={self.dropped} message="{self.dropped} log lines '
            'were dropped: the syslog socket did not take them"',
        ):
            self.dropped = 0
        if self.dropped or not self._datagram(_severity(line), line):
            self.dropped += 1

    def _datagram(self, severity: int, line: str) -> bool:
        head = f"<{SYSLOG_FACILITY_MAIL * 8 + severity}>{self.ident}[{os.getpid()}]: "
        data = (head + line).encode("utf-8", "backslashreplace")
        if len(data) > MAX_SYSLOG_BYTES:
            data = data[: MAX_SYSLOG_BYTES - 12] + b" [truncated]"
        try:
            self._sock.send(data)
        except OSError:  # EAGAIN (full), ECONNREFUSED (no daemon), and the like
            return False
        return True


def _severity(line: str) -> int:
    found = _EVENT_NAME.search(line)
    event = found.group(1) if found else ""
    if event in _SYSLOG_ERRORS:
        return _SYSLOG_ERR
    if event in _SYSLOG_WARNINGS:
        return _SYSLOG_WARNING
    return _SYSLOG_INFO


@attrs.define
class _Budget:
    """One rate-limited event kind's current window."""

    start: float
    logged: int = 0
    suppressed: int = 0
    timer: asyncio.TimerHandle | None = None


#: The largest write to a pipe that POSIX keeps in one piece (Linux: 4096).
PIPE_BUF = getattr(select, "PIPE_BUF", 512)


def _encode_line(line: str) -> bytes:
    return (line + "\n").encode("utf-8", "backslashreplace")


def _batches(lines: Iterable[bytes]) -> Iterable[bytearray]:
    """Runs of whole lines of at most :data:`PIPE_BUF` bytes (a longer line alone)."""
    batch = bytearray()
    for data in lines:
        if batch and len(batch) + len(data) > PIPE_BUF:
            yield batch
            batch = bytearray()
        batch += data
    if batch:
        yield batch


class _LineWriter(BackgroundWriter):
    """Writes lines to a descriptor from a thread of its own, out of a bounded buffer.

    :meth:`put` never blocks on the descriptor: a line that does not fit in the
    buffer is dropped and counted, and so is every later one until the count itself
    fits; then a line reporting it goes first (so it stands where the gap is). The
    thread writes runs of whole lines of at most :data:`PIPE_BUF` bytes, continuing
    short writes, exactly as :class:`JsonLog` does without it.
    """

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.dropped = 0  # lines dropped (or lost by a failed write), not yet reported
        # The thread inherits the caller's signal mask: serve_postfix blocks the
        # service's signals until their handlers exist, so they never land here.
        super().__init__(name="tlsconnector-log", batch_bytes=PIPE_BUF)

    def put(self, lines: list[bytes], dropped_line: Callable[[int], bytes]) -> None:
        with self._ready:
            if self.dropped:
                note = dropped_line(self.dropped)
                if self._size + len(note) <= self.limit:
                    self._append(note)
                    self.dropped = 0
            for data in lines:
                if self.dropped or self._size + len(data) > self.limit:
                    self.dropped += 1
                else:
                    self._append(data)
            self._ready.notify()

    def _write_batch(self, batch: list[bytes]) -> None:
        data = b"".join(batch)
        try:
            write_all(self.fd, data)
        except (OSError, ValueError):
            with self._ready:
                self.dropped += data.count(b"\n")


def ungoverned(policy: Policy) -> str | None:
    """Why the Postfix service must not run ``policy``, or None.

    The service decides inbound mail only, by the enabled partner connectors
    (section 5.2): without one, every sender gets ``DUNNO``. Such a file is almost
    always a mistake or half written (an editor that truncates before writing, a
    reload caught in the middle of a copy, only the ``[[outbound]]`` tables written
    yet), so it is refused, at start and on reload (never fail open).
    """
    if any(c.enabled and c.type is ConnectorType.PARTNER for c in policy.inbound):
        return None
    return (
        "the policy has no enabled inbound connector of type partner, so it governs no "
        f"inbound mail (every sender would get DUNNO; {len(policy.inbound)} inbound and "
        f"{len(policy.outbound)} outbound connectors in the file)"
    )


def unanswerable_revocation(policy: Policy) -> str | None:
    """Why ``[trust] revocation = "hard"`` cannot be served to Postfix, or None.

    Postfix's policy requests carry the certificate's subject CN and fingerprint,
    never the certificate, its chain or its serial number, so no CRL can ever answer
    for it: under ``hard`` every session with a verified CN would be a temporary
    failure (section 11). Such a policy is refused at start and on reload."""
    if policy.revocation is not Revocation.HARD:
        return None
    return (
        '[trust] revocation = "hard" cannot be served to Postfix: its policy requests '
        "carry neither the client certificate nor its serial number, so no CRL can answer "
        "and every session with a verified certificate name would get a temporary "
        'failure; use revocation = "soft" (or "off") for serve postfix'
    )


def name_constrained_warnings(policy: Policy, policy_path: Path) -> list[dict[str, Any]]:
    """The fields of one ``name-constrained-ca`` warning per name-constrained CA of the
    policy's trust store (spec section 7: what Postfix cannot check for us)."""
    trust = policy.trust
    if trust is None:
        return []
    warnings = []
    for ca in trust.name_constrained:
        name = describe(ca)
        warnings.append(
            {
                "policy": str(policy_path),
                "ca": name,
                "constraints": _constraints(ca),
                "message": f"trust store CA {name} carries DNS name constraints, which "
                "Postfix (OpenSSL) does not apply to the certificate CN when the client "
                "certificate has a DNS SAN; tlsconnector therefore refuses every CN these "
                "constraints could exclude (certificate-not-trusted), whichever CA issued "
                "it. The policy's [trust] ca_file must be the same file as Postfix's "
                "smtpd_tls_CAfile",
            }
        )
    return warnings


def _constraints(ca: x509.Certificate) -> dict[str, list[str]]:
    """A CA's DNS subtrees, escaped, for a log line (never raises)."""
    try:
        value = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except Exception as exc:  # a log line must not stop the service
        return {"unreadable": [f"{type(exc).__name__}"]}
    shown: dict[str, list[str]] = {}
    for kind, subtrees in (
        ("permitted", value.permitted_subtrees),
        ("excluded", value.excluded_subtrees),
    ):
        names = [show(n.value) for n in subtrees or () if isinstance(n, x509.DNSName)]
        if names:
            shown[kind] = names[:20]
    return shown


def _json_text(value: str | None) -> str:
    """A log field's value as JSON: bounded, ASCII-escaped, or ``null``."""
    return "null" if value is None else _encode_json_text(value[:MAX_LOGGED_VALUE])


@attrs.frozen
class _Answer:
    """What a request gets: the reply's bytes and, for a decision, the decision's part
    of its log line (``"action":...,"details":[...]``, already JSON). A request that
    breaks the protocol has no decision line: ``violation`` says what it broke."""

    wire: bytes
    logged: str | None
    violation: str | None = None
    #: The decision answered (for the recorder), None when there was no decision line.
    decision: InboundDecision | None = None


def _answer_of(result: PolicyAnswer) -> _Answer:
    wire = format_reply(result.reply)
    decision = result.decision
    if decision is None:
        return _Answer(wire, None)
    if result.breaks_protocol:
        detail = decision.reasons[0].detail if decision.reasons else "a protocol violation"
        return _Answer(wire, None, f"{detail}; answered {result.reply}")
    part = json.dumps(
        {
            "action": str(decision.action),
            "reply": result.reply,
            "connector": decision.connector,
            "codes": list(decision.codes),
            "details": [reason.detail for reason in decision.reasons],
        },
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return _Answer(wire, part[1:-1], decision=decision)


def _recorded_facts(request: dict[str, str]) -> dict[str, Any]:
    """The ``inbound --sessions`` object of a decided RCPT request: the facts
    :func:`facts_from_postfix` read, as Postfix sent them, so they decide the same way
    again (only called for requests whose facts were read: accept or reject)."""
    get = request.get
    facts: dict[str, Any] = {
        "peer_ip": get("client_address"),
        "mail_from": get("sender"),
        "rcpt_to": [get("recipient")],
    }
    helo = get("helo_name")
    # The HELO name plays no part in the decision: kept only when it reads back.
    if helo and len(helo) <= MAX_ADDRESS_LENGTH and not _has_surrogates(helo):
        facts["helo"] = helo
    tls: dict[str, Any] | None = None
    if get("encryption_protocol"):
        subject, fingerprint = get("ccert_subject"), get("ccert_fingerprint")
        if subject:
            cn = decode_xtext(subject, field="ccert_subject")
            tls = {"peer_cn": [cn], "peer_verified": True}
            if fingerprint:
                tls["peer_fingerprint"] = fingerprint
        elif fingerprint:
            tls = {"peer_cn": [], "peer_verified": False, "peer_fingerprint": fingerprint}
        else:
            tls = {}
    facts["tls"] = tls
    return facts


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _governing(policy: Policy) -> Policy:
    """``policy``, unless it governs no inbound mail: an empty file, or one caught half
    written, loads as a valid policy that governs nothing, and every session would be
    accepted."""
    problem = unanswerable_revocation(policy)
    if problem is not None:
        raise Unservable(
            [problem],
            'refusing a policy with [trust] revocation = "hard"; keeping the previous policy',
        )
    problem = ungoverned(policy)
    if problem is not None:
        raise Unservable(
            [problem],
            "refusing a policy that governs no inbound mail; keeping the previous policy "
            "(write the file under another name, then rename it over the old one)",
        )
    return policy


class PolicyServer:
    """Serves the policy protocol to any number of connections in one event loop.

    Answers are remembered per policy: a request whose :func:`decision_key` was
    answered before under the same policy gets the same answer without deciding
    again (every attribute the decision reads is in the key, and Postfix's facts
    make it independent of the time). Only decisions (``protocol_state=RCPT``) are
    remembered; temporary failures, and the answers to requests whose deciding
    attributes are unusually long, never are. The memory is bounded (the oldest answer
    goes first) and emptied on every reload.
    Every decided request is still logged, with its own time and attributes.

    Connections are bounded in all (``max_connections``) and per client address
    (``max_connections_per_client``); beyond either a new connection is closed at
    once.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        policy_path: Path,
        log: JsonLog,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], dt.datetime] = _utc_now,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
        max_answers: int = MAX_REMEMBERED_ANSWERS,
        recorder: Recorder | None = None,
    ) -> None:
        self.recorder = recorder
        self.policy = policy
        self.policy_path = policy_path
        self.log = log
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.max_answers = max_answers
        self._answers: dict[tuple[str | None, ...], _Answer] = {}
        self._connections: ConnectionSlots[_Connection] = ConnectionSlots(log)
        self._all_closed: asyncio.Event | None = None

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = policy
        self._answers = {}  # answers were decided under the previous policy
        self._digest: str | None = None  # the policy's digest, for records (when asked)

    def respond(self, requests: list[dict[str, str]]) -> bytes:
        """The replies to requests that arrived together, in order; each decision is
        logged (one line per decided request). A request that breaks the protocol
        gets its answer, and the requests after it none (see :meth:`answer`)."""
        return self.answer(requests)[0]

    def answer(self, requests: list[dict[str, str]]) -> tuple[bytes, str | None]:
        """:meth:`respond`, and what the last request answered broke (None when every
        request was well-formed): after such a request nothing more is answered, and
        the connection is to be closed."""
        answers = self._answers
        replies = []
        stamp = pid = None
        for request in requests:
            key = decision_key(request)
            answer = answers.get(key)
            if answer is None:
                answer = self._decide(request, key)
            replies.append(answer.wire)
            if answer.violation is not None:
                return b"".join(replies), answer.violation
            if answer.logged is not None:
                if stamp is None:
                    stamp, pid = self.log.stamp(self.clock()), os.getpid()
                if self.recorder is not None:
                    self._record(request, answer, stamp)
                get = request.get
                self.log.write(
                    f'{{"time":"{stamp}","event":"decision","pid":{pid},'
                    f'"client":{_json_text(get("client_address"))},'
                    f'"sender":{_json_text(get("sender"))},'
                    f'"recipient":{_json_text(get("recipient"))},'
                    f'"queue_id":{_json_text(get("queue_id"))},'
                    f"{answer.logged},"
                    f'"ccert_subject":{_json_text(get("ccert_subject"))},'
                    f'"ccert_fingerprint":{_json_text(get("ccert_fingerprint"))}}}'
                )
        return b"".join(replies), None

    def _record(self, request: dict[str, str], answer: _Answer, stamp: str) -> None:
        """Record one answered request, from the memory of answers too (the record is
        of traffic). Never raises, never waits: the answer is already decided."""
        recorder = self.recorder
        decision = answer.decision
        if recorder is None or decision is None:
            return
        try:
            if self._digest is None:
                self._digest = policy_digest(self.policy)
            facts = None
            if decision.action is not InboundAction.TEMPFAIL:
                facts = _recorded_facts(request)
            recorder.record(facts, decision, policy=self._digest, at=stamp)
        except Exception as exc:  # a record must never change or stop an answer
            recorder._failed(1, f"cannot record a decision: {type(exc).__name__}: {exc}")

    def _decide(self, request: dict[str, str], key: tuple[str | None, ...]) -> _Answer:
        """Decide (never raising; never failing open) and remember the answer."""
        try:
            result = decide_request(self.policy, request, at=self.clock())
        except Exception as exc:  # decide_request already maps errors; never fail open
            failed = InboundDecision.tempfail(f"internal error: {type(exc).__name__}: {exc}")
            result = PolicyAnswer(reply_for(failed), failed)
        answer = _answer_of(result)
        decision = result.decision
        # Only decisions are remembered (any other state is answered DUNNO at once),
        # never a temporary failure, and only for keys of a bounded size.
        remember = decision is not None and decision.action is not InboundAction.TEMPFAIL
        if remember and sum(len(v) for v in key if v is not None) <= MAX_REMEMBERED_KEY_CHARS:
            answers = self._answers
            if len(answers) >= self.max_answers:
                del answers[next(iter(answers))]
            answers[key] = answer
        return answer

    def reload(self) -> None:
        """Load the policy file again; keep the current policy when the new one is invalid."""
        policy = reload_policy(self.policy_path, self.log, _governing)
        if policy is None:
            return
        self.policy = policy
        self.log.emit(
            "reload",
            policy=str(self.policy_path),
            inbound=len(policy.inbound),
            message="policy reloaded",
        )
        for warning in name_constrained_warnings(policy, self.policy_path):
            self.log.emit("name-constrained-ca", **warning)

    def connection(self) -> _Connection:
        """A protocol instance for one new connection (the event loop's factory)."""
        return _Connection(self)

    def _opened(self, connection: _Connection) -> bool:
        return self._connections.open(
            connection,
            connection.peer,
            connection.client,
            limit=self.max_connections,
            per_client=self.max_connections_per_client,
        )

    def _closed(self, connection: _Connection) -> None:
        self._connections.close(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    async def run(self, sock: socket.socket, *, announce: Callable[[], None] | None) -> None:
        """Serve on a listening socket until SIGTERM or SIGINT; reload on SIGHUP.

        ``announce`` is called once the signal handlers are in place (the ready line).
        """
        loop = asyncio.get_running_loop()
        self.log.attach(loop)
        recorder = self.recorder
        if recorder is not None:
            path = str(recorder.path)

            def on_error(message: str) -> None:
                # Called in the recorder's thread: the log line is written by the loop.
                loop.call_soon_threadsafe(
                    functools.partial(self.log.emit, "record-error", path=path, message=message)
                )

            recorder.on_error = on_error
        try:
            await self._run(loop, sock, announce)
        finally:
            if recorder is not None:
                recorder.on_error = None
            self.log.detach()

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        announce: Callable[[], None] | None,
    ) -> None:
        server = await serve_until_stopped(
            self.log,
            start=lambda: loop.create_server(self.connection, sock=sock),
            reload=self.reload,
            announce=announce,
            connections=self._connections,
        )
        if self._connections:
            # Answers already written still go out; then each connection closes.
            self._all_closed = asyncio.Event()
            for connection in self._connections:
                connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), timeout=STOP_GRACE)
            for connection in self._connections:
                connection.abort()
        await server.wait_closed()
        self.log.emit("stopped")


class _Connection(asyncio.Protocol):
    """One Postfix connection: requests in, answers out, until EOF or an error.

    A whole request must arrive within the idle timeout after the previous answer:
    this bounds both an idle connection and one that trickles a request byte by
    byte. A peer that does not read its answers is not read from either (and is
    closed when the idle timeout passes).
    """

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.parser = RequestParser()
        self.peer = "?"
        self.client = "?"
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._backlog = bytearray()
        self._writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer, self.client = peer_of(transport)
        if not self.server._opened(self):
            transport.close()
            return
        self._last = self._loop.time()
        self._schedule(self._last + self.server.idle_timeout)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._backlog += data
        self._serve_backlog()

    def _serve_backlog(self) -> None:
        """Answer the received requests, a piece at a time, while the peer reads the
        answers; what is left waits (with reading paused) until it does."""
        transport = self.transport
        assert transport is not None
        server = self.server
        parser = self.parser
        try:
            while self._backlog and not self._writing_paused and not transport.is_closing():
                piece = bytes(self._backlog[:PIECE_BYTES])
                del self._backlog[:PIECE_BYTES]
                requests = parser.feed(piece)
                if requests:
                    # Writing past the buffer's limit calls pause_writing (below).
                    replies, violation = server.answer(requests)
                    transport.write(replies)
                    self._last = self._loop.time()
                    if violation is not None:
                        # Not Postfix, or no longer speaking its protocol: the answer
                        # goes out, then the connection closes (bounded log per peer).
                        self._close_for(violation)
                        return
                if parser.error is not None:
                    self._close_for(parser.error)
                    return
        except Exception as exc:  # never crash the server because of one connection
            server.log.emit("error", peer=self.peer, message=f"{type(exc).__name__}: {exc}")
            self._backlog.clear()
            transport.abort()

    def _close_for(self, problem: str | Exception) -> None:
        """Log a protocol error and close: what was answered still goes out, nothing
        more is read."""
        self.server.log.emit(
            "protocol-error", peer=self.peer, message=f"{problem}; closing the connection"
        )
        self._backlog.clear()
        assert self.transport is not None
        self.transport.close()

    def eof_received(self) -> bool:
        if self.parser.pending and self.parser.error is None:
            self.server.log.emit(
                "protocol-error",
                peer=self.peer,
                message="connection closed in the middle of a request",
            )
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if exc is not None:
            self.server.log.emit("connection-error", peer=self.peer, message=str(exc))
        self.server._closed(self)

    def pause_writing(self) -> None:
        # The peer is not reading its answers: stop reading its requests meanwhile.
        self._writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._serve_backlog()
        if not self._writing_paused and not transport.is_closing():
            transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _schedule(self, when: float) -> None:
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._idle)

    def _idle(self) -> None:
        # One timer per connection, moved only when it fires: an answer just records
        # its time (cheaper than rescheduling a timer for every request).
        self._timer = None
        deadline = self._last + self.server.idle_timeout
        if deadline > self._timer_at:
            self._schedule(deadline)
            return
        self.server.log.emit("idle-timeout", peer=self.peer, seconds=self.server.idle_timeout)
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # answers that cannot leave are not waited for
            else:
                self.transport.close()


def serve_postfix(config: ServeConfig, *, log: JsonLog, errors: TextIO | None = None) -> int:
    """Run the Postfix policy service until SIGTERM/SIGINT; the exit status.

    0 after a clean stop; 2 when it does not start (an invalid or unservable policy,
    an address that cannot be bound, a live --pidfile), said in plain text on
    ``errors`` (standard error); 1 when a worker process died unexpectedly (the whole
    service stops so the service manager restarts it; Postfix meanwhile applies its
    default action).
    """
    return run_service("tlsconnector serve postfix", errors, lambda: _serve(config, log))


def _serve(config: ServeConfig, log: JsonLog) -> int:
    shown = show(str(config.policy_path), 200)
    try:
        policy = load_policy(config.policy_path)
    except PolicyError as exc:
        raise StartupError(
            f"not starting: the policy {shown} is invalid", [str(p) for p in exc.problems]
        ) from None
    problem = ungoverned(policy)
    if problem is not None:
        raise StartupError(f"not starting: the policy {shown} governs no inbound mail", [problem])
    problem = unanswerable_revocation(policy)
    if problem is not None:
        raise StartupError(
            f"not starting: the policy {shown} cannot be served to Postfix", [problem]
        )
    if config.record_path is not None and config.workers != 1:
        # Several processes would rotate one file under each other.
        raise StartupError("not starting: --record needs --workers 1")
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
    try:
        if pidfile is not None:
            pidfile.write()
        return _run(config, log, policy, sock, address)
    finally:
        # (Forked workers end with os._exit: only the starting process gets here.)
        if config.unix_path is not None and inode is not None:
            remove_socket(config.unix_path, inode)
        if pidfile is not None:
            pidfile.remove()


def _run(
    config: ServeConfig, log: JsonLog, policy: Policy, sock: socket.socket, address: str
) -> int:
    for warning in name_constrained_warnings(policy, config.policy_path):
        log.emit("name-constrained-ca", **warning)
    recorder: Recorder | None = None
    if config.record_path is not None:
        recorder = Recorder(
            config.record_path,
            max_bytes=config.record_max_bytes,
            keep=config.record_keep,
            redact_key=config.record_redact_key,
        )

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
            max_connections_per_client=config.max_connections_per_client,
            recorder=recorder,
        )

    with sock:
        if config.workers == 1:
            try:
                asyncio.run(make_server().run(sock, announce=announce))
            finally:
                if recorder is not None:
                    _close_recorder(recorder, log)
            return EXIT_OK
        return _supervise(sock, config.workers, make_server, announce, log)


def _close_recorder(recorder: Recorder, log: JsonLog) -> None:
    """Write the records still waiting (bounded wait), then log the counts."""
    finished = recorder.close(timeout=LOG_DRAIN_SECONDS)
    counts = recorder.stats()
    log.emit(
        "record-stopped",
        path=str(recorder.path),
        **counts,
        message=f"recording stopped: {counts['written']} records written, "
        f"{counts['dropped']} dropped (buffer full), {counts['failed']} lost to write errors"
        + ("" if finished else "; records still waiting were not written in time"),
    )


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
            _Supervisor(children, log).forward(signal.SIGTERM)
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

    supervisor = _Supervisor(children, log)
    for signum in STOP_SIGNALS:
        signal.signal(signum, supervisor.on_stop)
    signal.signal(signal.SIGHUP, supervisor.on_hup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ALL_SIGNALS)
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

    def __init__(self, children: set[int], log: JsonLog) -> None:
        self.children = children
        self.log = log
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
        self.log.reopen(quiet=True)  # system calls only (see JsonLog.reopen)
        self.forward(signal.SIGHUP)
