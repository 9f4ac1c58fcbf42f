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

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tlsconnector._errors import (
    MESSAGE_LIMIT,
    MISSING,
    InvalidValue,
    PolicyError,
    missing_text,
    printable,
    show,
)

# Speed: every command imports this module, `tlsconnector --version` and `check` too;
# the decisions and the policy loader are imported by the commands that use them.
if TYPE_CHECKING:
    from tlsconnector._decisions import InboundDecision, OutboundDecision
    from tlsconnector._model import Policy

    Decision = InboundDecision | OutboundDecision

#: The most worker processes ``--jobs`` starts.
MAX_JOBS = 64

EXIT_OK = 0
EXIT_UNDECIDED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


T = TypeVar("T")

#: ``_line_error``'s value when the error is about no value of the line (not JSON, too
#: long, a key given twice, an internal error).
NO_VALUE: object = object()

#: How much of an offending value a line's error shows (escaped, then cut).
VALUE_LIMIT = 60


def _line_error(
    number: int, field: str | None, message: str, *, as_json: bool, value: object = NO_VALUE
) -> tuple[str, str]:
    """An undecided line: (its standard output line, its standard error line).

    The readable lines show the offending ``value`` (JSON spelling, escaped, at most
    :data:`VALUE_LIMIT` characters); :data:`~tlsconnector._errors.MISSING` reads
    "missing". The JSON error object keeps its three keys (line, field, message).
    """
    # Attacker text (a JSON key, a value in the message) is escaped, our own
    # formatting kept: no line of a session file can forge an output line.
    where = f"{printable(field)}: " if field else ""
    if field and value is not NO_VALUE and value is not MISSING:
        where = f"{printable(field)} = {_json_show(value)}: "
    message_text = printable(missing_text(message) if value is MISSING else message, MESSAGE_LIMIT)
    error = f"line {number}: {where}{message_text}\n"
    if as_json:
        return _json_line({"error": {"line": number, "field": field, "message": message}}), error
    return f"line {number}: ERROR {where}{message_text}\n", error


def _json_show(value: object) -> str:
    """A session line's value for an error message, spelled as in JSON where Python
    differs (null), escaped and cut by :func:`~tlsconnector._errors.show`."""
    return "null" if value is None else show(value, VALUE_LIMIT)


def explain(decision: Decision, *, label: str) -> str:
    """A readable explanation of one decision, for people.

    When the reasons come from more than one connector (a refusal by two connectors of
    the same specificity, say), or from another one than the decision names, each
    reason says which connector it comes from.
    """
    by = f" by connector {decision.connector!r}" if decision.connector else ""
    sources = {reason.connector for reason in decision.reasons if reason.connector}
    name_each = len(sources) > 1 or bool(sources - {decision.connector})
    lines = [f"{label}: {decision.action.value.upper()}{by}"]
    from tlsconnector._decisions import OutboundDecision

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
        source = f" (connector {reason.connector!r})" if name_each and reason.connector else ""
        lines.append(f"  - {reason.code}{status}{source}: {reason.detail}")
    if decision.smtp is not None:
        lines.append(f"  reply: {decision.smtp}")
    if decision.chain_verified_by:
        lines.append(f"  chain verified by: {decision.chain_verified_by}")
    return "\n".join(lines)


#: The encoder of every JSON line the commands write, made on first use (speed: only
#: the commands that write JSON import json, and json.dumps with these arguments would
#: make a new encoder for every line).
_encode: Callable[[object], str] | None = None


def _json_line(obj: dict[str, Any]) -> str:
    """``obj`` as one compact, ASCII-only JSON line (with its newline)."""
    global _encode
    if _encode is None:
        import json

        _encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
    return _encode(obj) + "\n"


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(_json_line(obj))


def _err(message: str) -> None:
    sys.stderr.write(printable_lines(message) + "\n")


def printable_lines(message: str) -> str:
    """Keep newlines (our own formatting) but escape everything else unprintable."""
    return "\n".join(printable(line, limit=2000) for line in message.split("\n"))


def policy_or_none(
    path: str,
    *,
    for_lint: bool = False,
    keep_tables: bool = False,
    reuse: Policy | None = None,
) -> Policy | None:
    """The policy file loaded, or None after every problem was written to stderr, the
    first line naming the file (``POLICY.toml: invalid policy (2 problems):``) and
    each problem its line where the loader could tell (``  - line 7: ...``).
    ``for_lint``: loaded to be checked, not to decide (``load_policy_for_lint``);
    ``keep_tables`` and ``reuse``: as :func:`load_policy` (a second policy reusing a
    first's connectors)."""
    from tlsconnector.policy_file.loading import load_policy, load_policy_for_lint

    try:
        if for_lint:
            return load_policy_for_lint(path)
        return load_policy(path, keep_tables=keep_tables, reuse=reuse)
    except PolicyError as exc:
        _err(f"{printable(path)}: {exc}")
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
