"""``tlsconnector probe``: would mail to this recipient be delivered? (docs/probe.md)

Connects to the routed host (or ``--host``), does EHLO and STARTTLS, collects the
certificate chain the server presents and prints the delivery verdict the policy would
give, with its reasons. It sends no mail. Exit statuses:

* 0: the verdict is ``deliver``;
* 1: the probe could not reach a verdict (connection, SMTP, TLS handshake or MX lookup
  failed; the ``--deadline`` passed; a dependency is missing);
* 2: usage error (bad flags, bad recipient, invalid policy);
* 3: the verdict is ``defer`` (or ``fail``): delivery would not happen now.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import socket
from typing import Any

from tlsconnector._decisions import printable
from tlsconnector._errors import FactsError, InvalidValue
from tlsconnector._facts import parse_time
from tlsconnector._model import SmartHost
from tlsconnector.adapters._probe import (
    MAX_DEADLINE,
    MAX_TIMEOUT,
    SMTP_PORT,
    CertificateSummary,
    DeadlinePassed,
    ProbeError,
    ProbeReport,
    ProbeResult,
    run_probe,
)
from tlsconnector.cli import family
from tlsconnector.cli._common import (
    EXIT_OK,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    _err,
    _print_json,
    explain,
    policy_or_none,
)

__all__ = ["EXIT_WOULD_NOT_DELIVER", "main", "probe"]

#: The policy would not deliver now (``defer``, or ``fail``).
EXIT_WOULD_NOT_DELIVER = 3

#: What may follow EHLO: a domain or an address literal, printable, no spaces.
_HELO = re.compile(r"[!-~]{1,255}")


def probe(args: argparse.Namespace) -> int:
    """``tlsconnector probe``."""
    if not 0 < args.timeout <= MAX_TIMEOUT:
        _err(
            f"tlsconnector probe: --timeout must be more than 0 and at most {MAX_TIMEOUT:g}, "
            f"not {args.timeout!r}"
        )
        return EXIT_USAGE
    if not 0 < args.deadline <= MAX_DEADLINE:
        _err(
            f"tlsconnector probe: --deadline must be more than 0 and at most "
            f"{MAX_DEADLINE:g}, not {args.deadline!r}"
        )
        return EXIT_USAGE
    try:
        at = parse_time(args.at, field="--at") if args.at is not None else _now()
    except FactsError as exc:
        _err(f"tlsconnector probe: {exc}")
        return EXIT_USAGE
    host: SmartHost | None = None
    if args.host is not None:
        try:
            host = SmartHost.parse(args.host)
        except InvalidValue as exc:
            _err(f"tlsconnector probe: --host {printable(args.host)!r}: {exc.reason}")
            return EXIT_USAGE
    helo = args.helo if args.helo is not None else _default_helo()
    if not _HELO.fullmatch(helo):
        _err(f"tlsconnector probe: --helo {printable(helo)!r}: printable ASCII, no spaces")
        return EXIT_USAGE
    policy = policy_or_none(args.policy)
    if policy is None:
        return EXIT_USAGE
    try:
        report = run_probe(
            policy,
            args.recipient,
            at=at,
            connector=args.connector,
            host=host,
            timeout=args.timeout,
            deadline=args.deadline,
            helo=helo,
        )
    except FactsError as exc:
        _err(f"tlsconnector probe: {exc}")
        return EXIT_USAGE
    except ProbeError as exc:
        _err(f"tlsconnector probe: could not probe ({exc.stage}): {exc}")
        if args.json:
            error: dict[str, Any] = {
                "stage": exc.stage,
                "target": exc.target,
                "message": exc.message,
            }
            if isinstance(exc, DeadlinePassed):
                error["deadline"] = exc.deadline
                error["not_tried"] = [str(host) for host in exc.not_tried]
            _print_json({"error": error})
        return EXIT_UNDECIDED
    if args.json:
        _print_json(_report_json(report))
    else:
        print(_report_text(report, args.recipient))
    return EXIT_OK if report.delivers else EXIT_WOULD_NOT_DELIVER


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _default_helo() -> str:
    name = socket.gethostname()
    return name if _HELO.fullmatch(name) else "localhost"


def _report_json(report: ProbeReport) -> dict[str, Any]:
    return {
        **report.decision.to_dict(),
        "probe": None if report.result is None else report.result.to_dict(),
        "unreachable": [u.to_dict() for u in report.unreachable],
    }


def _report_text(report: ProbeReport, recipient: str) -> str:
    lines: list[str] = []
    for skipped in report.unreachable:
        lines.append(f"skipped {skipped.target}: {skipped.message}")
    result = report.result
    if result is None:
        lines.append("no connection made: the policy defers before connecting")
    else:
        port = result.target.port or SMTP_PORT
        lines.append(f"probed {result.target.host} port {port} (address {result.address})")
        lines.append(f"  greeting: {result.greeting}")
        if result.tls is not None:
            lines.append(f"  STARTTLS: used ({result.tls_version}, {result.cipher})")
            lines.append(f"  OCSP staple: {_staple_text(result)}")
            lines.append(f"  certificates presented: {len(result.chain)}")
            for number, der in enumerate(result.chain, start=1):
                lines.extend(_certificate_lines(number, CertificateSummary.from_der(der)))
        else:
            lines.append(f"  STARTTLS: {result.starttls.replace('-', ' ')}")
        lines.extend(f"  note: {note}" for note in result.notes)
    lines.append(explain(report.decision, label=printable(recipient)))
    return "\n".join(lines)


def _staple_text(result: ProbeResult) -> str:
    staple = result.ocsp_response
    if staple is not None:
        return f"{len(staple)} bytes stapled, passed to the verdict"
    if result.ocsp_requested:
        return "asked for, none stapled"
    return "not asked for"


def _certificate_lines(number: int, summary: CertificateSummary) -> list[str]:
    if summary.error is not None:
        return [f"    #{number} undecodable ({summary.error}); SHA-256 {summary.sha256}"]
    return [
        f"    #{number} {summary.subject}",
        f"       issuer {summary.issuer}",
        f"       valid {summary.not_before} .. {summary.not_after}",
        f"       SHA-256 {summary.sha256}",
    ]


#: The command line restricted to this module's commands (probe).
main = family("probe")
