"""``tlsconnector diff``: which recorded sessions a policy change decides otherwise
(spec section 12).

Every session line is decided under the old policy (or taken from its ``recorded``
decision with ``--old recorded``) and under the new one; exactly the sessions whose
action, connector or reason codes differ are reported. The lines stream through the
batch engine of :mod:`tlsconnector.cli.batch` (bounded memory, ``--jobs`` workers,
an error object in place of a line that cannot be read); this module only compares
and counts what comes out.

Exit status: 0 nothing changes; 1 some decision changes or some line cannot be read;
2 usage error, unreadable file or invalid policy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, cast

from tlsconnector._decisions import printable
from tlsconnector._errors import MISSING, FactsError
from tlsconnector._facts import (
    InboundSession,
    OutboundSession,
    inbound_sender_domain_or_session,
)
from tlsconnector._inbound import evaluate_inbound
from tlsconnector._model import Policy
from tlsconnector._outbound import DEFAULT_RETRY_WINDOW, evaluate_outbound
from tlsconnector._reading import forget_tables
from tlsconnector.cli import family
from tlsconnector.cli._common import (
    EXIT_OK,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    _err,
    policy_or_none,
)
from tlsconnector.cli.batch import Rendered, _decide_file

if TYPE_CHECKING:
    from tlsconnector.cli._common import Decision

__all__ = ["diff", "main"]

#: ``--old recorded``: compare against the decisions recorded in the file.
RECORDED = "recorded"
#: ``--examples``: example lines per transition in the text report.
DEFAULT_EXAMPLES = 5
MAX_EXAMPLES = 1000
#: Reasons shown per side of one example line.
MAX_EXAMPLE_REASONS = 8
#: Connectors named in the text summary's "by connector" part: the most changed first,
#: the rest counted on one line (``--json`` carries every changed session).
MAX_SUMMARY_CONNECTORS = 20
_UNCHANGED = "{}"

Key = tuple[str, "str | None", tuple[str, ...]]


#: Nothing changes: the line ``{}``, written once (the tally counts and drops it).
_SAME = Rendered({})


def _key_of(decision: Decision) -> Key:
    return (str(decision.action), decision.connector, decision.codes)


def _recorded(value: object) -> tuple[Key, dict[str, Any]]:
    """A line's ``recorded`` decision (as the adapters write it): its key and object."""
    if not isinstance(value, dict):
        raise FactsError("recorded", value, "must be an object (action, connector, codes)")
    action, connector, codes = value.get("action"), value.get("connector"), value.get("codes")
    if not isinstance(action, str) or not action:
        raise FactsError("recorded.action", action, "must be an action name")
    if connector is not None and not isinstance(connector, str):
        raise FactsError("recorded.connector", connector, "must be a connector name or null")
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise FactsError("recorded.codes", codes, "must be an array of reason codes")
    return (action, connector, tuple(codes)), value


#: Bound on each process's memory of compared candidates (entries; emptied when
#: full). Speed only: what it remembers is the comparison's own answer. One entry per
#: candidate tuple of the old policy's index (or named connector) met, so a policy's
#: size bounds it before this does.
MAX_SAME_PAIRS = 524_288


class _Alike:
    """Whether two policies decide a session alike, from exactly what their decisions
    read of the policy (the core's decisions are pure functions of policy and facts):

    * inbound (section 5): the candidates of the sender domain
      (:meth:`Policy.inbound_candidates`; restrict-beats-allow reads nothing else),
      the trust store and the revocation setting;
    * outbound (section 6): the connector a transport rule names
      (:meth:`Policy.outbound_named`), else the candidates of the recipient domain,
      the trust store and the revocation setting.

    Equal values there (connectors compared field by field, trust stores by the
    digests of their anchors and CRLs that already key every cached chain verdict)
    give the same decision, so the session need not be decided twice; its facts are
    still parsed, so a malformed line is still an error. The answer for an old
    policy's candidates is remembered with the new policy's candidates it was
    compared with (both kept alive here, so their identities stay theirs), at most
    :data:`MAX_SAME_PAIRS` of them.
    """

    def __init__(self, old: Policy, new: Policy) -> None:
        self.old = old
        self.new = new
        self.enabled = old.revocation == new.revocation and _same_trust(old, new)
        self._known: dict[int, tuple[object, object, bool]] = {}

    def inbound(self, session: InboundSession) -> bool:
        return self.inbound_domain(session.sender_domain)

    def inbound_domain(self, domain: str | None) -> bool:
        """:meth:`inbound` of a session from ``domain`` (None: the null sender)."""
        return self.enabled and self._same(
            self.old.inbound_candidates(domain), self.new.inbound_candidates(domain)
        )

    def outbound(self, session: OutboundSession) -> bool:
        if not self.enabled:
            return False
        if session.connector is not None:
            named = session.connector
            return self._same(self.old.outbound_named(named), self.new.outbound_named(named))
        domain = session.recipient_domain
        return self._same(
            self.old.outbound_candidates(domain), self.new.outbound_candidates(domain)
        )

    def _same(self, a: object, b: object) -> bool:
        if a is b:
            return True
        known = self._known.get(id(a))
        if known is not None and known[1] is b:
            return known[2]
        same = bool(a == b)
        if len(self._known) >= MAX_SAME_PAIRS:
            self._known.clear()
        self._known[id(a)] = (a, b, same)
        return same


def _same_trust(old: Policy, new: Policy) -> bool:
    """The same trust anchors and CRLs: the digests that key cached chain verdicts."""
    a, b = old.trust, new.trust
    if a is None or b is None:
        return a is b
    return a.key == b.key and a.crls.key == b.crls.key


def _comparer(
    direction: str, old: Policy | None, new: Policy, *, skip_alike: bool = True
) -> Callable[[object, dt.datetime], Decision]:
    """The engine's deciding function: both decisions of one line, compared; the answer
    is :class:`Rendered`: ``{}`` when nothing changes, else ``{"direction", "old",
    "new"}``, its line encoded in the worker that decided it.
    ``skip_alike``: a session both policies read alike (:class:`_Alike`) is not
    decided (the answer is the same; off only to check that)."""
    alike = _Alike(old, new) if old is not None and skip_alike else None

    def facts(obj: dict[str, Any], at: dt.datetime) -> InboundSession | OutboundSession:
        """The line's session, parsed once for both policies (facts do not depend on
        the policy)."""
        if direction == "inbound":
            return InboundSession.from_json(obj, default_at=at)
        return OutboundSession.from_json(obj, default_at=at)

    def decide(policy: Policy, session: InboundSession | OutboundSession) -> Decision:
        if isinstance(session, InboundSession):
            return evaluate_inbound(policy, session)
        return evaluate_outbound(policy, session, retry_window=DEFAULT_RETRY_WINDOW)

    def compare(obj: object, at: dt.datetime) -> Decision:
        if not isinstance(obj, dict):
            raise FactsError("(session)", obj, "must be a JSON object")
        recorded = obj.pop("recorded", MISSING)  # a fresh object: ours to change
        if old is None:
            if recorded is MISSING:
                raise FactsError("recorded", MISSING, "is required with --old recorded")
            old_key, old_json = _recorded(recorded)
            if old_key[0] == "tempfail" and _without_facts(obj):
                raise _nothing_to_replay()
            new_decision = decide(new, facts(obj, at))
            if old_key == _key_of(new_decision):
                return cast("Decision", _SAME)
            changed = {"direction": direction, "old": old_json, "new": new_decision.to_dict()}
            return cast("Decision", Rendered(changed))
        if type(recorded) is dict and recorded.get("action") == "tempfail" and _without_facts(obj):
            raise _nothing_to_replay()  # not "peer_ip: missing": say what the line is
        if alike is not None and alike.enabled and direction == "inbound":
            domain, built = inbound_sender_domain_or_session(obj, default_at=at)
            if alike.inbound_domain(domain):
                # Validated as from_json validates (a malformed line raises the same
                # error), without building the session nobody decides.
                return cast("Decision", _SAME)
            # Its candidates differ (asked once, above); a session the lean reader left
            # to from_json was built there and is not read again.
            session = built if built is not None else facts(obj, at)
        else:
            session = facts(obj, at)
            if alike is not None and (
                alike.inbound(session)
                if isinstance(session, InboundSession)
                else alike.outbound(session)
            ):
                return cast("Decision", _SAME)
        old_decision = decide(old, session)
        new_decision = decide(new, session)
        if _key_of(old_decision) == _key_of(new_decision):
            return cast("Decision", _SAME)
        changed = {
            "direction": direction,
            "old": old_decision.to_dict(),
            "new": new_decision.to_dict(),
        }
        # The engine takes any value with to_dict(); cast for its Decision annotation.
        return cast("Decision", Rendered(changed))

    return compare


def _nothing_to_replay() -> FactsError:
    """A recorded temporary failure with no facts (the service could not read them, or
    deciding failed): an error for its line under either --old, never a decision."""
    return FactsError(
        "recorded",
        "tempfail",
        "a temporary failure recorded without facts (they could not be read or deciding "
        "failed): nothing to replay",
    )


def _without_facts(obj: dict[str, Any]) -> bool:
    """A session line without the facts of either direction (peer_ip, recipient)."""
    return "peer_ip" not in obj and "recipient" not in obj


def _counted(count: int, one: str, many: str) -> str:
    """``1 session``, ``2 sessions``: the count with the words its number takes."""
    return f"{count} {one if count == 1 else many}"


def _codes(side: dict[str, Any]) -> list[str]:
    if "reasons" in side:
        return [str(r.get("code")) for r in side["reasons"] if isinstance(r, dict)]
    return [str(c) for c in side.get("codes", [])]


def _reasons_text(side: dict[str, Any]) -> str:
    """``code (detail); ...`` of one side, for people."""
    if "reasons" not in side:  # a recorded decision: codes only
        return ", ".join(printable(c) for c in _codes(side)) or "(none)"
    parts = []
    for reason in side["reasons"][:MAX_EXAMPLE_REASONS]:
        if isinstance(reason, dict):
            code = printable(str(reason.get("code")))
            detail = printable(str(reason.get("detail", "")), 200)
            parts.append(f"{code} ({detail})" if detail else code)
    if len(side["reasons"]) > MAX_EXAMPLE_REASONS:
        parts.append(f"... {len(side['reasons']) - MAX_EXAMPLE_REASONS} more")
    return "; ".join(parts) or "(none)"


def _connector(side: dict[str, Any]) -> str:
    name = side.get("connector")
    return printable(name) if isinstance(name, str) else "(none)"


class _Tally:
    """What one direction's comparison produced: reads the engine's JSON lines in
    input order (standard output is redirected here), writes the changed sessions
    (``--json``) and keeps the counts and a bounded number of examples."""

    def __init__(self, direction: str, *, out: IO[str], as_json: bool, examples: int) -> None:
        self.direction = direction
        self.out = out
        self.as_json = as_json
        self.examples = examples
        self.lines = 0
        self.changed = 0
        self.errors = 0
        self.transitions: Counter[str] = Counter()
        self.connectors: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}
        self._partial = ""

    # the file-like side the engine writes to
    def write(self, text: str) -> int:
        data = self._partial + text
        lines = data.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def _line(self, line: str) -> None:
        self.lines += 1
        if line == _UNCHANGED:
            return
        obj = json.loads(line)
        if "error" in obj:
            self.errors += 1
            if self.as_json:
                self.out.write(line + "\n")
            return
        self.changed += 1
        old, new = obj["old"], obj["new"]
        transition = f"{old.get('action')} -> {new.get('action')}"
        self.transitions[transition] += 1
        before, after = _connector(old), _connector(new)
        self.connectors[before if before == after else f"{before} -> {after}"] += 1
        if self.as_json:
            self.out.write(f'{{"line":{self.lines},{line[1:]}\n')
            return
        samples = self.samples.setdefault(transition, [])
        if len(samples) < self.examples:
            samples.append(
                f"    line {self.lines}: {before if before == after else f'{before} -> {after}'}\n"
                f"      old: {_reasons_text(old)}\n"
                f"      new: {_reasons_text(new)}"
            )

    def summary(self, *, with_examples: bool) -> str:
        unreadable = (
            f", {_counted(self.errors, 'line could', 'lines could')} not be read"
            if self.errors
            else ""
        )
        sessions = _counted(self.lines, "session", "sessions")
        changes = _counted(self.changed, "decision changes", "decisions change")
        lines = [f"{self.direction}: {sessions}, {changes}{unreadable}"]
        if self.changed:
            lines.append("  by transition:")
            lines += [f"    {t}: {n}" for t, n in sorted(self.transitions.items())]
            lines.append("  by connector:")
            # The most changed first (then by name), at most MAX_SUMMARY_CONNECTORS: a
            # change of many connectors keeps its summary short.
            ranked = sorted(self.connectors.items(), key=lambda item: (-item[1], item[0]))
            named, rest = ranked[:MAX_SUMMARY_CONNECTORS], ranked[MAX_SUMMARY_CONNECTORS:]
            lines += [f"    {c}: {n}" for c, n in named]
            if rest:
                more = _counted(len(rest), "more connector", "more connectors")
                lines.append(f"    ... {more}: {sum(n for _, n in rest)}")
        if with_examples and self.samples:
            for transition in sorted(self.samples):
                shown = len(self.samples[transition])
                lines.append(
                    f"  examples of {transition} ({shown} of {self.transitions[transition]}):"
                )
                lines += self.samples[transition]
        return "\n".join(lines)


def diff(args: argparse.Namespace) -> int:
    """``tlsconnector diff``."""
    name = "tlsconnector diff"
    if args.inbound is None and args.outbound is None:
        _err(f"{name}: give --inbound FILE.jsonl and/or --outbound FILE.jsonl")
        return EXIT_USAGE
    if not 0 <= args.examples <= MAX_EXAMPLES:
        _err(f"{name}: --examples must be from 0 to {MAX_EXAMPLES} (got {args.examples})")
        return EXIT_USAGE
    # Speed: the old policy takes the new one's connector objects for every table that
    # reads alike (load_policy's reuse), so a change of a few connectors reads only
    # those again; the result is the same as a plain load.
    new = policy_or_none(args.new, keep_tables=args.old != RECORDED)
    if new is None:
        return EXIT_USAGE
    old: Policy | None = None
    if args.old != RECORDED:
        old = policy_or_none(args.old, reuse=new)
        if old is None:
            return EXIT_USAGE
    forget_tables(new)  # the reuse is done: its tables would only take memory
    out = sys.stdout
    report = sys.stderr if args.json else out
    status = EXIT_OK
    for direction, path in (("inbound", args.inbound), ("outbound", args.outbound)):
        if path is None:
            continue
        tally = _Tally(direction, out=out, as_json=args.json, examples=args.examples)
        with contextlib.redirect_stdout(tally):
            result = _decide_file(
                path,
                _comparer(direction, old, new),
                as_json=True,
                command="diff",
                at=None,
                jobs=args.jobs,
                option=f"--{direction}",
            )
        if result == EXIT_USAGE:
            return EXIT_USAGE
        out.flush()
        report.write(tally.summary(with_examples=not args.json) + "\n")
        if tally.changed or tally.errors or result != EXIT_OK:
            status = EXIT_UNDECIDED
    return status


#: The command line restricted to this module's command (diff).
main = family("diff")
