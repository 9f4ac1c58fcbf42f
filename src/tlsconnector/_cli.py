"""The command line (section 9): ``tlsconnector check | inbound``.

Written as a testable ``main(argv) -> int``. Exit statuses:

* 0: the policy is valid (``check``); every session was decided (``inbound``),
  whatever the actions;
* 1: the policy is invalid (``check``); some session could not be decided;
* 2: usage error, unreadable input, or an invalid policy for ``inbound``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ._certs import PresentedChain
from ._decisions import InboundDecision, printable
from ._errors import FactsError, InvalidValue, PolicyError
from ._facts import InboundSession, MtaVerifiedCertificate, TLSFacts, parse_time
from ._inbound import evaluate_inbound
from ._model import Policy
from ._policy_file import load_policy

EXIT_OK = 0
EXIT_UNDECIDED = 1
EXIT_USAGE = 2

#: A session line longer than this is refused (section 8: overlong lines).
MAX_LINE_BYTES = 8 * 1024 * 1024


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
    sys.exit(status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlsconnector",
        description="Forced-TLS partner connectors: check policies and decide sessions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a policy file")
    check.add_argument("policy", metavar="POLICY.toml")
    check.set_defaults(handler=_cmd_check)

    inbound = commands.add_parser(
        "inbound",
        help="decide inbound sessions",
        description="Decide inbound sessions from a JSON Lines file (--sessions) or one "
        "session given by flags.",
    )
    inbound.add_argument("--policy", required=True, metavar="POLICY.toml")
    inbound.add_argument(
        "--sessions", metavar="FILE.jsonl", help="one JSON session per line; - for stdin"
    )
    inbound.add_argument("--json", action="store_true", help="one JSON decision per line")
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
    single.add_argument("--at", help="ISO 8601 time with offset (default: now)")
    inbound.set_defaults(handler=_cmd_inbound)
    return parser


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_UNDECIDED
    count = len(policy.inbound)
    print(f"{args.policy}: valid ({count} inbound connector{'s' if count != 1 else ''})")
    return EXIT_OK


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cmd_inbound(args: argparse.Namespace) -> int:
    single = (args.peer_ip, args.mail_from, args.cert, args.peer_cn, args.no_tls or None)
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
    try:
        stream = sys.stdin.buffer if args.sessions == "-" else open(args.sessions, "rb")  # noqa: SIM115
    except OSError as exc:
        _err(f"tlsconnector inbound: cannot read {args.sessions}: {exc.strerror}")
        return EXIT_USAGE
    with stream:
        return _decide_lines(policy, stream, as_json=args.json)


def _single_inbound(policy: Policy, args: argparse.Namespace) -> int:
    try:
        if args.mail_from is None:
            raise FactsError("mail_from", None, "is required (--mail-from)")
        at = parse_time(args.at, field="at") if args.at is not None else _now()
        tls: TLSFacts | None
        if args.no_tls:
            tls = None
        elif args.cert is not None:
            try:
                with open(args.cert, "rb") as handle:
                    data = handle.read(2 * 1024 * 1024)
            except OSError as exc:
                raise FactsError("cert", args.cert, f"cannot read: {exc.strerror}") from None
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


def _decide_lines(policy: Policy, stream: IO[bytes], *, as_json: bool) -> int:
    status = EXIT_OK
    now = _now()  # one clock reading for the run: the default "at" (section 9)
    for number, line in _lines(stream):
        decision: InboundDecision | None = None
        try:
            if line is None:
                raise FactsError("(line)", None, f"longer than {MAX_LINE_BYTES} bytes")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FactsError("(line)", None, f"not UTF-8 (byte {exc.start})") from None
            try:
                obj: Any = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                message = getattr(exc, "msg", "nested too deeply")
                raise FactsError("(line)", None, f"not valid JSON: {message}") from None
            session = InboundSession.from_json(obj, default_at=now)
            decision = evaluate_inbound(policy, session)
        except FactsError as exc:
            status = EXIT_UNDECIDED
            _err(f"line {number}: {exc}")
            if as_json:
                _print_json(
                    {"error": {"line": number, "field": exc.field, "message": exc.message}}
                )
            else:
                print(f"line {number}: ERROR {exc}")
            continue
        if as_json:
            _print_json(decision.to_json())
        else:
            print(explain(decision, label=f"line {number}"))
    return status


def explain(decision: InboundDecision, *, label: str) -> str:
    """A readable explanation of one decision, for people."""
    by = f" by connector {decision.connector!r}" if decision.connector else ""
    lines = [f"{label}: {decision.action.value.upper()}{by}"]
    for reason in decision.reasons:
        lines.append(f"  - {reason.code}: {reason.detail}")
    if decision.smtp is not None:
        lines.append(f"  reply: {decision.smtp}")
    if decision.chain_verified_by:
        lines.append(f"  chain verified by: {decision.chain_verified_by}")
    return "\n".join(lines)


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n")


def _err(message: str) -> None:
    sys.stderr.write(printable_lines(message) + "\n")


def printable_lines(message: str) -> str:
    """Keep newlines (our own formatting) but escape everything else unprintable."""
    return "\n".join(printable(line, limit=2000) for line in message.split("\n"))
