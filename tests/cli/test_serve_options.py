"""The options that run ``serve postfix`` and ``serve postfix-outbound`` like a mail
tool: where they listen (Unix sockets, relative to the queue directory; host names),
the socket's mode and owner, the pid file, start-up errors in plain text, and the log
(text or JSON, to a file, to syslog). Subprocesses on 127.0.0.1 or a Unix socket in a
temporary directory; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tlsconnector.adapters.postfix._service import resolve_host, unix_path_of

from certmint import CA

WAIT = 15.0

INBOUND = """
[trust]
ca_file = "partners-ca.pem"
{more}

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
"""

OUTBOUND = """
[[outbound]]
name = "Fabrikam Bank outbound"
recipient_domains = ["fabrikam.com"]
use_mx_record = false
smart_hosts = ["127.0.0.1:2525"]
tls_settings = "encryption_only"
"""

WRONG_CN = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.7\n"
    b"sender=payments@fabrikam.com\nrecipient=finance@contoso.com\nqueue_id=\n"
    b"encryption_protocol=TLSv1.3\nccert_subject=mail.contoso-evil.com\n"
    b"ccert_fingerprint=3A\n\n"
)
MISMATCH = b'550 5.7.1 Connector "Fabrikam Bank inbound"'


def write_policy(directory: Path, more: str = "") -> Path:
    (directory / "partners-ca.pem").write_text(CA("Fabrikam Partner CA").cert_pem())
    path = directory / "policy.toml"
    path.write_text(INBOUND.format(more=more))
    return path


class Running:
    """A service subprocess; its standard error, line by line, as text."""

    def __init__(self, target: str, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tlsconnector", "serve", target, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, fragment: str) -> str:
        for line in self.lines:
            if fragment in line:
                return line
        deadline = time.monotonic() + WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"exited without {fragment!r}: {self.lines[-5:]}")
            self.lines.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} within {WAIT} s: {self.lines[-5:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT)
        finally:
            self._reader.join(timeout=WAIT)
            while True:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                if line is not None:
                    self.lines.append(line)


def exited(running: Running) -> tuple[int, list[str]]:
    """Status and lines of a service expected to exit by itself."""
    try:
        running.process.wait(timeout=WAIT)
    finally:
        status = running.stop()
    return status, running.lines


def ask_unix(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(data)
        answer = b""
        while not answer.endswith(b"\n\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


# --- start-up errors in plain text ----------------------------------------------------


@pytest.mark.parametrize("target", ["postfix", "postfix-outbound"])
def test_a_missing_policy_is_a_plain_text_start_up_error(tmp_path: Path, target: str) -> None:
    missing = tmp_path / "nowhere.toml"
    status, lines = exited(Running(target, "--policy", str(missing), "--listen", "127.0.0.1:0"))
    assert 2 == status
    assert lines[0].startswith(f"tlsconnector serve {target}: not starting: the policy ")
    assert str(missing) in lines[0]
    assert not any(line.startswith("{") for line in lines)  # no JSON log line


@pytest.mark.parametrize("target", ["postfix", "postfix-outbound"])
def test_an_invalid_policy_is_a_plain_text_start_up_error(tmp_path: Path, target: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[inbound]]\nname = "x"\nsender_domains = ["*x.com"]\n' + OUTBOUND)
    status, lines = exited(Running(target, "--policy", str(path), "--listen", "127.0.0.1:0"))
    assert 2 == status
    assert "is invalid" in lines[0]
    assert any("sender_domains" in line for line in lines[1:])
    assert all(line.startswith("  ") for line in lines[1:])
    assert not any(line.startswith("{") for line in lines)


def test_revocation_hard_is_refused_at_start(tmp_path: Path) -> None:
    """Postfix sends neither the certificate nor its serial: under hard every verified
    CN would be a temporary failure, so the service refuses the policy."""
    path = write_policy(tmp_path, 'revocation = "hard"')
    status, lines = exited(Running("postfix", "--policy", str(path), "--listen", "127.0.0.1:0"))
    assert 2 == status
    assert "cannot be served to Postfix" in lines[0]
    assert '[trust] revocation = "hard"' in lines[1]
    assert "serial" in lines[1]


def test_revocation_hard_is_refused_on_reload_and_the_old_policy_kept(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    sock = tmp_path / "policy.sock"
    running = Running("postfix", "--policy", str(path), "--listen", f"unix:{sock}")
    try:
        running.wait_line('"event":"listening"')
        path.write_text(INBOUND.format(more='revocation = "hard"'))
        running.process.send_signal(signal.SIGHUP)
        failed = json.loads(running.wait_line('"event":"reload-failed"'))
        assert "revocation" in failed["message"]
        assert "keeping the previous policy" in failed["message"]
        assert ask_unix(sock, WRONG_CN).startswith(b"action=" + MISMATCH)
    finally:
        assert 0 == running.stop()


# --- where to listen ---------------------------------------------------------------------


def test_a_relative_unix_path_is_under_the_queue_directory_with_mode_and_owner(
    tmp_path: Path,
) -> None:
    path = write_policy(tmp_path)
    queue_dir = tmp_path / "spool"
    (queue_dir / "private").mkdir(parents=True)
    sock = queue_dir / "private" / "policy"
    owner = f"{os.getuid()}:{os.getgid()}"
    running = Running(
        "postfix",
        "--policy",
        str(path),
        "--listen",
        "unix:private/policy",
        "--queue-directory",
        str(queue_dir),
        "--socket-mode",
        "0660",
        "--socket-owner",
        owner,
    )
    try:
        listening = json.loads(running.wait_line('"event":"listening"'))
        assert f"unix:{sock}" == listening["address"]
        info = os.stat(sock)
        assert stat.S_ISSOCK(info.st_mode)
        assert 0o660 == stat.S_IMODE(info.st_mode)
        assert (os.getuid(), os.getgid()) == (info.st_uid, info.st_gid)
        assert ask_unix(sock, WRONG_CN).startswith(b"action=" + MISMATCH)
    finally:
        assert 0 == running.stop()
    assert not sock.exists()  # removed at exit


def test_the_outbound_service_takes_a_relative_unix_path_too(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(OUTBOUND)
    running = Running(
        "postfix-outbound",
        "--policy",
        str(path),
        "--listen",
        "unix:tlsconnector/socketmap",
        "--queue-directory",
        str(tmp_path),
        "--socket-mode",
        "0600",
    )
    (tmp_path / "tlsconnector").mkdir()
    try:
        running.wait_line('"event":"listening"')
    except AssertionError:
        running.stop()
        raise
    try:
        sock = tmp_path / "tlsconnector" / "socketmap"
        assert 0o600 == stat.S_IMODE(os.stat(sock).st_mode)
    finally:
        assert 0 == running.stop()


def test_relative_paths_use_postconf_unless_a_queue_directory_is_given() -> None:
    asked: list[str] = []

    def postfix() -> str:
        asked.append("postconf")
        return "/var/spool/postfix"

    assert "/var/spool/postfix/private/policy" == unix_path_of(
        "unix:private/policy", queue_directory=None, ask_postfix=postfix
    )
    assert ["postconf"] == asked
    assert "/q/private/policy" == unix_path_of(
        "unix:private/policy", queue_directory="/q", ask_postfix=postfix
    )
    assert "/run/x.sock" == unix_path_of("unix:/run/x.sock", queue_directory="/q")
    assert ["postconf"] == asked
    with pytest.raises(ValueError, match=r"no '\.\.'"):
        unix_path_of("unix:../etc/x", queue_directory="/q")
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        unix_path_of("unix:" + "a" * 120, queue_directory="/q")


def test_a_host_name_is_resolved_once_and_must_name_only_loopback_addresses(
    tmp_path: Path,
) -> None:
    path = write_policy(tmp_path)
    running = Running("postfix", "--policy", str(path), "--listen", "localhost:0")
    try:
        listening = json.loads(running.wait_line('"event":"listening"'))
        host = listening["address"].rsplit(":", 1)[0]
        assert host in {"127.0.0.1", "[::1]"}
    finally:
        assert 0 == running.stop()

    def public(name: str, timeout: float) -> list[str]:
        return ["127.0.0.1", "192.0.2.10"]

    with pytest.raises(ValueError, match=r"192\.0\.2\.10.*not a loopback address"):
        resolve_host("mail.example:10040", "mail.example", lookup=public)
    assert "127.0.0.1" == resolve_host("x:1", "x", lookup=lambda n, t: ["::1", "127.0.0.1"])

    def failing(name: str, timeout: float) -> list[str]:
        raise TimeoutError("resolving the name timed out after 5 s")

    with pytest.raises(ValueError, match="cannot resolve 'x'"):
        resolve_host("x:1", "x", lookup=failing)


@pytest.mark.parametrize("target", ["postfix", "postfix-outbound"])
@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("localhost:99999", "--listen 'localhost:99999': PORT must be a number from 0 to 65535"),
        ("localhost:10O40", "--listen 'localhost:10O40': PORT must be a number from 0 to 65535"),
        ("127.0.0.1:99999", "--listen '127.0.0.1:99999': PORT must be a number from 0 to 65535"),
    ],
)
def test_a_listen_error_shows_the_text_as_given_not_the_resolved_address(
    tmp_path: Path, target: str, listen: str, message: str
) -> None:
    path = write_policy(tmp_path)
    status, lines = exited(Running(target, "--policy", str(path), "--listen", listen))
    assert (2, [f"tlsconnector serve {target}: {message}"]) == (status, lines)


def test_a_host_name_resolving_to_an_ipv6_address_only_is_listened_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No name on this machine resolves to ::1 alone: the lookup is replaced, the
    options are read as the command reads them."""
    from tlsconnector.adapters.postfix import _service
    from tlsconnector.cli import serve
    from tlsconnector.cli.parser import build_parser

    looked_up: list[tuple[str, str]] = []

    def v6_only(text: str, host: str) -> str:
        looked_up.append((text, host))
        return "::1"

    monkeypatch.setattr(_service, "resolve_host", v6_only)
    argv = ["serve", "postfix", "--policy", "p.toml", "--listen", "ip6-only.test:10040"]
    running = serve._running_options(build_parser("serve").parse_args(argv), "serve")
    assert running is not None
    fields, _ = running
    assert ("::1", 10040) == (fields["host"], fields["port"])
    assert [("ip6-only.test:10040", "ip6-only.test")] == looked_up


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--socket-mode", "0660"], "--socket-mode needs --listen unix:PATH"),
        (["--socket-mode", "rw"], "--socket-mode 'rw': expected octal"),
        (["--socket-owner", "no-such-user-here"], "no user 'no-such-user-here'"),
        (["--queue-directory", "/q"], "--queue-directory needs --listen unix:PATH"),
        (["--log", "syslog", "--log-file", "x"], "exclude each other"),
        (["--syslog-socket", "/x"], "--syslog-socket needs --log syslog"),
    ],
)
def test_bad_running_options_are_usage_errors(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    path = write_policy(tmp_path)
    status, lines = exited(
        Running("postfix", "--policy", str(path), "--listen", "127.0.0.1:0", *argv)
    )
    assert 2 == status
    assert any(message in line for line in lines), lines


# --- the pid file ------------------------------------------------------------------------


def test_the_pidfile_is_written_once_listening_removed_at_exit_and_a_live_one_refused(
    tmp_path: Path,
) -> None:
    path = write_policy(tmp_path)
    pidfile = tmp_path / "serve.pid"
    pidfile.write_text("999999999\n")  # stale: no such process
    running = Running(
        "postfix", "--policy", str(path), "--listen", "127.0.0.1:0", "--pidfile", str(pidfile)
    )
    try:
        running.wait_line('"event":"listening"')
        assert f"{running.process.pid}\n" == pidfile.read_text()
        second = Running(
            "postfix", "--policy", str(path), "--listen", "127.0.0.1:0", "--pidfile", str(pidfile)
        )
        status, lines = exited(second)
        assert 2 == status
        assert f"names process {running.process.pid}, which is running" in lines[0]
        assert f"{running.process.pid}\n" == pidfile.read_text()  # untouched
    finally:
        assert 0 == running.stop()
    assert not pidfile.exists()


def test_a_pidfile_with_garbage_is_refused(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    pidfile = tmp_path / "serve.pid"
    pidfile.write_text("hello\n")
    status, lines = exited(
        Running(
            "postfix", "--policy", str(path), "--listen", "127.0.0.1:0", "--pidfile", str(pidfile)
        )
    )
    assert 2 == status
    assert "holds no process id" in lines[0]


# --- the log -----------------------------------------------------------------------------


def test_log_format_text_is_one_escaped_key_value_line_per_event(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    sock = tmp_path / "policy.sock"
    running = Running(
        "postfix", "--policy", str(path), "--listen", f"unix:{sock}", "--log-format", "text"
    )
    try:
        listening = running.wait_line(" event=listening ")
        assert f" address=unix:{sock} " in listening
        hostile = WRONG_CN.replace(b"sender=payments@", 'sender=a\u00e9\\" event=x@'.encode())
        ask_unix(sock, hostile)
        decision = running.wait_line(" event=decision ")
    finally:
        assert 0 == running.stop()
    assert ' sender="a\\xe9\\\\\\" event=x@fabrikam.com" ' in decision
    assert " action=tempfail " in decision or " action=reject " in decision
    # The peer's text stays inside its quotes: no second field, no second line.
    assert 1 == decision.replace(' sender="a\\xe9\\\\\\" event=x@fabrikam.com"', "").count(
        " event="
    )
    assert not any(line.startswith("{") for line in running.lines)


def _wait_in_file(path: Path, fragment: str, running: Running, count: int = 1) -> None:
    deadline = time.monotonic() + WAIT
    while (path.read_text() if path.exists() else "").count(fragment) < count:
        assert time.monotonic() < deadline, f"{fragment!r} not {count} times in {path}"
        assert running.process.poll() is None, running.lines
        time.sleep(0.05)


def _logging_to_a_file(tmp_path: Path, target: str, *extra: str) -> tuple[Running, Path]:
    """``serve TARGET`` on 127.0.0.1 with ``--log-file``, once its listening line is in
    the file: the running service and the log file's path."""
    if target == "postfix":
        path = write_policy(tmp_path)
    else:
        path = tmp_path / "outbound.toml"
        path.write_text(OUTBOUND)
    log = tmp_path / "serve.log"
    running = Running(
        target, *extra, "--policy", str(path), "--listen", "127.0.0.1:0", "--log-file", str(log)
    )
    try:
        _wait_in_file(log, '"event":"listening"', running)
    except BaseException:
        running.stop()
        raise
    return running, log


def test_log_file_gets_the_lines_and_standard_error_none(tmp_path: Path) -> None:
    running, log = _logging_to_a_file(tmp_path, "postfix-outbound")
    assert 0 == running.stop()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "listening" in events
    assert "stopped" == events[-1]
    assert 0 == stat.S_IMODE(log.stat().st_mode) & 0o137  # at most 0640
    assert [] == running.lines


@pytest.mark.parametrize(
    "service",
    [["postfix-outbound"], ["postfix"], ["postfix", "--workers", "2"]],
    ids=["outbound", "inbound", "inbound-workers"],
)
def test_sighup_opens_the_log_file_again_after_logrotate_moved_it(
    tmp_path: Path, service: list[str]
) -> None:
    """logrotate's create mode: the file is renamed, then SIGHUP; the service writes
    on in a new file at the same path (the workers and their supervisor alike)."""
    running, log = _logging_to_a_file(tmp_path, *service)
    try:
        rotated = tmp_path / "serve.log.1"
        log.rename(rotated)
        running.process.send_signal(signal.SIGHUP)
        reloads = 2 if "--workers" in service else 1
        _wait_in_file(log, '"event":"reload"', running, reloads)
    finally:
        assert 0 == running.stop()
    old = [json.loads(line)["event"] for line in rotated.read_text().splitlines()]
    new = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "listening" in old
    assert "reload" not in old
    assert reloads == new.count("reload")
    assert "stopped" == new[-1]  # the supervisor's last line too
    assert 0 == stat.S_IMODE(log.stat().st_mode) & 0o137  # at most 0640
    assert [] == running.lines


def test_a_log_file_that_cannot_be_opened_again_keeps_the_old_one(tmp_path: Path) -> None:
    running, log = _logging_to_a_file(tmp_path, "postfix-outbound")
    try:
        rotated = tmp_path / "serve.log.1"
        log.rename(rotated)
        log.mkdir()  # the path is now a directory: it cannot be opened for writing
        running.process.send_signal(signal.SIGHUP)
        _wait_in_file(rotated, '"event":"reload"', running)
    finally:
        assert 0 == running.stop()
    lines = [json.loads(line) for line in rotated.read_text().splitlines()]
    errors = [line["message"] for line in lines if line["event"] == "error"]
    assert any("cannot open it again" in message for message in errors)
    assert "stopped" == lines[-1]["event"]


def test_log_syslog_sends_mail_facility_datagrams_to_the_socket(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    syslog = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(syslog))
        receiver.settimeout(WAIT)
        running = Running(
            "postfix",
            "--policy",
            str(path),
            "--listen",
            "127.0.0.1:0",
            "--log",
            "syslog",
            "--syslog-socket",
            str(syslog),
        )
        try:
            received = []
            while not any(b"event=listening" in d for d in received):
                received.append(receiver.recv(65536))
        finally:
            assert 0 == running.stop()
        while not any(b"event=stopped" in d for d in received):
            received.append(receiver.recv(65536))
    pid = running.process.pid
    listening = next(d for d in received if b"event=listening" in d)
    # facility mail (2), severity info (6): <22>; ident and pid as syslog(3) writes them
    assert listening.startswith(f"<22>tlsconnector[{pid}]: ".encode())
    assert [] == running.lines  # nothing on standard error


def test_log_syslog_without_a_syslog_daemon_is_a_usage_error(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    status, lines = exited(
        Running(
            "postfix",
            "--policy",
            str(path),
            "--log",
            "syslog",
            "--syslog-socket",
            str(tmp_path / "none.sock"),
        )
    )
    assert 2 == status
    assert "cannot reach the syslog socket" in lines[0]


# --- --help says what the options do ---------------------------------------------------


def serve_help(target: str) -> tuple[str, str]:
    """``serve TARGET --help``: the description and the ``--log-file`` entry, each with
    its line breaks and indentation made single spaces."""
    result = subprocess.run(
        [sys.executable, "-m", "tlsconnector", "serve", target, "--help"],
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert (0, "") == (result.returncode, result.stderr)
    paragraphs = result.stdout.split("\n\n")
    description = " ".join(paragraphs[1].split())
    entry = result.stdout.split("\n  --log-file FILE", 1)[1].split("\n  --", 1)[0]
    return description, " ".join(entry.split())


@pytest.mark.parametrize("target", ["postfix", "postfix-outbound"])
def test_help_describes_the_log_options_as_they_work(target: str) -> None:
    """--log-file is rotated by SIGHUP (logrotate's create mode, as the SIGHUP tests
    above do), not copytruncate; the log is not only JSON on standard error."""
    description, log_file = serve_help(target)
    assert "SIGHUP" in log_file
    assert "copytruncate" not in log_file
    assert "create mode" in log_file
    assert "One JSON log line" not in description
    for option in ("--log-format text", "--log-file FILE", "--log syslog"):
        assert option in description, option
    assert "SIGHUP opens --log-file again" in description


def test_a_record_path_in_a_missing_directory_is_warned_at_start(tmp_path: Path) -> None:
    """A mistyped --record directory is said in plain text at once; the service still
    starts and answers (recording never stops it: record-error in the log)."""
    path = write_policy(tmp_path)
    record = tmp_path / "no-such-dir" / "sessions.jsonl"
    running = Running(
        "postfix", "--policy", str(path), "--listen", "127.0.0.1:0", "--record", str(record)
    )
    try:
        warning = running.wait_line("warning: --record")
        running.wait_line('"event":"listening"')
    finally:
        assert 0 == running.stop()
    assert warning == (
        f"tlsconnector serve postfix: warning: --record '{record}': the directory does not "
        "exist; nothing is recorded until it does (record-error in the log)"
    )
    ok = Running(
        "postfix",
        "--policy",
        str(path),
        "--listen",
        "127.0.0.1:0",
        "--record",
        str(tmp_path / "sessions.jsonl"),
    )
    try:
        ok.wait_line('"event":"listening"')
    finally:
        assert 0 == ok.stop()
    assert not [line for line in ok.lines if "warning" in line]


def test_a_failing_postconf_is_reported_with_its_own_reason() -> None:
    """Without --queue-directory a relative unix: path asks postconf; when postconf
    fails, the message is postconf's reason (escaped), not Python's exit-status text."""
    from tlsconnector.adapters.postfix._service import postfix_queue_directory

    def failing(argv: list[str]) -> str:
        raise subprocess.CalledProcessError(
            1,
            argv,
            output="",
            stderr="postconf: warning: x\npostconf: fatal: open /etc/postfix/main.cf: "
            "No such file or directory\x1b[2J\n",
        )

    with pytest.raises(ValueError, match="cannot ask postconf") as caught:
        postfix_queue_directory(failing)
    assert str(caught.value) == (
        "cannot ask postconf for queue_directory: postconf: fatal: open "
        "/etc/postfix/main.cf: No such file or directory\\x1b[2J; give --queue-directory"
    )
    assert "/var/spool/postfix" == postfix_queue_directory(lambda argv: "/var/spool/postfix\n")
