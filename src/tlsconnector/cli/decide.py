"""The commands ``inbound``, ``outbound`` and ``routes``: decide sessions and plans,
from JSON Lines files (:mod:`~tlsconnector.cli.batch`) or one session given by flags."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from tlsconnector._chains import PresentedChain
from tlsconnector._decisions import printable
from tlsconnector._errors import MISSING, FactsError, InvalidValue, show
from tlsconnector._facts import (
    ConnectionAttempt,
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
    UndecodableCertificate,
    parse_time,
)
from tlsconnector._inbound import evaluate_inbound
from tlsconnector._model import Policy
from tlsconnector._outbound import evaluate_outbound, plan_routes
from tlsconnector.cli import batch, family
from tlsconnector.cli._common import (
    EXIT_OK,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    _err,
    _print_json,
    explain,
    per_domain,
    policy_or_none,
)
from tlsconnector.cli.batch import _decide_file

if TYPE_CHECKING:
    from tlsconnector.cli._common import Decision

MAX_RETRY_WINDOW_HOURS = 24 * 366 * 100
#: ``--cert``: a larger file is refused as unreadable (exit 2), never cut short.
MAX_CERT_FILE_BYTES = 2 * 1024 * 1024
#: The shortest retry window the command takes (a queue is read in whole seconds).
MIN_RETRY_WINDOW = dt.timedelta(seconds=1)


def _one_input(
    args: argparse.Namespace, command: str, flags: tuple[object, ...], needed: str, kind: str
) -> bool:
    """Whether the command reads either ``--sessions`` or one session given by flags
    (``flags[0]`` the one it cannot do without), never both; else says why on stderr."""
    if args.sessions is None and flags[0] is None:
        _err(f"tlsconnector {command}: give --sessions FILE, or {needed}")
        return False
    if args.sessions is not None and any(flag is not None for flag in flags):
        _err(f"tlsconnector {command}: --sessions cannot be combined with {kind} flags")
        return False
    return True


def inbound(args: argparse.Namespace) -> int:
    """``tlsconnector inbound``."""
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
    if not _one_input(args, "inbound", single, "--peer-ip and --mail-from", "single-session"):
        return EXIT_USAGE
    policy = policy_or_none(args.policy)
    if policy is None:
        return EXIT_USAGE
    if args.sessions is None:
        return _single_inbound(policy, args)

    def decide(obj: object, now: dt.datetime) -> Decision:
        return evaluate_inbound(policy, InboundSession.from_json(obj, default_at=now))

    return _decide_file(
        args.sessions,
        decide,
        as_json=args.json,
        command="inbound",
        at=args.at,
        jobs=args.jobs,
        option="--sessions",
    )


def _single_inbound(policy: Policy, args: argparse.Namespace) -> int:
    try:
        if args.mail_from is None:
            raise FactsError("mail_from", MISSING, "is required: give --mail-from")
        at = parse_time(args.at, field="at") if args.at is not None else batch._now()
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
    except _UnreadableFile as exc:
        _err(f"tlsconnector inbound: {exc}")
        return EXIT_USAGE
    decision = evaluate_inbound(policy, session)
    if args.json:
        _print_json(decision.to_dict())
    else:
        print(explain(decision, label="session"))
    return EXIT_OK


def outbound(args: argparse.Namespace) -> int:
    """``tlsconnector outbound``."""
    single = (args.recipient, args.connector, args.peer_host, args.cert, args.peer_cn)
    flags = (
        *single,
        args.tls or None,
        args.no_tls or None,
        args.peer_unverified or None,
        args.queued_since,
    )
    if not _one_input(args, "outbound", flags, "--recipient", "single-recipient"):
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
    policy = policy_or_none(args.policy)
    if policy is None:
        return EXIT_USAGE
    if args.sessions is None:
        return _single_outbound(policy, args, window)

    def decide(obj: object, now: dt.datetime) -> Decision:
        session = OutboundSession.from_json(obj, default_at=now)
        return evaluate_outbound(policy, session, retry_window=window)

    return _decide_file(
        args.sessions,
        decide,
        as_json=args.json,
        command="outbound",
        at=args.at,
        jobs=args.jobs,
        option="--sessions",
    )


def _single_outbound(policy: Policy, args: argparse.Namespace, window: dt.timedelta) -> int:
    try:
        at = parse_time(args.at, field="at") if args.at is not None else batch._now()
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
    except _UnreadableFile as exc:
        _err(f"tlsconnector outbound: {exc}")
        return EXIT_USAGE
    decision = evaluate_outbound(policy, session, retry_window=window)
    if args.json:
        _print_json(decision.to_dict())
    else:
        print(explain(decision, label=args.recipient))
    return EXIT_OK


class _UnreadableFile(Exception):
    """A file named on the command line cannot be read: exit 2, as for ``--sessions``."""


def _read_cert(path: str) -> bytes:
    """``--cert``'s file, at most :data:`MAX_CERT_FILE_BYTES`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CERT_FILE_BYTES + 1)
    except OSError as exc:
        raise _UnreadableFile(f"--cert {show(path)}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CERT_FILE_BYTES:
        raise _UnreadableFile(
            f"--cert {show(path)}: cannot read: larger than {MAX_CERT_FILE_BYTES} bytes"
        )
    return data


def routes(args: argparse.Namespace) -> int:
    """``tlsconnector routes``."""
    domains = list(args.domains)
    if args.domains_file is not None:
        try:
            with open(args.domains_file, encoding="utf-8") as handle:
                domains += [line.strip() for line in handle if line.strip()]
        except OSError as exc:
            _err(
                f"tlsconnector routes: --domains-file {show(args.domains_file)}: cannot read: "
                f"{exc.strerror or exc}"
            )
            return EXIT_USAGE
        except UnicodeDecodeError:
            _err(
                f"tlsconnector routes: --domains-file {show(args.domains_file)}: cannot read: "
                "not UTF-8 text"
            )
            return EXIT_USAGE
    if not domains:
        _err("tlsconnector routes: name at least one domain (or --domains-file)")
        return EXIT_USAGE
    policy = policy_or_none(args.policy)
    if policy is None:
        return EXIT_USAGE
    status = EXIT_OK
    rows: list[tuple[str, str, str, str, str]] = []
    for domain, decision in per_domain(
        domains, lambda d: plan_routes(policy, [d])[0], as_json=args.json
    ):
        if decision is None:
            status = EXIT_UNDECIDED
            continue
        if args.json:
            _print_json({"domain": domain, **decision.to_dict()})
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


#: The command line restricted to this module's commands (inbound, outbound, routes).
main = family("inbound", "outbound", "routes")
