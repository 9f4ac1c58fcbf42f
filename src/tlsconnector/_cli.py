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

import argparse
import collections
import concurrent.futures
import datetime as dt
import gc
import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import IO, Any

from ._certs import PresentedChain
from ._decisions import InboundDecision, OutboundDecision, printable
from ._errors import MESSAGE_LIMIT, FactsError, InvalidValue, PolicyError
from ._facts import (
    ConnectionAttempt,
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
    UndecodableCertificate,
    parse_time,
)
from ._inbound import evaluate_inbound
from ._lint import lint
from ._model import Policy
from ._outbound import DEFAULT_RETRY_WINDOW, evaluate_outbound, plan_routes
from ._policy_file import load_policy

Decision = InboundDecision | OutboundDecision

EXIT_OK = 0
EXIT_UNDECIDED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: A session line longer than this is refused (section 8: overlong lines).
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_RETRY_WINDOW_HOURS = 24 * 366 * 100
#: The shortest retry window the command takes (a queue is read in whole seconds).
MIN_RETRY_WINDOW = dt.timedelta(seconds=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (without the program name)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    handler = args.handler
    result: int = handler(args)
    return result


def run() -> None:
    """Console-script entry point."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not our error. Point stdout at devnull so
        # the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = EXIT_UNDECIDED
    except KeyboardInterrupt:
        # Ctrl-C: stop quietly, as shells expect (128 + SIGINT), without a traceback.
        sys.stderr.write("tlsconnector: interrupted\n")
        status = EXIT_INTERRUPTED
    sys.exit(status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlsconnector",
        description="Forced-TLS partner connectors: check policies and decide sessions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="validate a policy file and lint it",
        description="Validate a policy file; print lint warnings (see docs/lint.md) to "
        "standard error.",
    )
    check.add_argument("policy", metavar="POLICY.toml")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when there is any lint warning"
    )
    check.set_defaults(handler=_cmd_check)

    inbound = commands.add_parser(
        "inbound",
        help="decide inbound sessions",
        description="Decide inbound sessions from a JSON Lines file (--sessions) or one "
        "session given by flags.",
    )
    _batch_arguments(inbound, what="session")
    single = inbound.add_argument_group("single session (instead of --sessions)")
    single.add_argument("--peer-ip", help="the connecting client's IP address")
    single.add_argument("--mail-from", help='envelope sender; "" or "<>" for the null sender')
    single.add_argument("--rcpt-to", action="append", default=[], help="repeatable")
    single.add_argument("--helo")
    tls = single.add_mutually_exclusive_group()
    tls.add_argument("--cert", metavar="CHAIN.pem", help="client chain, leaf first (implies TLS)")
    tls.add_argument("--no-tls", action="store_true", help="the session did not use STARTTLS")
    tls.add_argument(
        "--peer-cn",
        action="append",
        metavar="CN",
        help="a CN the MTA extracted (repeatable); with --peer-unverified if the MTA "
        "did not verify the chain",
    )
    single.add_argument("--peer-unverified", action="store_true")
    inbound.set_defaults(handler=_cmd_inbound)

    outbound = commands.add_parser(
        "outbound",
        help="plan and judge outbound deliveries",
        description="Decide outbound messages from a JSON Lines file (--sessions) or one "
        "recipient given by flags. Without --cert, --tls, --no-tls or --peer-cn the "
        "answer is the plan only (action 'route').",
    )
    _batch_arguments(outbound, what="attempt")
    outbound.add_argument(
        "--retry-window",
        type=float,
        default=DEFAULT_RETRY_WINDOW.total_seconds() / 3600,
        metavar="HOURS",
        help="queue time after which a failing attempt bounces (default: 24)",
    )
    one = outbound.add_argument_group("single recipient (instead of --sessions)")
    one.add_argument("--recipient", help="the recipient address")
    one.add_argument("--connector", help="a connector named by a transport rule")
    one.add_argument("--peer-host", help="the host connected to (recorded only)")
    attempt = one.add_mutually_exclusive_group()
    attempt.add_argument("--cert", metavar="CHAIN.pem", help="server chain, leaf first")
    attempt.add_argument("--tls", action="store_true", help="TLS used, no certificate known")
    attempt.add_argument("--no-tls", action="store_true", help="connected without STARTTLS")
    attempt.add_argument("--peer-cn", action="append", metavar="CN", help="MTA-verified CN")
    one.add_argument("--peer-unverified", action="store_true")
    one.add_argument("--queued-since", help="ISO 8601 time the message was first queued")
    outbound.set_defaults(handler=_cmd_outbound)

    routes = commands.add_parser(
        "routes",
        help="show which connector, route and TLS each recipient domain gets",
        description="For checking routing before go-live: one line per domain.",
    )
    routes.add_argument("--policy", required=True, metavar="POLICY.toml")
    routes.add_argument("domains", nargs="*", metavar="DOMAIN")
    routes.add_argument("--domains-file", metavar="FILE", help="one domain per line")
    routes.add_argument("--json", action="store_true")
    routes.set_defaults(handler=_cmd_routes)

    for module_name in _COMMAND_MODULES:
        module = importlib.import_module(module_name, __package__)
        module.register(commands)
    return parser


#: Further commands, each in its own module exposing
#: ``register(commands: argparse._SubParsersAction) -> None``; a handler set with
#: ``set_defaults(handler=...)`` takes the parsed arguments and returns the exit status.
#: Modules are imported only when the command line runs.
_COMMAND_MODULES: tuple[str, ...] = ("._cmd_demo", "._cmd_eop", "._cmd_probe", "._cmd_serve")


def _batch_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """The options ``inbound`` and ``outbound`` share: the policy, the JSON Lines
    input, JSON output, and the time."""
    parser.add_argument("--policy", required=True, metavar="POLICY.toml")
    parser.add_argument(
        "--sessions", metavar="FILE.jsonl", help="one JSON object per line; - for stdin"
    )
    parser.add_argument("--json", action="store_true", help="one JSON decision per line")
    parser.add_argument(
        "--at",
        help=f"ISO 8601 time with offset: the {what} time, and with --sessions the time "
        'of lines without "at" (default: now)',
    )
    parser.add_argument(
        "--jobs",
        type=_jobs_count,
        default=1,
        metavar="N",
        help="with --sessions: decide in N worker processes (0: one per available core); "
        "answers keep the input's order (default: 1)",
    )


def _jobs_count(text: str) -> int:
    """``--jobs``: a whole number from 0 to :data:`MAX_JOBS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 0 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_JOBS}, not {value}")
    return value


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_UNDECIDED
    print(
        f"{args.policy}: valid ({_count(len(policy.inbound), 'inbound')}, "
        f"{_count(len(policy.outbound), 'outbound')})"
    )
    warnings = lint(policy)
    for warning in warnings:
        _err(f"{args.policy}: {warning}")
    if warnings and args.strict:
        count = len(warnings)
        _err(f"{args.policy}: {count} lint warning{'s' if count != 1 else ''} (--strict)")
        return EXIT_UNDECIDED
    return EXIT_OK


def _count(number: int, direction: str) -> str:
    return f"{number} {direction} connector{'s' if number != 1 else ''}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cmd_inbound(args: argparse.Namespace) -> int:
    single = (
        args.peer_ip,
        args.mail_from,
        args.cert,
        args.peer_cn,
        args.helo,
        args.rcpt_to or None,
        args.no_tls or None,
        args.peer_unverified or None,
    )
    if args.sessions is None and args.peer_ip is None:
        _err("tlsconnector inbound: give --sessions FILE, or --peer-ip and --mail-from")
        return EXIT_USAGE
    if args.sessions is not None and any(flag is not None for flag in single):
        _err("tlsconnector inbound: --sessions cannot be combined with single-session flags")
        return EXIT_USAGE
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.sessions is None:
        return _single_inbound(policy, args)

    def decide(obj: object, now: dt.datetime) -> Decision:
        return evaluate_inbound(policy, InboundSession.from_json(obj, default_at=now))

    return _decide_file(
        args.sessions, decide, as_json=args.json, command="inbound", at=args.at, jobs=args.jobs
    )


def _decide_file(
    name: str,
    decide: Callable[[object, dt.datetime], Decision],
    *,
    as_json: bool,
    command: str,
    at: str | None,
    jobs: int = 1,
) -> int:
    """Decide every line of a JSON Lines file; ``at`` (from ``--at``) is the time for
    lines without one, else the clock is read once for the whole run (section 9)."""
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
        _err(f"tlsconnector {command}: cannot read {name}: {exc.strerror}")
        return EXIT_USAGE
    with stream:
        return _decide_lines(stream, decide, as_json=as_json, default_at=default_at, jobs=jobs)


def _available_cores() -> int:
    try:
        return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on every platform
        return max(1, min(MAX_JOBS, os.cpu_count() or 1))


def _single_inbound(policy: Policy, args: argparse.Namespace) -> int:
    try:
        if args.mail_from is None:
            raise FactsError("mail_from", None, "is required (--mail-from)")
        at = parse_time(args.at, field="at") if args.at is not None else _now()
        tls: TLSFacts | None
        if args.no_tls:
            tls = None
        elif args.cert is not None:
            data = _read_cert(args.cert)
            try:
                tls = TLSFacts(PresentedChain.from_pem(data))
            except InvalidValue as exc:
                raise FactsError("cert", args.cert, exc.reason) from None
        elif args.peer_cn:
            tls = TLSFacts(MtaVerifiedCertificate(tuple(args.peer_cn), not args.peer_unverified))
        else:
            tls = TLSFacts(None)
        session = InboundSession.create(
            peer_ip=args.peer_ip,
            mail_from=args.mail_from,
            rcpt_to=args.rcpt_to,
            tls=tls,
            at=at,
            helo=args.helo,
        )
    except FactsError as exc:
        _err(f"session: {exc}")
        return EXIT_UNDECIDED
    decision = evaluate_inbound(policy, session)
    if args.json:
        _print_json(decision.to_json())
    else:
        print(explain(decision, label="session"))
    return EXIT_OK


def _cmd_outbound(args: argparse.Namespace) -> int:
    single = (args.recipient, args.connector, args.peer_host, args.cert, args.peer_cn)
    flags = (
        *single,
        args.tls or None,
        args.no_tls or None,
        args.peer_unverified or None,
        args.queued_since,
    )
    if args.sessions is None and args.recipient is None:
        _err("tlsconnector outbound: give --sessions FILE, or --recipient")
        return EXIT_USAGE
    if args.sessions is not None and any(flag is not None for flag in flags):
        _err("tlsconnector outbound: --sessions cannot be combined with single-recipient flags")
        return EXIT_USAGE
    # Positive and at most about a century: a timedelta cannot hold "inf" or 1e20 hours.
    # Checked again after conversion: 1e-12 hours passes the range but rounds to a
    # zero timedelta (timedelta keeps whole microseconds).
    window = None
    if 0 < args.retry_window <= MAX_RETRY_WINDOW_HOURS:
        window = dt.timedelta(hours=args.retry_window)
    if window is None or window < MIN_RETRY_WINDOW:
        _err(
            f"tlsconnector outbound: --retry-window {printable(str(args.retry_window))}: "
            f"must be a number of hours of at least {MIN_RETRY_WINDOW.total_seconds():g} "
            f"second and at most {MAX_RETRY_WINDOW_HOURS}"
        )
        return EXIT_USAGE
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.sessions is None:
        return _single_outbound(policy, args, window)

    def decide(obj: object, now: dt.datetime) -> Decision:
        session = OutboundSession.from_json(obj, default_at=now)
        return evaluate_outbound(policy, session, retry_window=window)

    return _decide_file(
        args.sessions, decide, as_json=args.json, command="outbound", at=args.at, jobs=args.jobs
    )


def _single_outbound(policy: Policy, args: argparse.Namespace, window: dt.timedelta) -> int:
    try:
        at = parse_time(args.at, field="at") if args.at is not None else _now()
        attempt: ConnectionAttempt | None
        if args.no_tls:
            attempt = ConnectionAttempt(None)
        elif args.tls:
            attempt = ConnectionAttempt(TLSFacts(None))
        elif args.cert is not None:
            data = _read_cert(args.cert)
            try:
                facts = TLSFacts(PresentedChain.from_pem(data))
            except InvalidValue as exc:
                facts = TLSFacts(UndecodableCertificate(exc.reason))
            attempt = ConnectionAttempt(facts)
        elif args.peer_cn:
            cns = MtaVerifiedCertificate(tuple(args.peer_cn), not args.peer_unverified)
            attempt = ConnectionAttempt(TLSFacts(cns))
        else:
            attempt = None
        session = OutboundSession.create(
            recipient=args.recipient,
            connector=args.connector,
            peer_host=args.peer_host,
            attempt=attempt,
            queued_since=args.queued_since,
            at=at,
        )
    except FactsError as exc:
        _err(f"session: {exc}")
        return EXIT_UNDECIDED
    decision = evaluate_outbound(policy, session, retry_window=window)
    if args.json:
        _print_json(decision.to_json())
    else:
        print(explain(decision, label=args.recipient))
    return EXIT_OK


def _read_cert(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(2 * 1024 * 1024)
    except OSError as exc:
        raise FactsError("cert", path, f"cannot read: {exc.strerror}") from None


def _cmd_routes(args: argparse.Namespace) -> int:
    domains = list(args.domains)
    if args.domains_file is not None:
        try:
            with open(args.domains_file, encoding="utf-8") as handle:
                domains += [line.strip() for line in handle if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            _err(f"tlsconnector routes: cannot read {args.domains_file}: {exc}")
            return EXIT_USAGE
    if not domains:
        _err("tlsconnector routes: name at least one domain (or --domains-file)")
        return EXIT_USAGE
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_USAGE
    status = EXIT_OK
    rows: list[tuple[str, str, str, str, str]] = []
    for domain in domains:
        try:
            (decision,) = plan_routes(policy, [domain])
        except InvalidValue as exc:
            status = EXIT_UNDECIDED
            _err(f"{printable(domain)}: {exc.reason}")
            if args.json:
                _print_json({"error": {"domain": domain, "message": exc.reason}})
            continue
        if args.json:
            _print_json({"domain": domain, **decision.to_json()})
            continue
        route, tls = decision.route, decision.tls
        rows.append(
            (
                printable(domain),
                printable(decision.connector) if decision.connector else "(none)",
                f"{route.kind} {' '.join(route.hosts)}" if route else "-",
                tls.mode if tls else "-",
                (tls.domain or "-") if tls else "-",
            )
        )
    if rows:
        header = ("DOMAIN", "CONNECTOR", "ROUTE", "TLS", "CN MUST MATCH")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
    return status


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
            raise FactsError("(line)", None, f"longer than {MAX_LINE_BYTES} bytes")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FactsError("(line)", None, f"not UTF-8 (byte {exc.start})") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]  # the UTF-8 byte order mark Windows editors write first
        try:
            obj: Any = _SESSION_JSON.decode(text)
        except _DuplicateKey as exc:
            raise FactsError(exc.key, None, "is given twice in one session line") from None
        except RecursionError:
            raise FactsError("(line)", None, "not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and e.g. integers over 4300 digits
            message = getattr(exc, "msg", str(exc))
            raise FactsError("(line)", None, f"not valid JSON: {message}") from None
        decision = decide(obj, default_at)
    except FactsError as exc:
        return _line_error(number, exc.field, exc.message, as_json=as_json)
    except Exception as exc:  # an edge: a bug becomes an undecided line
        # Never fail open: the line gets an error object, never an action, and the
        # run goes on; the exit status says that some lines were not decided.
        message = f"internal error while deciding: {type(exc).__name__}: {exc}"
        return _line_error(number, None, message, as_json=as_json)
    if as_json:
        return _json_line(decision.to_json()), None
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
MAX_JOBS = 64

Chunk = list[tuple[int, bytes | None]]

#: What the worker processes decide with: set before they are forked, so they inherit
#: the policy and the deciding function instead of receiving them pickled.
_BATCH: tuple[Callable[[object, dt.datetime], Decision], bool, dt.datetime] | None = None


def _decide_chunk(chunk: Chunk) -> tuple[str, str]:
    """A worker's task: (standard output, standard error) for consecutive lines."""
    assert _BATCH is not None, "the batch is set before the workers start"
    decide, as_json, default_at = _BATCH
    outs: list[str] = []
    errors: list[str] = []
    for number, line in chunk:
        out, error = _decide_one(number, line, decide, as_json=as_json, default_at=default_at)
        if error is not None:
            errors.append(error)
        outs.append(out)
    if not gc.isenabled():  # a worker of a batch (see _BatchCollector)
        _collect_after_chunk()
    return "".join(outs), "".join(errors)


def _chunks(stream: IO[bytes]) -> Iterator[Chunk]:
    """Consecutive lines, at most :data:`CHUNK_LINES` and, but for one overlong
    line, :data:`CHUNK_BYTES` at a time."""
    chunk: Chunk = []
    size = 0
    for item in _lines(stream):
        line_size = len(item[1]) if item[1] is not None else 0
        if chunk and size + line_size > CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += line_size
        if len(chunk) >= CHUNK_LINES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _lost_lines(numbers: list[int], *, as_json: bool) -> tuple[str, str]:
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
    pending: collections.deque[tuple[list[int], concurrent.futures.Future[tuple[str, str]]]]
    pending = collections.deque()

    def emit(result: tuple[str, str]) -> None:
        nonlocal status
        out, errors = result
        if errors:
            status = EXIT_UNDECIDED
            sys.stderr.write(errors)
        sys.stdout.write(out)

    def finish(numbers: list[int], future: concurrent.futures.Future[tuple[str, str]]) -> None:
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
            for chunk in _chunks(stream):
                if not broken:
                    try:
                        future = pool.submit(_decide_chunk, chunk)
                        pending.append(([number for number, _ in chunk], future))
                    except BrokenProcessPool:
                        broken = True
                if broken:
                    while pending:
                        finish(*pending.popleft())
                    emit(_decide_chunk(chunk))
                    continue
                while len(pending) >= CHUNKS_AHEAD * jobs or (pending and pending[0][1].done()):
                    finish(*pending.popleft())
            while pending:
                finish(*pending.popleft())
    finally:
        _BATCH = None
    return status


def _line_error(number: int, field: str | None, message: str, *, as_json: bool) -> tuple[str, str]:
    """An undecided line: (its standard output line, its standard error line)."""
    # Attacker text (a JSON key, a value in the message) is escaped, our own
    # formatting kept: no line of a session file can forge an output line.
    where = f"{printable(field)}: " if field else ""
    message_text = printable(message, MESSAGE_LIMIT)
    error = f"line {number}: {where}{message_text}\n"
    if as_json:
        return _json_line({"error": {"line": number, "field": field, "message": message}}), error
    return f"line {number}: ERROR {where}{message_text}\n", error


def explain(decision: Decision, *, label: str) -> str:
    """A readable explanation of one decision, for people."""
    by = f" by connector {decision.connector!r}" if decision.connector else ""
    lines = [f"{label}: {decision.action.value.upper()}{by}"]
    if isinstance(decision, OutboundDecision):
        if decision.route is not None:
            hosts = ", ".join(decision.route.hosts)
            lines.append(f"  route: {decision.route.kind} ({hosts})")
        if decision.tls is not None:
            checked = f", CN must match {decision.tls.domain}" if decision.tls.domain else ""
            lines.append(f"  tls: {decision.tls.mode}{checked}")
        if decision.peer_host:
            lines.append(f"  connected to: {printable(decision.peer_host)}")
    for reason in decision.reasons:
        status = f" [{reason.enhanced}]" if reason.enhanced else ""
        lines.append(f"  - {reason.code}{status}: {reason.detail}")
    if decision.smtp is not None:
        lines.append(f"  reply: {decision.smtp}")
    if decision.chain_verified_by:
        lines.append(f"  chain verified by: {decision.chain_verified_by}")
    return "\n".join(lines)


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n"


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(_json_line(obj))


def _err(message: str) -> None:
    sys.stderr.write(printable_lines(message) + "\n")


def printable_lines(message: str) -> str:
    """Keep newlines (our own formatting) but escape everything else unprintable."""
    return "\n".join(printable(line, limit=2000) for line in message.split("\n"))
