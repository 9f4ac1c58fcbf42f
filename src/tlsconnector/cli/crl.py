"""``tlsconnector crl fetch``: download the CRLs named by CRL distribution points
(spec section 11; docs/revocation.md, "Refreshing CRLs").

The engine is :mod:`tlsconnector.policy_file.crl_fetch`; this module reads the options
and the policy, reports and chooses the exit status:

* 0: every CRL was fetched (or was already current in its file);
* 1: some URL failed (each failed file is kept as it was), or a line of the sessions
  file could not be read;
* 2: usage error, unreadable sessions file, output directory not writable, or a policy
  that does not load (a policy whose only problems are its CRL files still gets them
  fetched: that is how a missing or broken CRL file is repaired).

The policy is never edited: fetched files not yet listed in ``[trust] crl_files`` are
printed, as the ``crl_files`` line to put in the policy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import tomli

from tlsconnector._chains import TrustStore
from tlsconnector._errors import InvalidValue, PolicyError, Problem, show
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_OK, EXIT_UNDECIDED, EXIT_USAGE, _err
from tlsconnector.cli.batch import _lines
from tlsconnector.policy_file import crl_fetch
from tlsconnector.policy_file.loading import (
    MAX_POLICY_BYTES,
    _load_trust,
    _read_bounded,
    load_policy,
)

__all__ = ["crl_fetch_command", "main"]

_NAME = "tlsconnector crl fetch"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def crl_fetch_command(args: argparse.Namespace) -> int:
    """``tlsconnector crl fetch --policy P [--sessions FILE] [--out DIR]``."""
    for option, value, most in (
        ("--timeout", args.timeout, crl_fetch.MAX_TIMEOUT),
        ("--deadline", args.deadline, crl_fetch.MAX_DEADLINE),
    ):
        if not (math.isfinite(value) and 0 < value <= most):
            _err(
                f"{_NAME}: {option} must be more than 0 and at most {most:g} seconds "
                f"(got {value:g})"
            )
            return EXIT_USAGE
    policy_path = Path(args.policy)
    base = policy_path.parent
    loaded = _policy_trust(policy_path)
    if loaded is None:
        return EXIT_USAGE
    data, trust = loaded
    table = data.get("trust", {})
    table = table if isinstance(table, dict) else {}
    listed = (
        [n for n in table.get("crl_files", []) if isinstance(n, str) and n]
        if isinstance(table.get("crl_files"), list)
        else []
    )

    at = _now()
    sources = crl_fetch.Sources()
    if isinstance(table.get("ca_file"), str):
        crl_fetch.sources_from_trust(trust.certificates, sources)
    if args.sessions is not None:
        try:
            stream = sys.stdin.buffer if args.sessions == "-" else open(args.sessions, "rb")  # noqa: SIM115
        except OSError as exc:
            _err(f"{_NAME}: --sessions {show(args.sessions)}: cannot read: {exc.strerror or exc}")
            return EXIT_USAGE
        with stream:
            crl_fetch.sources_from_chains(_lines(stream), trust, at, sources)

    out = (
        Path(args.out)
        if args.out is not None
        else base / (Path(listed[0]).parent if listed else Path())
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _err(f"{_NAME}: cannot create --out {show(str(out))}: {exc.strerror or exc}")
        return EXIT_USAGE
    if not os.access(out, os.W_OK):
        _err(f"{_NAME}: --out {show(str(out))} is not a writable directory")
        return EXIT_USAGE

    for note in sources.notes:
        _err(f"{_NAME}: {note}")
    for problem in sources.problems:
        _err(f"{_NAME}: {problem}")
    if not sources.named_by:
        _err(
            f"{_NAME}: no certificate of the trust file or the sessions names a CRL "
            "distribution point"
        )
    outcomes = crl_fetch.fetch_all(
        sources, out, at=at, timeout=args.timeout, deadline=args.deadline
    )
    for outcome in outcomes:
        url = show(outcome.url, limit=300)
        if outcome.status in ("fetched", "unchanged"):
            print(f"{outcome.status} {url} -> {outcome.path} ({outcome.message})")
        else:
            _err(f"{outcome.status} {url}: {outcome.message}")
    _advise(outcomes, listed, base)
    failed = any(o.failure for o in outcomes) or bool(sources.problems)
    return EXIT_UNDECIDED if failed else EXIT_OK


def _policy_trust(path: Path) -> tuple[dict[str, Any], TrustStore] | None:
    """The policy's TOML and trust anchors; None after saying why on standard error.

    A policy whose only problems are in ``[trust] crl_files`` (a file missing or
    broken: what this command repairs) is used for its trust anchors all the same."""
    try:
        data = tomli.loads(_read_bounded(path, MAX_POLICY_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomli.TOMLDecodeError, RecursionError, InvalidValue):
        data = None  # load_policy says why, naming the file
    try:
        trust = load_policy(path).trust
    except PolicyError as exc:
        crl_only = data is not None and all(
            p.field.startswith("trust.crl_files") for p in exc.problems
        )
        if not crl_only:
            _err(f"{_NAME}: the policy does not load:\n{exc}")
            return None
        assert data is not None
        _err(f"{_NAME}: the policy does not load until its CRL files are repaired:\n{exc}")
        problems: list[Problem] = []
        trust = _load_trust(data, path.parent, problems, use_system_trust=True)
        if problems:
            _err(f"{_NAME}: {PolicyError(problems)}")
            return None
    if trust is None or not trust.certificates:
        _err(f"{_NAME}: the policy has no trust anchors: no CRL could be checked")
        return None
    assert data is not None
    return data, trust


def _advise(outcomes: list[crl_fetch.Outcome], listed: list[str], base: Path) -> None:
    """Print the ``crl_files`` line when a file written now or before is not listed."""
    listed_paths = {os.path.realpath(base / name) for name in listed}
    missing: list[str] = []
    for outcome in outcomes:
        path = outcome.path
        if path is None or not path.exists() or os.path.realpath(path) in listed_paths:
            continue
        relative = os.path.relpath(path, base)
        missing.append(str(path.resolve()) if relative.startswith("..") else relative)
    if missing:
        names = ", ".join(json.dumps(name) for name in [*listed, *missing])
        print(
            f"# {len(missing)} fetched file(s) are not in [trust] crl_files (this command "
            "never edits the policy); in [trust] put:"
        )
        print(f"crl_files = [{names}]")


#: The command line restricted to this module's command (crl).
main = family("crl")
