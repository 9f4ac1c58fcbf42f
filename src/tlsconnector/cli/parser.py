"""The command line's parser, in one place: every command, its options, its handler.

A handler is named ``"module:function"`` and imported only when its command runs
(:func:`tlsconnector.cli.main`), so ``tlsconnector check`` never imports the probe's
network code or the Postfix server. The handlers live in one module per command
family: :mod:`~tlsconnector.cli.policy` (``check``, ``schema``),
:mod:`~tlsconnector.cli.decide` (``inbound``, ``outbound``, ``routes``),
:mod:`~tlsconnector.cli.eop` (``import-eop``), :mod:`~tlsconnector.cli.demo`,
:mod:`~tlsconnector.cli.probe` and :mod:`~tlsconnector.cli.serve`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from tlsconnector.cli._common import MAX_JOBS

__all__ = ["build_parser"]


def _columns() -> int:
    """The terminal's width as :func:`shutil.get_terminal_size` tells it (``COLUMNS``,
    then the terminal of standard output, else 80), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter at the width it would choose itself. Speed: argparse
    makes a formatter for every option it adds, and its own looks the width up with
    shutil, whose import is a few percent of ``tlsconnector check``'s start-up."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = _columns() - 2 if width is None else width  # argparse's own "- 2"
        super().__init__(prog, indent_increment, max_help_position, width)


#: The namespace attribute naming the parser that first met an unrecognized argument
#: (removed before :meth:`_Parser.parse_args` returns).
_UNRECOGNIZED_BY = "_tlsconnector_unrecognized_by"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`_HelpFormatter`; its sub-parsers are of this
    class too (argparse makes them of the parent's class).

    An unrecognized argument is reported by the command's own parser, with that
    command's usage line (``tlsconnector serve postfix-outbound --bogus``), not by the
    top-level one: argparse collects a sub-command's leftovers and lets the top parser
    say ``tlsconnector [-h] [--version] COMMAND ...``. Each parser's
    :meth:`parse_known_args` notes itself when it is the innermost one with leftovers;
    :meth:`parse_args` lets that one report them (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]  # argparse's overloads, one signature
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # argparse's own default for None, spelled out for the type checker.
        given = argparse.Namespace() if namespace is None else namespace
        parsed, extras = super().parse_known_args(args, given)
        # A sub-command's parser runs first (inside its parent's): the innermost parser
        # with leftovers of its own, or of a sub-command with none, notes itself.
        if extras and not hasattr(parsed, _UNRECOGNIZED_BY):
            setattr(parsed, _UNRECOGNIZED_BY, self)
        return parsed, extras

    def parse_args(  # type: ignore[override]  # argparse's overloads, one signature
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        namespace, extras = self.parse_known_args(args, namespace)
        reporter: argparse.ArgumentParser = vars(namespace).pop(_UNRECOGNIZED_BY, self)
        if extras:
            reporter.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line: every command, its options and its handler, named as
    ``module:function`` and imported only when that command runs.

    With ``command`` (the first word of the command line, as :func:`tlsconnector.cli.main`
    passes it), a known command's parser is the only one built: parsing that command
    line gives the same result, and the other commands' options (and the modules their
    defaults come from, such as the probe's) are not built or imported at start-up.
    ``--version`` builds no command. Any other word, or None, builds every command
    (``--help`` lists them all, and a mistyped command is told the choices).
    """
    parser = _Parser(
        prog="tlsconnector",
        description="Forced-TLS partner connectors: check policies and decide sessions.",
    )
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command == "--version":  # prints and exits before any command is looked at
        return parser
    only = _BUILDERS.get(command) if command is not None else None
    if only is not None:
        only(commands)
        return parser

    _add_check(commands)
    _add_inbound(commands)
    _add_outbound(commands)
    _add_routes(commands)
    _add_requirements(commands)
    _add_diff(commands)
    _add_demo(commands)
    _add_eop(commands)
    _add_probe(commands)
    _add_serve(commands)
    _add_postfix_config(commands)
    _add_crl(commands)
    return parser


class _Version(argparse.Action):
    """``tlsconnector --version``: the installed distribution's version, on standard
    output, exit 0. Looked up only when asked for (start-up stays cheap)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("tlsconnector")
        except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
            version = "(version unknown: not installed)"
        sys.stdout.write(f"tlsconnector {version}\n")
        parser.exit()


if TYPE_CHECKING:  # generic only for type checkers
    from collections.abc import Callable, Sequence

    Commands = argparse._SubParsersAction[_Parser]


def _add_check(commands: Commands) -> None:
    """Add ``check``: validate a policy file and lint it."""
    check = _command(
        commands,
        "check",
        help="validate a policy file and lint it",
        description="Validate a policy file; print lint warnings (see docs/lint.md) to "
        "standard error.",
        handler="tlsconnector.cli.policy:check",
    )
    check.add_argument("policy", metavar="POLICY.toml")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when there is any lint warning"
    )


def _add_inbound(commands: Commands) -> None:
    """Add ``inbound``: decide inbound sessions."""
    inbound = _command(
        commands,
        "inbound",
        help="decide inbound sessions",
        description="Decide inbound sessions from a JSON Lines file (--sessions) or one "
        "session given by flags.",
        handler="tlsconnector.cli.decide:inbound",
    )
    _batch_arguments(inbound, what="session")
    single = inbound.add_argument_group("single session (instead of --sessions)")
    single.add_argument("--peer-ip", help="the connecting client's IP address")
    single.add_argument("--mail-from", help='envelope sender; "" or "<>" for the null sender')
    single.add_argument("--rcpt-to", action="append", default=[], help="repeatable")
    single.add_argument("--helo")
    tls = single.add_mutually_exclusive_group()
    tls.add_argument("--cert", metavar="CHAIN.pem", help="client chain, leaf first (implies TLS)")
    tls.add_argument("--no-tls", action="store_true", help="the session did not use STARTTLS")
    tls.add_argument(
        "--peer-cn",
        action="append",
        metavar="CN",
        help="a CN the MTA extracted (repeatable); with --peer-unverified if the MTA "
        "did not verify the chain",
    )
    single.add_argument("--peer-unverified", action="store_true")


def _add_outbound(commands: Commands) -> None:
    """Add ``outbound``: plan and judge outbound deliveries."""
    from tlsconnector._outbound import DEFAULT_RETRY_WINDOW  # only when built

    outbound = _command(
        commands,
        "outbound",
        help="plan and judge outbound deliveries",
        description="Decide outbound messages from a JSON Lines file (--sessions) or one "
        "recipient given by flags. Without --cert, --tls, --no-tls or --peer-cn the "
        "answer is the plan only (action 'route').",
        handler="tlsconnector.cli.decide:outbound",
    )
    _batch_arguments(outbound, what="attempt")
    outbound.add_argument(
        "--retry-window",
        type=float,
        default=DEFAULT_RETRY_WINDOW.total_seconds() / 3600,
        metavar="HOURS",
        help="queue time after which a failing attempt bounces (default: 24)",
    )
    one = outbound.add_argument_group("single recipient (instead of --sessions)")
    one.add_argument("--recipient", help="the recipient address")
    one.add_argument("--connector", help="a connector named by a transport rule")
    one.add_argument("--peer-host", help="the host connected to (recorded only)")
    attempt = one.add_mutually_exclusive_group()
    attempt.add_argument("--cert", metavar="CHAIN.pem", help="server chain, leaf first")
    attempt.add_argument("--tls", action="store_true", help="TLS used, no certificate known")
    attempt.add_argument("--no-tls", action="store_true", help="connected without STARTTLS")
    attempt.add_argument("--peer-cn", action="append", metavar="CN", help="MTA-verified CN")
    one.add_argument("--peer-unverified", action="store_true")
    one.add_argument("--queued-since", help="ISO 8601 time the message was first queued")


def _add_routes(commands: Commands) -> None:
    """Add ``routes``: the connector, route and TLS of each recipient domain."""
    routes = _command(
        commands,
        "routes",
        help="show which connector, route and TLS each recipient domain gets",
        description="For checking routing before go-live: one line per domain.",
        handler="tlsconnector.cli.decide:routes",
    )
    routes.add_argument("--policy", required=True, metavar="POLICY.toml")
    routes.add_argument("domains", nargs="*", metavar="DOMAIN")
    routes.add_argument("--domains-file", metavar="FILE", help="one domain per line")
    routes.add_argument("--json", action="store_true")


def _command(
    commands: Commands, name: str, *, help: str, description: str, handler: str
) -> argparse.ArgumentParser:
    """A command's parser, with its texts and its handler (``"module:function"``,
    imported only when the command runs)."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def _batch_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """The options ``inbound`` and ``outbound`` share: the policy, the JSON Lines
    input, JSON output, and the time."""
    parser.add_argument("--policy", required=True, metavar="POLICY.toml")
    parser.add_argument(
        "--sessions", metavar="FILE.jsonl", help="one JSON object per line; - for stdin"
    )
    parser.add_argument("--json", action="store_true", help="one JSON decision per line")
    parser.add_argument(
        "--at",
        help=f"ISO 8601 time with offset: the {what} time, and with --sessions the time "
        'of lines without "at" (default: now)',
    )
    parser.add_argument(
        "--jobs",
        type=_jobs_count,
        default=1,
        metavar="N",
        help="with --sessions: decide in N worker processes (0: one per available core); "
        "answers keep the input's order (default: 1)",
    )


def _jobs_count(text: str) -> int:
    """``--jobs``: a whole number from 0 to :data:`MAX_JOBS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 0 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_JOBS}, not {value}")
    return value


def _add_requirements(commands: Commands) -> None:
    """Add ``requirements``: the inbound counterpart of ``routes``."""
    requirements = _command(
        commands,
        "requirements",
        help="show what mail from each sender domain must show to be accepted",
        description="For each sender domain: which inbound connectors decide (after "
        "specificity and restrict beats allow), and what a session must show: TLS, the "
        "certificate name and trust store, the IP addresses; where several decide, "
        "satisfying either one suffices. DOMAIN '<>' is the null sender.",
        handler="tlsconnector.cli.requirements:requirements",
    )
    requirements.add_argument("--policy", required=True, metavar="POLICY.toml")
    requirements.add_argument("domains", nargs="+", metavar="DOMAIN")
    requirements.add_argument("--json", action="store_true", help="one JSON object per domain")


def _add_diff(commands: Commands) -> None:
    """Add ``diff``: what a policy change would decide otherwise (section 12)."""
    diff = _command(
        commands,
        "diff",
        help="show which recorded sessions a new policy decides otherwise",
        description="Decide every session line under the old and the new policy (with "
        "--old recorded: compare with the decision recorded in the line) and report "
        "exactly the sessions whose action, connector or reason codes change: a summary "
        "by transition and by connector, then examples. With --json: one object per "
        "changed session (line, direction, old, new), in input order, and the summary on "
        "standard error. Exit 0: nothing changes; 1: some decision changes or some line "
        "cannot be read; 2: usage error or invalid policy. See docs/changing-a-policy.md.",
        handler="tlsconnector.cli.diff:diff",
    )
    diff.add_argument(
        "--old",
        required=True,
        metavar="OLD.toml|recorded",
        help="the policy in force, or 'recorded' for the decisions recorded in the file "
        "(a policy file called 'recorded': ./recorded)",
    )
    diff.add_argument("--new", required=True, metavar="NEW.toml", help="the changed policy")
    diff.add_argument(
        "--inbound",
        metavar="FILE.jsonl",
        help="inbound session lines (serve postfix --record); - for stdin",
    )
    diff.add_argument("--outbound", metavar="FILE.jsonl", help="outbound session lines")
    diff.add_argument(
        "--json", action="store_true", help="one JSON object per changed session"
    )
    diff.add_argument(
        "--jobs",
        type=_jobs_count,
        default=1,
        metavar="N",
        help="decide in N worker processes (0: one per available core; default: 1)",
    )
    diff.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="example lines per transition in the report, 0 to 1000 (default: 5)",
    )


def _add_demo(commands: Commands) -> None:
    """Add the ``demo`` command."""
    demo = _command(
        commands,
        "demo",
        help="play the Contoso and Fabrikam Bank scenario (no files, no network)",
        description="Build Contoso's connectors for Fabrikam Bank, mint a test CA and the "
        "partner's certificates in memory, and decide 20 inbound and outbound "
        "sessions at a fixed time.",
        handler="tlsconnector.cli.demo:demo",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per session: the decision plus a 'session' label",
    )


def _add_eop(commands: Commands) -> None:
    """Add ``import-eop`` and ``schema`` to the command line."""
    imp = _command(
        commands,
        "import-eop",
        help="convert EOP connector exports (ConvertTo-Json) into a policy file",
        description="Convert the JSON written by 'Get-InboundConnector | ConvertTo-Json' "
        "and 'Get-OutboundConnector | ConvertTo-Json' into a policy file. Warnings go to "
        "standard error and into the file as comments; records that cannot be converted "
        "are listed and nothing is written.",
        handler="tlsconnector.cli.eop:import_eop",
    )
    imp.add_argument("--inbound", metavar="FILE", help="Get-InboundConnector export; - for stdin")
    imp.add_argument("--outbound", metavar="FILE", help="Get-OutboundConnector export; - for stdin")
    imp.add_argument(
        "-o", "--output", metavar="POLICY.toml", help="write here (default: standard output)"
    )

    _command(
        commands,
        "schema",
        help="print the JSON Schema of the policy file (for editors)",
        description="Print the JSON Schema (draft 2020-12) of the policy file, for "
        "editors such as Taplo / Even Better TOML: tlsconnector schema > policy.schema.json",
        handler="tlsconnector.cli.policy:schema",
    )


def _add_probe(commands: Commands) -> None:
    """Add the ``probe`` command."""
    # Only when built: the probe's module brings the SMTP client and the network code.
    from tlsconnector.adapters._probe import (
        DEFAULT_DEADLINE,
        DEFAULT_TIMEOUT,
        MAX_DEADLINE,
        MAX_TIMEOUT,
        SMTP_PORT,
    )

    probe = _command(
        commands,
        "probe",
        help="connect to a partner's server and show the verdict the policy would give",
        description="Connect to the host mail to RECIPIENT is routed to (or --host), do "
        "EHLO and STARTTLS, collect the certificate chain the server presents and print "
        "the delivery verdict with its reasons. No mail is sent. Exit 0: deliver; 3: "
        "would defer; 1: could not probe; 2: usage error.",
        handler="tlsconnector.cli.probe:probe",
    )
    probe.add_argument("--policy", required=True, metavar="POLICY.toml")
    probe.add_argument("--recipient", required=True, metavar="ADDR", help="user@domain")
    probe.add_argument(
        "--host",
        metavar="HOST[:PORT]",
        help="connect here instead of the route's hosts (IPv6 with a port: [ADDR]:PORT); "
        f"port {SMTP_PORT} by default",
    )
    probe.add_argument("--connector", metavar="NAME", help="a connector named by a transport rule")
    probe.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds allowed for each step (default {DEFAULT_TIMEOUT:g}, at most "
        f"{MAX_TIMEOUT:g})",
    )
    probe.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        metavar="S",
        help="seconds allowed for the whole probe: MX lookup, every host and address, every "
        f"step (default {DEFAULT_DEADLINE:g}, at most {MAX_DEADLINE:g})",
    )
    probe.add_argument(
        "--helo", metavar="NAME", help="the name to give in EHLO (default: this host's name)"
    )
    probe.add_argument("--json", action="store_true", help="one JSON object")
    probe.add_argument(
        "--at",
        metavar="TIME",
        help="ISO 8601 time with offset at which certificates are judged (default: now)",
    )


def _add_postfix_config(commands: Commands) -> None:
    """Add the ``postfix-config`` command."""
    config = commands.add_parser(
        "postfix-config",
        help="print the Postfix settings that enforce the policy's connectors",
        description="Print the main.cf and master.cf settings (or, with --shell, a POSIX "
        "shell script of postconf commands) that send mail under the policy's outbound "
        "connectors through a dedicated 'tlsconnector' transport whose TLS level and "
        "certificate pins come from 'tlsconnector serve postfix-outbound' at "
        "--outbound-maps, and with --inbound-policy put 'tlsconnector serve postfix' "
        "first in smtpd_recipient_restrictions. Nothing is written. Exit 0: printed; "
        "2: usage error, invalid policy, or a policy without enabled outbound "
        "connectors. See docs/tutorial.md.",
    )
    config.set_defaults(handler="tlsconnector.cli.postfix_config:postfix_config")
    config.add_argument("--policy", required=True, metavar="POLICY.toml")
    config.add_argument(
        "--outbound-maps",
        required=True,
        metavar="ADDR",
        help="where 'serve postfix-outbound' listens: HOST:PORT, [IPv6]:PORT or unix:/PATH",
    )
    config.add_argument(
        "--inbound-policy",
        metavar="ADDR",
        help="where 'serve postfix' listens (HOST:PORT, [IPv6]:PORT or unix:/PATH): also "
        "print the inbound settings",
    )
    config.add_argument(
        "--transport",
        default="tlsconnector",
        metavar="NAME",
        help="the dedicated transport's master.cf name: the --transport of 'serve "
        "postfix-outbound' (default: tlsconnector)",
    )
    config.add_argument(
        "--shell",
        action="store_true",
        help="print a POSIX shell script of postconf -e/-M/-P commands; it configures "
        "the instance in $MAIL_CONFIG when set (postconf -c \"$MAIL_CONFIG\")",
    )


def _add_crl(commands: Commands) -> None:
    """Add the ``crl`` command and its ``fetch`` sub-command (spec section 11)."""
    from tlsconnector.policy_file import crl_fetch

    crl = commands.add_parser(
        "crl",
        help="keep the policy's CRL files current",
        description="Certificate revocation lists for [trust] crl_files.",
    )
    actions = crl.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = _command(
        actions,
        "fetch",
        help="download the CRLs named by CRL distribution points",
        description="Download (http and https only) the CRLs named by the CRL "
        "distribution points of the certificates of [trust] ca_file and of the chains "
        "of a sessions file that the policy's trust anchors validate; check each is "
        "one usable CRL, current, signed by the issuer of a certificate naming it and "
        "not older than the file it replaces; replace the file atomically (a file is "
        "never deleted or replaced by a failed download). Files are named by the "
        "SHA-256 of the URL (.crl). The policy is never edited: files not yet in "
        "crl_files are printed as the crl_files line to use. Exit 0: all fetched; 1: "
        "some failed (their files kept); 2: usage or policy error. See "
        f"docs/revocation.md. At most {crl_fetch.MAX_CRL_URLS} URLs per run.",
        handler="tlsconnector.cli.crl:crl_fetch_command",
    )
    fetch.add_argument("--policy", required=True, metavar="POLICY.toml")
    fetch.add_argument(
        "--sessions",
        metavar="FILE.jsonl",
        help="session lines (inbound --sessions form, or serve --record); - for stdin",
    )
    fetch.add_argument(
        "--out",
        metavar="DIR",
        help="where the CRL files go (default: the directory of the first crl_files "
        "entry, else the policy's directory)",
    )
    fetch.add_argument(
        "--timeout",
        type=float,
        default=crl_fetch.DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="the most one download may take, redirects included (default: "
        f"{crl_fetch.DEFAULT_TIMEOUT:g})",
    )
    fetch.add_argument(
        "--deadline",
        type=float,
        default=crl_fetch.DEFAULT_DEADLINE,
        metavar="SECONDS",
        help=f"the most the whole run may take (default: {crl_fetch.DEFAULT_DEADLINE:g})",
    )


def _add_serve(commands: Commands) -> None:
    """Add the ``serve`` command and its ``postfix`` sub-command."""
    serve = commands.add_parser(
        "serve",
        help="run a policy service for a mail server",
        description="Run tlsconnector as a long-lived service a mail server asks for "
        "each inbound decision.",
    )
    targets = serve.add_subparsers(dest="target", required=True, metavar="MTA")

    def running(service: argparse.ArgumentParser, default_listen: str) -> None:
        """The options both services share: where they listen, the pid file, the log."""
        service.add_argument(
            "--listen",
            default=default_listen,
            metavar="HOST:PORT|unix:PATH",
            help="an IPv4 address, [IPv6] address or host name (resolved once at start; "
            "it must name only loopback addresses) and port, or unix:PATH for a Unix "
            "socket; a relative PATH (unix:private/policy, as in check_policy_service) "
            f"is under --queue-directory (default: {default_listen}; port 0 picks a free "
            "port, shown on the 'listening' log line)",
        )
        service.add_argument(
            "--queue-directory",
            metavar="DIR",
            help="the directory a relative unix:PATH is under (default: the output of "
            "'postconf -h queue_directory' when postconf is installed, else "
            "/var/spool/postfix)",
        )
        service.add_argument(
            "--socket-mode",
            metavar="MODE",
            help="the Unix socket's permission bits in octal, e.g. 0660 (default: as the "
            "umask leaves them)",
        )
        service.add_argument(
            "--socket-owner",
            metavar="USER[:GROUP]",
            help="the Unix socket's owner and group, e.g. tlsconnector:postfix",
        )
        service.add_argument(
            "--pidfile",
            metavar="FILE",
            help="write the process id to FILE once listening, remove it at exit; refuse "
            "to start while FILE names a running process",
        )
        logging = service.add_argument_group("logging")
        logging.add_argument(
            "--log",
            choices=["stderr", "syslog"],
            default="stderr",
            help="where log lines go: standard error (default) or syslog, facility mail",
        )
        logging.add_argument(
            "--log-file",
            metavar="FILE",
            help="append log lines to FILE instead of standard error (created mode 0640); "
            "SIGHUP opens FILE again, so logrotate's create mode works: move FILE away, "
            "then send SIGHUP (systemctl reload)",
        )
        logging.add_argument(
            "--log-format",
            choices=["json", "text"],
            help="one JSON object per line, or text: the time and key=value fields, "
            "escaped (default: json; text with --log syslog)",
        )
        logging.add_argument(
            "--syslog-socket",
            metavar="PATH",
            help="the local syslog socket for --log syslog (default: /dev/log)",
        )

    postfix = _command(
        targets,
        "postfix",
        help="Postfix's SMTP access policy delegation (check_policy_service)",
        description="Answer Postfix's policy requests: DUNNO when the inbound "
        "connectors accept the session, their SMTP reply when they refuse it, 451 4.3.0 "
        "when it cannot be decided. Decides at protocol_state=RCPT. One log line per "
        "decision, JSON or --log-format text, on standard error, to --log-file FILE "
        "or to syslog (--log syslog, facility mail); other events a client can cause "
        "(protocol errors, connection errors, idle timeouts, refused connections) at "
        "most 50 of each kind per 10 s, the rest counted; at most 1 MiB of log lines "
        "waits for a slow reader, the rest is dropped and counted. A request that "
        "breaks the protocol is answered 451 4.3.0 and its connection closed. The "
        "service refuses to start with, or reload, a policy without an enabled inbound "
        "partner connector, or with [trust] revocation = \"hard\" (Postfix never sends the "
        "certificate). SIGHUP opens --log-file again and reloads the policy (an invalid "
        "new policy is logged and the previous one kept); SIGTERM and SIGINT stop. See "
        "docs/postfix.md.",
        handler="tlsconnector.cli.serve:serve_postfix",
    )
    postfix.add_argument("--policy", required=True, metavar="POLICY.toml")
    running(postfix, "127.0.0.1:10040")
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
    record = postfix.add_argument_group(
        "recording (for replay: tlsconnector inbound --sessions, tlsconnector diff)"
    )
    record.add_argument(
        "--record",
        metavar="FILE.jsonl",
        help="write one JSON line per decided RCPT (the facts and the answered decision, "
        "under 'recorded') to FILE; it holds envelope addresses (mode 0600). Never delays "
        "or changes an answer; write errors are logged and counted. Needs --workers 1",
    )
    record.add_argument(
        "--record-max-bytes",
        type=int,
        metavar="N",
        help="rotate FILE before it passes N bytes (4096 to 2**40; default: 67108864)",
    )
    record.add_argument(
        "--record-keep",
        type=int,
        metavar="N",
        help="keep at most N files: FILE, FILE.1 ... FILE.N-1 (1 to 1000; default: 8)",
    )
    record.add_argument(
        "--record-redact-local-parts",
        action="store_true",
        help="replace each address's local part by r- and a keyed hash (HMAC-SHA256; key "
        "random per run unless --record-key-file); the domain stays",
    )
    record.add_argument(
        "--record-key-file",
        metavar="FILE",
        help="the HMAC key for --record-redact-local-parts (16 to 4096 bytes), so hashes "
        "stay the same across runs",
    )
    outbound = _command(
        targets,
        "postfix-outbound",
        help="Postfix socketmap for transport_maps and smtp_tls_policy_maps (outbound)",
        description="Answer Postfix's socketmap lookups so that mail under an outbound "
        "connector obeys it (spec section 10, pinning). Map 'transport': a governed "
        "recipient gets the dedicated transport and the connector's route "
        "(TRANSPORT:[host]:port, ..., or TRANSPORT:domain for MX routing), any other "
        "NOTFOUND. Map 'tlspolicy': the next hop's level: 'may' (opportunistic), "
        "'encrypt' (encryption_only), or for certificate_validation and "
        "domain_validation 'fingerprint match=...' with the SHA-256 of exactly the "
        "leaves this service judged deliver when it probed every host and address of "
        "the next hop; TEMP with the reason when none did. Pins live until the leaf's "
        "notAfter or --pin-lifetime, whichever comes first, and are refreshed in the "
        "background while the next hop is in use. Refuses to start with, or reload, a "
        "policy without an outbound connector chosen by recipient domain, or with a "
        "smart host two connectors share with different TLS settings. One log line per "
        "answer, JSON or --log-format text, on standard error, to --log-file FILE or "
        "to syslog (--log syslog, facility mail). SIGHUP opens --log-file again and "
        "reloads (pins of changed connectors are forgotten); SIGTERM and SIGINT stop. "
        "See docs/postfix-outbound.md.",
        handler="tlsconnector.cli.serve:serve_postfix_outbound",
    )
    outbound.add_argument("--policy", required=True, metavar="POLICY.toml")
    running(outbound, "127.0.0.1:10041")
    outbound.add_argument(
        "--pin-lifetime",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="the longest a pin is used before the next hop is probed again, 60 to "
        "604800; a pin never outlives its leaf's notAfter (default: 3600)",
    )
    outbound.add_argument(
        "--probe-deadline",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="the longest one probe of a next hop may take, every host and address "
        "together, at most 90: Postfix waits 100 s for a lookup (default: 60)",
    )
    outbound.add_argument(
        "--transport",
        default="tlsconnector",
        metavar="NAME",
        help="the dedicated transport's master.cf name in transport answers (default: "
        "tlsconnector)",
    )
    outbound.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="close a connection that sends no complete request for this long (default: 300)",
    )
    outbound.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="connections served at once; more are closed at once (default: 1000)",
    )
    outbound.add_argument(
        "--max-connections-per-client",
        type=int,
        default=100,
        metavar="N",
        help="connections served at once from one client address (all connections of "
        "a Unix socket count as one client); more are closed at once (default: 100)",
    )


#: Each command's builder, by the command's name (``import-eop`` and ``schema`` share
#: one): what :func:`build_parser` builds alone when given that name.
_BUILDERS: dict[str, Callable[[Commands], None]] = {
    "check": _add_check,
    "inbound": _add_inbound,
    "outbound": _add_outbound,
    "routes": _add_routes,
    "requirements": _add_requirements,
    "diff": _add_diff,
    "demo": _add_demo,
    "import-eop": _add_eop,
    "schema": _add_eop,
    "probe": _add_probe,
    "serve": _add_serve,
    "postfix-config": _add_postfix_config,
    "crl": _add_crl,
}
