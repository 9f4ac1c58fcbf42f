"""The command line (section 9): `check` and `inbound`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tlsconnector._cli import main

from certmint import CA

ROOT = CA("CLI Test Root")
LEAF = ROOT.issue("server1.fabrikam.com")
APEX = ROOT.issue("fabrikam.com")
AT = "2026-11-26T12:00:00Z"

POLICY = """
[trust]
ca_file = "ca.pem"

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def sessions_file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "sessions.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def session(**overrides: object) -> bytes:
    obj: dict[str, object] = {
        "peer_ip": "198.51.100.7",
        "mail_from": "payments@fabrikam.com",
        "rcpt_to": ["finance@contoso.com"],
        "tls": {"peer_chain_pem": LEAF.chain_pem()},
        "at": AT,
    }
    obj.update(overrides)
    return json.dumps(obj).encode()


def test_check_valid_policy(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["check", str(policy)])
    assert "valid (1 inbound connector, 0 outbound connectors)" in capsys.readouterr().out


def test_check_invalid_policy_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[inbound]]\nname = "Fabrikam"\nsender_domains = ["*x.com"]\nrequire_tls = "yes"\n'
    )
    assert 1 == main(["check", str(path)])
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "connector 'Fabrikam': sender_domains[0] = '*x.com'" in err
    assert "connector 'Fabrikam': require_tls = 'yes'" in err
    assert "Traceback" not in err


def test_inbound_json_one_line_per_session_in_order(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sessions_file(
        tmp_path,
        [
            session(),
            session(tls=None),
            session(tls={"peer_chain_pem": APEX.chain_pem()}),
            session(mail_from="news@example.org", tls=None),
        ],
    )
    assert 0 == main(["inbound", "--policy", str(policy), "--sessions", str(path), "--json"])
    out = capsys.readouterr().out.splitlines()
    decisions = [json.loads(line) for line in out]
    assert ["accept", "reject", "reject", "accept"] == [d["action"] for d in decisions]
    assert ["connector-satisfied"] == [r["code"] for r in decisions[0]["reasons"]]
    assert {"code": 530, "enhanced": "5.7.0", "text": "Must issue a STARTTLS command first"} == (
        decisions[1]["smtp"]
    )
    assert ["certificate-name-mismatch"] == [r["code"] for r in decisions[2]["reasons"]]
    assert decisions[3]["connector"] is None
    assert all(line == json.dumps(json.loads(line), separators=(",", ":")) for line in out)


def test_malformed_lines_keep_output_aligned(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sessions_file(
        tmp_path,
        [
            session(),
            b"{not json",
            session(peer_ip="fe80::1%eth0"),
            b"\xff\xfe garbage",
            session(tls={"peer_chain_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}),
            session(surprise=1),
            b"",
            session(tls=None),
        ],
    )
    status = main(["inbound", "--policy", str(policy), "--sessions", str(path), "--json"])
    assert 1 == status
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert 8 == len(out)
    assert "accept" == out[0]["action"]
    assert "reject" == out[7]["action"]
    errors = {o["error"]["line"]: o["error"] for o in out if "error" in o}
    assert [2, 3, 4, 5, 6, 7] == sorted(errors)
    assert all("action" not in o for o in out if "error" in o)
    assert "peer_ip" == errors[3]["field"]
    assert "tls.peer_chain_pem" == errors[5]["field"]
    assert "surprise" == errors[6]["field"]
    assert "line 2:" in captured.err
    assert "line 3: peer_ip" in captured.err


def test_inbound_readable_output_explains_refusals(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sessions_file(tmp_path, [session(tls=None)])
    assert 0 == main(["inbound", "--policy", str(policy), "--sessions", str(path)])
    out = capsys.readouterr().out
    assert "line 1: REJECT by connector 'Fabrikam Bank inbound'" in out
    assert "tls-required" in out
    assert "reply: 530 5.7.0 Must issue a STARTTLS command first" in out


def test_single_session_with_a_certificate_file(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = tmp_path / "chain.pem"
    cert.write_text(LEAF.chain_pem())
    argv = ["inbound", "--policy", str(policy), "--peer-ip", "198.51.100.7"]
    argv += ["--mail-from", "payments@fabrikam.com", "--rcpt-to", "finance@contoso.com"]
    argv += ["--cert", str(cert), "--at", AT, "--json"]
    assert 0 == main(argv)
    decision = json.loads(capsys.readouterr().out)
    assert "accept" == decision["action"]


def test_single_session_without_tls(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["inbound", "--policy", str(policy), "--peer-ip", "198.51.100.7"]
    argv += ["--mail-from", "payments@fabrikam.com", "--no-tls", "--at", AT]
    assert 0 == main(argv)
    assert "REJECT" in capsys.readouterr().out


def test_single_session_with_mta_verified_cn(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inbound", "--policy", str(policy), "--peer-ip", "198.51.100.7", "--at", AT]
    argv += ["--mail-from", "payments@fabrikam.com", "--peer-cn", "server2.fabrikam.com", "--json"]
    assert 0 == main(argv)
    assert "mta" == json.loads(capsys.readouterr().out)["chain_verified_by"]


def test_single_session_bad_fact_exits_1(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["inbound", "--policy", str(policy), "--peer-ip", "not-an-ip"]
    argv += ["--mail-from", "payments@fabrikam.com", "--at", AT]
    assert 1 == main(argv)
    assert "peer_ip" in capsys.readouterr().err


def test_inbound_with_invalid_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    path = sessions_file(tmp_path, [session()])
    assert 2 == main(["inbound", "--policy", str(bad), "--sessions", str(path)])
    assert "nonsense" in capsys.readouterr().err


def test_sessions_and_single_flags_do_not_mix(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sessions_file(tmp_path, [session()])
    argv = ["inbound", "--policy", str(policy), "--sessions", str(path), "--peer-ip", "192.0.2.1"]
    assert 2 == main(argv)


def test_at_defaults_to_now_read_by_the_cli(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(session(tls=None))
    del line["at"]
    path = sessions_file(tmp_path, [json.dumps(line).encode()])
    assert 0 == main(["inbound", "--policy", str(policy), "--sessions", str(path), "--json"])
    assert "reject" == json.loads(capsys.readouterr().out)["action"]


def test_console_script_runs_and_never_prints_a_traceback(tmp_path: Path, policy: Path) -> None:
    path = sessions_file(tmp_path, [b"[1, 2", session()])
    result = subprocess.run(
        [sys.executable, "-m", "tlsconnector", "inbound", "--policy", str(policy),
         "--sessions", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 1 == result.returncode
    assert 2 == len(result.stdout.splitlines())
    assert "Traceback" not in result.stderr


def test_a_bug_while_deciding_never_yields_an_action(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never fail open: an unexpected error on one line gives an error object for that
    line (no action), the other lines are decided, and the exit status is 1."""
    import tlsconnector._cli as cli

    real = cli.evaluate_inbound
    calls = iter([RuntimeError("boom"), None])

    def flaky(policy: object, session: object) -> object:
        failure = next(calls)
        if failure is not None:
            raise failure
        return real(policy, session)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "evaluate_inbound", flaky)
    path = sessions_file(tmp_path, [session(), session()])
    assert 1 == main(["inbound", "--policy", str(policy), "--sessions", str(path), "--json"])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert "action" not in first
    assert "internal error" in first["error"]["message"]
    assert "accept" == second["action"]


def test_json_numbers_too_long_to_convert_are_a_line_error(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sessions_file(tmp_path, [b'{"peer_ip": ' + b"9" * 5000 + b"}", session()])
    assert 1 == main(["inbound", "--policy", str(policy), "--sessions", str(path), "--json"])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert "(line)" == first["error"]["field"]
    assert "not valid JSON" in first["error"]["message"]
    assert "accept" == second["action"]


def test_single_session_flags_are_refused_with_sessions(tmp_path: Path, policy: Path) -> None:
    path = sessions_file(tmp_path, [session()])
    base = ["inbound", "--policy", str(policy), "--sessions", str(path)]
    for extra in (["--rcpt-to", "a@b.example"], ["--helo", "x"], ["--peer-unverified"]):
        assert 2 == main([*base, *extra])


def test_at_is_the_default_time_for_lines_without_one(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.loads(session())
    del line["at"]
    path = sessions_file(tmp_path, [json.dumps(line).encode()])
    argv = ["inbound", "--policy", str(policy), "--sessions", str(path), "--json"]
    assert 0 == main([*argv, "--at", "2030-01-01T00:00:00Z"])  # after the leaf's notAfter
    assert ["certificate-expired"] == [
        r["code"] for r in json.loads(capsys.readouterr().out)["reasons"]
    ]
    assert 2 == main([*argv, "--at", "not a time"])
