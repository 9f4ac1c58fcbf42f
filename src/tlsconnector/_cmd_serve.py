"""``tlsconnector serve postfix``: the policy service for Postfix's ``check_policy_service``.

The argument checks live here; the server is :mod:`tlsconnector._serve` and the
protocol :mod:`tlsconnector.adapters.postfix`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ._cli import EXIT_USAGE, _err

__all__ = ["register"]

MAX_IDLE_TIMEOUT = 24 * 3600.0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``serve`` command and its ``postfix`` sub-command."""
    serve = commands.add_parser(
        "serve",
        help="run a policy service for a mail server",
        description="Run tlsconnector as a long-lived service a mail server asks for "
        "each inbound decision.",
    )
    targets = serve.add_subparsers(dest="target", required=True, metavar="MTA")
    postfix = targets.add_parser(
        "postfix",
        help="Postfix's SMTP access policy delegation (check_policy_service)",
        description="Answer Postfix's policy requests: DUNNO when the inbound "
        "connectors accept the session, their SMTP reply when they refuse it, 451 4.3.0 "
        "when it cannot be decided. Decides at protocol_state=RCPT. One JSON log line "
        "per decision on standard error; other events a client can cause (protocol "
        "errors, connection errors, idle timeouts, refused connections) at most 50 of "
        "each kind per 10 s, the rest counted; at most 1 MiB of log lines waits for a "
        "slow reader of standard error, the rest is dropped and counted. A request that "
        "breaks the protocol is answered 451 4.3.0 and its connection closed. The "
        "service refuses to start with, or reload, a policy without an enabled inbound "
        "partner connector. SIGHUP reloads the policy (an invalid new policy is logged "
        "and the previous one kept); SIGTERM and SIGINT stop. See docs/postfix.md.",
    )
    postfix.add_argument("--policy", required=True, metavar="POLICY.toml")
    postfix.add_argument(
        "--listen",
        default="127.0.0.1:10040",
        metavar="HOST:PORT",
        help="IPv4 address or [IPv6] address and port (default: 127.0.0.1:10040; port 0 "
        "picks a free port, shown on the 'listening' log line)",
    )
    postfix.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes accepting on the same socket (default: 1)",
    )
    postfix.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="close a connection that sends no complete request for this long (default: 300)",
    )
    postfix.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="connections served at once per worker; more are closed at once, and "
        "Postfix applies its default action (default: 1000)",
    )
    postfix.add_argument(
        "--max-connections-per-client",
        type=int,
        default=100,
        metavar="N",
        help="connections served at once per worker from one client address; more from "
        "that address are closed at once, and Postfix applies its default action. "
        "Postfix opens one per smtpd process (default_process_limit, 100, per "
        "master.cf service), all from one address (default: 100)",
    )
    postfix.set_defaults(handler=_cmd_serve_postfix)


def _cmd_serve_postfix(args: argparse.Namespace) -> int:
    from ._serve import MAX_WORKERS, JsonLog, ServeConfig, parse_listen, serve_postfix

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
