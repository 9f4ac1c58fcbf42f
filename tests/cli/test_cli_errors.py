"""Command-line errors a newcomer can act on, tested as the program runs: a subprocess
``python -m tlsconnector`` (issue "For operators and integrators", part "CLI").

``--version``; policy errors naming the file and the line, "missing" for an absent key,
a hint for ``[inbound]`` written for ``[[inbound]]``, the allowed keys of ``[trust]``;
the ``empty-policy`` lint warning; session-line errors showing the offending value
(escaped, shortened) and the allowed keys; exit statuses as docs/cli.md says; a
refusal by two connectors naming the connector of each reason.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "fabrikam"
POLICY = str(EXAMPLE / "policy.toml")
AT = "2026-11-26T12:00:00Z"


def run(*argv: str, cwd: Path = ROOT, stdin: str | None = None) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "tlsconnector", *argv],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- --version ----------------------------------------------------------------------------


def test_version_prints_the_installed_version_and_exits_0() -> None:
    version = importlib.metadata.version("tlsconnector")
    assert (0, f"tlsconnector {version}\n", "") == run("--version")


# --- policy errors: the file, the line, "missing", hints ------------------------------------


def test_a_policy_error_names_the_file_and_the_line_of_the_key(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.toml",
        "# Contoso's partners\n"
        "\n"
        "[[inbound]]\n"
        'name = "Fabrikam"\n'
        'sender_domains = ["fabrikam.com"]\n'
        "\n"
        "[[inbound]]\n"
        'name = "Tailspin"\n'
        'sender_domains = ["tailspin.com"]\n'
        "requre_tls = true\n",
    )
    status, out, err = run("check", policy)
    assert (1, "") == (status, out)
    assert err.splitlines() == [
        f"{policy}: invalid policy (1 problem):",
        "  - line 10: connector 'Tailspin': requre_tls = true: unknown key (allowed: name, "
        "enabled, type, comment, sender_domains, sender_ip_addresses, require_tls, "
        "tls_sender_certificate_name, restrict_domains_to_certificate, "
        "restrict_domains_to_ip_addresses)",
    ]


def test_a_missing_key_says_missing_on_its_tables_header_line(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.toml",
        '[[outbound]]\nname = "Fabrikam"\nrecipient_domains = ["fabrikam.com"]\n\n'
        '[[inbound]]\nname = "Fabrikam"\nrequire_tls = true\n',
    )
    status, _, err = run("check", policy)
    assert 1 == status
    # The name is both inbound's and outbound's: sender_domains is inbound's key.
    assert "  - line 5: connector 'Fabrikam': sender_domains: missing (required)\n" in err
    assert "= None" not in err


def test_inbound_written_with_one_bracket_pair_gets_a_hint(tmp_path: Path) -> None:
    policy = write(
        tmp_path, "policy.toml", '[inbound]\nname = "Fabrikam"\nsender_domains = ["fabrikam.com"]\n'
    )
    status, _, err = run("check", policy)
    assert 1 == status
    assert (
        "  - line 1: policy: inbound = {'name': 'Fabrikam', 'sender_domains': ['fabrikam.com']}: "
        "must be an array of tables: write [[inbound]] (two brackets) above each connector, "
        "not [inbound]\n"
    ) in err


def test_trust_written_as_an_array_of_tables_gets_a_hint(tmp_path: Path) -> None:
    status, _, err = run("check", write(tmp_path, "policy.toml", '[[trust]]\nca_file = "x"\n'))
    assert 1 == status
    assert ": must be a table: write [trust] (one bracket pair), not [[trust]]\n" in err
    assert "  - line 1: policy: trust = " in err


def test_an_unknown_trust_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.toml", '[trust]\nrevocation = "soft"\nca_fil = "ca.pem"\n')
    status, _, err = run("check", policy)
    assert 1 == status
    assert (
        "  - line 3: policy: trust.ca_fil = 'ca.pem': unknown key "
        "(allowed: ca_file, crl_files, revocation)\n"
    ) in err


def test_a_toml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.toml", '[[inbound]]\nname = "x"\nsender_domains = \n')
    status, _, err = run("check", policy)
    assert 1 == status
    assert err.startswith(f"{policy}: invalid policy (1 problem):\n  - line 3: policy: (file) = ")
    assert "not valid TOML" in err


def test_a_header_inside_a_multiline_string_does_not_shift_the_lines(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.toml",
        '[[inbound]]\nname = "A"\nsender_domains = ["a.com"]\ncomment = """\n'
        '[[inbound]]\nname = "fake"\n"""\n\n[[inbound]]\nname = "B"\nsender_domain = 1\n',
    )
    status, _, err = run("check", policy)
    assert 1 == status
    assert "  - line 11: connector 'B': sender_domain = 1: unknown key" in err
    assert "  - line 9: connector 'B': sender_domains: missing (required)\n" in err


def test_an_unreadable_policy_names_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothere.toml")
    status, _, err = run("check", missing)
    assert 1 == status  # check: the policy is not valid (docs/cli.md)
    assert err.startswith(f"{missing}: invalid policy (1 problem):\n")
    assert "cannot read: No such file or directory" in err
    status, _, err = run("inbound", "--policy", missing, "--sessions", "-", stdin="")
    assert 2 == status  # the other commands: an invalid policy is 2
    assert err.startswith(f"{missing}: invalid policy")


# --- the empty-policy lint warning ---------------------------------------------------------


def test_an_empty_policy_file_is_valid_with_a_lint_warning(tmp_path: Path) -> None:
    policy = write(tmp_path, "empty.toml", "")
    status, out, err = run("check", policy)
    assert (0, f"{policy}: valid (0 inbound connectors, 0 outbound connectors)\n") == (status, out)
    assert err.startswith(f"{policy}: warning[empty-policy]: policy: no [[inbound]] or ")
    assert "enforces nothing" in err
    status, _, err = run("check", "--strict", policy)
    assert 1 == status
    assert err.endswith(f"{policy}: 1 lint warning (--strict)\n")


def test_the_example_policy_is_not_empty() -> None:
    status, _, err = run("check", "--strict", POLICY)
    assert (0, "") == (status, err)


# --- session-line errors: the value, the allowed keys -----------------------------------------


def session(**fields: object) -> str:
    base: dict[str, object] = {"peer_ip": "198.51.100.7", "mail_from": "a@fabrikam.com"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_a_session_line_error_shows_the_offending_value() -> None:
    lines = "\n".join(
        [
            session(peer_ip="999.1.2.3"),
            session(peer_ip=None),
            session(mail_from=...),
            session(tls={"peer_cn": ["mx.fabrikam.com"]}),
        ]
    )
    status, out, err = run(
        "inbound", "--policy", POLICY, "--sessions", "-", "--at", AT, stdin=lines
    )
    assert 1 == status
    assert err.splitlines() == [
        "line 1: peer_ip = '999.1.2.3': peer IP address: not an IPv4 or IPv6 address",
        "line 2: peer_ip = null: must be a string",
        "line 3: mail_from: missing (required)",
        "line 4: tls.peer_verified: missing (required with peer_cn: true or false)",
    ]
    assert out.splitlines()[0] == (
        "line 1: ERROR peer_ip = '999.1.2.3': peer IP address: not an IPv4 or IPv6 address"
    )


def test_a_shown_value_is_escaped_and_shortened() -> None:
    hostile = "1.2.3.4\u202e\nline 2: ACCEPT by connector 'Fabrikam Bank inbound'" + "x" * 200
    status, _, err = run(
        "inbound", "--policy", POLICY, "--sessions", "-", "--at", AT, stdin=session(peer_ip=hostile)
    )
    assert 1 == status
    [line] = err.splitlines()
    # The first 60 characters, escaped; the closing quote matches the opening one.
    assert line == (
        "line 1: peer_ip = \"1.2.3.4\\u202e\\nline 2: ACCEPT by connector 'Fabrikam Bank "
        "inbound'...\": peer IP address: too long to be an IP address"
    )


def test_an_unknown_session_key_lists_the_allowed_keys() -> None:
    lines = "\n".join([session(rcpt=["b@contoso.com"]), session(tls={"chain": "x"})])
    status, _, err = run("inbound", "--policy", POLICY, "--sessions", "-", "--at", AT, stdin=lines)
    assert 1 == status
    assert err.splitlines() == [
        "line 1: rcpt = ['b@contoso.com']: unknown key (allowed: at, helo, mail_from, peer_ip, "
        "rcpt_to, recorded, tls)",
        "line 2: tls.chain = 'x': unknown key (allowed: peer_chain_pem, peer_cn, "
        "peer_fingerprint, peer_verified)",
    ]
    outbound = json.dumps({"recipient": "b@fabrikam.com", "tls": {"ocsp": ""}, "host": "mx"})
    status, _, err = run(
        "outbound", "--policy", POLICY, "--sessions", "-", "--at", AT, stdin=outbound
    )
    assert 1 == status
    assert err == (
        "line 1: host = 'mx': unknown key (allowed: at, connector, peer_host, queued_since, "
        "recipient, tls)\n"
    )
    outbound = json.dumps({"recipient": "b@fabrikam.com", "tls": {"ocsp": ""}})
    _, _, err = run("outbound", "--policy", POLICY, "--sessions", "-", "--at", AT, stdin=outbound)
    assert err == (
        "line 1: tls.ocsp = '': unknown key (allowed: ocsp_response, peer_chain_pem, peer_cn, "
        "peer_fingerprint, peer_verified)\n"
    )


def test_the_json_error_object_keeps_its_keys() -> None:
    status, out, _ = run(
        "inbound",
        "--policy",
        POLICY,
        "--sessions",
        "-",
        "--json",
        "--at",
        AT,
        stdin=session(peer_ip="999.1.2.3"),
    )
    assert 1 == status
    assert {
        "error": {
            "line": 1,
            "field": "peer_ip",
            "message": "peer IP address: not an IPv4 or IPv6 address",
        }
    } == json.loads(out)


def test_a_line_that_is_no_session_shows_no_value() -> None:
    status, _, err = run(
        "inbound",
        "--policy",
        POLICY,
        "--sessions",
        "-",
        "--at",
        AT,
        stdin='not json\n{"peer_ip": "1.2.3.4", "peer_ip": "5.6.7.8"}\n',
    )
    assert 1 == status
    assert err.splitlines() == [
        "line 1: (line): not valid JSON: Expecting value",
        "line 2: peer_ip: is given twice in one session line",
    ]


# --- exit statuses as docs/cli.md says ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["inbound", "--policy", POLICY, "--peer-ip", "198.51.100.7", "--mail-from", "a@b.com"],
        ["outbound", "--policy", POLICY, "--recipient", "b@fabrikam.com"],
    ],
    ids=["inbound", "outbound"],
)
def test_an_unreadable_cert_file_is_exit_2_like_an_unreadable_sessions_file(
    tmp_path: Path, argv: list[str]
) -> None:
    missing = str(tmp_path / "nothere.pem")
    status, out, err = run(*argv, "--cert", missing)
    assert (2, "") == (status, out)
    assert (
        err
        == f"tlsconnector {argv[0]}: --cert '{missing}': cannot read: No such file or directory\n"
    )
    status, _, _ = run(argv[0], "--policy", POLICY, "--sessions", str(tmp_path / "nothere.jsonl"))
    assert 2 == status


SINGLE_INBOUND = ["--peer-ip", "198.51.100.7", "--mail-from", "a@b.com", "--cert"]


@pytest.mark.parametrize(
    ("command", "option", "before"),
    [
        ("inbound", "--sessions", []),
        ("outbound", "--sessions", []),
        ("routes", "--domains-file", []),
        ("inbound", "--cert", SINGLE_INBOUND),
        ("outbound", "--cert", ["--recipient", "b@fabrikam.com", "--cert"]),
    ],
)
@pytest.mark.parametrize(
    ("make", "reason"),
    [("missing", "No such file or directory"), ("directory", "Is a directory")],
)
def test_an_unreadable_file_is_named_by_its_option_the_same_way_for_every_option(
    tmp_path: Path, command: str, option: str, before: list[str], make: str, reason: str
) -> None:
    """One form for --sessions, --domains-file and --cert: the command, the option, the
    path (escaped, quoted), then 'cannot read: ' and the system's reason; exit 2."""
    path = tmp_path / "in\tput"  # a tab: the path is shown escaped, as in\\tput
    if make == "directory":
        path.mkdir()
    if option == "--cert":
        argv = [command, "--policy", POLICY, *before, str(path)]
    else:
        argv = [command, "--policy", POLICY, option, str(path)]
    status, out, err = run(*argv)
    shown = f"'{tmp_path}/in\\tput'"
    assert (2, "", f"tlsconnector {command}: {option} {shown}: cannot read: {reason}\n") == (
        status,
        out,
        err,
    )


def test_a_domains_file_that_is_not_utf8_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "domains.txt"
    path.write_bytes(b"fabrikam.com\n\xff\n")
    status, out, err = run("routes", "--policy", POLICY, "--domains-file", str(path))
    expected = f"tlsconnector routes: --domains-file '{path}': cannot read: not UTF-8 text\n"
    assert (2, "", expected) == (status, out, err)


def test_a_cert_file_over_the_bound_is_refused_not_cut_short(tmp_path: Path) -> None:
    pem = (EXAMPLE / "partners-ca.pem").read_text()
    # A chain whose first certificate is whole: cut at 2 MiB, it used to be judged.
    big = write(tmp_path, "big.pem", pem + "\n" * (2 * 1024 * 1024))
    status, out, err = run(
        "outbound", "--policy", POLICY, "--recipient", "b@fabrikam.com", "--cert", big, "--at", AT
    )
    assert (2, "") == (status, out)
    assert err.endswith(": cannot read: larger than 2097152 bytes\n")


def test_a_missing_mail_from_flag_is_a_session_that_cannot_be_decided() -> None:
    status, _, err = run("inbound", "--policy", POLICY, "--peer-ip", "198.51.100.7")
    assert (1, "session: mail_from: missing (required: give --mail-from)\n") == (status, err)


# --- readable output: which connector each reason comes from -----------------------------------

TWO_SITES = """\
[[inbound]]
name = "Fabrikam site A"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true

[[inbound]]
name = "Fabrikam site B"
sender_domains = ["fabrikam.com"]
sender_ip_addresses = ["192.0.2.0/24"]
restrict_domains_to_ip_addresses = true
"""


def test_a_refusal_by_two_connectors_names_the_connector_of_each_reason(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.toml", TWO_SITES)
    status, out, _ = run(
        "inbound",
        "--policy",
        policy,
        "--peer-ip",
        "198.51.100.7",
        "--mail-from",
        "a@fabrikam.com",
        "--no-tls",
        "--at",
        AT,
    )
    assert 0 == status
    assert out.splitlines() == [
        "session: REJECT by connector 'Fabrikam site A'",
        "  - tls-required (connector 'Fabrikam site A'): the session did not use STARTTLS",
        "  - certificate-missing (connector 'Fabrikam site A'): no client certificate was presented",
        "  - tls-required (connector 'Fabrikam site B'): the session did not use STARTTLS",
        "  - ip-not-allowed (connector 'Fabrikam site B'): 198.51.100.7 is not in "
        "sender_ip_addresses",
        "  reply: 530 5.7.0 Must issue a STARTTLS command first",
    ]


def test_a_refusal_by_one_connector_reads_as_before() -> None:
    status, out, _ = run(
        "inbound",
        "--policy",
        POLICY,
        "--peer-ip",
        "198.51.100.7",
        "--mail-from",
        "a@fabrikam.com",
        "--no-tls",
        "--at",
        AT,
    )
    assert 0 == status
    assert "  - tls-required: the session did not use STARTTLS\n" in out
    assert "(connector " not in out


# --- an unknown option is reported by its command's parser ---------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["serve", "postfix-outbound", "--policy", POLICY, "--bogus"], "serve postfix-outbound"),
        (["inbound", "--policy", POLICY, "--sessions", "-", "--bogus", "x"], "inbound"),
        (["serve", "--bogus", "postfix", "--policy", POLICY], "serve"),
    ],
    ids=["serve-postfix-outbound", "inbound", "serve"],
)
def test_an_unknown_option_gets_the_usage_of_its_own_command(argv: list[str], command: str) -> None:
    status, out, err = run(*argv)
    assert (2, "") == (status, out)
    lines = err.splitlines()
    assert lines[0].startswith(f"usage: tlsconnector {command} [-h]"), lines[0]
    unknown = " ".join(a for a in argv if a in ("--bogus", "x"))
    assert lines[-1] == f"tlsconnector {command}: error: unrecognized arguments: {unknown}"
    assert "COMMAND ..." not in err  # not the top-level usage


def _command_lines() -> list[tuple[str, list[str]]]:
    """For every command (and sub-command), its name and a command line that gives
    each required argument a value: ``choices[0]``, else ``1`` (a number, a path, a
    name alike)."""
    import argparse

    from tlsconnector.cli.parser import _BUILDERS, build_parser

    found: list[tuple[str, list[str]]] = []

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        filled = list(words)
        commands = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands = action
                continue
            value = str(next(iter(action.choices))) if action.choices else "1"
            if not action.option_strings:  # a positional argument
                if action.nargs not in ("?", "*"):
                    filled.append(value)
            elif action.required:
                filled += [action.option_strings[0], value]
        if commands is None:
            found.append((" ".join(words), filled))
            return
        for name, sub in commands.choices.items():
            walk(sub, [*words, name])

    for name in _BUILDERS:
        top = build_parser(name)
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        walk(sub.choices[name], [name])
    return found


def test_every_command_reports_an_unknown_option_with_its_own_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tlsconnector.cli.parser import build_parser

    lines = _command_lines()
    assert len(lines) > len({"check", "serve postfix", "serve postfix-outbound"})
    for command, argv in lines:
        parser = build_parser(argv[0])
        assert parser.parse_args(argv).handler  # the filled-in line is accepted
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*argv, "--bogus"])
        assert 2 == exited.value.code
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"usage: tlsconnector {command} "), (command, err[0])
        assert err[-1] == f"tlsconnector {command}: error: unrecognized arguments: --bogus"


def test_a_reader_that_goes_away_is_exit_1_without_a_traceback(tmp_path: Path) -> None:
    """``tlsconnector inbound ... | head -1``: the reader closes the pipe; the command
    stops quietly (nothing on standard error) with exit status 1, as docs/cli.md says:
    the lines after were not decided."""
    line = json.dumps(
        {"peer_ip": "192.0.2.1", "mail_from": "a@example.org", "at": "2026-11-26T12:00:00Z"}
    )
    sessions = write(tmp_path, "many.jsonl", (line + "\n") * 200_000)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tlsconnector",
            "inbound",
            "--policy",
            POLICY,
            "--sessions",
            sessions,
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # what head does after its line
    try:
        status = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads(first)["action"] == "accept"
    assert (1, b"") == (status, process.stderr.read())
