"""Commands ``import-eop`` (EOP connector exports -> policy file) and ``schema`` (the
JSON Schema of the policy file, for editors).

``import-eop`` exit statuses: 0 written (warnings do not fail), 1 some record cannot
be converted (every problem listed, nothing written), 2 usage error or unreadable
input.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import resources
from typing import Any

from ._cli import EXIT_OK, EXIT_UNDECIDED, EXIT_USAGE, _err
from ._eop import MAX_EXPORT_BYTES, convert_export, decode_export, render_policy
from ._errors import InvalidValue, PolicyError, show
from ._model import Policy

__all__ = ["register", "schema_text"]

SCHEMA_RESOURCE = "policy.schema.json"


def register(commands: Any) -> None:
    """Add ``import-eop`` and ``schema`` to the command line."""
    imp = commands.add_parser(
        "import-eop",
        help="convert EOP connector exports (ConvertTo-Json) into a policy file",
        description="Convert the JSON written by 'Get-InboundConnector | ConvertTo-Json' "
        "and 'Get-OutboundConnector | ConvertTo-Json' into a policy file. Warnings go to "
        "standard error and into the file as comments; records that cannot be converted "
        "are listed and nothing is written.",
    )
    imp.add_argument("--inbound", metavar="FILE", help="Get-InboundConnector export; - for stdin")
    imp.add_argument(
        "--outbound", metavar="FILE", help="Get-OutboundConnector export; - for stdin"
    )
    imp.add_argument(
        "-o", "--output", metavar="POLICY.toml", help="write here (default: standard output)"
    )
    imp.set_defaults(handler=_cmd_import_eop)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the policy file (for editors)",
        description="Print the JSON Schema (draft 2020-12) of the policy file, for "
        "editors such as Taplo / Even Better TOML: tlsconnector schema > policy.schema.json",
    )
    schema.set_defaults(handler=_cmd_schema)


def schema_text() -> str:
    """The policy file's JSON Schema, as shipped in the package."""
    return resources.files("tlsconnector").joinpath(SCHEMA_RESOURCE).read_text("utf-8")


def _cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def _read(name: str) -> bytes:
    """The bytes of an export (``-``: standard input), bounded; OSError on failure."""
    if name == "-":
        return sys.stdin.buffer.read(MAX_EXPORT_BYTES + 1)
    with open(name, "rb") as handle:
        return handle.read(MAX_EXPORT_BYTES + 1)


def _cmd_import_eop(args: argparse.Namespace) -> int:
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
            _err(f"{prog}: cannot read {show(name)}: {exc.strerror or exc}")
            return EXIT_USAGE
        except InvalidValue as exc:
            _err(f"{prog}: --{direction} {show(name)}: {exc.reason}")
            return EXIT_USAGE
        if not records[direction]:
            _err(f"warning: --{direction} {show(name)} holds no connectors")
    try:
        mapping, warnings = convert_export(
            inbound=records["inbound"], outbound=records["outbound"]
        )
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
