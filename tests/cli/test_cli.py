"""The command line (section 9): `check` and `inbound`, as a user runs them."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tlsconnector import InboundSession, evaluate_inbound, load_policy
from tlsconnector.cli import main
from tlsconnector.cli.batch import CHUNK_LINES, _chunks, _decide_lines

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
    import tlsconnector.cli.decide as cli

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


# --- --jobs N: batches decided by worker processes, answered exactly as by one --------

PARTNER = ROOT.intermediate("CLI Test Issuing CA")
WAIT_SECONDS = 30.0  # the bound on every wait


def mixed_lines(count: int) -> list[bytes]:
    """Accepted and refused sessions with their own chains, and broken lines."""
    good = PARTNER.issue("server1.fabrikam.com").chain_pem()
    wrong = PARTNER.issue("mail.contoso-evil.com").chain_pem()
    lines = []
    for n in range(count):
        kind = n % 7
        if kind == 5:
            lines.append(b'{"peer_ip": "198.51.100.7", "mail_from": ')  # not JSON
        elif kind == 6:
            lines.append(b"\xff\xfe not utf-8")
        else:
            facts = {
                "peer_ip": "198.51.100.7",
                "mail_from": f"user{n}@fabrikam.com" if kind != 4 else "x@other.example",
                "rcpt_to": ["finance@contoso.com"],
                "tls": {"peer_chain_pem": good if kind in (0, 1) else wrong},
                "at": AT,
            }
            lines.append(json.dumps(facts).encode())
    return lines


def run(
    policy: Path, sessions: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    status = main(["inbound", "--policy", str(policy), "--sessions", str(sessions), *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("as_json", [True, False])
def test_workers_answer_exactly_as_one_process(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """Same lines, same order, same errors, same exit status: over several chunks."""
    sessions = tmp_path / "sessions.jsonl"
    count = 3 * CHUNK_LINES + 17
    sessions.write_bytes(b"".join(line + b"\n" for line in mixed_lines(count)))
    flags = ["--json"] if as_json else []
    one = run(policy, sessions, capsys, *flags)
    two = run(policy, sessions, capsys, *flags, "--jobs", "2")
    assert one == two
    assert 1 == one[0]  # broken lines: not every line was decided
    if as_json:
        objects = [json.loads(line) for line in one[1].splitlines()]
        assert count == len(objects)
        assert {"accept", "reject"} == {o["action"] for o in objects if "action" in o}


def test_jobs_zero_means_one_worker_per_available_core(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"".join(line + b"\n" for line in mixed_lines(20)))
    assert run(policy, sessions, capsys, "--json") == run(
        policy, sessions, capsys, "--json", "--jobs", "0"
    )


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ("-1", "must be from 0 to 64, not -1"),
        ("65", "must be from 0 to 64, not 65"),
        ("two", "must be a whole number, not 'two'"),
    ],
)
def test_a_bad_jobs_count_is_a_usage_error_with_sessions_or_flags(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str, message: str
) -> None:
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"")
    status, out, err = run(policy, sessions, capsys, "--jobs", jobs)
    assert (2, "") == (status, out)
    assert f"argument --jobs: {message}" in err
    flags = ["--peer-ip", "198.51.100.7", "--mail-from", "a@fabrikam.com", "--no-tls"]
    assert 2 == main(["inbound", "--policy", str(policy), *flags, "--jobs", jobs])
    assert f"argument --jobs: {message}" in capsys.readouterr().err


def test_chunks_for_workers_are_bounded_in_lines_and_in_bytes() -> None:
    big = b"x" * (400 * 1024) + b"\n"
    sizes = [len(chunk) for chunk in _chunks(io.BytesIO(big * 5))]
    assert [2, 2, 1] == sizes  # a third 400 KiB line would pass 1 MiB
    small = b"{}\n" * (2 * CHUNK_LINES + 3)
    assert [CHUNK_LINES, CHUNK_LINES, 3] == [len(c) for c in _chunks(io.BytesIO(small))]


def test_a_threaded_caller_gets_one_process_and_the_same_answers(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Forking while another thread holds a lock could hang a worker forever: a
    caller with threads is answered by one process, and told so."""
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"".join(line + b"\n" for line in mixed_lines(40)))
    alone = run(policy, sessions, capsys, "--json")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(WAIT_SECONDS,))
    other.start()
    try:
        status, out, err = run(policy, sessions, capsys, "--json", "--jobs", "2")
    finally:
        stop.set()
        other.join(WAIT_SECONDS)
    assert (alone[0], alone[1]) == (status, out)
    assert "--jobs needs a single-threaded process; deciding in one" in err


def test_a_worker_that_dies_leaves_its_lines_undecided_never_accepted(policy: Path) -> None:
    """The lines a dead worker held get an error each and exit status 1; the batch
    goes on, and the lines after them are decided."""
    loaded = load_policy(policy)
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    parent = os.getpid()

    def decide(obj: object, at: dt.datetime) -> object:
        assert isinstance(obj, dict)
        if obj.get("helo") == "die" and os.getpid() != parent:
            os._exit(3)  # a worker killed in the middle of a chunk
        return evaluate_inbound(loaded, InboundSession.from_json(obj, default_at=at))

    good = PARTNER.issue("server1.fabrikam.com").chain_pem()
    count = 20 * CHUNK_LINES
    lines = []
    for n in range(count):
        facts = {
            "peer_ip": "198.51.100.7",
            "mail_from": "payments@fabrikam.com",
            "rcpt_to": ["finance@contoso.com"],
            "tls": {"peer_chain_pem": good},
            "helo": "die" if n == 10 else "mail.fabrikam.com",
        }
        lines.append(json.dumps(facts).encode() + b"\n")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", out)
        patch.setattr("sys.stderr", err)
        status = _decide_lines(
            io.BytesIO(b"".join(lines)), decide, as_json=True, default_at=now, jobs=2
        )
    assert 1 == status
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(objects)
    lost = [o["error"]["line"] for o in objects if "error" in o]
    assert 11 in lost  # the line that killed its worker
    assert all("worker process" in o["error"]["message"] for o in objects if "error" in o)
    lost_chunks = {(line - 1) // CHUNK_LINES for line in lost}
    assert 0 in lost_chunks
    assert CHUNK_LINES * len(lost_chunks) == len(lost)  # whole chunks are lost, never part
    assert len(lost) < count  # the batch went on after the lost chunks
    assert all(o["action"] == "accept" for o in objects if "error" not in o)
    assert all("action" not in objects[line - 1] for line in lost)
    assert "line 11: internal error while deciding" in err.getvalue()


def test_the_garbage_collector_is_left_as_it_was(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"".join(line + b"\n" for line in mixed_lines(CHUNK_LINES + 1)))
    assert gc.isenabled()
    run(policy, sessions, capsys, "--json")
    run(policy, sessions, capsys, "--json", "--jobs", "2")
    assert gc.isenabled()
    assert 0 == gc.get_freeze_count()
    gc.freeze()  # a caller that froze its own objects keeps them frozen
    try:
        frozen = gc.get_freeze_count()
        run(policy, sessions, capsys, "--json", "--jobs", "2")
        # Still frozen (unfreezing would empty it; a few frozen objects may be freed).
        assert gc.get_freeze_count() > frozen - 100
    finally:
        gc.unfreeze()


def test_ctrl_c_stops_quietly_with_status_130(policy: Path) -> None:
    """An interrupted batch ends with 130 (128 + SIGINT) and no traceback."""
    command = ["inbound", "--policy", str(policy), "--sessions", "-", "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tlsconnector", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(session() + b"\n")
    process.stdin.flush()
    assert b'"action"' in process.stdout.readline()  # it is running and waiting
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=WAIT_SECONDS)
    assert 130 == process.returncode
    assert b"interrupted" in err
    assert b"Traceback" not in err
