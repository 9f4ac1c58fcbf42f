"""`tlsconnector probe` against real SMTP servers on 127.0.0.1 (docs/probe.md).

Each server is an aiosmtpd server started in-process on port 0, presenting a chain
minted for the test, or a tiny scripted responder for the odd cases. No Postfix, no
DNS, nothing outside the loopback interface; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tlsconnector import load_policy
from tlsconnector._model import SmartHost
from tlsconnector.adapters._probe import (
    MAX_HOST_ADDRESSES,
    MAX_HOSTS,
    DeadlinePassed,
    ProbeError,
    resolve_mx,
    run_probe,
)
from tlsconnector.adapters.smtp import MxLookupFailed
from tlsconnector.cli import main

from certmint import CA, Leaf, self_signed
from loopthread import LoopThread

AT = "2026-11-26T12:00:00Z"
ROOT = CA("Probe Test Root")
INTERMEDIATE = ROOT.intermediate("Probe Test Issuing CA")
GOOD = INTERMEDIATE.issue("server1.fabrikam.com")
WRONG_CN = INTERMEDIATE.issue("mail.example.org")
SELF_SIGNED = self_signed("server1.fabrikam.com")
WAIT = 10.0  # upper bound on any wait for a test server

POLICY = """
[trust]
ca_file = "ca.pem"

[[outbound]]
name = "Fabrikam Bank outbound"
recipient_domains = ["fabrikam.com"]
tls_settings = "domain_validation"
tls_domain = "*.fabrikam.com"
"""


class Recorder:
    """The server's delivery handler: records every MAIL FROM and message it gets."""

    def __init__(self) -> None:
        self.senders: list[str] = []
        self.messages: list[Envelope] = []

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.senders.append(address)
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def tls_context(leaf: Leaf, tmp_path: Path) -> ssl.SSLContext:
    """A server context presenting the leaf and its intermediates."""
    chain = tmp_path / "server-chain.pem"
    key = tmp_path / "server-key.pem"
    chain.write_text(leaf.chain_pem())
    key.write_text(leaf.key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


@contextlib.contextmanager
def smtp_server(
    tmp_path: Path,
    leaf: Leaf | None,
    recorder: Recorder | None = None,
    context: ssl.SSLContext | None = None,
) -> Iterator[int]:
    """An aiosmtpd server; STARTTLS with ``leaf`` when given, none otherwise."""
    if context is None and leaf is not None:
        context = tls_context(leaf, tmp_path)
    handler = recorder or Recorder()

    def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
        return SMTP(handler, hostname="mx.test.example", tls_context=context, loop=loop)

    server = LoopThread(factory)
    try:
        yield server.port
    finally:
        server.stop()


@contextlib.contextmanager
def scripted_server(replies: dict[str, str], greeting: str | None) -> Iterator[int]:
    """A tiny responder: sends ``greeting`` (or nothing), then answers each command
    (its first word) from ``replies``; serves one connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(WAIT)
                if greeting is None:
                    connection.recv(1)  # stay silent until the client gives up
                    return
                connection.sendall(greeting.encode() + b"\r\n")
                stream = connection.makefile("rb")
                for _ in range(20):
                    line = stream.readline(1000)
                    if not line:
                        return
                    command = (
                        line.split()[0].decode("ascii", "replace").upper() if line.split() else ""
                    )
                    connection.sendall(replies.get(command, "500 unknown").encode() + b"\r\n")
                    if command == "QUIT":
                        return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(WAIT)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def probe(policy: Path, *args: str) -> list[str]:
    return ["probe", "--policy", str(policy), "--at", AT, "--timeout", "5", *args]


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    status = main([*argv, "--json"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert 1 == len(lines), out
    return status, json.loads(lines[0])


def codes(result: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in result["reasons"]]


# -- verdicts ------------------------------------------------------------------------


def test_good_chain_with_intermediate_delivers_under_domain_validation(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server presents leaf + intermediate, CN server1.fabrikam.com: deliver, exit 0,
    and the probe shows both certificates it collected."""
    with smtp_server(tmp_path, GOOD) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 0 == status
    assert "deliver" == result["action"]
    assert "Fabrikam Bank outbound" == result["connector"]
    assert "tlsconnector" == result["chain_verified_by"]
    assert f"127.0.0.1:{port}" == result["peer_host"]
    assert {"mode": "domain_validation", "domain": "*.fabrikam.com"} == result["tls"]
    probed = result["probe"]
    assert ("127.0.0.1", port, "offered") == (probed["host"], probed["port"], probed["starttls"])
    assert probed["greeting"].startswith("220 ")
    assert ["CN=server1.fabrikam.com", "CN=Probe Test Issuing CA"] == [
        cert["subject"] for cert in probed["chain"]
    ]
    assert GOOD.chain_pem() == probed["chain_pem"]
    assert [] == result["unreachable"]


def test_wrong_cn_defers_with_certificate_host_mismatch(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trusted chain whose CN is not under *.fabrikam.com: defer, exit 3."""
    with smtp_server(tmp_path, WRONG_CN) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 3 == status
    assert "defer" == result["action"]
    assert ["certificate-host-mismatch", "connector-selected"] == codes(result)
    assert "4.7.5" == result["reasons"][0]["enhanced"]


def test_self_signed_certificate_defers_as_not_trusted(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe accepts the self-signed certificate in the handshake (it never verifies
    there), then the policy judges it: certificate-not-trusted."""
    with smtp_server(tmp_path, SELF_SIGNED) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 3 == status
    assert "defer" == result["action"]
    assert "certificate-not-trusted" == codes(result)[0]
    assert 1 == len(result["probe"]["chain"])


def test_server_without_starttls_defers_as_starttls_not_supported(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No STARTTLS in the EHLO reply: the attempt is `tls: null`."""
    with smtp_server(tmp_path, None) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 3 == status
    assert ["starttls-not-supported", "connector-selected"] == codes(result)
    assert "4.7.4" == result["reasons"][0]["enhanced"]
    assert "not-offered" == result["probe"]["starttls"]
    assert result["probe"]["tls"] is None
    assert [] == result["probe"]["chain"]


def test_opportunistic_default_route_delivers_without_starttls(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recipient domain no connector serves: MX delivery, opportunistic TLS, so a
    plaintext-only server still gets the mail."""
    with smtp_server(tmp_path, None) as port:
        status, result = run_json(
            probe(policy, "--recipient", "someone@example.org", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 0 == status
    assert ("deliver", None) == (result["action"], result["connector"])
    assert ["no-connector"] == codes(result)


def test_starttls_refused_by_the_server_defers(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """STARTTLS offered in EHLO but answered 454 (RFC 3207): no TLS on this attempt."""
    replies = {
        "EHLO": "250-mx.test.example\r\n250 STARTTLS",
        "STARTTLS": "454 4.7.0 TLS not available due to temporary reason",
        "QUIT": "221 bye",
    }
    with scripted_server(replies, "220 mx.test.example ESMTP") as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 3 == status
    assert "starttls-not-supported" == codes(result)[0]
    assert "refused" == result["probe"]["starttls"]
    assert any("454" in note for note in result["probe"]["notes"])


def test_host_name_is_sent_as_sni(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host given by name is named in the handshake (SNI, RFC 6066), as MTAs do, so a
    server with several certificates presents the one for that name."""
    seen: list[str | None] = []
    context = tls_context(GOOD, tmp_path)
    context.sni_callback = lambda connection, name, ctx: seen.append(name)  # type: ignore[assignment,misc,func-returns-value]
    with smtp_server(tmp_path, None, context=context) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"localhost:{port}"),
            capsys,
        )
    assert 0 == status
    assert ["localhost"] == seen
    assert f"localhost:{port}" == result["peer_host"]


def test_failed_tls_handshake_is_a_probe_error(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server says 220 to STARTTLS but does not speak TLS: no verdict, exit 1."""
    replies = {"EHLO": "250-mx.test.example\r\n250 STARTTLS", "STARTTLS": "220 go ahead"}
    with scripted_server(replies, "220 mx.test.example ESMTP") as port:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    err = capsys.readouterr().err
    assert 1 == status
    assert "could not probe (tls-handshake)" in err
    assert "the TLS handshake failed" in err


def test_probe_sends_no_mail(policy: Path, tmp_path: Path) -> None:
    """EHLO, STARTTLS, EHLO, QUIT: the server never sees MAIL FROM or a message."""
    recorder = Recorder()
    with smtp_server(tmp_path, GOOD, recorder) as port:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    assert 0 == status
    assert ([], []) == (recorder.senders, recorder.messages)


def test_human_output_names_the_host_the_chain_and_the_verdict(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with smtp_server(tmp_path, WRONG_CN) as port:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    out = capsys.readouterr().out
    assert 3 == status
    assert f"probed 127.0.0.1 port {port} (address 127.0.0.1)" in out
    assert "#1 CN=mail.example.org" in out
    assert "finance@fabrikam.com: DEFER by connector 'Fabrikam Bank outbound'" in out
    assert "- certificate-host-mismatch [4.7.5]" in out


# -- routes --------------------------------------------------------------------------


def test_smart_host_route_is_probed_without_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --host a smart-host route connects to the connector's smart hosts."""
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    with smtp_server(tmp_path, GOOD) as port:
        path = tmp_path / "policy.toml"
        path.write_text(
            '[trust]\nca_file = "ca.pem"\n\n[[outbound]]\nname = "Woodgrove relay"\n'
            'recipient_domains = ["woodgrove.example"]\nuse_mx_record = false\n'
            f'smart_hosts = ["127.0.0.1:{port}"]\ntls_settings = "certificate_validation"\n'
        )
        status, result = run_json(probe(path, "--recipient", "ap@woodgrove.example"), capsys)
    assert 0 == status
    assert ("deliver", "Woodgrove relay") == (result["action"], result["connector"])
    assert {"kind": "smart_host", "hosts": [f"127.0.0.1:{port}"]} == result["route"]


def test_unreachable_smart_host_is_skipped_for_the_next_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like an MTA, a host that refuses the connection is skipped; the skip is reported."""
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    closed = free_port()
    with smtp_server(tmp_path, GOOD) as port:
        path = tmp_path / "policy.toml"
        path.write_text(
            '[trust]\nca_file = "ca.pem"\n\n[[outbound]]\nname = "Woodgrove relay"\n'
            'recipient_domains = ["woodgrove.example"]\nuse_mx_record = false\n'
            f'smart_hosts = ["127.0.0.1:{closed}", "127.0.0.1:{port}"]\n'
            'tls_settings = "certificate_validation"\n'
        )
        status, result = run_json(probe(path, "--recipient", "ap@woodgrove.example"), capsys)
    assert 0 == status
    assert port == result["probe"]["port"]
    assert [closed] == [u["port"] for u in result["unreachable"]]


def test_unavailable_named_connector_defers_without_connecting(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy defers before any connection: nothing to probe, exit 3."""
    status, result = run_json(
        probe(policy, "--recipient", "finance@fabrikam.com", "--connector", "No such"),
        capsys,
    )
    assert 3 == status
    assert ["connector-unavailable"] == codes(result)
    assert result["probe"] is None


def test_mx_route_without_dnspython_names_the_extra(
    policy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --host an MX route needs dnspython; its absence is a clear error, exit 1."""
    monkeypatch.setitem(sys.modules, "dns.resolver", None)  # import fails, as if absent
    status = main(probe(policy, "--recipient", "finance@fabrikam.com"))
    err = capsys.readouterr().err
    assert 1 == status
    assert "dnspython" in err
    assert "tlsconnector[probe]" in err


def test_mx_hosts_are_tried_by_preference_then_name() -> None:
    """RFC 5321 section 5.1: lowest preference first; ties ordered by name here."""
    records = [(20, "mx3.fabrikam.com."), (10, "MX2.fabrikam.com."), (10, "mx1.fabrikam.com.")]
    hosts = resolve_mx("fabrikam.com", lookup=lambda domain, timeout: records)
    assert ["mx1.fabrikam.com", "mx2.fabrikam.com", "mx3.fabrikam.com"] == hosts


def test_domain_without_mx_uses_the_implicit_mx() -> None:
    """RFC 5321 section 5.1: no MX record, the domain itself is the host."""
    assert ["fabrikam.com"] == resolve_mx("fabrikam.com", lookup=lambda domain, timeout: [])


def test_mx_host_names_are_canonical_and_unusable_ones_skipped() -> None:
    """Names compare in canonical form (lower case, no trailing dot), once each; a name
    that is not a host name (here a label with a space, as dnspython prints it) is
    skipped."""
    records = [
        (10, "MX1.Fabrikam.COM."),
        (20, "mx\\032two.fabrikam.com."),
        (30, "mx1.fabrikam.com"),
    ]
    assert ["mx1.fabrikam.com"] == resolve_mx("fabrikam.com", lookup=lambda d, t: records)


def test_null_mx_is_an_error() -> None:
    """RFC 7505: a single MX of "." says the domain accepts no mail."""
    with pytest.raises(ProbeError, match="null MX") as caught:
        resolve_mx("fabrikam.com", lookup=lambda domain, timeout: [(0, ".")])
    assert ("resolve", "fabrikam.com") == (caught.value.stage, caught.value.target)


# -- could not probe -----------------------------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 with no listener (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port: int = listener.getsockname()[1]
    return port


def test_unreachable_port_is_a_clear_error_with_exit_1(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens there: no verdict, the reason on standard error, and with --json
    an error object (no action) on standard output."""
    port = free_port()
    argv = probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
    status = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert 1 == status
    assert {
        "error": {
            "stage": "connect",
            "target": f"127.0.0.1:{port}",
            "message": "cannot connect: Connection refused",
        }
    } == json.loads(captured.out)
    assert (
        f"tlsconnector probe: could not probe (connect): 127.0.0.1:{port}: "
        "cannot connect: Connection refused\n"
    ) == captured.err


def test_silent_server_times_out(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server that never greets: the greeting wait ends at --timeout, exit 1."""
    with scripted_server({}, None) as port:
        status = main(
            [
                *probe(policy, "--recipient", "finance@fabrikam.com"),
                "--host",
                f"127.0.0.1:{port}",
                "--timeout",
                "0.3",
            ]
        )
    assert 1 == status
    assert "could not probe (greeting)" in capsys.readouterr().err


def test_refusing_greeting_is_an_error(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with scripted_server({"QUIT": "221 bye"}, "554 5.7.1 no service for you") as port:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    err = capsys.readouterr().err
    assert 1 == status
    assert "the server refused the session: 554 5.7.1 no service for you" in err


@pytest.mark.parametrize(
    ("greeting", "message"),
    [
        ("220 " + "x" * 5000, "a reply line longer than 4096 bytes"),
        ("SSH-2.0-OpenSSH_9.2", "not an SMTP reply: 'SSH-2.0-OpenSSH_9.2'"),
        ("220-hello\r\n" * 150 + "220 done", "a reply of more than 100 lines"),
        ("220 \x1b[31mred\x00", "(ehlo): 127.0.0.1:{port}: the server refused EHLO and HELO: 500"),
        ("554 \x1b[31mred\x00", "refused the session: 554 \\x1b[31mred\\x00"),
    ],
)
def test_hostile_server_replies_end_the_probe_cleanly(
    policy: Path, greeting: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Section 8: no reply, however odd, crashes the probe or yields a verdict."""
    with scripted_server({"QUIT": "221 bye"}, greeting) as port:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    err = capsys.readouterr().err
    assert 1 == status
    assert message.format(port=port) in err
    assert "\x1b" not in err
    assert "\x00" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--timeout", "0"], "--timeout must be more than 0"),
        (["--deadline", "0"], "--deadline must be more than 0 and at most 600, not 0.0"),
        (["--deadline", "601"], "--deadline must be more than 0 and at most 600, not 601.0"),
        (["--deadline", "nan"], "--deadline must be more than 0 and at most 600, not nan"),
        (["--host", "10.0.0.0/8"], "not a route"),
        (["--at", "2026-11-26T12:00:00"], "needs a UTC offset"),
        (["--helo", "bad name"], "--helo"),
    ],
)
def test_usage_errors_exit_2(
    policy: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["probe", "--policy", str(policy), "--recipient", "a@fabrikam.com", *flags])
    assert 2 == status
    assert message in capsys.readouterr().err


def test_bad_recipient_is_a_usage_error(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(probe(policy, "--recipient", "no-domain", "--host", "127.0.0.1:1"))
    assert 2 == status
    assert "recipient" in capsys.readouterr().err


def test_importing_the_probe_imports_no_optional_dependency() -> None:
    """The probe's optional dependencies are imported only when a probe runs."""
    code = (
        "import sys, tlsconnector, tlsconnector.cli.probe, tlsconnector.adapters._probe; "
        "print(sorted(m for m in ('OpenSSL', 'dns', 'aiosmtpd') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == result.stdout.strip()


def test_policy_fixture_is_valid(policy: Path) -> None:
    """The fixture policy itself loads (so a failure above is about the probe)."""
    assert ["Fabrikam Bank outbound"] == [c.name for c in load_policy(policy).outbound]


# -- one deadline for the whole probe; bounds on hosts, addresses, replies -----------


def bounded(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread joined with a timeout, so a probe that does not stop
    fails the test instead of hanging it; re-raise what it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed back to the test
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(3 * WAIT)
    assert not thread.is_alive(), "the probe did not stop"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def read_line(connection: socket.socket | ssl.SSLSocket) -> bytes:
    line = b""
    while not line.endswith(b"\n") and len(line) < 1000:
        byte = connection.recv(1)
        if not byte:
            break
        line += byte
    return line


#: What a stepping server answers, step by step (TLS marks the handshake).
TLS = "<tls>"
STEPS = ["220 mx.test.example ESMTP", "250-mx.test.example\r\n250 STARTTLS", "220 go ahead", TLS]
STEPS += ["250 mx.test.example", "221 bye"]


@contextlib.contextmanager
def stepping_server(
    context: ssl.SSLContext, delays: Sequence[float | None], steps: Sequence[str] = STEPS
) -> Iterator[int]:
    """A server that answers each step of the dialogue (greeting, EHLO, STARTTLS, the
    handshake, EHLO, QUIT) with ``steps`` (by default correctly), each only after
    ``delays[i]`` seconds (None: it stays silent until the client leaves); serves one
    connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            connection: socket.socket | ssl.SSLSocket
            connection, _ = listener.accept()
            connection.settimeout(WAIT)
            for step, (answer, delay) in enumerate(zip(steps, delays, strict=True)):
                if step and answer != TLS:
                    read_line(connection)  # the command this step answers
                if delay is None:
                    connection.recv(1)  # silent until the client gives up
                    break
                time.sleep(delay)
                if answer == TLS:
                    connection = context.wrap_socket(connection, server_side=True)
                else:
                    connection.sendall(answer.encode() + b"\r\n")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(WAIT)


def test_server_answering_each_step_just_in_time_stops_at_the_deadline(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every step answered correctly, 0.5 s after it starts, under the 1 s step time-out:
    no step times out, but the whole probe ends at its 1.25 s deadline with no verdict
    (exit 1), the error naming the deadline. Without the deadline it would deliver."""
    context = tls_context(GOOD, tmp_path)
    with stepping_server(context, [0.5] * len(STEPS)) as port:
        argv = probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        argv += ["--timeout", "1", "--deadline", "1.25", "--json"]
        started = time.monotonic()
        status = bounded(lambda: main(argv))
        elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert 1 == status
    error = json.loads(captured.out)["error"]
    assert error["stage"] in {"greeting", "ehlo", "starttls", "tls-handshake"}
    assert (f"127.0.0.1:{port}", 1.25, []) == (
        error["target"],
        error["deadline"],
        error["not_tried"],
    )
    assert "the probe's deadline of 1.25 s passed" == error["message"]
    assert "the probe's deadline of 1.25 s passed" in captured.err
    assert elapsed < 10 * 1.25  # a safety bound only: the probe did stop


def probe_host(policy: Path, host: SmartHost, *, timeout: float, deadline: float) -> Any:
    """run_probe against one host, as --host does."""
    return run_probe(
        load_policy(policy),
        "finance@fabrikam.com",
        at=dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC),
        host=host,
        timeout=timeout,
        deadline=deadline,
    )


def test_deadline_passing_in_the_ehlo_after_tls_gives_no_verdict(
    policy: Path, tmp_path: Path
) -> None:
    """The chain is in hand but the EHLO after STARTTLS is never answered: the deadline
    passing there is no verdict (not a note beside a `deliver`)."""
    context = tls_context(GOOD, tmp_path)
    with (
        stepping_server(context, [0, 0, 0, 0, None, 0]) as port,
        pytest.raises(DeadlinePassed, match=r"deadline of 0\.5 s passed") as caught,
    ):
        bounded(lambda: probe_host(policy, SmartHost("127.0.0.1", port), timeout=5, deadline=0.5))
    assert ("ehlo", f"127.0.0.1:{port}") == (caught.value.stage, caught.value.target)


def test_ehlo_refused_after_starttls_gives_no_verdict(policy: Path, tmp_path: Path) -> None:
    """The chain is good, but the server refuses the EHLO after STARTTLS: a delivery
    could not go on, so the probe gives no verdict (stage ehlo), not a `deliver`."""
    steps = [*STEPS[:4], "554 5.7.0 not after TLS", "554 5.7.0 not after TLS"]  # EHLO, HELO
    with (
        stepping_server(tls_context(GOOD, tmp_path), [0] * len(steps), steps) as port,
        pytest.raises(ProbeError, match="the server refused EHLO and HELO: 554") as caught,
    ):
        bounded(lambda: probe_host(policy, SmartHost("127.0.0.1", port), timeout=5, deadline=30))
    assert ("ehlo", f"127.0.0.1:{port}") == (caught.value.stage, caught.value.target)


def test_data_after_the_220_to_starttls_is_dropped_and_noted(policy: Path, tmp_path: Path) -> None:
    """A reply injected before the handshake (CVE-2011-0411) is dropped, never read as
    the answer to the EHLO after it; the report notes it."""
    steps = [STEPS[0], STEPS[1], "220 go ahead\r\n554 5.7.0 injected", *STEPS[3:]]
    with stepping_server(tls_context(GOOD, tmp_path), [0] * len(steps), steps) as port:
        report = bounded(
            lambda: probe_host(policy, SmartHost("127.0.0.1", port), timeout=5, deadline=30)
        )
    assert report.delivers
    assert report.result is not None
    assert ("the server sent data after its 220 to STARTTLS: dropped",) == report.result.notes


def test_helo_after_a_refused_ehlo_is_noted(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EHLO refused, HELO accepted: no ESMTP, so no STARTTLS; under default delivery
    (opportunistic) that still delivers, and the note says why there was no TLS."""
    replies = {"EHLO": "502 5.5.1 no ESMTP here", "HELO": "250 old.example", "QUIT": "221 bye"}
    with scripted_server(replies, "220 old.example SMTP") as port:
        status, result = run_json(
            probe(policy, "--recipient", "someone@example.org", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert 0 == status
    assert "not-offered" == result["probe"]["starttls"]
    assert ["EHLO was refused (502 5.5.1 no ESMTP here): HELO said instead (no ESMTP)"] == result[
        "probe"
    ]["notes"]


def test_the_probe_asks_for_a_staple_and_reads_the_whole_chain(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The handshake is the one that asks for an OCSP staple (a delivery's): it reads the
    whole chain as presented, and says that a staple was asked for and none came (the
    server here cannot staple)."""
    with smtp_server(tmp_path, GOOD) as port:
        status, result = run_json(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}"),
            capsys,
        )
    assert (0, "deliver") == (status, result["action"])
    assert GOOD.chain_pem() == result["probe"]["chain_pem"]
    tls = result["probe"]["tls"]
    assert (True, None) == (tls["ocsp_requested"], tls["ocsp_response"])


@contextlib.contextmanager
def stalling_listeners(count: int) -> Iterator[list[int]]:
    """``count`` listeners whose accept queue is full: a connection attempt gets no
    answer (the SYN is dropped) until the client gives up."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            ports.append(listener.getsockname()[1])
            filler = stack.enter_context(socket.create_connection(listener.getsockname(), WAIT))
            assert filler  # queued, never accepted: the queue is now full
        yield ports


def smart_host_policy(tmp_path: Path, hosts: list[str]) -> Path:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "relay.toml"
    path.write_text(
        '[trust]\nca_file = "ca.pem"\n\n[[outbound]]\nname = "Woodgrove relay"\n'
        'recipient_domains = ["woodgrove.example"]\nuse_mx_record = false\n'
        f'smart_hosts = {json.dumps(hosts)}\ntls_settings = "certificate_validation"\n'
    )
    return path


def test_many_stalling_smart_hosts_stop_at_the_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten smart hosts that never complete the TCP handshake: each attempt times out
    after 0.5 s and is skipped, until the 1.25 s deadline; the hosts never reached are
    reported as not tried, in route order (exit 1). Without the deadline: 10 x 0.5 s."""
    with stalling_listeners(MAX_HOSTS) as ports:
        hosts = [f"127.0.0.1:{port}" for port in ports]
        argv = probe(smart_host_policy(tmp_path, hosts), "--recipient", "ap@woodgrove.example")
        argv += ["--timeout", "0.5", "--deadline", "1.25", "--json"]
        started = time.monotonic()
        status = bounded(lambda: main(argv))
        elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert 1 == status
    error = json.loads(captured.out)["error"]
    not_tried = error["not_tried"]
    assert 0 < len(not_tried) < MAX_HOSTS
    assert hosts[MAX_HOSTS - len(not_tried) :] == not_tried
    assert "connect" == error["stage"]
    assert error["message"].startswith("the probe's deadline of 1.25 s passed; skipped: ")
    assert error["message"].endswith("; not tried: " + ", ".join(not_tried))
    assert f"{hosts[0]}: cannot connect: timed out" in error["message"]
    assert elapsed < 10 * 1.25  # a safety bound only: the probe did stop


def test_at_most_ten_routed_hosts_are_tried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twelve smart hosts that refuse: the first ten are tried, the other two are not,
    and the error says so."""
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(MAX_HOSTS + 2)]
    status = main(probe(smart_host_policy(tmp_path, hosts), "--recipient", "ap@woodgrove.example"))
    err = capsys.readouterr().err
    assert 1 == status
    assert all(f"{host}: cannot connect" in err for host in hosts[:MAX_HOSTS])
    assert all(host not in err for host in hosts[MAX_HOSTS:])
    assert err.endswith("; 2 more routed hosts not tried (at most 10 are tried)\n")


def test_at_most_five_addresses_of_a_host_are_tried(
    policy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host name with eight addresses: the first five (refusing) are tried, each named
    in the error, the sixth, where a server listens, is not."""
    listener = socket.create_server(("127.0.0.7", 0))
    listener.settimeout(0)
    port = listener.getsockname()[1]
    addresses = [f"127.0.0.{n}" for n in range(2, 10)]  # .7 is the sixth
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "partner.test":
            return real(host, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with listener:
        status = main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"partner.test:{port}")
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected to the sixth address
    assert 1 == status
    refused = "; ".join(f"{address}: Connection refused" for address in addresses[:5])
    assert (
        f"could not probe (connect): partner.test:{port}: cannot connect: {refused}; "
        f"3 more addresses not tried (at most {MAX_HOST_ADDRESSES} are)\n"
    ) in capsys.readouterr().err


def test_a_resolver_that_does_not_answer_is_bounded_by_the_deadline(
    policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system resolver has no time-out parameter: a name it sits on still ends the
    probe at the deadline (stage connect, naming the host)."""
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "partner.test":
            release.wait(WAIT)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        with pytest.raises(DeadlinePassed, match=r"deadline of 0\.5 s passed") as caught:
            bounded(
                lambda: probe_host(policy, SmartHost("partner.test", 2525), timeout=5, deadline=0.5)
            )
    finally:
        release.set()
    assert ("connect", "partner.test:2525") == (caught.value.stage, caught.value.target)


def test_the_mx_lookup_gets_at_most_the_time_left(policy: Path) -> None:
    """The MX lookup is a step too: it may wait min(step time-out, time left); a lookup
    that runs out of it ends the probe at the deadline (stage resolve)."""
    given: list[float] = []

    def lookup(domain: str, timeout: float) -> list[tuple[int, str]]:
        given.append(timeout)
        time.sleep(min(timeout, 1.0))  # a resolver using up its lifetime
        raise MxLookupFailed(domain, "MX lookup failed: the lifetime expired")

    with pytest.raises(DeadlinePassed, match=r"deadline of 0\.3 s passed") as caught:
        bounded(
            lambda: run_probe(
                load_policy(policy),
                "finance@fabrikam.com",
                at=dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC),
                timeout=5,
                deadline=0.3,
                mx_lookup=lookup,
            )
        )
    assert ("resolve", "fabrikam.com") == (caught.value.stage, caught.value.target)
    assert 1 == len(given)
    assert 0 < given[0] <= 0.3


def test_endless_multi_line_reply_is_cut_at_the_byte_bound(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A greeting of 4,000-byte continuation lines that never ends: the probe stops
    reading at 64 KiB (long before 100 lines), no verdict, exit 1."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]
    sent: list[int] = []
    line = b"220-" + b"x" * 3996 + b"\r\n"

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(WAIT)
                for count in range(100_000):  # 400 MB: more than any buffer holds
                    sent[:] = [count]
                    connection.sendall(line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    status = bounded(
        lambda: main(
            probe(policy, "--recipient", "finance@fabrikam.com", "--host", f"127.0.0.1:{port}")
        )
    )
    thread.join(WAIT)
    assert 1 == status
    assert "could not probe (greeting)" in (err := capsys.readouterr().err)
    assert "a reply of more than 65536 bytes" in err
    assert not thread.is_alive()
    assert sent[0] < 99_999  # the server was cut off, it did not run out of lines
