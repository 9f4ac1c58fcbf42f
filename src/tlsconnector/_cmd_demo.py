"""``tlsconnector demo``: the Contoso and Fabrikam Bank scenario, in memory (section 9).

No file, no network, no clock: see :mod:`tlsconnector._demo`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._cli import EXIT_OK, _print_json
from ._demo import format_header, format_table, run_demo

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` command."""
    demo = commands.add_parser(
        "demo",
        help="play the Contoso and Fabrikam Bank scenario (no files, no network)",
        description="Build Contoso's connectors for Fabrikam Bank, mint a test CA and the "
        "partner's certificates in memory, and decide 20 inbound and outbound "
        "sessions at a fixed time.",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per session: the decision plus a 'session' label",
    )
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    policy, rows = run_demo()
    if args.json:
        for row in rows:
            _print_json(row.to_json())
        return EXIT_OK
    print(format_header(policy))
    print()
    print(format_table(rows))
    return EXIT_OK
