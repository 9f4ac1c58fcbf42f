"""``tlsconnector postfix-config``: the Postfix settings that enforce a policy's connectors.

The text form is checked byte for byte; the ``--shell`` form is run against a
throwaway Postfix ``config_directory`` with Postfix's own ``postconf``, and what
``postconf -n`` / ``-M`` / ``-P`` then report is what the text form says.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tlsconnector.cli import main

from certmint import CA

ROOT = CA("Postfix Config Test Root")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MASTER_CF_TEMPLATES = (Path("/usr/share/postfix/master.cf.dist"), Path("/etc/postfix/master.cf"))

INBOUND = """
[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.fabrikam.com"
"""
OUTBOUND = """
[[outbound]]
name = "Fabrikam Bank outbound"
recipient_domains = ["fabrikam.com"]
tls_settings = "domain_validation"
tls_domain = "*.fabrikam.com"
"""
TRUST = '[trust]\nca_file = "partners-ca.pem"\n'


def write_policy(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "partners-ca.pem").write_text(ROOT.cert_pem())
    path = directory / "policy.toml"
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["postfix-config", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def expected_text(directory: Path, *, inbound: bool) -> str:
    ca = directory / "partners-ca.pem"
    header = (
        f"# tlsconnector postfix-config for {directory / 'policy.toml'}\n"
        "# outbound connector 'Fabrikam Bank outbound': domain_validation\n"
        "# Postfix bounces after maximal_queue_lifetime (default 5d), not after the\n"
        "# connector's retry window (default 24 hours): docs/tutorial.md lines them up.\n"
        "\n"
        "# --- main.cf ---\n"
        "# first: the first table that knows a recipient decides its transport\n"
        "transport_maps = socketmap:inet:127.0.0.1:10041:transport\n"
    )
    inbound_lines = (
        "smtpd_tls_ask_ccert = yes\n"
        "# Postfix verifies the client chain; the service trusts its CN\n"
        f"smtpd_tls_CAfile = {ca}\n"
        "smtpd_tls_fingerprint_digest = sha256\n"
        "smtpd_policy_service_default_action = 451 4.3.5 Policy service unavailable, "
        "try again later\n"
        "# first: anything before it that permits skips the connectors\n"
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10040\n"
    )
    master = (
        "\n"
        "# --- master.cf ---\n"
        "tlsconnector unix - - n - - smtp\n"
        "  -o smtp_tls_security_level=secure\n"
        f"  -o smtp_tls_CAfile={ca}\n"
        "  -o smtp_tls_fingerprint_digest=sha256\n"
        "  -o smtp_tls_policy_maps=socketmap:inet:127.0.0.1:10041:tlspolicy\n"
    )
    return header + (inbound_lines if inbound else "") + master


def test_prints_the_transport_the_maps_and_the_inbound_restriction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + INBOUND + OUTBOUND)
    status, out, err = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "127.0.0.1:10041",
        "--inbound-policy", "127.0.0.1:10040",
    )  # fmt: skip
    assert (0, "") == (status, err)
    assert expected_text(tmp_path, inbound=True) == out


def test_without_inbound_policy_only_the_outbound_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + OUTBOUND)
    status, out, _ = run(capsys, "--policy", str(policy), "--outbound-maps", "inet:127.0.0.1:10041")
    assert (0, expected_text(tmp_path, inbound=False)) == (status, out)


def test_a_relative_policy_path_gives_absolute_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_policy(tmp_path / "etc", TRUST + OUTBOUND)
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(
        capsys, "--policy", "etc/../etc/policy.toml", "--outbound-maps", "127.0.0.1:10041"
    )
    assert 0 == status
    assert f"  -o smtp_tls_CAfile={tmp_path / 'etc' / 'partners-ca.pem'}\n" in out


def test_unix_and_ipv6_endpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(tmp_path, TRUST + INBOUND + OUTBOUND)
    status, out, _ = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "unix:/run/tlsconnector/outbound.sock",
        "--inbound-policy", "[::1]:10040",
    )  # fmt: skip
    assert 0 == status
    assert "transport_maps = socketmap:unix:/run/tlsconnector/outbound.sock:transport\n" in out
    assert (
        "  -o smtp_tls_policy_maps=socketmap:unix:/run/tlsconnector/outbound.sock:tlspolicy\n"
        in out
    )
    assert "smtpd_recipient_restrictions = check_policy_service inet:[::1]:10040\n" in out


def test_a_policy_without_outbound_connectors_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + INBOUND)
    status, out, err = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert (2, "") == (status, out)
    assert "no enabled [[outbound]] connector chosen by recipient domain" in err
    assert str(policy) in err


@pytest.mark.parametrize(
    "setting", ["enabled = false", "test_mode = true", "is_transport_rule_scoped = true"]
)
def test_a_policy_whose_outbound_connectors_no_recipient_selects_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    """Disabled, test-mode and rule-scoped connectors are never chosen by recipient
    domain: serve postfix-outbound refuses such a policy, and so does this command."""
    policy = write_policy(
        tmp_path, TRUST + OUTBOUND.replace("tls_settings", f"{setting}\ntls_settings")
    )
    status, out, err = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert (2, "") == (status, out)
    assert "no enabled [[outbound]] connector chosen by recipient domain" in err


def test_the_transport_name_follows_the_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + OUTBOUND)
    argv = ["--policy", str(policy), "--outbound-maps", "127.0.0.1:10041"]
    status, out, _ = run(capsys, *argv, "--transport", "fabrikam-tls")
    assert 0 == status
    assert "\nfabrikam-tls unix - - n - - smtp\n" in out
    status, out, _ = run(capsys, *argv, "--transport", "fabrikam-tls", "--shell")
    assert "-M 'fabrikam-tls/unix=fabrikam-tls unix - - n - - smtp'\n" in out
    assert "-P fabrikam-tls/unix/smtp_tls_security_level=secure\n" in out
    status, out, err = run(capsys, *argv, "--transport", "bad name\n")
    assert (2, "") == (status, out)
    assert "--transport 'bad name\\n' must be a master.cf service name" in err


def test_opportunistic_connectors_still_get_the_transport(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service answers ``may`` for them; the transport and maps are the same, so a
    connector later made stricter needs no Postfix change (docs/tutorial.md)."""
    opportunistic = '[[outbound]]\nname = "Woodgrove"\nrecipient_domains = ["woodgrove.com"]\n'
    policy = write_policy(tmp_path, TRUST + opportunistic)
    status, out, _ = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert 0 == status
    assert "# outbound connector 'Woodgrove': opportunistic\n" in out
    assert "tlsconnector unix - - n - - smtp\n  -o smtp_tls_security_level=secure\n" in out


def test_without_ca_file_no_cafile_is_written_and_inbound_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, INBOUND + OUTBOUND)
    status, out, _ = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert 0 == status
    assert "CAfile" not in out
    status, out, err = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "127.0.0.1:10041",
        "--inbound-policy", "127.0.0.1:10040",
    )  # fmt: skip
    assert (2, "") == (status, out)
    assert "--inbound-policy: the policy has no [trust] ca_file" in err


def test_inbound_policy_needs_an_inbound_partner_connector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + OUTBOUND)
    status, out, err = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "127.0.0.1:10041",
        "--inbound-policy", "127.0.0.1:10040",
    )  # fmt: skip
    assert (2, "") == (status, out)
    assert "no enabled inbound partner connector" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--outbound-maps", "127.0.0.1", "--outbound-maps needs a port"),
        ("--outbound-maps", "127.0.0.1:0", "port '0' is not a number"),
        ("--outbound-maps", "unix:run/x.sock", "must be absolute"),
        ("--outbound-maps", "unix:/run/x y.sock", "must be absolute"),
        ("--outbound-maps", "127.0.0.1:1\nrm -rf /", "--outbound-maps"),
        ("--inbound-policy", "10.0.0.0/8:25", "--inbound-policy: a CIDR block"),
    ],
)
def test_a_bad_address_names_the_option_and_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    policy = write_policy(tmp_path, TRUST + INBOUND + OUTBOUND)
    maps = value if option == "--outbound-maps" else "127.0.0.1:10041"
    extra = [option, value] if option == "--inbound-policy" else []
    status, out, err = run(capsys, "--policy", str(policy), "--outbound-maps", maps, *extra)
    assert (2, "") == (status, out)
    assert message in err
    assert ascii(value) in err  # escaped: no newline of the value reaches stderr
    assert 1 == err.count("\n")


def test_a_ca_file_path_postfix_would_split_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "with space"
    policy = write_policy(directory, TRUST + OUTBOUND)
    status, out, err = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert (2, "") == (status, out)
    assert "trust.ca_file: Postfix would not read this path literally" in err
    assert "with space" in err


def test_an_invalid_policy_lists_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, TRUST + OUTBOUND.replace("tls_domain", "tls_domian"))
    status, out, err = run(capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041")
    assert (2, "") == (status, out)
    assert "tls_domian" in err


def test_a_newline_in_the_policy_path_cannot_add_a_command_to_the_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "x\ntouch pwned"
    policy = write_policy(directory, OUTBOUND)  # no ca_file: the path goes only into comments
    status, out, _ = run(
        capsys, "--policy", str(policy), "--outbound-maps", "127.0.0.1:10041", "--shell"
    )
    assert 0 == status
    assert not any(line.startswith("touch") for line in out.splitlines())
    assert "x\\x0atouch pwned" in out


# --- the shell script against Postfix's own postconf -----------------------------------


def _postconf() -> str:
    path = shutil.which("postconf", path=SBIN_PATH)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("postconf not found, but CI=true requires the Postfix tests (.ci/run)")
        pytest.skip("Postfix is not installed (postconf not found)")
    return path


def _config_directory(base: Path, main_cf: str = "") -> Path:
    etc = base / "postfix-etc"
    etc.mkdir(parents=True)
    template = next(p for p in MASTER_CF_TEMPLATES if p.exists())
    shutil.copyfile(template, etc / "master.cf")
    (etc / "main.cf").write_text(main_cf)
    return etc


def _postconf_view(etc: Path) -> tuple[str, str, str]:
    """What Postfix reads there: ``postconf -n``, the tlsconnector service, its -o's."""
    postconf = _postconf()

    def ask(*argv: str) -> str:
        return subprocess.run(
            [postconf, "-c", str(etc), *argv], check=True, capture_output=True, text=True,
            timeout=30,
        ).stdout  # fmt: skip

    return ask("-n"), ask("-M", "tlsconnector/unix"), ask("-P", "tlsconnector/unix")


def _script(capsys: pytest.CaptureFixture[str], policy: Path) -> str:
    status, out, _ = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "127.0.0.1:10041",
        "--inbound-policy", "127.0.0.1:10040",
        "--shell",
    )  # fmt: skip
    assert 0 == status
    return out


def _sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.postfix
def test_the_script_configures_the_instance_in_mail_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _postconf()
    policy = write_policy(tmp_path / "policy", TRUST + INBOUND + OUTBOUND)
    etc = _config_directory(tmp_path)
    done = _sh(_script(capsys, policy), {**os.environ, "MAIL_CONFIG": str(etc)})
    assert 0 == done.returncode, done.stderr
    main_cf, service, parameters = _postconf_view(etc)
    ca = tmp_path / "policy" / "partners-ca.pem"
    assert [
        "smtpd_policy_service_default_action = 451 4.3.5 Policy service unavailable, try again later",
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10040",
        f"smtpd_tls_CAfile = {ca}",
        "smtpd_tls_ask_ccert = yes",
        "smtpd_tls_fingerprint_digest = sha256",
        "transport_maps = socketmap:inet:127.0.0.1:10041:transport",
    ] == [line for line in main_cf.splitlines() if not line.startswith("config_directory")]
    assert service.split() == [
        "tlsconnector", "unix", "-", "-", "n", "-", "-", "smtp",
        "-o", "smtp_tls_security_level=secure",
        "-o", f"smtp_tls_CAfile={ca}",
        "-o", "smtp_tls_fingerprint_digest=sha256",
        "-o", "smtp_tls_policy_maps=socketmap:inet:127.0.0.1:10041:tlspolicy",
    ]  # fmt: skip
    assert f"tlsconnector/unix/smtp_tls_CAfile = {ca}\n" in parameters


@pytest.mark.postfix
def test_the_printed_text_says_what_the_script_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main.cf lines pasted into main.cf, the master.cf entry appended to master.cf:
    Postfix reads exactly what the script configures."""
    _postconf()
    policy = write_policy(tmp_path / "policy", TRUST + INBOUND + OUTBOUND)
    scripted = _config_directory(tmp_path / "scripted")
    pasted = _config_directory(tmp_path / "pasted")
    assert (
        0 == _sh(_script(capsys, policy), {**os.environ, "MAIL_CONFIG": str(scripted)}).returncode
    )
    status, text, _ = run(
        capsys,
        "--policy", str(policy),
        "--outbound-maps", "127.0.0.1:10041",
        "--inbound-policy", "127.0.0.1:10040",
    )  # fmt: skip
    assert 0 == status
    main_part, master_part = text.split("# --- master.cf ---\n")
    (pasted / "main.cf").write_text(main_part)
    with (pasted / "master.cf").open("a") as master:
        master.write(master_part)

    def strip(view: tuple[str, str, str]) -> tuple[str, ...]:
        return tuple(
            "\n".join(x for x in part.splitlines() if not x.startswith("config_directory"))
            for part in view
        )

    assert strip(_postconf_view(scripted)) == strip(_postconf_view(pasted))


@pytest.mark.postfix
def test_the_script_puts_its_items_first_and_keeps_the_sites_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Existing transport maps and restrictions stay, after tlsconnector's; running the
    script again changes nothing; an old tlsconnector service entry is replaced whole."""
    _postconf()
    policy = write_policy(tmp_path / "policy", TRUST + INBOUND + OUTBOUND)
    etc = _config_directory(
        tmp_path,
        "transport_maps = hash:/etc/postfix/transport\n"
        "smtpd_recipient_restrictions = permit_mynetworks,\n"
        "    reject_unauth_destination\n",
    )
    with (etc / "master.cf").open("a") as master:
        master.write("tlsconnector unix - - n - - smtp\n  -o smtp_tls_security_level=may\n")
    script = _script(capsys, policy)
    env = {**os.environ, "MAIL_CONFIG": str(etc)}
    assert 0 == _sh(script, env).returncode
    first = _postconf_view(etc)
    assert 0 == _sh(script, env).returncode
    assert first == _postconf_view(etc)
    main_cf, service, _ = first
    assert (
        "transport_maps = socketmap:inet:127.0.0.1:10041:transport, hash:/etc/postfix/transport"
        in main_cf.splitlines()
    )
    assert (
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10040, "
        "permit_mynetworks, reject_unauth_destination" in main_cf.splitlines()
    )
    assert "smtp_tls_security_level=may" not in service
    assert 1 == service.count("smtp_tls_security_level=secure")


def test_without_mail_config_the_script_uses_postconfs_default_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ``-c`` when MAIL_CONFIG is unset or empty (a recording stand-in for postconf
    comes first on PATH, so the machine's own Postfix is never touched)."""
    policy = write_policy(tmp_path / "policy", TRUST + INBOUND + OUTBOUND)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    fake = bin_dir / "postconf"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {record}\necho >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    script = _script(capsys, policy)
    for mail_config in (None, ""):
        record.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        if mail_config is not None:
            env["MAIL_CONFIG"] = mail_config
        done = _sh(script, env)
        assert 0 == done.returncode, done.stderr
        calls = record.read_text().splitlines()
        assert 13 == len(calls)  # two -h, six -e, one -M, four -P
        assert not any(call.startswith("-c|") for call in calls)
        assert "-M|tlsconnector/unix=tlsconnector unix - - n - - smtp|" in calls
    env["MAIL_CONFIG"] = "/some/instance"
    record.unlink()
    assert 0 == _sh(script, env).returncode
    assert all(call.startswith("-c|/some/instance|") for call in record.read_text().splitlines())
