"""The systemd units in contrib/systemd/ (issue "For operators and integrators",
"A ready systemd unit, with the commands that create its user").

Each unit is read line by line as systemd reads it (sections, ``Key=value``, keys that
may repeat, comments, backslash continuations), then checked against what it must
agree with: its install comment names its own file; ``ExecStart`` runs the service
with options the real command-line parser accepts; ``User=``/``Group=`` are the
account docs/postfix.md creates; it runs in the foreground and restarts on failure;
the socket directory it creates is where its ``--listen unix:PATH`` puts the socket.
Every check is also run against a broken copy of the unit, and must fail there.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tlsconnector.adapters.postfix._service import unix_path_of
from tlsconnector.cli.parser import build_parser

ROOT = Path(__file__).parents[1]
UNITS = ROOT / "contrib" / "systemd"
POSTFIX_DOC = ROOT / "docs" / "postfix.md"

#: Each unit file and the ``serve`` target it must run.
TARGETS = {
    "tlsconnector-postfix.service": "postfix",
    "tlsconnector-postfix-outbound.service": "postfix-outbound",
}
#: The handler each target's parser must choose.
HANDLERS = {
    "postfix": "tlsconnector.cli.serve:serve_postfix",
    "postfix-outbound": "tlsconnector.cli.serve:serve_postfix_outbound",
}


class Unit:
    """A unit file: its leading comment and its settings, ``(section, key) -> values``
    in order (systemd allows a key more than once)."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.comment: list[str] = []
        self.settings: dict[tuple[str, str], list[str]] = {}
        section = ""
        pending = ""
        for raw in text.splitlines():
            line = pending + raw.strip() if pending else raw.strip()
            pending = ""
            if line.endswith("\\"):  # continued on the next line
                pending = line[:-1] + " "
                continue
            if not line or line.startswith(("#", ";")):
                if not section and line:
                    self.comment.append(line.lstrip("#;").strip())
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, equals, value = line.partition("=")
            assert equals, f"{name}: not a Key=value line: {line!r}"
            assert section, f"{name}: a setting before any section: {line!r}"
            self.settings.setdefault((section, key.strip()), []).append(value.strip())
        assert not pending, f"{name}: ends with a continuation"

    def values(self, section: str, key: str) -> list[str]:
        return self.settings.get((section, key), [])

    def one(self, section: str, key: str) -> str:
        values = self.values(section, key)
        assert len(values) == 1, f"{self.name}: [{section}] {key}= given {len(values)} times"
        return values[0]

    def command(self, key: str) -> list[str]:
        """``ExecStart`` (or another ``Exec*``) as an argv, without systemd's prefixes
        (``-``, ``+``, ``@``, ``:``, ``!``)."""
        value = self.one("Service", key)
        argv = shlex.split(value)
        assert argv, f"{self.name}: empty {key}="
        argv[0] = argv[0].lstrip("-+@:!")
        return argv


def unit(name: str) -> Unit:
    return Unit(name, (UNITS / name).read_text(encoding="utf-8"))


def doc_account() -> tuple[str, str]:
    """The user and the group that docs/postfix.md's "A systemd unit" commands create:
    read from its code block (``groupadd`` then ``useradd --gid``)."""
    text = POSTFIX_DOC.read_text(encoding="utf-8")
    section = text.split("### A systemd unit", 1)[1].split("\n#", 1)[0]
    block = re.search(r"```[^\n]*\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no code block under 'A systemd unit'"
    commands = [shlex.split(line) for line in block.group(1).replace("\\\n", " ").splitlines()]
    groups = [argv[-1] for argv in commands if argv and argv[0] == "groupadd"]
    users = [argv for argv in commands if argv and argv[0] == "useradd"]
    assert len(users) == 1, f"expected one useradd command, got {users}"
    useradd = users[0]
    user = useradd[-1]
    if "--user-group" in useradd or "-U" in useradd:
        group = user
    else:
        flag = "--gid" if "--gid" in useradd else "-g"
        assert flag in useradd, f"useradd without a group: {useradd}"
        group = useradd[useradd.index(flag) + 1]
        assert group in groups, f"the group {group!r} is not created by groupadd: {groups}"
    return user, group


# --- the checks, each a function of a unit so that it can be run on a broken copy -----


def check_install_comment(u: Unit) -> None:
    """The install comment copies the file under its own name and enables that unit:
    following it never overwrites another unit."""
    comment = " ".join(u.comment)
    assert "Install" in comment, f"{u.name}: no install comment"
    assert f"/etc/systemd/system/{u.name}" in comment, comment
    named = set(re.findall(r"[\w.@-]+\.service\b", comment))
    assert named == {u.name}, f"{u.name}: the comment names {sorted(named)}"
    enabled = re.findall(r"systemctl enable --now (\S+)", comment)
    assert enabled == [u.name.removesuffix(".service")], enabled


def parsed_exec_start(u: Unit) -> tuple[list[str], argparse.Namespace]:
    argv = u.command("ExecStart")
    assert Path(argv[0]).name == "tlsconnector", argv[0]
    assert Path(argv[0]).is_absolute(), argv[0]
    assert argv[1:3] == ["serve", TARGETS[u.name]], argv
    try:
        args = build_parser(argv[1]).parse_args(argv[1:])
    except SystemExit as exc:  # argparse: an unknown option, a missing value, ...
        raise AssertionError(f"{u.name}: the CLI refuses ExecStart {argv[1:]}") from exc
    return argv, args


def check_exec_start(u: Unit) -> None:
    """``ExecStart`` runs ``tlsconnector serve TARGET`` with options the CLI accepts."""
    _, args = parsed_exec_start(u)
    assert args.handler == HANDLERS[TARGETS[u.name]]
    assert args.policy.startswith("/etc/tlsconnector/"), args.policy


def check_account(u: Unit) -> None:
    """``User=``/``Group=`` are the account docs/postfix.md creates, and the socket
    directory ``ExecStartPre`` makes is owned by that user."""
    user, group = doc_account()
    assert (user, group) == (u.one("Service", "User"), u.one("Service", "Group"))
    pre = u.command("ExecStartPre")
    assert pre[pre.index("-o") + 1] == user, pre


def check_foreground_and_restart(u: Unit) -> None:
    """The service stays in the foreground (systemd tracks that process) and systemd
    starts it again when it fails; ``systemctl reload`` is SIGHUP to it."""
    assert u.one("Service", "Type") in {"simple", "exec"}
    argv, _ = parsed_exec_start(u)
    daemonizing = [a for a in argv if re.search(r"daemon|background|detach|fork", a)]
    assert daemonizing == [], daemonizing
    assert u.one("Service", "Restart") in {"on-failure", "always"}
    assert u.command("ExecReload") == ["/bin/kill", "-HUP", "$MAINPID"]


def check_socket_directory(u: Unit) -> None:
    """The directory ``ExecStartPre`` creates (and ``ReadWritePaths`` leaves writable
    under ``ProtectSystem=strict``) is the one ``--listen unix:PATH`` puts the socket
    in."""
    _, args = parsed_exec_start(u)
    socket = Path(unix_path_of(args.listen, queue_directory=args.queue_directory))
    pre = u.command("ExecStartPre")
    assert pre[:2] == ["/usr/bin/install", "-d"], pre
    assert Path(pre[-1]) == socket.parent, (pre[-1], socket)
    writable = [v.lstrip("-") for v in u.values("Service", "ReadWritePaths")]
    assert str(socket.parent) in writable, writable


CHECKS: list[Callable[[Unit], None]] = [
    check_install_comment,
    check_exec_start,
    check_account,
    check_foreground_and_restart,
    check_socket_directory,
]


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_unit_holds(name: str, check: Callable[[Unit], None]) -> None:
    check(unit(name))


def test_every_unit_in_contrib_is_checked() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(TARGETS)


def test_the_account_is_read_from_the_doc() -> None:
    assert ("tlsconnector", "tlsconnector") == doc_account()


# --- each check fails on a broken unit ----------------------------------------------------

BREAKAGES = [
    # (check, the unit, text to replace, replacement)
    (
        check_install_comment,
        "tlsconnector-postfix-outbound.service",
        "/etc/systemd/system/tlsconnector-postfix-outbound.service",
        "/etc/systemd/system/tlsconnector-postfix.service",
    ),
    (
        check_install_comment,
        "tlsconnector-postfix-outbound.service",
        "enable --now tlsconnector-postfix-outbound",
        "enable --now tlsconnector-postfix",
    ),
    (check_exec_start, "tlsconnector-postfix.service", "--socket-mode", "--sokcet-mode"),
    (check_exec_start, "tlsconnector-postfix.service", "--log-format text", "--log-format txt"),
    (
        check_exec_start,
        "tlsconnector-postfix-outbound.service",
        "serve postfix-outbound",
        "serve postfix",
    ),
    (
        check_exec_start,
        "tlsconnector-postfix-outbound.service",
        "--queue-directory /var/spool/postfix",
        "--queue-directory /var/spool/postfix --workers 2",  # inbound only
    ),
    (check_account, "tlsconnector-postfix.service", "User=tlsconnector", "User=tlsc"),
    (check_account, "tlsconnector-postfix-outbound.service", "Group=tlsconnector", "Group=postfix"),
    (check_account, "tlsconnector-postfix.service", "-o tlsconnector", "-o postfix"),
    (check_foreground_and_restart, "tlsconnector-postfix.service", "Type=simple", "Type=forking"),
    (
        check_foreground_and_restart,
        "tlsconnector-postfix-outbound.service",
        "Restart=on-failure",
        "Restart=no",
    ),
    (check_foreground_and_restart, "tlsconnector-postfix.service", "Restart=on-failure\n", ""),
    (
        check_socket_directory,
        "tlsconnector-postfix.service",
        "--listen unix:tlsconnector/policy",
        "--listen unix:private/policy",
    ),
]


@pytest.mark.parametrize(
    ("check", "name", "old", "new"),
    BREAKAGES,
    ids=[f"{c.__name__}-{new.strip()[:24]}" for c, _, _, new in BREAKAGES],
)
def test_each_check_fails_on_a_broken_unit(
    check: Callable[[Unit], None], name: str, old: str, new: str
) -> None:
    text = (UNITS / name).read_text(encoding="utf-8")
    assert old in text
    check(Unit(name, text))  # holds on the real unit
    with pytest.raises(AssertionError):
        check(Unit(name, text.replace(old, new, 1)))


def test_a_typo_in_a_repeated_or_continued_line_is_read() -> None:
    text = (
        "# Install: copy this file to /etc/systemd/system/x.service, then:\n"
        "# systemctl daemon-reload && systemctl enable --now x\n"
        "[Service]\n"
        "ReadWritePaths=/a\n"
        "ReadWritePaths=-/b\n"
        "ExecStart=/opt/tlsconnector/bin/tlsconnector serve postfix \\\n"
        "    --policy /etc/tlsconnector/policy.toml\n"
    )
    u = Unit("x.service", text)
    assert ["/a", "-/b"] == u.values("Service", "ReadWritePaths")
    assert u.command("ExecStart")[-2:] == ["--policy", "/etc/tlsconnector/policy.toml"]
    check_install_comment(u)


def test_the_outbound_unit_and_its_docs_ask_for_the_probe_extra() -> None:
    """Without dnspython the outbound service starts and only warns: the unit's comment
    and the install pages say to install ``[probe]``."""
    comment = " ".join(unit("tlsconnector-postfix-outbound.service").comment)
    assert "tlsconnector[probe]" in comment
    assert "mx-lookups-unavailable" in comment
    for page in ("installation.md", "postfix-outbound.md"):
        text = " ".join((ROOT / "docs" / page).read_text(encoding="utf-8").split())
        assert "/opt/tlsconnector/bin/pip install '/path/to/tlsconnector[probe]'" in text, page
        assert "mx-lookups-unavailable" in text, page
