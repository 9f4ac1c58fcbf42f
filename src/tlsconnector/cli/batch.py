"""The command line (section 9): ``tlsconnector check | inbound | outbound | routes``.

Written as a testable ``main(argv) -> int``. Exit statuses:

* 0: the policy is valid (``check``); every session or domain was decided,
  whatever the actions;
* 1: the policy is invalid, or ``check --strict`` found lint warnings; some session
  or domain could not be decided;
* 2: usage error, unreadable input, or an invalid policy for the other commands.
* 130: interrupted (Ctrl-C), without a traceback.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import gc
import json
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import IO, TYPE_CHECKING, Any, cast

from tlsconnector._errors import FactsError, show
from tlsconnector._facts import (
    parse_time,
)
from tlsconnector.cli._common import (
    EXIT_OK,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    MAX_JOBS,
    _err,
    _json_line,
    _line_error,
    explain,
)

if TYPE_CHECKING:
    from tlsconnector.cli._common import Decision

#: A session line longer than this is refused (section 8: overlong lines).
MAX_LINE_BYTES = 8 * 1024 * 1024


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _decide_file(
    name: str,
    decide: Callable[[object, dt.datetime], Decision],
    *,
    as_json: bool,
    command: str,
    at: str | None,
    option: str,
    jobs: int = 1,
) -> int:
    """Decide every line of a JSON Lines file; ``at`` (from ``--at``) is the time for
    lines without one, else the clock is read once for the whole run (section 9).
    ``option`` is the option that named the file (``--sessions``), for the message
    when it cannot be read."""
    if jobs == 0:
        jobs = _available_cores()
    if jobs > 1 and "fork" not in multiprocessing.get_all_start_methods():
        _err(f"tlsconnector {command}: --jobs needs fork(); deciding in one process")
        jobs = 1
    if jobs > 1 and threading.active_count() > 1:
        # A process forked while another thread holds a lock (a cache's) could wait
        # for it forever: only a single-threaded caller (the command itself) forks.
        _err(f"tlsconnector {command}: --jobs needs a single-threaded process; deciding in one")
        jobs = 1
    try:
        default_at = parse_time(at, field="--at") if at is not None else _now()
    except FactsError as exc:
        _err(f"tlsconnector {command}: {exc}")
        return EXIT_USAGE
    try:
        stream = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
    except OSError as exc:
        _err(f"tlsconnector {command}: {option} {show(name)}: cannot read: {exc.strerror or exc}")
        return EXIT_USAGE
    with stream:
        return _decide_lines(stream, decide, as_json=as_json, default_at=default_at, jobs=jobs)


def _available_cores() -> int:
    try:
        return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on every platform
        return max(1, min(MAX_JOBS, os.cpu_count() or 1))


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, bytes)``; ``None`` for a line over the size bound."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # skip the rest of the overlong line, bounded memory
                rest = stream.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: a key given twice is an error, not
    "the last one wins" (a sender could otherwise hide a value from a reviewer)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


_SESSION_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)


class Rendered:
    """An answer whose ``--json`` line is already written (a constant the caller
    returns again and again, such as ``diff``'s "nothing changes"): the engine writes
    ``json_line`` instead of encoding ``to_dict()`` once more for every line."""

    __slots__ = ("json_line", "obj")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.json_line = _json_line(obj)

    def to_dict(self) -> dict[str, Any]:
        return self.obj


class _UnreadableLine(Exception):
    """A line that is no session object at all (no value of it to show)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _decide_one(
    number: int,
    line: bytes | None,
    decide: Callable[[object, dt.datetime], Decision],
    *,
    as_json: bool,
    default_at: dt.datetime,
) -> tuple[str, str | None]:
    """One line: (what goes to standard output, the error for standard error or None)."""
    try:
        if line is None:
            raise _UnreadableLine("(line)", f"longer than {MAX_LINE_BYTES} bytes")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _UnreadableLine("(line)", f"not UTF-8 (byte {exc.start})") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]  # the UTF-8 byte order mark Windows editors write first
        try:
            obj: Any = _SESSION_JSON.decode(text)
        except _DuplicateKey as exc:
            raise _UnreadableLine(exc.key, "is given twice in one session line") from None
        except RecursionError:
            raise _UnreadableLine("(line)", "not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and e.g. integers over 4300 digits
            message = getattr(exc, "msg", str(exc))
            raise _UnreadableLine("(line)", f"not valid JSON: {message}") from None
        decision = decide(obj, default_at)
    except _UnreadableLine as exc:
        return _line_error(number, exc.field, exc.message, as_json=as_json)
    except FactsError as exc:  # a field of the session: its value is shown
        return _line_error(number, exc.field, exc.message, as_json=as_json, value=exc.value)
    except Exception as exc:  # an edge: a bug becomes an undecided line
        # Never fail open: the line gets an error object, never an action, and the
        # run goes on; the exit status says that some lines were not decided.
        message = f"internal error while deciding: {type(exc).__name__}: {exc}"
        return _line_error(number, None, message, as_json=as_json)
    if as_json:
        answer: object = decision  # diff's answers are not decisions (Rendered)
        if type(answer) is Rendered:
            return answer.json_line, None
        return _json_line(decision.to_dict()), None
    return explain(decision, label=f"line {number}") + "\n", None


def _decide_lines(
    stream: IO[bytes],
    decide: Callable[[object, dt.datetime], Decision],
    *,
    as_json: bool,
    default_at: dt.datetime,
    jobs: int = 1,
) -> int:
    with _BatchCollector() as collector:
        if jobs > 1:
            return _decide_lines_in_workers(
                stream, decide, as_json=as_json, default_at=default_at, jobs=jobs
            )
        status = EXIT_OK
        for number, line in _lines(stream):
            out, error = _decide_one(number, line, decide, as_json=as_json, default_at=default_at)
            if error is not None:
                status = EXIT_UNDECIDED
                sys.stderr.write(error)
            sys.stdout.write(out)
            if number % CHUNK_LINES == 0:
                collector.collect()
        return status


class _BatchCollector:
    """Garbage collection during a batch (speed, bounded memory).

    CPython's automatic collection runs every few hundred allocations and would
    traverse a session's live objects again and again (about a tenth of the time
    of a session with a new chain). During a batch it is paused; instead the young
    generations are collected after every :data:`CHUNK_LINES` lines and everything
    after every :data:`FULL_COLLECTION_CHUNKS` of those, so cyclic garbage (an
    exception and its traceback) lives at most that long. The objects alive when
    the batch starts (the policy) are moved out of the collector's way
    (``gc.freeze``), unless the caller froze objects itself (they stay as they
    are). Everything is restored afterwards, also on error.
    """

    def __enter__(self) -> _BatchCollector:
        global _chunks_done
        _chunks_done = 0
        self.enabled = gc.isenabled()
        self.froze = gc.get_freeze_count() == 0
        gc.disable()
        if self.froze:
            gc.freeze()
        return self

    def collect(self) -> None:
        _collect_after_chunk()

    def __exit__(self, *_: object) -> None:
        if self.froze:
            gc.unfreeze()
        if self.enabled:
            gc.enable()


#: Every this many chunks of lines, a full collection (see :class:`_BatchCollector`).
FULL_COLLECTION_CHUNKS = 64
_chunks_done = 0


def _collect_after_chunk() -> None:
    global _chunks_done  # per process: the batch's count of chunks decided here
    _chunks_done += 1
    gc.collect(2 if _chunks_done % FULL_COLLECTION_CHUNKS == 0 else 1)


# --- --jobs N: lines decided by forked worker processes, answers in input order -------

#: Lines handed to a worker at a time (at most this many, and no more lines once
#: this many bytes are reached), and pieces of work in flight per worker.
CHUNK_LINES = 256
CHUNK_BYTES = 1024 * 1024
CHUNKS_AHEAD = 4

#: A chunk's lines, without their newlines (None: a line over MAX_LINE_BYTES).
Chunk = list[bytes | None]


#: What the worker processes decide with: set before they are forked, so they inherit
#: the policy and the deciding function instead of receiving them pickled.
_BATCH: tuple[Callable[[object, dt.datetime], Decision], bool, dt.datetime] | None = None


def _decide_chunk(task: tuple[int, Chunk]) -> tuple[str, str]:
    """A worker's task: (standard output, standard error) for consecutive lines, the
    first of them numbered ``task[0]``."""
    assert _BATCH is not None, "the batch is set before the workers start"
    decide, as_json, default_at = _BATCH
    number, chunk = task
    outs: list[str] = []
    errors: list[str] = []
    for line in chunk:
        out, error = _decide_one(number, line, decide, as_json=as_json, default_at=default_at)
        if error is not None:
            errors.append(error)
        outs.append(out)
        number += 1
    if not gc.isenabled():  # a worker of a batch (see _BatchCollector)
        _collect_after_chunk()
    return "".join(outs), "".join(errors)


#: Bytes read from the input at a time by the main process of ``--jobs`` (it splits
#: them into lines at C speed; no Python code runs per line there). At most
#: MAX_LINE_BYTES: :func:`_line_batches` checks only the lines that span reads.
READ_BYTES = 1024 * 1024


def _line_batches(stream: IO[bytes]) -> Iterator[list[bytes | None]]:
    """Every line of ``stream`` in order, as :func:`_lines` reads them but without
    their newline, a few thousand at a time (what one read of :data:`READ_BYTES`
    holds); ``None`` for a line over :data:`MAX_LINE_BYTES` (its bytes are skipped:
    at most that bound and one read are held)."""
    # The start of a line whose newline is not read yet: a bytearray, so that a long
    # line arriving in many small reads (a pipe) is gathered in linear time.
    carry = bytearray()
    skipping = False  # inside an overlong line
    # read1: what is there, up to READ_BYTES (a pipe's lines are decided as they come,
    # not once a whole read has arrived); read for streams without it.
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(READ_BYTES)
        if not data:
            if skipping:
                yield [None]
            elif carry:
                yield [bytes(carry)]  # the last line, without a newline
            return
        parts = data.split(b"\n")
        rest = parts.pop()  # after the last newline: the start of the next line
        lines = cast("list[bytes | None]", parts)
        if not lines:  # no newline in this read
            if not skipping:
                carry += rest
                if len(carry) > MAX_LINE_BYTES:
                    carry, skipping = bytearray(), True
            continue
        if skipping:
            lines[0], skipping = None, False
        elif carry:
            carry += cast(bytes, lines[0])
            lines[0] = None if len(carry) > MAX_LINE_BYTES else bytes(carry)
        carry = bytearray(rest)
        yield lines


def _chunks(stream: IO[bytes]) -> Iterator[Chunk]:
    """Consecutive lines (without newlines), at most :data:`CHUNK_LINES` and, but for
    one overlong line, :data:`CHUNK_BYTES` at a time."""
    pending: list[bytes | None] = []
    for lines in _line_batches(stream):
        pending = lines if not pending else pending + lines
        start = 0
        while len(pending) - start >= CHUNK_LINES:
            chunk = pending[start : start + CHUNK_LINES]
            if None in chunk or sum(map(len, cast(list[bytes], chunk))) > CHUNK_BYTES:
                chunk = _bounded(chunk)
            yield chunk
            start += len(chunk)
        pending = pending[start:]
    while pending:
        chunk = _bounded(pending[:CHUNK_LINES])
        yield chunk
        pending = pending[len(chunk) :]


def _bounded(lines: Chunk) -> Chunk:
    """The first of ``lines`` that fit in :data:`CHUNK_BYTES` (at least one line; an
    overlong one counts nothing)."""
    size = 0
    for count, line in enumerate(lines):
        size += 0 if line is None else len(line)
        if count and size > CHUNK_BYTES:
            return lines[:count]
    return lines


def _lost_lines(numbers: range, *, as_json: bool) -> tuple[str, str]:
    """Every line of a chunk whose worker process died: undecided, never accepted."""
    message = "internal error while deciding: the worker process deciding this line stopped"
    results = [_line_error(number, None, message, as_json=as_json) for number in numbers]
    return "".join(out for out, _ in results), "".join(error for _, error in results)


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C is the main process's to handle (one message, not one per
    worker); the pool stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decide_lines_in_workers(
    stream: IO[bytes],
    decide: Callable[[object, dt.datetime], Decision],
    *,
    as_json: bool,
    default_at: dt.datetime,
    jobs: int,
) -> int:
    """:func:`_decide_lines` with ``jobs`` forked processes deciding chunks of lines.

    The answers come out in input order, the same as with one process. Reading stays
    at most ``CHUNKS_AHEAD`` chunks per worker ahead of writing (bounded memory). If a
    worker dies, the pool stops: every line of the chunks in flight is undecided (an
    error each, exit status 1) and the rest are decided in this process.
    """
    global _BATCH
    status = EXIT_OK
    # Only the line numbers of a chunk in flight are kept here (its bytes went to the
    # pool): enough to report its lines if its worker dies.
    pending: collections.deque[tuple[range, concurrent.futures.Future[tuple[str, str]]]]
    pending = collections.deque()

    def emit(result: tuple[str, str]) -> None:
        nonlocal status
        out, errors = result
        if errors:
            status = EXIT_UNDECIDED
            sys.stderr.write(errors)
        sys.stdout.write(out)

    def finish(numbers: range, future: concurrent.futures.Future[tuple[str, str]]) -> None:
        try:
            emit(future.result())
        except BrokenProcessPool:
            emit(_lost_lines(numbers, as_json=as_json))

    _BATCH = (decide, as_json, default_at)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_ignore_interrupts
        ) as pool:
            broken = False
            first = 1  # the number of the chunk's first line
            for chunk in _chunks(stream):
                task = (first, chunk)
                first += len(chunk)
                if not broken:
                    try:
                        future = pool.submit(_decide_chunk, task)
                        pending.append((range(task[0], first), future))
                    except BrokenProcessPool:
                        broken = True
                if broken:
                    while pending:
                        finish(*pending.popleft())
                    emit(_decide_chunk(task))
                    continue
                while len(pending) >= CHUNKS_AHEAD * jobs or (pending and pending[0][1].done()):
                    finish(*pending.popleft())
            while pending:
                finish(*pending.popleft())
    finally:
        _BATCH = None
    return status
