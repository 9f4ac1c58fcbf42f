"""A throwaway Postfix for real-component tests, and tlsconnector services as subprocesses.

Postfix (Debian's package) runs from its own ``config_directory`` with its own queue,
data directory and log file under one temporary directory; ``/etc/postfix`` is never
touched. Without Postfix (or without root) the caller is skipped, except under
``CI=true`` where that is a failure. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

#: Seconds: the bound on every wait unless a caller says otherwise.
WAIT = 20.0
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MASTER_CF_TEMPLATES = (Path("/usr/share/postfix/master.cf.dist"), Path("/etc/postfix/master.cf"))


def tool(name: str) -> str:
    """The full path of a Postfix command, or skip (fail under CI=true) without it."""
    path = shutil.which(name, path=SBIN_PATH)
    problem = None
    if path is None:
        problem = f"Postfix is not installed ({name} not found; apt-get install postfix)"
    elif os.geteuid() != 0:
        problem = "starting Postfix needs root"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}, but CI=true requires the Postfix tests (.ci/run)")
        pytest.skip(problem)
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(
    *argv: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=True,
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=None if env is None else dict(env),
        input=input,
    )


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout: float = WAIT,
    every: float = 0.1,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``predicate`` until it holds, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout:g} s)\n{describe()}")
        time.sleep(every)


class ServiceProcess:
    """A ``tlsconnector serve ...`` subprocess (the real interpreter, so the PID kept is
    the service's) and the JSON log lines it writes on standard error."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tlsconnector", *argv],
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
            except ValueError:
                self._lines.put({"event": "not-json", "line": raw.decode(errors="replace")})
        self._lines.put(None)

    def drain(self) -> list[dict[str, Any]]:
        """Every event logged so far."""
        with contextlib.suppress(queue.Empty):
            while True:
                event = self._lines.get_nowait()
                if event is None:
                    break
                self.events.append(event)
        return self.events

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

    def start(self) -> ServiceProcess:
        listening = self.wait_for(lambda e: e["event"] == "listening")
        self.port = int(listening["address"].rsplit(":", 1)[1])
        return self

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


class PostfixInstance:
    """A configured Postfix under ``base`` (its config_directory is ``base/etc``)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.etc = base / "etc"
        self.log = base / "postfix.log"
        self._postconf = tool("postconf")
        self._postqueue = tool("postqueue")
        self._sendmail = tool("sendmail")

    def postconf(self, *argv: str, env: Mapping[str, str] | None = None) -> str:
        return run(self._postconf, "-c", str(self.etc), *argv, env=env).stdout

    def queue(self) -> list[dict[str, Any]]:
        """The queue as ``postqueue -j`` reports it: one object per message."""
        out = run(self._postqueue, "-c", str(self.etc), "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def queued(self, recipient: str) -> dict[str, Any] | None:
        """The queue entry of ``recipient``'s message (with its ``queue_name`` and that
        recipient's ``delay_reason``), or None when it is not queued."""
        for message in self.queue():
            for entry in message.get("recipients", []):
                if entry.get("address") == recipient:
                    return {**message, "recipient": entry}
        return None

    def flush(self) -> None:
        """``postqueue -f``: try every queued message again now."""
        run(self._postqueue, "-c", str(self.etc), "-f")

    def sendmail(self, sender: str, recipient: str, message: str) -> None:
        """Submit through Postfix's sendmail (pickup), as local software would."""
        run(
            self._sendmail,
            "-C",
            str(self.etc),
            "-f",
            sender,
            "--",
            recipient,
            input=message,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_lines_for(self, recipient: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if f"to=<{recipient}>" in line]

    def log_tail(self, lines: int = 25) -> str:
        return "".join(self.log_text().splitlines(True)[-lines:])


@contextlib.contextmanager
def postfix_instance(
    settings: Mapping[str, object],
    *,
    configure: Callable[[PostfixInstance], None] | None = None,
) -> Iterator[PostfixInstance]:
    """A running Postfix with the base settings below plus ``settings``, no SMTP
    listener, chroot off everywhere; ``configure`` runs after the base configuration
    and before the start (for example a ``postfix-config --shell`` script)."""
    postfix, postsuper = tool("postfix"), tool("postsuper")
    base = Path(tempfile.mkdtemp(prefix="tlsconnector-postfix-"))
    base.chmod(0o755)  # Postfix's daemons run as the postfix user and must reach it
    instance = PostfixInstance(base)
    etc = str(instance.etc)
    started = False
    try:
        instance.etc.mkdir()
        template = next(p for p in MASTER_CF_TEMPLATES if p.exists())
        shutil.copyfile(template, instance.etc / "master.cf")
        (instance.etc / "main.cf").write_text("")
        owner = pwd.getpwnam("postfix")
        for name in ("queue", "data"):
            (base / name).mkdir()
        os.chown(base / "data", owner.pw_uid, owner.pw_gid)
        everything: dict[str, object] = {
            "compatibility_level": "3.6",
            "queue_directory": base / "queue",
            "data_directory": base / "data",
            "maillog_file": instance.log,
            "maillog_file_prefixes": base,
            "myhostname": "mx.contoso.com",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            # Retry deferred mail quickly, so a test can watch it go out (or not).
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "smtp_tls_loglevel": "1",
            **settings,
        }
        instance.postconf("-e", *(f"{k}={v}" for k, v in everything.items()))
        instance.postconf("-MX", "smtp/inet")
        # Debian prepares the chroot only from its systemd unit, which does not run here.
        instance.postconf("-F", "*/*/chroot = n")
        if configure is not None:
            configure(instance)
        started = True
        try:
            run(postfix, "-c", etc, "start")
        except subprocess.CalledProcessError as exc:
            raise AssertionError(
                f"postfix start failed: {exc.stderr}\n{instance.log_tail()}"
            ) from None
        yield instance
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(
                    [postfix, "-c", etc, "stop"], capture_output=True, timeout=WAIT, check=False
                )
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(
                    [postsuper, "-c", etc, "-d", "ALL"],
                    capture_output=True,
                    timeout=WAIT,
                    check=False,
                )
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                status = subprocess.run(
                    [postfix, "-c", etc, "status"], capture_output=True, timeout=WAIT, check=False
                )
                if status.returncode != 0:
                    break
                time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
