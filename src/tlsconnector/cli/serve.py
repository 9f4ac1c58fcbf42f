"""``tlsconnector serve postfix``: the policy service for Postfix's ``check_policy_service``;
``tlsconnector serve postfix-outbound``: the socketmap service for Postfix's
``transport_maps`` and ``smtp_tls_policy_maps``.

The argument checks live here; the servers are :mod:`tlsconnector.adapters.postfix.server`
and :mod:`tlsconnector.adapters.postfix.socketmap`, the protocols
:mod:`tlsconnector.adapters.postfix` and :mod:`tlsconnector.adapters.postfix.outbound`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsconnector._errors import show
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_USAGE, _err

if TYPE_CHECKING:
    from tlsconnector.adapters.postfix.server import JsonLog

__all__ = ["main", "serve_postfix", "serve_postfix_outbound"]

MAX_IDLE_TIMEOUT = 24 * 3600.0
#: --pin-lifetime: at least a minute (each expiry costs a probe), at most a week.
MIN_PIN_LIFETIME = 60.0
MAX_PIN_LIFETIME = 7 * 24 * 3600.0
#: A Postfix transport name: what master.cf accepts as a service name, bounded.
_TRANSPORT_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


def serve_postfix(args: argparse.Namespace) -> int:
    """``tlsconnector serve postfix``."""
    from tlsconnector.adapters.postfix.server import MAX_WORKERS, ServeConfig, serve_postfix

    name = "tlsconnector serve postfix"
    running = _running_options(args, name)
    if running is None:
        return EXIT_USAGE
    options, log = running
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
    recording = _recording_options(args, "tlsconnector serve postfix")
    if recording is None:
        return EXIT_USAGE
    config = ServeConfig(
        policy_path=Path(args.policy),
        **options,
        workers=args.workers,
        idle_timeout=timeout,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        **recording,
    )
    try:
        return serve_postfix(config, log=log)
    finally:
        _close_log(log)


def _running_options(args: argparse.Namespace, name: str) -> tuple[dict[str, Any], JsonLog] | None:
    """Where to listen (``host``, ``port``, ``unix_path``), the Unix socket's mode and
    owner, the pid file (as config fields) and the log; None after saying on standard
    error what is wrong (a usage error). A host name is resolved here, once."""
    from tlsconnector.adapters.postfix._service import (
        resolve_host,
        socket_mode,
        socket_owner,
        unix_path_of,
    )
    from tlsconnector.adapters.postfix.server import parse_listen

    text = args.listen
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "unix_path": None}
    try:
        if text.startswith("unix:"):
            fields["unix_path"] = unix_path_of(text, queue_directory=args.queue_directory)
        else:
            try:
                fields["host"], fields["port"] = parse_listen(text)
            except ValueError:
                host, colon, port = text.rpartition(":")
                if not colon or not host or host.startswith("["):
                    raise
                # A host name: the port is checked first (no lookup for a bad one), and
                # every message shows the text as given, never the address it resolved to.
                digits = len(port) <= 5 and port.isascii() and port.isdigit()
                if not (digits and int(port) <= 65535):
                    raise ValueError(
                        f"--listen {show(text)}: PORT must be a number from 0 to 65535"
                    ) from None
                # resolve_host gives an address unbracketed, as parse_listen does.
                fields["host"], fields["port"] = resolve_host(text, host), int(port)
            if args.queue_directory is not None:
                raise ValueError("--queue-directory needs --listen unix:PATH")
        fields["socket_mode"] = None if args.socket_mode is None else socket_mode(args.socket_mode)
        fields["socket_owner"] = (
            None if args.socket_owner is None else socket_owner(args.socket_owner)
        )
        if fields["unix_path"] is None and (args.socket_mode or args.socket_owner):
            option = "--socket-mode" if args.socket_mode else "--socket-owner"
            raise ValueError(f"{option} needs --listen unix:PATH")
    except ValueError as exc:
        _err(f"{name}: {exc}")
        return None
    fields["pidfile"] = None if args.pidfile is None else Path(args.pidfile).absolute()
    log = _log_of(args, name)
    if log is None:
        return None
    return fields, log


def _log_of(args: argparse.Namespace, name: str) -> JsonLog | None:
    """The log the options ask for (``--log``, ``--log-file``, ``--log-format``,
    ``--syslog-socket``); None after saying what is wrong."""
    from tlsconnector.adapters.postfix.server import DEFAULT_SYSLOG_SOCKET, JsonLog, SyslogStream

    if args.log == "syslog":
        if args.log_file is not None:
            _err(f"{name}: --log-file and --log syslog exclude each other")
            return None
        path = args.syslog_socket or DEFAULT_SYSLOG_SOCKET
        try:
            stream: Any = SyslogStream(path)
        except OSError as exc:
            _err(
                f"{name}: --log syslog: cannot reach the syslog socket {show(path)}: "
                f"{exc.strerror or exc}"
            )
            return None
        return JsonLog(stream, text=args.log_format != "json")
    if args.syslog_socket is not None:
        _err(f"{name}: --syslog-socket needs --log syslog")
        return None
    text = args.log_format == "text"
    if args.log_file is None:
        return JsonLog(sys.stderr, text=text)
    try:
        fd = os.open(args.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        _err(f"{name}: --log-file {show(args.log_file)}: {exc.strerror}")
        return None
    stream = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
    return JsonLog(stream, text=text, path=args.log_file)


def _close_log(log: JsonLog) -> None:
    if log.stream is not sys.stderr:
        with contextlib.suppress(OSError, ValueError):
            log.stream.close()


def _recording_options(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    """The ``--record*`` options as :class:`ServeConfig` fields; None after saying on
    standard error what is wrong (a usage error)."""
    from tlsconnector.adapters._recording import (
        DEFAULT_RECORD_KEEP,
        DEFAULT_RECORD_MAX_BYTES,
        MAX_KEY_BYTES,
        MAX_RECORD_KEEP,
        MAX_RECORD_MAX_BYTES,
        MIN_KEY_BYTES,
        MIN_RECORD_MAX_BYTES,
    )

    if args.record is None:
        for option, given in (
            ("--record-max-bytes", args.record_max_bytes is not None),
            ("--record-keep", args.record_keep is not None),
            ("--record-redact-local-parts", args.record_redact_local_parts),
            ("--record-key-file", args.record_key_file is not None),
        ):
            if given:
                _err(f"{name}: {option} needs --record FILE")
                return None
        return {}
    if args.workers != 1:
        _err(f"{name}: --record needs --workers 1 (one process writes and rotates the file)")
        return None
    max_bytes = args.record_max_bytes
    if max_bytes is None:
        max_bytes = DEFAULT_RECORD_MAX_BYTES
    if not MIN_RECORD_MAX_BYTES <= max_bytes <= MAX_RECORD_MAX_BYTES:
        _err(
            f"{name}: --record-max-bytes must be from {MIN_RECORD_MAX_BYTES} to "
            f"{MAX_RECORD_MAX_BYTES} (got {max_bytes})"
        )
        return None
    keep = args.record_keep if args.record_keep is not None else DEFAULT_RECORD_KEEP
    if not 1 <= keep <= MAX_RECORD_KEEP:
        _err(f"{name}: --record-keep must be from 1 to {MAX_RECORD_KEEP} (got {keep})")
        return None
    key: bytes | None = None
    if args.record_key_file is not None and not args.record_redact_local_parts:
        _err(f"{name}: --record-key-file needs --record-redact-local-parts")
        return None
    if args.record_redact_local_parts:
        if args.record_key_file is None:
            key = secrets.token_bytes(32)  # per run: hashes differ from one run to the next
        else:
            try:
                with open(args.record_key_file, "rb") as handle:
                    key = handle.read(MAX_KEY_BYTES + 1)
            except OSError as exc:
                _err(f"{name}: --record-key-file {show(args.record_key_file)}: {exc.strerror}")
                return None
            if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
                _err(
                    f"{name}: --record-key-file {show(args.record_key_file)}: the key must be "
                    f"from {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes (got "
                    f"{'more' if len(key) > MAX_KEY_BYTES else len(key)})"
                )
                return None
    directory = os.path.dirname(args.record) or "."
    if not os.path.isdir(directory):
        # Not refused: recording never stops the service from answering (a write
        # error is logged and counted), but a mistyped path is said at once.
        _err(
            f"{name}: warning: --record {show(args.record, limit=200)}: the directory does not "
            "exist; nothing is recorded until it does (record-error in the log)"
        )
    return {
        "record_path": Path(args.record),
        "record_max_bytes": max_bytes,
        "record_keep": keep,
        "record_redact_key": key,
    }


def serve_postfix_outbound(args: argparse.Namespace) -> int:
    """``tlsconnector serve postfix-outbound``."""
    from tlsconnector.adapters.postfix.socketmap import (
        MAX_PROBE_DEADLINE,
        OutboundServeConfig,
        serve_postfix_outbound,
    )

    name = "tlsconnector serve postfix-outbound"
    lifetime, deadline, timeout = args.pin_lifetime, args.probe_deadline, args.idle_timeout
    problem = _first_problem(
        (
            "--pin-lifetime",
            lifetime,
            MIN_PIN_LIFETIME <= lifetime <= MAX_PIN_LIFETIME,
            f"from {MIN_PIN_LIFETIME:.0f} to {MAX_PIN_LIFETIME:.0f} seconds",
        ),
        (
            "--probe-deadline",
            deadline,
            0 < deadline <= MAX_PROBE_DEADLINE,
            f"more than 0 and at most {MAX_PROBE_DEADLINE:g} seconds, below Postfix's 100 s "
            "per lookup",
        ),
        (
            "--idle-timeout",
            timeout,
            0 < timeout <= MAX_IDLE_TIMEOUT,
            f"a positive number of seconds, at most {MAX_IDLE_TIMEOUT:.0f}",
        ),
        *(
            (option, value, 1 <= value <= 1_000_000, "from 1 to 1000000")
            for option, value in (
                ("--max-connections", args.max_connections),
                ("--max-connections-per-client", args.max_connections_per_client),
            )
        ),
    )
    if problem is not None:
        _err(f"{name}: {problem}")
        return EXIT_USAGE
    transport = args.transport
    if not (0 < len(transport) <= 64 and set(transport) <= _TRANSPORT_CHARACTERS):
        _err(
            f"{name}: --transport {transport!r} must be a master.cf service name: 1 to 64 "
            "letters, digits, '-', '_' or '.'"
        )
        return EXIT_USAGE
    running = _running_options(args, name)
    if running is None:
        return EXIT_USAGE
    options, log = running
    config = OutboundServeConfig(
        policy_path=Path(args.policy),
        **options,
        pin_lifetime=lifetime,
        probe_deadline=deadline,
        idle_timeout=timeout,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        transport=transport,
    )
    try:
        return serve_postfix_outbound(config, log=log)
    finally:
        _close_log(log)


def _first_problem(*checks: tuple[str, float, bool, str]) -> str | None:
    """The first failed check's usage error, ``OPTION must be RULE (got VALUE)``; None
    when every check holds. A check is ``(option, value, holds, rule)``; a bounded
    range never holds for NaN or an infinity."""
    for option, value, holds, rule in checks:
        if not holds:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            return f"{option} must be {rule} (got {shown})"
    return None


#: The command line restricted to this module's commands (serve).
main = family("serve")
