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

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tlsconnector._decisions import InboundDecision, OutboundDecision, printable
from tlsconnector._errors import MESSAGE_LIMIT, InvalidValue, PolicyError
from tlsconnector._model import Policy
from tlsconnector.policy_file.loading import load_policy

Decision = InboundDecision | OutboundDecision

#: The most worker processes ``--jobs`` starts.
MAX_JOBS = 64

EXIT_OK = 0
EXIT_UNDECIDED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


T = TypeVar("T")

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


def policy_or_none(path: str) -> Policy | None:
    """The policy file loaded, or None after every problem was written to stderr."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        _err(str(exc))
        return None


def per_domain(
    domains: Sequence[str], decide: Callable[[str], T], *, as_json: bool
) -> Iterator[tuple[str, T | None]]:
    """``(domain, decide(domain))`` for each domain; an invalid domain (``InvalidValue``)
    is reported on stderr (and as an ``error`` object with ``as_json``) and yields
    ``(domain, None)``: the command's exit status is then 1."""
    for domain in domains:
        try:
            yield domain, decide(domain)
        except InvalidValue as exc:
            _err(f"{printable(domain)}: {exc.reason}")
            if as_json:
                _print_json({"error": {"domain": domain, "message": exc.reason}})
            yield domain, None
