"""``tlsconnector serve postfix``: the policy service for Postfix's ``check_policy_service``.

The argument checks live here; the server is :mod:`tlsconnector.adapters.postfix.server` and the
protocol :mod:`tlsconnector.adapters.postfix`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_USAGE, _err

__all__ = ["main", "serve_postfix"]

MAX_IDLE_TIMEOUT = 24 * 3600.0


def serve_postfix(args: argparse.Namespace) -> int:
    """``tlsconnector serve postfix``."""
    from tlsconnector.adapters.postfix.server import (
        MAX_WORKERS,
        JsonLog,
        ServeConfig,
        parse_listen,
        serve_postfix,
    )

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        _err(f"tlsconnector serve postfix: {exc}")
        return EXIT_USAGE
    if not 1 <= args.workers <= MAX_WORKERS:
        _err(f"tlsconnector serve postfix: --workers must be from 1 to {MAX_WORKERS}")
        return EXIT_USAGE
    timeout = args.idle_timeout
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_IDLE_TIMEOUT):
        _err(
            "tlsconnector serve postfix: --idle-timeout must be a positive number of "
            f"seconds, at most {MAX_IDLE_TIMEOUT:.0f}"
        )
        return EXIT_USAGE
    if not 1 <= args.max_connections <= 1_000_000:
        _err("tlsconnector serve postfix: --max-connections must be from 1 to 1000000")
        return EXIT_USAGE
    if not 1 <= args.max_connections_per_client <= 1_000_000:
        _err(
            "tlsconnector serve postfix: --max-connections-per-client must be from 1 to "
            f"1000000 (got {args.max_connections_per_client})"
        )
        return EXIT_USAGE
    config = ServeConfig(
        policy_path=Path(args.policy),
        host=host,
        port=port,
        workers=args.workers,
        idle_timeout=timeout,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
    )
    return serve_postfix(config, log=JsonLog(sys.stderr))


#: The command line restricted to this module's commands (serve).
main = family("serve")
