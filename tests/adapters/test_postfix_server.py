"""``tlsconnector serve postfix`` over real sockets on 127.0.0.1 (no Postfix needed).

The service runs as a subprocess (``sys.executable -m tlsconnector``) on port 0 and
tells its port on the ``listening`` log line; every wait is bounded and waits for an
event (a log line, an answer, a closed socket), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import tlsconnector.adapters.postfix.server as serve_module
from tlsconnector import load_policy
from tlsconnector.adapters.postfix.protocol import decide_request, decision_record
from tlsconnector.adapters.postfix.server import JsonLog, PolicyServer
from tlsconnector.cli import main

from certmint import CA, NOW

DER = serialization.Encoding.DER
WAIT = 15.0  # seconds: the bound on every wait; a healthy run takes milliseconds

POLICY_TEMPLATE = """
[trust]
ca_file = "partners-ca.pem"

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "{name}"
restrict_domains_to_certificate = true
"""

GOOD = {
    "request": "smtpd_access_policy",
    "protocol_state": "RCPT",
    "client_address": "198.51.100.7",
    "sender": "payments@fabrikam.com",
    "recipient": "finance@contoso.com",
    "queue_id": "",
    "encryption_protocol": "TLSv1.3",
    "ccert_subject": "server1.fabrikam.com",
    "ccert_fingerprint": ":".join(["3A"] * 32),
}
WRONG_CN = {**GOOD, "ccert_subject": "mail.contoso-evil.com"}

DUNNO = "DUNNO"
MISMATCH = '550 5.7.1 Connector "Fabrikam Bank inbound": client certificate name does not match'
TEMPFAIL = "451 4.3.0 Temporary failure, try again later"


def write_policy(directory: Path, name: str = "*.fabrikam.com") -> Path:
    (directory / "partners-ca.pem").write_text(CA("Fabrikam Partner CA").cert_pem())
    path = directory / "policy.toml"
    path.write_text(POLICY_TEMPLATE.format(name=name))
    return path


def wire(request: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}\n".encode() for k, v in request.items()) + b"\n"


class PolicyService:
    """A ``tlsconnector serve postfix`` subprocess and its JSON log lines."""

    def __init__(self, policy: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tlsconnector",
                "serve",
                "postfix",
                "--policy",
                str(policy),
                "--listen",
                "127.0.0.1:0",
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:  # plain text: a start-up error (never a log line)
                self._lines.put({"event": "(text)", "text": raw.decode().rstrip("\n")})
        self._lines.put(None)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = WAIT
    ) -> dict[str, Any]:
        """The first log event (already seen or new) that satisfies ``predicate``."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such event within {timeout} s; last: {self.events[-5:]}")
            try:
                event = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(f"the service exited; last events: {self.events[-5:]}")
            self.events.append(event)
            if predicate(event):
                return event

    def wait_event(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until ``count`` events called ``name`` have been logged; return them."""
        self.wait_for(lambda e: sum(x["event"] == name for x in self.events) >= count)
        return [e for e in self.events if e["event"] == name]

    def start(self) -> PolicyService:
        listening = self.wait_for(lambda e: e["event"] == "listening")
        self.port = int(listening["address"].rsplit(":", 1)[1])
        return self

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT)
            raise AssertionError("the service did not stop on SIGTERM") from None
        finally:
            self._reader.join(timeout=WAIT)
            while True:  # keep the rest of the log for assertions
                try:
                    event = self._lines.get_nowait()
                except queue.Empty:
                    break
                if event is not None:
                    self.events.append(event)


def ask(sock: socket.socket, request: dict[str, str]) -> str:
    """Send one request; return the text after ``action=``."""
    sock.sendall(wire(request))
    return read_answer(sock)


def read_answer(sock: socket.socket) -> str:
    (answer,) = read_answers(sock, 1)
    return answer


def read_answers(sock: socket.socket, count: int) -> list[str]:
    """Read exactly ``count`` answers (``action=...`` and an empty line each)."""
    data = b""
    while data.count(b"\n\n") < count:
        chunk = sock.recv(1)  # one byte at a time: never read past the last answer
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    blocks = data.decode("ascii").split("\n\n")[:count]
    assert all(block.startswith("action=") and "\n" not in block for block in blocks)
    return [block[len("action=") :] for block in blocks]


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closed with unread input: a reset is a close too
    return data


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyService]:
    """One service for the protocol tests (the signal tests start their own)."""
    running = PolicyService(write_policy(tmp_path_factory.mktemp("policy"))).start()
    yield running
    assert 0 == running.stop()


# --- the protocol over a real socket --------------------------------------------------


def test_many_requests_on_one_connection(service: PolicyService) -> None:
    connect = {**GOOD, "protocol_state": "CONNECT"}
    with service.connect() as sock:
        answers = [ask(sock, r) for r in (connect, GOOD, WRONG_CN, GOOD)]
    assert [DUNNO, DUNNO, MISMATCH, DUNNO] == answers


def test_pipelined_requests_get_answers_in_order(service: PolicyService) -> None:
    with service.connect() as sock:
        sock.sendall(wire(WRONG_CN) + wire(GOOD))
        assert [MISMATCH, DUNNO] == read_answers(sock, 2)


def test_connections_are_served_concurrently(service: PolicyService) -> None:
    """Every connection holds half a request; they are completed in reverse order. A
    server that served one connection at a time would wait forever on the first."""
    sockets = [service.connect() for _ in range(12)]
    try:
        halves = [wire(GOOD if i % 2 else WRONG_CN) for i in range(len(sockets))]
        for sock, data in zip(sockets, halves, strict=True):
            sock.sendall(data[:40])
        answers: dict[int, str] = {}
        for i in reversed(range(len(sockets))):
            sockets[i].sendall(halves[i][40:])
            answers[i] = read_answer(sockets[i])
    finally:
        for sock in sockets:
            sock.close()
    assert [DUNNO if i % 2 else MISMATCH for i in range(12)] == [answers[i] for i in range(12)]


def test_decisions_are_logged_as_json_lines(service: PolicyService) -> None:
    with service.connect() as sock:
        ask(sock, {**WRONG_CN, "queue_id": "3Fq7Zk1"})
    event = service.wait_for(lambda e: e.get("queue_id") == "3Fq7Zk1")
    assert {
        "event": "decision",
        "client": "198.51.100.7",
        "sender": "payments@fabrikam.com",
        "recipient": "finance@contoso.com",
        "action": "reject",
        "reply": MISMATCH,
        "connector": "Fabrikam Bank inbound",
        "codes": ["certificate-name-mismatch"],
    } == {
        k: event[k]
        for k in ("event", "client", "sender", "recipient", "action", "reply", "connector", "codes")
    }
    assert event["time"].endswith("Z")


def test_an_oversize_request_closes_the_connection_without_an_answer(
    service: PolicyService,
) -> None:
    # Lines under the 8 KiB line bound, over 64 KiB in all.
    padding = b"".join(b"x_padding_%d=%s\n" % (i, b"p" * 4000) for i in range(20))
    with service.connect() as sock:
        sock.sendall(wire(GOOD)[:-1] + padding + b"\n")
        assert b"" == read_until_closed(sock)
    service.wait_for(lambda e: e["event"] == "protocol-error" and "larger than" in e["message"])
    with service.connect() as sock:  # the service itself is unharmed
        assert DUNNO == ask(sock, GOOD)


def test_an_overlong_line_closes_the_connection(service: PolicyService) -> None:
    with service.connect() as sock:
        sock.sendall(b"request=smtpd_access_policy\nsender=" + b"a" * 9000)
        assert b"" == read_until_closed(sock)
    service.wait_for(lambda e: e["event"] == "protocol-error" and "longer than" in e["message"])


def test_a_malformed_line_closes_the_connection_after_earlier_answers(
    service: PolicyService,
) -> None:
    with service.connect() as sock:
        sock.sendall(wire(GOOD) + b"this line has no equals sign\n\n" + wire(GOOD))
        assert b"action=DUNNO\n\n" == read_until_closed(sock)
    service.wait_for(lambda e: e["event"] == "protocol-error" and "no '='" in e["message"])


def test_a_value_that_is_not_utf8_gets_451_and_the_connection_goes_on(
    service: PolicyService,
) -> None:
    hostile = wire({**GOOD, "sender": "SENDER"}).replace(b"SENDER", b"\xff\xfe@fabrikam.com")
    with service.connect() as sock:
        sock.sendall(hostile)
        assert TEMPFAIL == read_answer(sock)
        assert DUNNO == ask(sock, GOOD)


# --- signals, reload, workers (each test starts its own service) ----------------------


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return write_policy(tmp_path)


def test_sighup_reloads_a_valid_new_policy(policy_file: Path) -> None:
    service = PolicyService(policy_file).start()
    try:
        with service.connect() as sock:
            assert MISMATCH == ask(sock, WRONG_CN)
            policy_file.write_text(POLICY_TEMPLATE.format(name="*.contoso-evil.com"))
            service.signal(signal.SIGHUP)
            service.wait_event("reload")
            # The same connection now gets answers from the new policy.
            assert DUNNO == ask(sock, WRONG_CN)
            assert MISMATCH == ask(sock, GOOD)
    finally:
        assert 0 == service.stop()


def test_sighup_with_an_invalid_policy_keeps_the_previous_one(policy_file: Path) -> None:
    service = PolicyService(policy_file).start()
    try:
        policy_file.write_text(
            POLICY_TEMPLATE.format(name="*.contoso-evil.com") + "enabled = 'yes'\n"
        )
        service.signal(signal.SIGHUP)
        (failed,) = service.wait_event("reload-failed")
        assert "keeping the previous policy" in failed["message"]
        assert any("enabled" in problem for problem in failed["problems"])
        with service.connect() as sock:
            assert [DUNNO, MISMATCH] == [ask(sock, GOOD), ask(sock, WRONG_CN)]
    finally:
        assert 0 == service.stop()
    assert [] == [e for e in service.events if e["event"] == "reload"]


#: Valid policy files that govern no inbound mail: no enabled partner connector.
UNGOVERNED = {
    "empty": "",
    "only-outbound": (
        '[[outbound]]\nname = "Fabrikam Bank outbound"\nrecipient_domains = ["fabrikam.com"]\n'
    ),
    "only-disabled": POLICY_TEMPLATE.format(name="*.fabrikam.com") + "enabled = false\n",
    "only-on-premises": (
        '[[inbound]]\nname = "Contoso relay"\ntype = "on_premises"\n'
        'sender_domains = ["contoso.com"]\n'
    ),
}
NO_PARTNER = "the policy has no enabled inbound connector of type partner"


@pytest.mark.parametrize("content", UNGOVERNED.values(), ids=UNGOVERNED.keys())
def test_sighup_with_a_policy_governing_no_inbound_mail_keeps_the_previous_one(
    policy_file: Path, content: str
) -> None:
    """An empty file, or one caught half written (only its [[outbound]] tables yet),
    loads as a valid policy that governs no inbound mail; swapping it in would give
    every sender DUNNO, so the service keeps the policy in force."""
    service = PolicyService(policy_file).start()
    try:
        policy_file.write_text(content)
        service.signal(signal.SIGHUP)
        (failed,) = service.wait_event("reload-failed")
        (problem,) = failed["problems"]
        assert problem.startswith(NO_PARTNER)
        assert "keeping the previous policy" in failed["message"]
        with service.connect() as sock:
            assert MISMATCH == ask(sock, WRONG_CN)
    finally:
        assert 0 == service.stop()
    assert [] == [e for e in service.events if e["event"] == "reload"]


@pytest.mark.parametrize("content", UNGOVERNED.values(), ids=UNGOVERNED.keys())
def test_a_policy_governing_no_inbound_mail_is_refused_at_start(
    tmp_path: Path, content: str
) -> None:
    path = write_policy(tmp_path)  # and its ca_file
    path.write_text(content)
    service = PolicyService(path)
    assert 2 == service.process.wait(timeout=WAIT)
    service.stop()
    # Plain text on standard error, never a JSON log line: the message, then the problem.
    message, problem = [e["text"] for e in service.events]
    assert {"(text)"} == {e["event"] for e in service.events}
    assert message.startswith("tlsconnector serve postfix: not starting: the policy ")
    assert str(path) in message
    assert "governs no inbound mail" in message
    assert problem.startswith("  " + NO_PARTNER)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_cleanly_with_open_connections(
    policy_file: Path, signum: int
) -> None:
    service = PolicyService(policy_file).start()
    with service.connect() as sock:
        assert DUNNO == ask(sock, GOOD)
        service.signal(signum)
        assert b"" == read_until_closed(sock)
    assert 0 == service.process.wait(timeout=WAIT)
    service.stop()
    assert ["stopping", "stopped"] == [e["event"] for e in service.events[-2:]]


def test_an_idle_connection_is_closed_after_the_idle_timeout(policy_file: Path) -> None:
    service = PolicyService(policy_file, "--idle-timeout", "0.2").start()
    try:
        with service.connect() as sock:
            assert b"" == read_until_closed(sock)  # bounded by the socket timeout
        (event,) = service.wait_event("idle-timeout")
        assert 0.2 == event["seconds"]
    finally:
        assert 0 == service.stop()


def test_workers_share_the_port_reload_on_sighup_and_stop_on_sigterm(policy_file: Path) -> None:
    service = PolicyService(policy_file, "--workers", "2").start()
    try:
        sockets = [service.connect() for _ in range(4)]
        assert [MISMATCH] * 4 == [ask(s, WRONG_CN) for s in sockets]
        policy_file.write_text(POLICY_TEMPLATE.format(name="*.contoso-evil.com"))
        service.signal(signal.SIGHUP)
        reloads = service.wait_event("reload", count=2)
        assert 2 == len({e["pid"] for e in reloads})  # each worker reloaded
        assert [DUNNO] * 4 == [ask(s, WRONG_CN) for s in sockets]
        for sock in sockets:
            sock.close()
    finally:
        assert 0 == service.stop()
    pids = {e["pid"] for e in service.events if e["event"] == "stopped"}
    assert 3 == len(pids)  # both workers and the supervisor


def test_an_invalid_policy_at_start_is_reported_and_nothing_listens(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[inbound]]\nname = "x"\nsender_domains = ["*x.com"]\n')
    service = PolicyService(path)
    assert 2 == service.process.wait(timeout=WAIT)
    service.stop()
    assert {"(text)"} == {e["event"] for e in service.events}  # no JSON line
    message, *problems = [e["text"] for e in service.events]
    assert "is invalid" in message
    assert any("sender_domains" in problem for problem in problems)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "local_host:10040"], "HOST must be an IPv4 address, an [IPv6] address"),
        (["--listen", "127.0.0.1"], "expected HOST:PORT"),
        (["--listen", "127.0.0.1:70000"], "PORT must be a number from 0 to 65535"),
        (["--listen", "[::1:10040"], "HOST must be"),
        (["--workers", "0"], "--workers must be from 1 to 64"),
        (["--idle-timeout", "nan"], "--idle-timeout must be a positive number"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    status = main(["serve", "postfix", "--policy", str(policy_file), *argv])
    assert 2 == status
    assert message in capsys.readouterr().err


def test_connections_beyond_the_limit_are_closed_not_served(tmp_path: Path) -> None:
    """Bounded memory: past --max-connections a new connection is closed at once (Postfix
    then applies its default action, a temporary failure); the others are served."""
    service = PolicyService(write_policy(tmp_path), "--max-connections", "2").start()
    try:
        first, second = service.connect(), service.connect()
        assert MISMATCH == ask(first, WRONG_CN)
        assert DUNNO == ask(second, GOOD)
        with service.connect() as third:
            assert b"" == read_until_closed(third)
        service.wait_event("too-many-connections")
        assert MISMATCH == ask(first, WRONG_CN)
        first.close()
        second.close()
    finally:
        assert 0 == service.stop()


def test_a_connection_that_keeps_asking_outlives_the_idle_timeout(policy_file: Path) -> None:
    """The idle timeout counts from the last answer, not from the connection's start."""
    service = PolicyService(policy_file, "--idle-timeout", "0.3").start()
    try:
        with service.connect() as sock:
            answers = []
            for _ in range(8):  # 0.8 s in all, more than twice the idle timeout
                answers.append(ask(sock, GOOD))
                time.sleep(0.1)
            assert [DUNNO] * 8 == answers
    finally:
        assert 0 == service.stop()
    assert [] == [e for e in service.events if e["event"] == "idle-timeout"]


def test_a_request_trickled_byte_by_byte_is_cut_off_at_the_idle_timeout(
    policy_file: Path,
) -> None:
    """Bytes that never complete a request do not keep a connection open."""
    service = PolicyService(policy_file, "--idle-timeout", "0.3").start()
    try:
        with service.connect() as sock:
            data = wire(GOOD)
            closed = False
            for i in range(60):  # at most 3 s; the service closes after 0.3 s
                try:
                    sock.sendall(data[i : i + 1])
                except OSError:
                    closed = True
                    break
                time.sleep(0.05)
            if not closed:
                sock.settimeout(WAIT)
                assert b"" == read_until_closed(sock)
        (event,) = service.wait_event("idle-timeout")
        assert 0.3 == event["seconds"]
    finally:
        assert 0 == service.stop()


# --- the service in process: remembered answers and the log -------------------------


def _server(policy_file: Path, **options: Any) -> tuple[PolicyServer, io.StringIO]:
    stream = io.StringIO()
    policy = load_policy(policy_file)
    return PolicyServer(policy, policy_path=policy_file, log=JsonLog(stream), **options), stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _counting_decisions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = serve_module.decide_request

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(serve_module, "decide_request", counted)
    return calls


def test_a_repeated_request_gets_the_same_answer_and_its_own_log_line(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_decisions(monkeypatch)
    server, stream = _server(policy_file)
    first = {**WRONG_CN, "queue_id": "AAA1"}
    second = {**WRONG_CN, "queue_id": "BBB2", "client_port": "5555", "instance": "x.y"}
    replies = server.respond([first]) + server.respond([second])
    assert f"action={MISMATCH}\n\n".encode() * 2 == replies
    assert 1 == len(calls)  # decided once, answered twice
    logged = _lines(stream)
    expected = decision_record(first, decide_request(server.policy, first, at=NOW))
    assert [{**expected, "queue_id": "AAA1"}, {**expected, "queue_id": "BBB2"}] == [
        {k: v for k, v in line.items() if k not in ("time", "event", "pid")} for line in logged
    ]
    assert all(line["event"] == "decision" and line["time"].endswith("Z") for line in logged)


def test_hostile_values_in_the_log_line_are_escaped_and_bounded(policy_file: Path) -> None:
    server, stream = _server(policy_file)
    hostile = {
        **WRONG_CN,
        "queue_id": 'Q"},"action":"accept',
        "sender": "a\\b\udcff\u00e9@fabrikam.com",
        "ccert_fingerprint": "AB:" * 300,
    }
    server.respond([hostile])
    (raw,) = stream.getvalue().splitlines()
    assert raw.isascii()
    (line,) = _lines(stream)
    assert 'Q"},"action":"accept' == line["queue_id"]
    assert "a\\b\udcff\u00e9@fabrikam.com" == line["sender"]
    assert 512 == len(line["ccert_fingerprint"])
    assert "tempfail" == line["action"]  # the malformed fingerprint: 451, never an accept


def test_remembered_answers_are_forgotten_when_the_policy_is_reloaded(policy_file: Path) -> None:
    server, _ = _server(policy_file)
    assert f"action={MISMATCH}\n\n".encode() == server.respond([WRONG_CN])
    policy_file.write_text(POLICY_TEMPLATE.format(name="*.contoso-evil.com"))
    server.reload()
    assert b"action=DUNNO\n\n" == server.respond([WRONG_CN])


def test_a_temporary_failure_is_not_remembered(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = _server(policy_file)
    real = serve_module.decide_request
    failures = [RuntimeError("disk on fire")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(serve_module, "decide_request", flaky)
    assert f"action={TEMPFAIL}\n\n".encode() == server.respond([GOOD])
    assert b"action=DUNNO\n\n" == server.respond([GOOD])


def test_the_memory_of_answers_is_bounded(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_decisions(monkeypatch)
    server, _ = _server(policy_file, max_answers=1)
    for request in (GOOD, WRONG_CN, GOOD, GOOD):
        server.respond([request])
    assert 3 == len(calls)  # GOOD was forgotten when WRONG_CN came, then kept


def test_an_attached_log_writes_the_lines_of_one_loop_turn_together() -> None:
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    stream = Recorder()
    log = JsonLog(stream)

    async def scenario() -> tuple[str, str]:
        log.attach(asyncio.get_running_loop())
        log.emit("one")
        log.emit("two")
        before = stream.getvalue()
        await asyncio.sleep(0)
        log.emit("three")
        log.detach()  # what is still waiting is written at once
        return before, stream.getvalue()

    before, after = asyncio.run(scenario())
    assert "" == before
    assert ["one", "two", "three"] == [json.loads(line)["event"] for line in after.splitlines()]
    assert 2 == stream.flushes


def test_an_unusually_long_request_is_decided_every_time(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded memory: answers to requests with very long deciding attributes are not
    kept (a hostile client could otherwise fill the memory with large entries)."""
    calls = _counting_decisions(monkeypatch)
    server, _ = _server(policy_file)
    long = {
        **GOOD,
        "sender": "s" * 1000 + "@fabrikam.com",
        "recipient": "r" * 1000 + "@contoso.com",
    }
    assert [b"action=DUNNO\n\n"] * 3 == [server.respond([long]) for _ in range(3)]
    assert 3 == len(calls)
    server.respond([GOOD])
    server.respond([GOOD])
    assert 4 == len(calls)  # an ordinary request is still remembered


class _SlowReaderTransport(asyncio.Transport):
    """A transport whose peer reads nothing until told to: like asyncio's, it calls
    ``pause_writing`` once more than ``limit`` bytes wait to be sent."""

    def __init__(self, protocol: asyncio.Protocol, limit: int) -> None:
        super().__init__()
        self.protocol, self.limit = protocol, limit
        self.waiting = bytearray()
        self.sent = bytearray()
        self.reading = True
        self.closing = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.waiting += data
        if len(self.waiting) > self.limit and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def peer_reads_everything(self) -> None:
        self.sent += self.waiting
        self.waiting.clear()
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def test_a_peer_that_sends_many_requests_but_reads_no_answer_is_served_a_piece_at_a_time(
    policy_file: Path,
) -> None:
    """Bounded buffers: once the answers waiting for the peer pass the transport's
    limit, no further request is answered (and reading stops) until the peer reads;
    then every request gets its answer, in order."""
    server, stream = _server(policy_file)
    requests = [{**(GOOD if n % 2 else WRONG_CN), "queue_id": f"Q{n}"} for n in range(3000)]
    data = b"".join(wire(r) for r in requests)

    async def scenario() -> tuple[int, bool, list[str]]:
        connection = server.connection()
        transport = _SlowReaderTransport(connection, limit=4096)
        connection.connection_made(transport)
        connection.data_received(data)
        answered_before_reading = len(stream.getvalue().splitlines())
        paused = not transport.reading
        for _ in range(1000):  # bounded: each round answers at least one piece
            transport.peer_reads_everything()
            if not transport.paused and not connection._backlog:
                break
        transport.peer_reads_everything()
        answers = transport.sent.decode().split("\n\n")[:-1]
        return answered_before_reading, paused, answers

    answered_before_reading, paused, answers = asyncio.run(scenario())
    assert paused
    assert 0 < answered_before_reading < 3000
    expected = ["action=DUNNO" if n % 2 else f"action={MISMATCH}" for n in range(3000)]
    assert expected == answers
    logged = [line["queue_id"] for line in _lines(stream)]
    assert [f"Q{n}" for n in range(3000)] == logged


def test_log_lines_are_written_whole_in_writes_of_at_most_pipe_buf(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Workers share standard error: a write of at most PIPE_BUF bytes to a pipe is
    never interleaved with another process's, so lines go in such writes; a short
    write (a signal during a blocked write) is continued, never dropped."""
    writes: list[bytes] = []
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        chunk = bytes(data)[: max(1, len(data) // 2)]  # every write half done
        writes.append(chunk)
        return real_write(fd, chunk)

    monkeypatch.setattr(serve_module.os, "write", short_write)
    path = tmp_path / "log"
    with open(path, "w", encoding="utf-8") as stream:
        log = JsonLog(stream)

        async def scenario() -> None:
            log.attach(asyncio.get_running_loop())
            for n in range(200):
                log.emit("decision", n=n, padding="x" * 100)
            log.detach()

        asyncio.run(scenario())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert list(range(200)) == [json.loads(line)["n"] for line in lines]
    # Every requested write (a run of whole lines) fitted in PIPE_BUF.
    assert all(len(w) <= serve_module.PIPE_BUF for w in writes)
    assert len(writes) > 200 * 170 // serve_module.PIPE_BUF  # several writes, all continued


# --- requests that break the protocol, connection slots -------------------------------


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "protocol_state"}, "protocol_state is missing"),
        ({**GOOD, "protocol_state": "BDAT"}, "unknown protocol_state 'BDAT'"),
        ({k: v for k, v in GOOD.items() if k != "sender"}, "sender is missing"),
    ],
    ids=["no-protocol-state", "unknown-state", "no-sender"],
)
def test_a_request_postfix_never_sends_is_answered_451_then_the_connection_closes(
    service: PolicyService, broken: dict[str, str], message: str
) -> None:
    """Not Postfix, or no longer its protocol: the answer goes out, later requests on
    that connection are not answered, and one protocol-error line (rate-limited) is
    logged instead of a decision line per request."""
    marker = f"Q-{message.split()[0]}-{time.monotonic_ns()}"
    with service.connect() as sock:
        sock.settimeout(5.0)  # without the fix the connection stays open: a timeout
        sock.sendall(wire(GOOD) + wire({**broken, "queue_id": marker}) + wire(GOOD))
        assert f"action=DUNNO\n\naction={TEMPFAIL}\n\n".encode() == read_until_closed(sock)
    event = service.wait_for(lambda e: e["event"] == "protocol-error" and message in e["message"])
    assert event["message"].endswith(f"answered {TEMPFAIL}; closing the connection")
    assert not any(e.get("queue_id") == marker for e in service.events)


def test_connections_beyond_the_limit_per_client_are_closed_others_still_served(
    tmp_path: Path,
) -> None:
    """One peer cannot hold every slot: past --max-connections-per-client a new
    connection from that address is closed at once (Postfix then applies its default
    action, a temporary failure); another address is still served."""
    service = PolicyService(
        write_policy(tmp_path), "--max-connections", "10", "--max-connections-per-client", "2"
    ).start()
    try:
        first, second = service.connect(), service.connect()
        assert [MISMATCH, DUNNO] == [ask(first, WRONG_CN), ask(second, GOOD)]
        with service.connect() as third:
            assert b"" == read_until_closed(third)
        (event,) = service.wait_event("too-many-connections-per-client")
        assert 2 == event["limit"]
        assert event["peer"].startswith("127.0.0.1:")
        # Another loopback address is another client.
        with socket.create_connection(
            ("127.0.0.1", service.port), timeout=WAIT, source_address=("127.0.0.2", 0)
        ) as other:
            assert DUNNO == ask(other, GOOD)
        second.close()
        # The slot is free again once the service saw the close (bounded retries).
        for _ in range(100):
            with service.connect() as again:
                again.sendall(wire(GOOD))
                answer = read_until_closed_or_answer(again)
            if answer == DUNNO:
                break
            time.sleep(0.05)
        assert DUNNO == answer
        assert MISMATCH == ask(first, WRONG_CN)
        first.close()
    finally:
        assert 0 == service.stop()


def read_until_closed_or_answer(sock: socket.socket) -> str | None:
    """One answer, or None when the service closes the connection first."""
    try:
        return read_answer(sock)
    except (AssertionError, ConnectionResetError):
        return None


def test_the_command_line_defaults_are_the_documented_bounds() -> None:
    from tlsconnector.cli.parser import build_parser

    args = build_parser().parse_args(["serve", "postfix", "--policy", "p.toml"])
    assert (100, 1000, 300.0) == (
        args.max_connections_per_client,
        args.max_connections,
        args.idle_timeout,
    )
    assert (100, 1000) == (serve_module.MAX_CONNECTIONS_PER_CLIENT, serve_module.MAX_CONNECTIONS)


# --- the log: rate limit, non-blocking writes ----------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_events_a_peer_can_cause_are_rate_limited_and_counted() -> None:
    stream, clock = io.StringIO(), FakeClock()
    log = JsonLog(stream, monotonic=clock, burst=3, window=10.0)
    for n in range(10):
        log.emit("protocol-error", peer="192.0.2.1:1", message=f"bad {n}")
        log.emit("reload-failed", n=n)  # not a flood event: never limited
    clock.now += 10.0
    log.emit("protocol-error", peer="192.0.2.1:1", message="bad again")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert ["bad 0", "bad 1", "bad 2"] == [
        e["message"] for e in events[:-2] if e["event"] == "protocol-error"
    ]
    assert 10 == sum(e["event"] == "reload-failed" for e in events)
    suppressed, resumed = events[-2:]
    assert ("log-suppressed", "protocol-error", 7) == (
        suppressed["event"],
        suppressed["kind"],
        suppressed["suppressed"],
    )
    assert "bad again" == resumed["message"]


def test_an_attached_log_reports_suppressed_lines_when_the_window_ends() -> None:
    """No later event of that kind is needed: a timer ends the window."""
    stream = io.StringIO()
    log = JsonLog(stream, burst=2, window=0.05)

    async def scenario() -> None:
        log.attach(asyncio.get_running_loop())
        for _ in range(5):
            log.emit("connection-error", peer="192.0.2.1:1", message="reset")
        for _ in range(400):  # bounded wait for the timer (20 s at most)
            if "log-suppressed" in stream.getvalue():
                break
            await asyncio.sleep(0.05)
        log.detach()

    asyncio.run(scenario())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert ["connection-error", "connection-error", "log-suppressed"] == [
        e["event"] for e in events
    ]
    assert 3 == events[-1]["suppressed"]


def test_decision_lines_are_never_rate_limited(policy_file: Path) -> None:
    stream = io.StringIO()
    server = PolicyServer(
        load_policy(policy_file),
        policy_path=policy_file,
        log=JsonLog(stream, monotonic=FakeClock(), burst=1),
    )
    for n in range(200):
        server.respond([{**WRONG_CN, "queue_id": f"Q{n}"}])
    assert [f"Q{n}" for n in range(200)] == [line["queue_id"] for line in _lines(stream)]


def test_a_flood_of_broken_connections_logs_a_bounded_number_of_lines(policy_file: Path) -> None:
    """Real sockets, the server in process: every connection sends a request without
    protocol_state; each is answered and closed; at most `burst` protocol-error lines
    are written, and the others are counted when the log detaches."""
    stream = io.StringIO()
    log = JsonLog(stream, burst=5, window=3600.0)
    server = PolicyServer(load_policy(policy_file), policy_path=policy_file, log=log)
    broken = wire({k: v for k, v in GOOD.items() if k != "protocol_state"})

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        log.attach(loop)
        listener = await loop.create_server(server.connection, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]

        async def one() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(broken * 3)
            data = await asyncio.wait_for(reader.read(), timeout=WAIT)  # until EOF
            writer.close()
            return data

        try:
            return await asyncio.gather(*(one() for _ in range(40)))
        finally:
            listener.close()
            await listener.wait_closed()
            log.detach()

    answers = asyncio.run(scenario())
    assert [f"action={TEMPFAIL}\n\n".encode()] * 40 == answers  # one answer, then closed
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert 5 == sum(e["event"] == "protocol-error" for e in events)
    assert [] == [e for e in events if e["event"] == "decision"]
    (suppressed,) = [e for e in events if e["event"] == "log-suppressed"]
    assert ("protocol-error", 35) == (suppressed["kind"], suppressed["suppressed"])


def test_a_log_reader_that_stops_reading_never_stalls_the_service(tmp_path: Path) -> None:
    """Standard error is a pipe nobody reads. Log writes must not block the event loop:
    lines that do not fit in the buffer are dropped and counted, and once the pipe is
    read again a log-dropped line gives the count. Lines stay whole."""
    read_fd, write_fd = os.pipe()
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    log = JsonLog(stream, buffer_bytes=16 * 1024)
    total = 2_000  # ~260 KiB: more than a pipe (64 KiB) and the buffer hold
    done = threading.Event()
    failure: list[BaseException] = []

    def scenario() -> None:
        async def run() -> None:
            log.attach(asyncio.get_running_loop())
            for n in range(total):
                log.emit("decision", n=n, padding="x" * 100)
                if n % 50 == 0:
                    await asyncio.sleep(0)  # a loop turn: the lines are handed over
            await asyncio.sleep(0)
            done.set()  # the event loop got here while nobody read the pipe
            for _ in range(400):  # then wait (bounded) until the reader catches up
                await asyncio.sleep(0.01)
                log.emit("decision", n=-1, padding="")
            log.detach()

        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    stalled = not done.wait(timeout=WAIT)
    data = bytearray()
    deadline = time.monotonic() + 2 * WAIT
    try:
        # Read everything (this also unblocks a service that did stall).
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.1)
            if ready:
                data += os.read(read_fd, 65536)
            elif not worker.is_alive():
                break
        worker.join(timeout=WAIT)
    finally:
        stream.close()
        os.close(read_fd)
    assert not stalled, "the event loop blocked on a pipe nobody read"
    assert [] == failure
    events = [json.loads(line) for line in data.decode().splitlines()]  # every line whole
    numbers = [e["n"] for e in events if e["event"] == "decision" and e["n"] >= 0]
    dropped = [e["dropped"] for e in events if e["event"] == "log-dropped"]
    assert dropped
    assert total == len(numbers) + sum(dropped)
    assert sorted(numbers) == numbers  # in order, gaps only where lines were dropped


# --- name-constrained CAs: what Postfix cannot check --------------------------------


def test_each_name_constrained_ca_is_warned_about_at_start_and_on_reload(tmp_path: Path) -> None:
    """Postfix does not apply a CA's DNS name constraints to the CN when the leaf has a
    DNS SAN; the service says so, once per constrained CA, naming it."""
    path = write_policy(tmp_path)
    woodgrove = CA("Woodgrove Issuing CA", permitted_dns=["woodgrove.com"])
    plain = CA("Fabrikam Partner CA")
    (tmp_path / "partners-ca.pem").write_text(plain.cert_pem() + woodgrove.cert_pem())
    service = PolicyService(path).start()
    try:
        (warning,) = [e for e in service.events if e["event"] == "name-constrained-ca"]
        assert "Woodgrove Issuing CA" in warning["ca"]
        assert {"permitted": ["'woodgrove.com'"]} == warning["constraints"]
        assert "smtpd_tls_CAfile" in warning["message"]
        assert "certificate-not-trusted" in warning["message"]
        assert str(path) == warning["policy"]
        service.signal(signal.SIGHUP)
        service.wait_event("reload")
        warnings = service.wait_event("name-constrained-ca", count=2)
        assert [warning["ca"]] * 2 == [e["ca"] for e in warnings]
    finally:
        assert 0 == service.stop()


def test_no_name_constrained_ca_no_warning(policy_file: Path) -> None:
    service = PolicyService(policy_file).start()
    assert 0 == service.stop()
    assert [] == [e for e in service.events if e["event"] == "name-constrained-ca"]


# --- the recorded policy digest -----------------------------------------------------------


def test_the_policy_digest_covers_the_crls_and_the_revocation_setting(tmp_path: Path) -> None:
    """Equal digests must mean equal decisions: another CRL set (one revoking a
    partner's leaf) or another ``[trust] revocation`` decides differently, so it digests
    differently; the same CRLs listed in another order digest alike."""
    from tlsconnector.adapters._recording import policy_digest

    ca = CA("Fabrikam Partner CA")
    leaf = ca.issue("server1.fabrikam.com")
    (tmp_path / "partners-ca.pem").write_text(ca.cert_pem())
    (tmp_path / "empty.crl").write_bytes(ca.crl().public_bytes(DER))
    (tmp_path / "revoking.crl").write_bytes(
        ca.crl([(leaf.cert, NOW - dt.timedelta(hours=1))]).public_bytes(DER)
    )
    other = CA("Woodgrove Partner CA")
    (tmp_path / "other.crl").write_bytes(other.crl().public_bytes(DER))

    def digest(crl_files: list[str], revocation: str = "soft") -> str:
        path = tmp_path / "policy.toml"
        path.write_text(
            POLICY_TEMPLATE.format(name="*.fabrikam.com").replace(
                'ca_file = "partners-ca.pem"',
                f'ca_file = "partners-ca.pem"\ncrl_files = {json.dumps(crl_files)}\n'
                f'revocation = "{revocation}"',
            )
        )
        return policy_digest(load_policy(path))

    base = digest(["empty.crl", "other.crl"])
    assert base == digest(["other.crl", "empty.crl"])  # content, not order or names
    assert base != digest(["revoking.crl", "other.crl"])
    assert base != digest(["empty.crl"])
    assert base != digest(["empty.crl", "other.crl"], revocation="hard")
    assert base != digest(["empty.crl", "other.crl"], revocation="off")
