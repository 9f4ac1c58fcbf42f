"""Recording decided sessions for replay (spec section 12; docs/changing-a-policy.md).

The Postfix service runs as a subprocess (as in test_postfix_server.py) and the
aiosmtpd adapter in a thread (as in test_aiosmtpd_adapter.py); the recorded file is
replayed with ``tlsconnector inbound --sessions`` and ``tlsconnector diff``. Every
wait is bounded; nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import smtplib
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from test_aiosmtpd_adapter import (
    MESSAGE,
    NOW,
    PARTNER,
    WAIT,
    WRONG_CN,
    Delivery,
    Files,
    Server,
    client_context,
    send,
)
from test_postfix_server import GOOD, MISMATCH, TEMPFAIL, PolicyService, ask, write_policy
from test_postfix_server import WRONG_CN as WRONG_CN_REQUEST

from tlsconnector import load_policy
from tlsconnector._decisions import InboundAction, InboundDecision, Reason, ReasonCode
from tlsconnector._errors import printable
from tlsconnector.adapters._recording import LocalPartRedactor, Recorder, policy_digest
from tlsconnector.adapters.aiosmtpd import TLSConnectorHandler, smtp_kwargs
from tlsconnector.cli import main

from loopthread import LoopThread

UNTRUSTED = {**GOOD, "sender": "untrusted@fabrikam.com", "ccert_subject": ""}
NO_TLS = {**GOOD, "sender": "plain@fabrikam.com", "encryption_protocol": "", "ccert_subject": ""}
NO_TLS = {**NO_TLS, "ccert_fingerprint": ""}
NO_CERT = {**GOOD, "sender": "nocert@fabrikam.com", "ccert_subject": "", "ccert_fingerprint": ""}
OTHER = {**NO_TLS, "sender": "news@example.org", "helo_name": "mail.example.org"}
NULL_SENDER = {**GOOD, "sender": ""}
#: Malformed facts: Postfix could not learn the address; answered 451.
UNKNOWN_CLIENT = {**GOOD, "client_address": "unknown"}
#: Certificate attributes without TLS: malformed (451). Recorded as they are, the facts
#: would read "no TLS" and a sender no connector governs would replay as an accept.
CERT_WITHOUT_TLS = {**GOOD, "sender": "a@example.org", "encryption_protocol": ""}

REQUESTS = [
    GOOD,
    WRONG_CN_REQUEST,
    GOOD,  # answered from the memory of answers: recorded all the same
    UNTRUSTED,
    NO_TLS,
    NO_CERT,
    OTHER,
    NULL_SENDER,
    UNKNOWN_CLIENT,
    CERT_WITHOUT_TLS,
    WRONG_CN_REQUEST,
]


def key(decision: dict[str, Any]) -> tuple[Any, ...]:
    """What a replay must reproduce: action, connector, reason codes."""
    codes = decision.get("codes")
    if codes is None:
        codes = [r["code"] for r in decision["reasons"]]
    return (decision["action"], decision["connector"], tuple(codes))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def replay(capsys: pytest.CaptureFixture[str], policy: Path, record: Path) -> list[dict[str, Any]]:
    status, out, _ = run_cli(
        capsys, "inbound", "--policy", str(policy), "--sessions", str(record), "--json"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == (1 if any("error" in line for line in lines) else 0)
    return lines


def serve_and_ask(
    policy: Path, requests: list[dict[str, str]], *extra: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """The answers a recording service gives, and its log events (after it stopped)."""
    service = PolicyService(policy, *extra).start()
    try:
        with service.connect() as sock:
            answers = [ask(sock, request) for request in requests]
    finally:
        assert 0 == service.stop()
    return answers, service.events


# --- Postfix: record, then replay ------------------------------------------------------


def test_a_recorded_file_replays_to_the_same_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path)
    record = tmp_path / "sessions.jsonl"
    answers, events = serve_and_ask(policy, REQUESTS, "--record", str(record))
    assert [
        "DUNNO",
        MISMATCH,
        "DUNNO",
        answers[3],
        answers[4],
        answers[5],
        "DUNNO",
        "DUNNO",
        TEMPFAIL,
        TEMPFAIL,
        MISMATCH,
    ] == answers
    decisions = [e for e in events if e["event"] == "decision"]
    (stopped,) = [e for e in events if e["event"] == "record-stopped"]
    assert (len(REQUESTS), 0, 0) == (stopped["written"], stopped["dropped"], stopped["failed"])

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    # One line per answered RCPT, in order, each with the decision that was answered
    # (the memory's answers too) and the digest of the policy that answered it.
    assert len(REQUESTS) == len(lines)
    assert [(d["action"], d["connector"], tuple(d["codes"])) for d in decisions] == [
        key(line["recorded"]) for line in lines
    ]
    digest = policy_digest(load_policy(policy))
    assert {digest} == {line["recorded"]["policy"] for line in lines}
    assert stat.S_IMODE(record.stat().st_mode) == 0o600  # envelope addresses inside

    replayed = replay(capsys, policy, record)
    for line, again in zip(lines, replayed, strict=True):
        if line["recorded"]["action"] == "tempfail":
            # Recorded without facts: an error object on replay, never an accept.
            assert "action" not in again
            assert "error" in again
        else:
            assert key(line["recorded"]) == key(again)
    assert ["tempfail", "tempfail"] == [
        line["recorded"]["action"] for line in lines if "peer_ip" not in line
    ]
    # The facts as Postfix sent them: the HELO name, the MTA-verified CN, the fingerprint.
    assert "mail.example.org" == lines[6]["helo"]
    assert {"peer_cn": ["server1.fabrikam.com"], "peer_verified": True} == {
        k: v for k, v in lines[0]["tls"].items() if k != "peer_fingerprint"
    }
    assert {"peer_cn": [], "peer_verified": False} == {
        k: v for k, v in lines[3]["tls"].items() if k != "peer_fingerprint"
    }
    assert (None, {}) == (lines[4]["tls"], lines[5]["tls"])

    # diff against the recorded decisions: nothing changes; the two 451 lines cannot
    # be replayed, so the status is 1 with exactly those two lines as errors.
    status, out, err = run_cli(
        capsys,
        "diff",
        "--old",
        "recorded",
        "--new",
        str(policy),
        "--inbound",
        str(record),
        "--json",
    )
    assert 1 == status
    assert [9, 10] == [json.loads(line)["error"]["line"] for line in out.splitlines()]
    assert f"inbound: {len(REQUESTS)} sessions, 0 decisions change" in err


def test_a_policy_change_shows_in_the_diff_of_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path)
    record = tmp_path / "sessions.jsonl"
    serve_and_ask(policy, [GOOD, WRONG_CN_REQUEST, OTHER], "--record", str(record))
    narrower = tmp_path / "narrower.toml"
    narrower.write_text(policy.read_text().replace('"*.fabrikam.com"', '"mail.fabrikam.com"'))
    status, out, _ = run_cli(
        capsys, "diff", "--old", "recorded", "--new", str(narrower), "--inbound", str(record)
    )
    assert 1 == status
    assert "inbound: 3 sessions, 1 decision changes" in out
    assert "accept -> reject: 1" in out
    assert "line 1: Fabrikam Bank inbound" in out


def test_local_parts_are_redacted_with_the_configured_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path)
    record = tmp_path / "sessions.jsonl"
    key_file = tmp_path / "record.key"
    key_file.write_bytes(b"k" * 32)
    serve_and_ask(
        policy,
        [GOOD, WRONG_CN_REQUEST, NULL_SENDER],
        "--record",
        str(record),
        "--record-redact-local-parts",
        "--record-key-file",
        str(key_file),
    )
    text = record.read_text()
    assert "payments" not in text
    assert "finance" not in text
    expected = hmac.new(b"k" * 32, b"payments", hashlib.sha256).hexdigest()[:32]
    first, _, null = (json.loads(line) for line in text.splitlines())
    assert f"r-{expected}@fabrikam.com" == first["mail_from"]
    assert "" == null["mail_from"]
    # Decisions never read local parts: the redacted file replays the same way.
    assert [key(json.loads(line)["recorded"]) for line in text.splitlines()] == [
        key(d) for d in replay(capsys, policy, record)
    ]


def test_the_record_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = str(write_policy(tmp_path))
    record = str(tmp_path / "r.jsonl")
    short_key = tmp_path / "short.key"
    short_key.write_bytes(b"0123456789")
    for extra, message in (
        (["--record-keep", "3"], "--record-keep needs --record FILE"),
        (["--record", record, "--workers", "2"], "--record needs --workers 1"),
        (["--record", record, "--record-keep", "0"], "--record-keep must be from 1 to 1000"),
        (["--record", record, "--record-max-bytes", "100"], "--record-max-bytes must be from"),
        (["--record", record, "--record-key-file", str(short_key)], "needs --record-redact"),
        (
            [
                "--record",
                record,
                "--record-redact-local-parts",
                "--record-key-file",
                str(short_key),
            ],
            "the key must be from 16 to 4096 bytes (got 10)",
        ),
    ):
        status, _, err = run_cli(capsys, "serve", "postfix", "--policy", policy, *extra)
        assert (2, True) == (status, message in err), err


# --- recording never changes an answer -------------------------------------------------

EXPECTED = ["DUNNO", MISMATCH, "DUNNO", TEMPFAIL]
SOME = [GOOD, WRONG_CN_REQUEST, OTHER, UNKNOWN_CLIENT]


def test_recording_to_a_full_disk_never_changes_an_answer(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC: the answers are those of a service that
    does not record, the failure is logged and counted, and a device is never rotated
    (renamed) however small --record-max-bytes is."""
    policy = write_policy(tmp_path)
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    plain, _ = serve_and_ask(policy, SOME * 5)
    answers, events = serve_and_ask(
        policy, SOME * 5, "--record", str(full), "--record-max-bytes", "4096"
    )
    assert plain == answers == EXPECTED * 5
    errors = [e for e in events if e["event"] == "record-error"]
    assert errors
    assert "No space left on device" in errors[0]["message"]
    (stopped,) = [e for e in events if e["event"] == "record-stopped"]
    assert (0, 20) == (stopped["written"], stopped["failed"])
    assert stat.S_ISCHR(full.stat().st_mode)
    assert not Path("/dev/full.1").exists()


def test_recording_to_a_file_that_cannot_be_opened_never_changes_an_answer(
    tmp_path: Path,
) -> None:
    """The record's directory is a regular file (ENOTDIR, also for root)."""
    policy = write_policy(tmp_path)
    (tmp_path / "not-a-directory").write_text("")
    answers, events = serve_and_ask(
        policy, SOME, "--record", str(tmp_path / "not-a-directory" / "sessions.jsonl")
    )
    assert EXPECTED == answers
    (error,) = [e for e in events if e["event"] == "record-error"]  # one per 10 s at most
    assert "Not a directory" in error["message"]
    (stopped,) = [e for e in events if e["event"] == "record-stopped"]
    assert (0, len(SOME)) == (stopped["written"], stopped["failed"])


# --- the recorder itself ---------------------------------------------------------------


def _decision() -> InboundDecision:
    reason = Reason(ReasonCode.NO_CONNECTOR, "no connector", None)
    return InboundDecision(InboundAction.ACCEPT, None, (reason,), None)


def _session(number: int) -> dict[str, Any]:
    return {
        "peer_ip": "192.0.2.1",
        "mail_from": f"sender{number}@example.org",
        "rcpt_to": ["b@contoso.com"],
        "tls": None,
        "at": "2026-11-26T12:00:00Z",
    }


def test_the_record_is_rotated_by_size_and_old_files_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    recorder = Recorder(path, max_bytes=4096, keep=3)
    decision = _decision()
    for number in range(200):
        recorder.record(_session(number), decision, policy="sha256:0", at=NOW)
    assert recorder.close()
    assert (200, 0, 0) == tuple(recorder.stats().values())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert ["sessions.jsonl", "sessions.jsonl.1", "sessions.jsonl.2"] == files
    kept: list[int] = []
    for name in ("sessions.jsonl.2", "sessions.jsonl.1", "sessions.jsonl"):  # oldest first
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 4096
        assert data.endswith(b"\n")
        kept += [int(json.loads(line)["mail_from"][6:-12]) for line in data.splitlines()]
    # Whole lines only, in order, the newest kept: the last of the 200 sessions.
    assert list(range(200 - len(kept), 200)) == kept


def test_a_writer_that_cannot_write_never_blocks_recording(tmp_path: Path) -> None:
    """A FIFO nobody reads blocks the writer thread in open(): record() still returns
    at once, and what does not fit in the buffer is dropped and counted."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    recorder = Recorder(fifo, buffer_bytes=8192)
    decision = _decision()
    for number in range(1000):
        recorder.record(_session(number), decision, policy="sha256:0", at=NOW)
    assert recorder.stats()["dropped"] > 900
    # Let the writer go: a reader opens the FIFO and drains it until the writer stops.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    drained = threading.Thread(target=_drain, args=(reader,), daemon=True)
    drained.start()
    assert recorder.close(timeout=10)
    drained.join(timeout=10)
    assert 1000 == sum(recorder.stats().values())


def _drain(fd: int) -> None:
    import select

    with contextlib.suppress(OSError):
        while True:
            select.select([fd], [], [], 10)
            if not os.read(fd, 65536):
                break
    os.close(fd)


def test_redaction_keeps_the_domain_and_the_special_addresses() -> None:
    redactor = LocalPartRedactor(b"0" * 16)
    hashed = redactor.redact("john doe@Fabrikam.com")
    assert hashed.endswith("@Fabrikam.com")
    assert hashed.startswith("r-")
    assert len(hashed) == 47
    assert hashed == redactor.redact("<john doe@Fabrikam.com>")
    assert ("", "", "postmaster") == (
        redactor.redact(""),
        redactor.redact("<>"),
        redactor.redact("postmaster"),
    )
    assert "@" not in redactor.redact("nodomain")
    with pytest.raises(ValueError, match="redaction key: 8 bytes"):
        LocalPartRedactor(b"01234567")


def test_a_temporary_failure_is_recorded_without_facts() -> None:
    """Its facts could not be read: recorded, they would replay as something else."""
    recorder = Recorder(os.devnull)
    line = json.loads(
        recorder.line(_session(1), InboundDecision.tempfail("boom"), policy="p", at=NOW)
    )
    recorder.close()
    assert {"at", "recorded"} == set(line)
    assert ("tempfail", "boom") == (line["recorded"]["action"], line["recorded"]["error"])


# --- aiosmtpd ----------------------------------------------------------------------------


@contextlib.contextmanager
def recording_server(files: Files, recorder: Recorder) -> Iterator[int]:
    policy = load_policy(files.policy_path, use_system_trust=False)
    handler = TLSConnectorHandler(policy, delivery=Delivery(), clock=lambda: NOW, record=recorder)
    kwargs = smtp_kwargs(
        policy, certfile=files.server_cert, keyfile=files.server_key, require_starttls=False
    )

    def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
        return SMTP(handler, hostname="mx.contoso.example", loop=loop, **kwargs)

    thread = LoopThread(factory)
    try:
        yield thread.port
    finally:
        thread.stop()


def test_aiosmtpd_records_the_chain_and_the_record_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = Files(tmp_path)
    record = tmp_path / "sessions.jsonl"
    recorder = Recorder(record)
    with recording_server(files, recorder) as port:
        server = Server(port, Delivery(), [])
        send(server, files, leaf=PARTNER)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server, files, leaf=WRONG_CN)
        send(server, files, tls=False, sender="news@example.org")
    assert recorder.close()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [
        ("accept", ["connector-satisfied"]),
        ("reject", ["certificate-name-mismatch"]),
        ("accept", ["no-connector"]),
    ] == [(line["recorded"]["action"], line["recorded"]["codes"]) for line in lines]
    assert lines[0]["tls"]["peer_chain_pem"].count("BEGIN CERTIFICATE") == 2  # leaf + issuing
    assert "mail.fabrikam.com" == lines[0]["helo"]
    replayed = replay(capsys, files.policy_path, record)
    assert [key(line["recorded"]) for line in lines] == [key(d) for d in replayed]
    assert "tlsconnector" == replayed[0]["chain_verified_by"]


# --- aiosmtpd: a record that cannot be written ------------------------------------------

ADAPTER_LOG = "tlsconnector.adapters.aiosmtpd"
#: Each transaction: TLS and the client's leaf (None: TLS without one; "plain": no
#: TLS), the sender, the recipients. Six RCPTs in all.
TRANSACTIONS: list[tuple[Any, str, tuple[str, ...]]] = [
    (PARTNER, "payments@fabrikam.com", ("finance@contoso.com", "audit@contoso.com")),
    (WRONG_CN, "payments@fabrikam.com", ("finance@contoso.com",)),
    ("plain", "payments@fabrikam.com", ("finance@contoso.com",)),
    ("plain", "news@example.org", ("finance@contoso.com",)),
    (PARTNER, "payments@-fabrikam.com", ("finance@contoso.com",)),  # malformed: 451
]
RCPTS = sum(len(rcpts) for _, _, rcpts in TRANSACTIONS)


@contextlib.contextmanager
def handler_server(files: Files, recorder: Recorder | None) -> Iterator[int]:
    """A real aiosmtpd server on 127.0.0.1 whose handler records to ``recorder``."""
    policy = load_policy(files.policy_path, use_system_trust=False)
    handler = TLSConnectorHandler(policy, delivery=Delivery(), clock=lambda: NOW, record=recorder)
    kwargs = smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key)
    thread = LoopThread(
        lambda loop: SMTP(handler, hostname="mx.contoso.example", loop=loop, **kwargs)
    )
    try:
        yield thread.port
    finally:
        thread.stop()


def smtp_replies(files: Files, recorder: Recorder | None) -> list[Any]:
    """Every reply of every transaction (MAIL, each RCPT, DATA), as the client saw it."""
    replies: list[Any] = []
    with handler_server(files, recorder) as port:
        for leaf, sender, rcpts in TRANSACTIONS:
            with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
                client.ehlo("mail.fabrikam.com")
                if leaf != "plain":
                    client.starttls(context=client_context(files, leaf))
                    client.ehlo("mail.fabrikam.com")
                mail = client.mail(sender)
                answers = [client.rcpt(rcpt) for rcpt in rcpts]
                data = (
                    client.data(MESSAGE)
                    if any(code == 250 for code, _ in answers)
                    else client.rset()
                )
                replies.append((mail, answers, data))
    return replies


UNWRITABLE = {
    # /dev/full fails every write with ENOSPC (opening it works).
    "full-disk": (lambda tmp: Path("/dev/full"), "No space left on device"),
    # A path in a directory that does not exist: every open fails with ENOENT. Its
    # name holds a newline: the log line escapes it (one line, never two).
    "missing-directory": (
        lambda tmp: tmp / "missing\ndirectory" / "sessions.jsonl",
        "No such file or directory",
    ),
}


@pytest.mark.parametrize("where", sorted(UNWRITABLE))
def test_aiosmtpd_recording_that_cannot_write_is_logged_and_never_changes_an_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """Every SMTP answer is that of a handler that does not record; the write error is
    one WARNING line on the adapter's logger (the recorder reports at most once per
    10 s: its clock stands still here) and every lost record is counted."""
    target, reason = UNWRITABLE[where]
    path = target(tmp_path)
    if where == "full-disk" and not path.exists():
        pytest.skip("no /dev/full on this system")
    files = Files(tmp_path)
    plain = smtp_replies(files, None)
    recorder = Recorder(path, monotonic=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger=ADAPTER_LOG):
        recording = smtp_replies(files, recorder)
        assert recorder.close()  # the writer is done: its reports were made
    assert plain == recording
    # The answers themselves: accepted partner (both RCPTs, DATA), 550, 530, 250, 451.
    assert [
        ([250, 250], 250),
        ([550], 250),
        ([530], 250),
        ([250], 250),
        ([451], 250),
    ] == [([code for code, _ in answers], data[0]) for _, answers, data in plain]
    assert {"written": 0, "dropped": 0, "failed": RCPTS} == recorder.stats()
    errors = [r for r in caplog.records if "record-error" in r.getMessage()]
    assert 1 == len(errors), [r.getMessage() for r in errors]
    (error,) = errors
    assert (ADAPTER_LOG, logging.WARNING) == (error.name, error.levelno)
    message = error.getMessage()
    assert f"path={printable(str(path), 300)}" in message
    assert reason in message
    assert "deciding goes on" in message
    assert "\n" not in message
    assert not Path("/dev/full.1").exists()  # a device is never rotated


def test_aiosmtpd_logs_every_report_of_the_recorder_with_the_records_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clock that moves 11 s between reports: each report is one line, and the
    records lost that the lines name add up to the count."""
    files = Files(tmp_path)
    ticks = iter(range(0, 11 * 100, 11))
    recorder = Recorder(tmp_path / "missing" / "s.jsonl", monotonic=lambda: float(next(ticks)))
    with caplog.at_level(logging.WARNING, logger=ADAPTER_LOG):
        smtp_replies(files, recorder)
        assert recorder.close()
    lines = [r.getMessage() for r in caplog.records if "record-error" in r.getMessage()]
    assert lines
    lost = [int(line.split("; ")[1].split(" records lost")[0]) for line in lines]
    assert RCPTS == sum(lost) == recorder.stats()["failed"]


def test_aiosmtpd_keeps_your_own_on_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recorder with an ``on_error`` of its own: it gets the reports, and the
    adapter logs none of its own."""
    files = Files(tmp_path)
    reports: list[str] = []
    recorder = Recorder(tmp_path / "missing" / "s.jsonl", on_error=reports.append)
    with caplog.at_level(logging.WARNING, logger=ADAPTER_LOG):
        smtp_replies(files, recorder)
        assert recorder.close()
    assert reports
    assert "No such file or directory" in reports[0]
    assert recorder.on_error == reports.append
    assert [] == [r for r in caplog.records if "record-error" in r.getMessage()]
