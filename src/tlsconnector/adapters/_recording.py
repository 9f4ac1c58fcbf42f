"""Recording decided sessions for replay (spec section 12): the recorder both inbound
adapters share (an edge: it owns a file, a thread and the clock of its error reports).

One JSON line per decided ``RCPT``, in the ``tlsconnector inbound --sessions`` format,
so the file replays as it is (``tlsconnector inbound --sessions FILE``, ``tlsconnector
diff --inbound FILE``): the facts that decided (``peer_ip``, ``mail_from``,
``rcpt_to``, ``helo``, ``tls``, ``at``) and, under ``recorded``, the decision that was
answered (``action``, ``connector``, ``codes``, ``policy``: :func:`policy_digest`).
``inbound`` ignores ``recorded``.

A temporary failure is recorded without facts (they could not be read, or deciding
failed): such a line replays as an error object, never as a decision, so a ``451``
answered for malformed facts never replays as an accept.

Recording never blocks deciding and never changes a decision: :meth:`Recorder.record`
only appends the encoded line to a bounded buffer (:data:`RECORD_BUFFER_BYTES`); a
thread of its own writes it. Lines that do not fit are dropped and counted; a write
that fails (a full disk, a file that cannot be opened) is counted and reported to
``on_error`` at most once per :data:`ERROR_REPORT_SECONDS`, and the file is opened
again for the next lines. The file is rotated by size (``max_bytes``) and at most
``keep`` files are kept (``FILE``, ``FILE.1`` ... ``FILE.<keep-1>``), so the disk
never fills. Files are created readable by their owner only (``0600``): they hold
envelope addresses. With a ``redact_key`` the local parts of addresses are replaced
by a keyed hash (:class:`LocalPartRedactor`); decisions never read local parts.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tlsconnector._chains import PresentedChain
from tlsconnector._decisions import InboundAction, InboundDecision
from tlsconnector._facts import InboundSession, MtaVerifiedCertificate, TLSFacts
from tlsconnector._model import Policy
from tlsconnector.policy_file.writing import policy_to_mapping

__all__ = [
    "DEFAULT_RECORD_KEEP",
    "DEFAULT_RECORD_MAX_BYTES",
    "BackgroundWriter",
    "LocalPartRedactor",
    "Recorder",
    "policy_digest",
    "session_json",
    "write_all",
]

#: Rotation: a file is rotated before it would pass ``max_bytes`` (a single line
#: longer than that is written alone); at most ``keep`` files are kept.
DEFAULT_RECORD_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_RECORD_KEEP = 8
MIN_RECORD_MAX_BYTES = 4096
MAX_RECORD_MAX_BYTES = 1 << 40
MAX_RECORD_KEEP = 1000
#: Encoded lines waiting for the writer thread; lines that do not fit are dropped.
RECORD_BUFFER_BYTES = 4 * 1024 * 1024
#: Bytes handed to one ``write`` at most.
WRITE_BATCH_BYTES = 64 * 1024
#: Write errors are reported at most once per this many seconds (the rest counted).
ERROR_REPORT_SECONDS = 10.0
#: How long :meth:`Recorder.close` waits for the lines still waiting.
CLOSE_SECONDS = 5.0
#: A configured redaction key: at least 16 bytes (128 bits), at most 4096.
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
#: Hex digits of the keyed hash that replaces a local part (128 bits).
REDACTED_HEX = 32

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data``: a short write (a signal during a blocked write) is
    continued, never dropped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class BackgroundWriter(abc.ABC):
    """Encoded lines written from a thread of its own, out of a bounded buffer: the
    writer of the :class:`Recorder` and of the Postfix services' log.

    The deciding side appends lines (:meth:`_append`, under ``_ready``) and never
    waits for the descriptor; the thread takes runs of whole lines of at most
    ``batch_bytes`` (a longer line alone) and hands each run to :meth:`_write_batch`,
    which counts its own write errors, so that the thread goes on. A subclass sets its
    own attributes before calling ``super().__init__``, which starts the thread. The
    thread inherits the caller's signal mask.
    """

    def __init__(self, *, name: str, batch_bytes: int) -> None:
        self._batch_bytes = batch_bytes
        self._lines: deque[bytes] = deque()
        self._size = 0
        self._closing = False
        self._writing = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _append(self, data: bytes) -> None:
        """Queue one line (the caller holds ``_ready`` and checked the room)."""
        self._lines.append(data)
        self._size += len(data)

    @abc.abstractmethod
    def _write_batch(self, batch: list[bytes]) -> None:
        """Write one run of lines (in the writer thread, without holding ``_ready``)."""

    def _run(self) -> None:
        lines = self._lines
        while True:
            with self._ready:
                while not lines and not self._closing:
                    self._ready.wait()
                if not lines:
                    break
                batch = [lines.popleft()]
                size = len(batch[0])
                while lines and size + len(lines[0]) <= self._batch_bytes:
                    size += len(lines[0])
                    batch.append(lines.popleft())
                self._size -= size
                self._writing = True
            try:
                self._write_batch(batch)
            finally:
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()

    def close(self, *, timeout: float = CLOSE_SECONDS) -> bool:
        """Write what waits (for at most ``timeout`` seconds), then stop the thread.
        False when the lines could not all be written in time."""
        deadline = time.monotonic() + timeout
        with self._ready:
            self._closing = True
            self._ready.notify_all()
            while self._lines or self._writing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._ready.wait(remaining)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return True


def policy_digest(policy: Policy) -> str:
    """``sha256:HEX`` of what decides: the connectors in canonical form (sorted by name,
    so independent of the file's order and comments), the trust anchors (their DER),
    the CRLs (their set's content key: independent of file names and order) and the
    ``[trust] revocation`` setting. Two policies with equal digests decide every
    session alike."""
    text = json.dumps(policy_to_mapping(policy), sort_keys=True, ensure_ascii=True)
    digest = hashlib.sha256(text.encode("ascii"))
    digest.update(b"\0revocation\0" + policy.revocation.value.encode("ascii"))
    digest.update(b"\0trust\0")
    if policy.trust is not None:
        # Fixed lengths (two SHA-256 digests): no two stores share these bytes.
        digest.update(policy.trust.key)
        digest.update(b"\0crls\0" + policy.trust.crls.key)
    return f"sha256:{digest.hexdigest()}"


class LocalPartRedactor:
    """Replaces the local part of an address with ``r-`` and the first 128 bits of
    HMAC-SHA256(key, local part), in hex; the domain stays (it decides). The same key
    gives the same replacement, so one sender's sessions stay recognisable within a
    file. The null sender and ``postmaster`` without a domain stay as they are; an
    address without ``@`` is replaced whole."""

    def __init__(self, key: bytes) -> None:
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(
                f"redaction key: {len(key)} bytes; it must be from {MIN_KEY_BYTES} to "
                f"{MAX_KEY_BYTES} bytes"
            )
        self._key = key

    def _hash(self, text: str) -> str:
        data = text.encode("utf-8", "surrogateescape")
        return "r-" + hmac.new(self._key, data, hashlib.sha256).hexdigest()[:REDACTED_HEX]

    def redact(self, address: str) -> str:
        text = address
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]  # as the facts parser reads it
        if text == "" or text.lower() == "postmaster":
            return text
        local, at, domain = text.rpartition("@")
        if not at:
            return self._hash(text)
        # An empty local part stays empty: the facts parser refuses it either way.
        return f"{self._hash(local) if local else ''}@{domain}"


def _stamp(moment: dt.datetime) -> str:
    """A session time for a record: ISO 8601 in UTC, to the microsecond, with ``Z``."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _tls_json(tls: TLSFacts | None) -> dict[str, Any] | None:
    if tls is None:
        return None
    certificate = tls.certificate
    if certificate is None:
        return {}
    if isinstance(certificate, PresentedChain):
        pem = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for c in certificate.certificates
        )
        return {"peer_chain_pem": pem}
    if isinstance(certificate, MtaVerifiedCertificate):
        obj: dict[str, Any] = {
            "peer_cn": list(certificate.cns),
            "peer_verified": certificate.verified,
        }
        if certificate.fingerprint is not None:
            obj["peer_fingerprint"] = certificate.fingerprint
        return obj
    # An undecodable chain is malformed inbound facts: never part of a decided session.
    raise TypeError(f"no JSON form for inbound certificate facts {type(certificate).__name__}")


def session_json(session: InboundSession) -> dict[str, Any]:
    """The ``inbound --sessions`` object of decided session facts (section 9); it
    decides the same way again under the same policy."""
    obj: dict[str, Any] = {
        "peer_ip": str(session.peer_ip),
        "mail_from": session.mail_from,
        "rcpt_to": list(session.rcpt_to),
        "tls": _tls_json(session.tls),
        "at": _stamp(session.at),
    }
    if session.helo is not None:
        obj["helo"] = session.helo
    return obj


class Recorder(BackgroundWriter):
    """Writes one JSON line per decided session to ``path`` from a thread of its own.

    :meth:`record` never blocks on the disk and never raises. ``on_error`` is called
    (from the writer thread) with a message when writing fails, at most once per
    :data:`ERROR_REPORT_SECONDS`; it must be thread-safe and must not raise (what it
    raises is ignored). :meth:`stats` gives the counts: ``written``, ``dropped`` (the
    buffer was full), ``failed`` (a write or an open failed).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_RECORD_MAX_BYTES,
        keep: int = DEFAULT_RECORD_KEEP,
        redact_key: bytes | None = None,
        buffer_bytes: int = RECORD_BUFFER_BYTES,
        on_error: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not MIN_RECORD_MAX_BYTES <= max_bytes <= MAX_RECORD_MAX_BYTES:
            raise ValueError(
                f"record max_bytes = {max_bytes}: must be from {MIN_RECORD_MAX_BYTES} to "
                f"{MAX_RECORD_MAX_BYTES}"
            )
        if not 1 <= keep <= MAX_RECORD_KEEP:
            raise ValueError(f"record keep = {keep}: must be from 1 to {MAX_RECORD_KEEP}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.buffer_bytes = buffer_bytes
        self.on_error = on_error
        self.redactor = LocalPartRedactor(redact_key) if redact_key is not None else None
        self._monotonic = monotonic
        self._fd: int | None = None
        self._file_size = 0
        self._regular = False
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._unreported = 0
        self._last_report: float | None = None
        self._counted = 0  # lines of the batch being written that were written
        super().__init__(name="tlsconnector-record", batch_bytes=WRITE_BATCH_BYTES)

    # --- the deciding side: encode and hand over, never wait -----------------------

    def record(
        self,
        session: Mapping[str, Any] | None,
        decision: InboundDecision,
        *,
        policy: str,
        at: dt.datetime | str,
    ) -> None:
        """Record one answered request: ``session`` is its ``inbound --sessions``
        object (None when the facts could not be read: a temporary failure), with
        ``at`` (used when ``session`` has none) and the answering policy's digest."""
        try:
            line = self.line(session, decision, policy=policy, at=at)
        except Exception as exc:  # a record must never fail a decision
            self._failed(1, f"cannot encode a record: {type(exc).__name__}: {exc}")
            return
        self.put(line)

    def line(
        self,
        session: Mapping[str, Any] | None,
        decision: InboundDecision,
        *,
        policy: str,
        at: dt.datetime | str,
    ) -> bytes:
        """The encoded line :meth:`record` writes (with its newline)."""
        recorded: dict[str, Any] = {
            "action": str(decision.action),
            "connector": decision.connector,
            "codes": list(decision.codes),
            "policy": policy,
        }
        if session is None or decision.action is InboundAction.TEMPFAIL:
            obj: dict[str, Any] = {"at": at if isinstance(at, str) else _stamp(at)}
            if self.redactor is None:
                # The reason's detail may quote an address: left out when redacting.
                recorded["error"] = "; ".join(r.detail for r in decision.reasons)[:1024]
            obj["recorded"] = recorded
        else:
            obj = dict(session)
            if "at" not in obj:
                obj["at"] = at if isinstance(at, str) else _stamp(at)
            if self.redactor is not None:
                redact = self.redactor.redact
                if isinstance(obj.get("mail_from"), str):
                    obj["mail_from"] = redact(obj["mail_from"])
                rcpt_to = obj.get("rcpt_to")
                if isinstance(rcpt_to, Sequence) and not isinstance(rcpt_to, str):
                    obj["rcpt_to"] = [redact(r) if isinstance(r, str) else r for r in rcpt_to]
            obj["recorded"] = recorded
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
        return (text + "\n").encode("ascii")

    def put(self, line: bytes) -> None:
        """Hand one encoded line to the writer; dropped (and counted) when the buffer
        is full or the recorder is closed."""
        with self._ready:
            if self._closing or self._size + len(line) > self.buffer_bytes:
                self.dropped += 1
                return
            self._append(line)
            self._ready.notify()

    def stats(self) -> dict[str, int]:
        with self._ready:
            return {"written": self.written, "dropped": self.dropped, "failed": self.failed}

    # --- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        super()._run()
        self._close_file()  # closed: everything was written

    def _write_batch(self, batch: list[bytes]) -> None:
        try:
            self._write(batch)
        except Exception as exc:  # OSError mostly; the thread must go on either way
            self._close_file()
            detail = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            self._failed(len(batch) - self._counted, f"cannot write {self.path}: {detail}")
        finally:
            with self._ready:
                self.written += self._counted
                self._counted = 0

    def _write(self, batch: list[bytes]) -> None:
        """Write the lines, rotating before the file would pass ``max_bytes``;
        ``_counted`` says how many were written (also when an error stops it)."""
        self._counted = 0
        fd = self._open()
        segment = bytearray()
        pending = 0
        for data in batch:
            if (
                self._regular
                and self._file_size + len(segment) > 0
                and self._file_size + len(segment) + len(data) > self.max_bytes
            ):
                if segment:
                    self._write_all(fd, segment)
                    self._counted += pending
                    segment, pending = bytearray(), 0
                fd = self._rotate()
            segment += data
            pending += 1
        if segment:
            self._write_all(fd, segment)
            self._counted += pending

    def _write_all(self, fd: int, data: bytearray) -> None:
        # After a failed write the file is opened again and its size read afresh.
        write_all(fd, data)
        self._file_size += len(data)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        # Only a regular file is rotated: never rename a device (/dev/null) or a pipe.
        self._regular = stat.S_ISREG(info.st_mode)
        self._file_size = info.st_size if self._regular else 0
        self._fd = fd
        if self._file_size and os.pread(fd, 1, self._file_size - 1) != b"\n":
            # A write cut short (a full disk) left half a line: end it, so that only
            # that line, not the next one too, is unreadable on replay.
            self._write_all(fd, bytearray(b"\n"))
        return fd

    def _rotate(self) -> int:
        """FILE -> FILE.1 -> ... -> FILE.<keep-1>; the oldest goes; a new FILE."""
        self._close_file()
        path = str(self.path)
        if self.keep == 1:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for index in range(self.keep - 1, 0, -1):
            source = path if index == 1 else f"{path}.{index - 1}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(source, f"{path}.{index}")
        return self._open()

    def _close_file(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _failed(self, count: int, message: str) -> None:
        with self._ready:
            self.failed += count
            self._unreported += count
            now = self._monotonic()
            if self._last_report is not None and now < self._last_report + ERROR_REPORT_SECONDS:
                return
            self._last_report = now
            unreported, self._unreported = self._unreported, 0
        callback = self.on_error
        if callback is not None:
            with contextlib.suppress(Exception):
                callback(
                    f"{message}; {unreported} records lost since the last report "
                    f"({self.failed} in all); deciding goes on"
                )
