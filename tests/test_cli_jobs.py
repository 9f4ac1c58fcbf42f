"""``--jobs N``: batches decided by worker processes, answered exactly as by one."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import os
from pathlib import Path

import pytest

from tlsconnector import InboundSession, evaluate_inbound, load_policy
from tlsconnector._cli import CHUNK_LINES, _decide_lines, main

from certmint import CA

ROOT = CA("Jobs Test Root")
PARTNER = ROOT.intermediate("Jobs Test Issuing CA")
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


@pytest.mark.parametrize("jobs", ["-1", "65"])
def test_a_jobs_count_out_of_range_is_a_usage_error(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str
) -> None:
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"")
    status, out, err = run(policy, sessions, capsys, "--jobs", jobs)
    assert (2, "") == (status, out)
    assert f"--jobs must be from 0 to 64, not {jobs}" in err


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
