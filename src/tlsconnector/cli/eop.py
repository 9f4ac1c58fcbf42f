"""The command ``import-eop``: EOP connector exports -> a policy file.

``import-eop`` exit statuses: 0 written (warnings do not fail), 1 some record cannot
be converted (every problem listed, nothing written), 2 usage error or unreadable
input.
"""

from __future__ import annotations

import argparse
import sys
import tomllib

from tlsconnector._errors import InvalidValue, PolicyError, show
from tlsconnector._model import Policy
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_OK, EXIT_UNDECIDED, EXIT_USAGE, _err
from tlsconnector.eop.importing import (
    MAX_EXPORT_BYTES,
    convert_export,
    decode_export,
    render_policy,
)

__all__ = ["import_eop", "main"]


def _read(name: str) -> bytes:
    """The bytes of an export (``-``: standard input), bounded; OSError on failure."""
    if name == "-":
        return sys.stdin.buffer.read(MAX_EXPORT_BYTES + 1)
    with open(name, "rb") as handle:
        return handle.read(MAX_EXPORT_BYTES + 1)


def import_eop(args: argparse.Namespace) -> int:
    """``tlsconnector import-eop``."""
    prog = "tlsconnector import-eop"
    given = {"inbound": args.inbound, "outbound": args.outbound}
    if args.inbound is None and args.outbound is None:
        _err(f"{prog}: give --inbound FILE, --outbound FILE, or both")
        return EXIT_USAGE
    if args.inbound == "-" and args.outbound == "-":
        _err(f"{prog}: only one of --inbound and --outbound can read standard input")
        return EXIT_USAGE
    records: dict[str, list[object]] = {"inbound": [], "outbound": []}
    sources: dict[str, str] = {}
    for direction, name in given.items():
        if name is None:
            continue
        sources[direction] = "standard input" if name == "-" else show(name, limit=200)
        try:
            records[direction] = decode_export(_read(name), source=name)
        except OSError as exc:
            _err(f"{prog}: --{direction} {show(name)}: cannot read: {exc.strerror or exc}")
            return EXIT_USAGE
        except InvalidValue as exc:
            _err(f"{prog}: --{direction} {show(name)}: {exc.reason}")
            return EXIT_USAGE
        if not records[direction]:
            _err(f"warning: --{direction} {show(name)} holds no connectors")
    try:
        mapping, warnings = convert_export(inbound=records["inbound"], outbound=records["outbound"])
    except PolicyError as exc:
        count = len(exc.problems)
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        _err(
            f"{prog}: cannot convert the export ({count} problem{'s' if count != 1 else ''}; "
            f"nothing was written):\n{lines}"
        )
        return EXIT_UNDECIDED
    for warning in warnings:
        _err(f"warning: {warning}")
    try:
        text = render_policy(mapping, warnings, sources=sources)
    except ValueError as exc:  # e.g. a lone surrogate, which TOML cannot hold
        _err(f"{prog}: cannot write the policy (nothing was written): {exc}")
        return EXIT_UNDECIDED
    # The file must load back as the policy it was made from; a difference is a bug
    # in the writer, and a wrong policy file is never written.
    expected = Policy.from_mapping(mapping, trust=None)
    if Policy.from_mapping(tomllib.loads(text), trust=None) != expected:
        _err(f"{prog}: internal error: the written policy would not read back the same")
        return EXIT_UNDECIDED
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except OSError as exc:
        _err(f"{prog}: cannot write {show(args.output)}: {exc.strerror or exc}")
        return EXIT_USAGE
    inbound, outbound = len(expected.inbound), len(expected.outbound)
    _err(
        f"wrote {show(args.output)}: {inbound} inbound connector{'s' if inbound != 1 else ''}, "
        f"{outbound} outbound connector{'s' if outbound != 1 else ''}"
    )
    return EXIT_OK


#: The command line restricted to this module's commands (import-eop).
main = family("import-eop")
