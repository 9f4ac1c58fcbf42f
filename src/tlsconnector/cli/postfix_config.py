"""``tlsconnector postfix-config``: the Postfix settings that put a policy's connectors
in charge of Postfix's mail (specification section 10, Postfix by pinning).

Outbound: ``transport_maps`` asks the socketmap service of ``tlsconnector serve
postfix-outbound`` which transport and next hops a recipient gets, and mail under a
connector goes through a dedicated ``tlsconnector`` transport in master.cf whose
floor is ``smtp_tls_security_level=secure`` and whose ``smtp_tls_policy_maps`` asks
the same service for the level (``fingerprint match=...``, ``encrypt``, ``may``). A
NOTFOUND or unreachable TLS map on that transport defers; it never falls back to the
ordinary ``smtp`` transport's global level (postfix-notes: a NOTFOUND there can
deliver in plaintext).

Inbound (``--inbound-policy``): ``check_policy_service`` first in
``smtpd_recipient_restrictions``, and what ``tlsconnector serve postfix`` needs from
smtpd (a client certificate asked for and verified against the policy's CA file).

Two forms: main.cf and master.cf text (the default) or a POSIX shell script of
``postconf`` commands (``--shell``) that honours ``MAIL_CONFIG``. Nothing is written
by this command; it reads only the policy file.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

import attrs
import tomli

from tlsconnector._errors import InvalidValue, PolicyError, printable, show
from tlsconnector._model import ConnectorType, OutboundConnector, Policy, SmartHost
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_OK, EXIT_USAGE, _err
from tlsconnector.policy_file.loading import MAX_POLICY_BYTES, load_policy

__all__ = [
    "DEFAULT_ACTION",
    "TRANSPORT",
    "Endpoint",
    "PostfixSettings",
    "main",
    "parse_endpoint",
    "postfix_config",
    "settings_for",
]

#: The master.cf service that carries every message under an outbound connector
#: (``--transport``; the same name as ``serve postfix-outbound --transport``).
TRANSPORT = "tlsconnector"
#: A master.cf service name, as ``serve postfix-outbound --transport`` accepts it.
_TRANSPORT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: The socketmap names the outbound service answers (``serve postfix-outbound``).
TRANSPORT_MAP = "transport"
TLS_POLICY_MAP = "tlspolicy"
#: What smtpd answers when the inbound policy service cannot be asked: temporary.
DEFAULT_ACTION = "451 4.3.5 Policy service unavailable, try again later"
#: The longest address or path accepted in an ADDR option or written into a setting.
MAX_SETTING_TEXT = 1024

# A path written into main.cf or master.cf: characters Postfix reads literally. Space
# and comma separate list items, '$' expands a parameter, braces group, quotes and
# backslashes are not unquoted by smtp(8)'s -o parsing: refusing them beats escaping.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+@%=~-]*")


@attrs.frozen
class Endpoint:
    """Where a tlsconnector service listens, in Postfix's spelling: ``inet`` with
    ``host:port`` (IPv6 in brackets) or ``unix`` with an absolute path."""

    kind: str  # "inet" | "unix"
    address: str

    def socketmap(self, name: str) -> str:
        """The Postfix table of the socketmap called ``name`` at this endpoint."""
        return f"socketmap:{self.kind}:{self.address}:{name}"

    @property
    def service(self) -> str:
        """The endpoint as ``check_policy_service`` names it."""
        return f"{self.kind}:{self.address}"


def parse_endpoint(option: str, text: str) -> Endpoint:
    """``HOST:PORT``, ``inet:HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/PATH``.

    Raises :class:`InvalidValue` naming ``option`` and the value.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_SETTING_TEXT:
        raise InvalidValue(text, f"{option} must be HOST:PORT or unix:/PATH")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not _SAFE_PATH.fullmatch(path):
            raise InvalidValue(
                text,
                f"{option}: a unix socket path must be absolute and made of letters, "
                "digits and . _ / + @ % = ~ - only",
            )
        return Endpoint("unix", os.path.normpath(path))
    address = text[len("inet:") :] if text.startswith("inet:") else text
    try:
        host = SmartHost.parse(address)
    except InvalidValue as exc:
        raise InvalidValue(text, f"{option}: {exc.reason}") from None
    if host.port is None:
        raise InvalidValue(text, f"{option} needs a port (HOST:PORT, [IPv6]:PORT)")
    shown = f"[{host.host}]" if ":" in host.host else host.host
    return Endpoint("inet", f"{shown}:{host.port}")


@attrs.frozen
class Setting:
    """One main.cf parameter. ``first``: the value is an item that must come first in a
    list the site may already have (the script prepends it unless it is first)."""

    name: str
    value: str
    first: bool = False
    comment: str = ""


@attrs.frozen
class PostfixSettings:
    """Everything ``postfix-config`` prints, as data."""

    policy: Path
    connectors: tuple[OutboundConnector, ...]
    main_cf: tuple[Setting, ...]
    #: The master.cf service: (name/type, entry without -o, its -o parameters in order).
    service: str
    entry: str
    parameters: tuple[tuple[str, str], ...]


def _safe_path(field: str, path: str) -> str:
    if len(path) > MAX_SETTING_TEXT or not _SAFE_PATH.fullmatch(path):
        raise InvalidValue(
            path,
            f"{field}: Postfix would not read this path literally (only letters, digits "
            "and . _ / + @ % = ~ - are written into Postfix settings); move or link the "
            "file to a plain path",
        )
    return path


def _ca_file(policy_path: Path) -> str | None:
    """The policy's ``[trust] ca_file`` as an absolute path, or None without one.

    The policy has loaded (so the key has the right type and the file was read);
    the file is read again only for the path the loader resolved.
    """
    with policy_path.open("rb") as handle:
        data = tomli.loads(handle.read(MAX_POLICY_BYTES).decode("utf-8"))
    trust = data.get("trust", {})
    ca_file = trust.get("ca_file") if isinstance(trust, dict) else None
    if not isinstance(ca_file, str):
        return None
    absolute = os.path.normpath(os.path.join(policy_path.parent.absolute(), ca_file))
    return _safe_path("trust.ca_file", absolute)


def settings_for(
    policy: Policy,
    *,
    policy_path: Path,
    ca_file: str | None,
    outbound: Endpoint,
    inbound: Endpoint | None = None,
    transport: str = TRANSPORT,
) -> PostfixSettings:
    """The settings for ``policy`` (loaded from ``policy_path``).

    Raises :class:`InvalidValue` when the policy has nothing for them to enforce.
    """
    # The connectors the transport map routes: chosen by recipient domain (section
    # 6.2), as serve postfix-outbound serves them (it refuses a policy without one).
    connectors = tuple(c for c in policy.outbound if c.selectable_by_domain)
    if not connectors:
        raise InvalidValue(
            str(policy_path),
            "the policy has no enabled [[outbound]] connector chosen by recipient domain "
            "(is_transport_rule_scoped = false, test_mode = false), so Postfix has nothing "
            "to send through the tlsconnector transport (add one, or leave transport_maps "
            "alone)",
        )
    main_cf: list[Setting] = [
        Setting(
            "transport_maps",
            outbound.socketmap(TRANSPORT_MAP),
            first=True,
            comment="first: the first table that knows a recipient decides its transport",
        )
    ]
    if inbound is not None:
        if not any(c.enabled and c.type is ConnectorType.PARTNER for c in policy.inbound):
            raise InvalidValue(
                str(policy_path),
                "--inbound-policy: the policy has no enabled inbound partner connector "
                "(tlsconnector serve postfix refuses to start with it)",
            )
        if ca_file is None:
            raise InvalidValue(
                str(policy_path),
                "--inbound-policy: the policy has no [trust] ca_file, and Postfix must "
                "verify client certificates against that same file (smtpd_tls_CAfile)",
            )
        main_cf += [
            Setting("smtpd_tls_ask_ccert", "yes"),
            Setting(
                "smtpd_tls_CAfile",
                ca_file,
                comment="Postfix verifies the client chain; the service trusts its CN",
            ),
            Setting("smtpd_tls_fingerprint_digest", "sha256"),
            Setting("smtpd_policy_service_default_action", DEFAULT_ACTION),
            Setting(
                "smtpd_recipient_restrictions",
                f"check_policy_service {inbound.service}",
                first=True,
                comment="first: anything before it that permits skips the connectors",
            ),
        ]
    parameters: list[tuple[str, str]] = [("smtp_tls_security_level", "secure")]
    if ca_file is not None:
        parameters.append(("smtp_tls_CAfile", ca_file))
    parameters += [
        ("smtp_tls_fingerprint_digest", "sha256"),
        ("smtp_tls_policy_maps", outbound.socketmap(TLS_POLICY_MAP)),
    ]
    return PostfixSettings(
        policy=policy_path,
        connectors=connectors,
        main_cf=tuple(main_cf),
        service=f"{transport}/unix",
        entry=f"{transport} unix - - n - - smtp",
        parameters=tuple(parameters),
    )


def _header(settings: PostfixSettings) -> list[str]:
    # The path is the user's text: escaped, so no newline in it can end the comment.
    lines = [
        f"# tlsconnector postfix-config for {printable(str(settings.policy), MAX_SETTING_TEXT)}"
    ]
    for connector in settings.connectors:
        # Connector names are the policy author's text: escaped like every echo.
        lines.append(f"# outbound connector {show(connector.name)}: {connector.tls_settings}")
    lines += [
        "# Postfix bounces after maximal_queue_lifetime (default 5d), not after the",
        "# connector's retry window (default 24 hours): docs/tutorial.md lines them up.",
    ]
    return lines


def config_text(settings: PostfixSettings) -> str:
    """The settings as main.cf and master.cf text."""
    lines = [*_header(settings), "", "# --- main.cf ---"]
    for setting in settings.main_cf:
        if setting.comment:
            lines.append(f"# {setting.comment}")
        lines.append(f"{setting.name} = {setting.value}")
    lines += ["", "# --- master.cf ---"]
    lines.append(settings.entry)
    lines += [f"  -o {key}={value}" for key, value in settings.parameters]
    return "\n".join(lines) + "\n"


_SHELL_PRELUDE = """\
set -eu
PATH="$PATH:/usr/sbin:/sbin"
# postconf on the instance named by MAIL_CONFIG (a config_directory), else the default one.
tlsconnector_postconf() {
    if [ -n "${MAIL_CONFIG:-}" ]; then
        postconf -c "$MAIL_CONFIG" "$@"
    else
        postconf "$@"
    fi
}
# Make $2 the first item of list parameter $1, keeping what the site already lists.
tlsconnector_first() {
    tlsconnector_current=$(tlsconnector_postconf -h "$1")
    tlsconnector_words=$(printf '%s\\n' "$tlsconnector_current" |
        tr ',\\t\\n' '   ' | tr -s ' ' | sed 's/^ //')
    case "$tlsconnector_words " in
        "$2 "*) ;;
        *) tlsconnector_postconf -e "$1 = $2${tlsconnector_current:+, $tlsconnector_current}" ;;
    esac
}
"""


def shell_script(settings: PostfixSettings) -> str:
    """The settings as a POSIX shell script of ``postconf`` commands."""
    lines = ["#!/bin/sh", *_header(settings), _SHELL_PRELUDE.rstrip("\n"), "", "# main.cf"]
    for setting in settings.main_cf:
        if setting.first:
            quoted = f"{shlex.quote(setting.name)} {shlex.quote(setting.value)}"
            lines.append(f"tlsconnector_first {quoted}")
        else:
            lines.append(
                f"tlsconnector_postconf -e {shlex.quote(f'{setting.name} = {setting.value}')}"
            )
    lines += ["", "# master.cf: the dedicated transport (replaced whole, then its -o parameters)"]
    lines.append(f"tlsconnector_postconf -M {shlex.quote(f'{settings.service}={settings.entry}')}")
    for key, value in settings.parameters:
        lines.append(f"tlsconnector_postconf -P {shlex.quote(f'{settings.service}/{key}={value}')}")
    lines += [
        "",
        '# then: postfix check && postfix reload (with -c "$MAIL_CONFIG" for an instance)',
    ]
    return "\n".join(lines) + "\n"


def postfix_config(args: argparse.Namespace) -> int:
    """``tlsconnector postfix-config``."""
    try:
        outbound = parse_endpoint("--outbound-maps", args.outbound_maps)
        inbound = (
            None
            if args.inbound_policy is None
            else parse_endpoint("--inbound-policy", args.inbound_policy)
        )
    except InvalidValue as exc:
        _err(f"tlsconnector postfix-config: {show(exc.value)}: {exc.reason}")
        return EXIT_USAGE
    if not _TRANSPORT_NAME.fullmatch(args.transport):
        _err(
            f"tlsconnector postfix-config: --transport {show(args.transport)} must be a "
            "master.cf service name: 1 to 64 letters, digits, '-', '_' or '.'"
        )
        return EXIT_USAGE
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_USAGE
    policy_path = Path(os.path.normpath(Path(args.policy).absolute()))
    try:
        settings = settings_for(
            policy,
            policy_path=policy_path,
            ca_file=_ca_file(policy_path),
            outbound=outbound,
            inbound=inbound,
            transport=args.transport,
        )
    except InvalidValue as exc:
        _err(f"tlsconnector postfix-config: {show(exc.value)}: {exc.reason}")
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError, tomli.TOMLDecodeError) as exc:
        # The file changed since it loaded: say so, print nothing.
        _err(f"tlsconnector postfix-config: {show(str(policy_path))}: cannot read again: {exc}")
        return EXIT_USAGE
    sys.stdout.write(shell_script(settings) if args.shell else config_text(settings))
    return EXIT_OK


#: The command line restricted to this module's command (postfix-config).
main = family("postfix-config")
