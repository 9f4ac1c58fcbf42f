"""The commands ``check`` (validate and lint a policy file) and ``schema`` (its JSON
Schema, for editors)."""

from __future__ import annotations

import argparse
import sys

from tlsconnector._gc import gc_paused
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_OK, EXIT_UNDECIDED, _err, policy_or_none


def check(args: argparse.Namespace) -> int:
    """``tlsconnector check``."""
    # Speed: a short command whose objects all live until it ends (the modules, the
    # policy, the warnings): the collector stays paused throughout (tlsconnector._gc).
    with gc_paused():
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    from tlsconnector.policy_file.lint import lint

    policy = policy_or_none(args.policy, for_lint=True)
    if policy is None:
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


def schema(args: argparse.Namespace) -> int:
    """``tlsconnector schema``: the policy file's JSON Schema on standard output."""
    from tlsconnector.policy_file.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


#: The command line restricted to this module's commands (check, schema).
main = family("check", "schema")
