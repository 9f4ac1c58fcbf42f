"""tlsconnector.adapters.smtp: delivery with the outbound policy enforced in band.

Every partner is a real SMTP server on 127.0.0.1 (aiosmtpd, or a tiny scripted responder
for hostile cases) presenting certificates minted for the test. No DNS: MX lookups and
host addresses are injected. Every wait is bounded; no test asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.message
import smtplib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tlsconnector import (
    OutboundAction,
    OutboundSession,
    Policy,
    PresentedChain,
    SmartHost,
    TrustStore,
    UndecodableCertificate,
    evaluate_outbound,
)
from tlsconnector.adapters import smtp as delivery
from tlsconnector.adapters.smtp import (
    CHAIN_APIS,
    MAX_REPLY_LINES,
    MissingDependency,
    MxLookupFailed,
    Outcome,
    StartTLS,
    check_host,
    deliver,
    presented_chain,
    starttls_and_collect,
)

from certmint import CA, NOW, Leaf, self_signed
from loopthread import LoopThread

ROOT = CA("Delivery Test Root")
INTERMEDIATE = ROOT.intermediate("Delivery Test Issuing CA")
OTHER_ROOT = CA("Somebody Else's Root")
#: The CN matches *.fabrikam.com; the SAN names something else (never read).
CN_ONLY = INTERMEDIATE.issue("server1.fabrikam.com", san=["mail.example.org"])
#: The SAN matches, the CN does not: a mismatch (section 3: CN only).
SAN_ONLY = INTERMEDIATE.issue("mail.example.org", san=["server1.fabrikam.com"])
TWO_LABELS = INTERMEDIATE.issue("a.b.fabrikam.com")
EXPIRED = INTERMEDIATE.issue(
    "server1.fabrikam.com", not_after=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
)
SELF_SIGNED = self_signed("server1.fabrikam.com")
UNTRUSTED = OTHER_ROOT.issue("server1.fabrikam.com")
WAIT = 10.0  # upper bound on any wait for a test server
MESSAGE = b"From: a@contoso.com\r\nTo: finance@fabrikam.com\r\nSubject: hi\r\n\r\nHello.\r\n"
SENDER = "a@contoso.com"


class Recorder:
    """The server's delivery handler: records senders, accepted recipients, messages."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.senders: list[str] = []
        self.messages: list[Envelope] = []
        self.refuse = refuse or {}
        self.server_names: list[str | None] = []

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.senders.append(address)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 Ok: queued as 4711"


def tls_context(leaf: Leaf, tmp_path: Path, recorder: Recorder) -> ssl.SSLContext:
    """A server context presenting the leaf and its intermediates; records the SNI."""
    chain = tmp_path / f"chain-{id(leaf)}.pem"
    key = tmp_path / f"key-{id(leaf)}.pem"
    chain.write_text(leaf.chain_pem())
    key.write_text(leaf.key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)

    def record_sni(sock: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        recorder.server_names.append(server_name)

    context.sni_callback = record_sni
    return context


@contextlib.contextmanager
def smtp_server(
    tmp_path: Path, leaf: Leaf | None, recorder: Recorder | None = None
) -> Iterator[tuple[int, Recorder]]:
    """An aiosmtpd server; STARTTLS with ``leaf`` when given, plaintext only otherwise."""
    handler = recorder or Recorder()
    context = tls_context(leaf, tmp_path, handler) if leaf is not None else None

    def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
        return SMTP(handler, hostname="mx.test.example", tls_context=context, loop=loop)

    server = LoopThread(factory)
    try:
        yield server.port, handler
    finally:
        server.stop()


@contextlib.contextmanager
def scripted_server(script: Any) -> Iterator[int]:
    """One connection served by ``script(connection)`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(WAIT)
                script(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(WAIT)


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def policy(mode: str, *hosts: str, mx: bool = False, domain: str = "fabrikam.com") -> Policy:
    connector: dict[str, Any] = {
        "name": "Fabrikam Bank outbound",
        "recipient_domains": [domain],
        "use_mx_record": mx,
        "smart_hosts": list(hosts),
        "tls_settings": mode,
    }
    if mode == "domain_validation":
        connector["tls_domain"] = "*.fabrikam.com"
    return Policy.from_mapping(
        {"outbound": [connector]}, trust=TrustStore.from_pem(ROOT.cert_pem())
    )


def send(pol: Policy, *recipients: str, **options: Any) -> delivery.DeliveryReport:
    options.setdefault("at", NOW)
    options.setdefault("timeout", 5.0)
    options.setdefault("deadline", 30.0)
    return deliver(pol, MESSAGE, sender=SENDER, recipients=list(recipients), **options)


# -- the certificate matrix --------------------------------------------------------------


def test_cn_matching_with_other_san_is_delivered_over_tls(tmp_path: Path) -> None:
    """CN server1.fabrikam.com under *.fabrikam.com, a SAN naming another host:
    delivered, over TLS, on the judged connection; the result names the host and the
    server's reply."""
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        report = send(policy("domain_validation", f"127.0.0.1:{port}"), "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert "2.0.0" == result.enhanced
    assert ("finance@fabrikam.com",) == report.delivered
    assert f"127.0.0.1:{port}" == result.host
    assert "127.0.0.1" == result.address
    assert result.reply is not None
    assert (250, "2.0.0") == (result.reply.code, result.reply.enhanced)
    assert "Fabrikam Bank outbound" == result.connector
    assert result.decision is not None
    assert OutboundAction.DELIVER == result.decision.action
    assert "tlsconnector" == result.decision.chain_verified_by
    [attempt] = result.attempts
    assert StartTLS.USED == attempt.starttls
    # The handshake that asks for an OCSP staple (pyOpenSSL) read the chain.
    assert CHAIN_APIS[2] == attempt.chain_api
    assert attempt.ocsp_requested
    assert [CN_ONLY.der(), *(c.public_bytes(ssl_der()) for c in CN_ONLY.intermediates)] == list(
        attempt.chain
    )
    [envelope] = recorder.messages
    assert ["finance@fabrikam.com"] == envelope.rcpt_tos
    assert envelope.content is not None
    assert b"Hello." in bytes(envelope.original_content or b"")
    # An IP literal is never sent as SNI (RFC 6066 section 3).
    assert [None] == recorder.server_names


def ssl_der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


@pytest.mark.parametrize(
    ("leaf", "mode", "code"),
    [
        pytest.param(SAN_ONLY, "domain_validation", "certificate-host-mismatch", id="san-only"),
        pytest.param(TWO_LABELS, "domain_validation", "certificate-host-mismatch", id="two-labels"),
        pytest.param(EXPIRED, "domain_validation", "certificate-expired", id="expired-dv"),
        pytest.param(EXPIRED, "certificate_validation", "certificate-expired", id="expired-cv"),
        pytest.param(SELF_SIGNED, "domain_validation", "certificate-not-trusted", id="self-dv"),
        pytest.param(
            SELF_SIGNED, "certificate_validation", "certificate-not-trusted", id="self-cv"
        ),
        pytest.param(UNTRUSTED, "domain_validation", "certificate-not-trusted", id="untrusted-dv"),
        pytest.param(
            UNTRUSTED, "certificate_validation", "certificate-not-trusted", id="untrusted-cv"
        ),
    ],
)
def test_certificate_failures_defer_and_send_nothing(
    tmp_path: Path, leaf: Leaf, mode: str, code: str
) -> None:
    """A chain the policy refuses: deferred with the verdict's reason and 4.7.5, QUIT
    before MAIL FROM (the server never sees a sender, let alone the message)."""
    with smtp_server(tmp_path, leaf) as (port, recorder):
        report = send(policy(mode, f"127.0.0.1:{port}"), "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    assert code == result.codes[0]
    assert "4.7.5" == result.enhanced
    assert result.decision is not None
    assert OutboundAction.DEFER == result.decision.action
    assert StartTLS.USED == result.attempts[0].starttls
    assert [] == recorder.senders
    assert [] == recorder.messages


def test_self_signed_under_encryption_only_is_delivered(tmp_path: Path) -> None:
    with smtp_server(tmp_path, SELF_SIGNED) as (port, recorder):
        report = send(policy("encryption_only", f"127.0.0.1:{port}"), "finance@fabrikam.com")
    assert ("finance@fabrikam.com",) == report.delivered
    assert StartTLS.USED == report.results[0].attempts[0].starttls
    assert 1 == len(recorder.messages)


@pytest.mark.parametrize("mode", ["encryption_only", "certificate_validation", "domain_validation"])
def test_plaintext_only_server_is_deferred_and_gets_nothing(tmp_path: Path, mode: str) -> None:
    """No STARTTLS offered under a TLS mode: deferred (starttls-not-supported, 4.7.4),
    and the server receives no MAIL FROM and no message."""
    with smtp_server(tmp_path, None) as (port, recorder):
        report = send(policy(mode, f"127.0.0.1:{port}"), "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    assert "starttls-not-supported" == result.codes[0]
    assert "4.7.4" == result.enhanced
    assert StartTLS.NOT_OFFERED == result.attempts[0].starttls
    assert [] == recorder.senders
    assert [] == recorder.messages


def test_no_connector_for_the_domain_is_opportunistic_by_mx(tmp_path: Path) -> None:
    """A domain no connector serves: MX route, opportunistic, so a plaintext server
    gets the message (section 6.3); the MX host's name comes from the injected lookup."""
    looked_up: list[str] = []

    def mx(domain: str, timeout: float) -> list[tuple[int, str]]:
        looked_up.append(domain)
        return [(10, "mx1.contoso.org.")]

    def addresses(host: str, timeout: float) -> list[str]:
        assert "mx1.contoso.org" == host
        return ["127.0.0.1"]

    with smtp_server(tmp_path, None) as (port, recorder):
        report = send(
            policy("domain_validation", "192.0.2.1"),
            "bob@contoso.org",
            port=port,
            mx_lookup=mx,
            address_lookup=addresses,
        )
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert None is result.connector
    assert ["contoso.org"] == looked_up
    assert "mx1.contoso.org" == result.attempts[0].target.host
    assert StartTLS.NOT_OFFERED == result.attempts[0].starttls
    assert ["bob@contoso.org"] == recorder.messages[0].rcpt_tos


# -- routes --------------------------------------------------------------------------------


def test_refused_first_smart_host_then_the_second_delivers(tmp_path: Path) -> None:
    dead = closed_port()
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        pol = policy("domain_validation", f"127.0.0.1:{dead}", f"127.0.0.1:{port}")
        report = send(pol, "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert f"127.0.0.1:{port}" == result.host
    first, second = result.attempts
    assert first.error is not None
    assert "connection-failed" == first.error.code
    assert second.delivers
    assert 1 == len(recorder.messages)


def test_first_smart_host_failing_the_verdict_is_left_for_the_second(tmp_path: Path) -> None:
    """The first host presents a self-signed certificate: QUIT there, nothing sent, and
    the message goes to the second host, which presents a good chain."""
    with (
        smtp_server(tmp_path, SELF_SIGNED) as (bad, bad_recorder),
        smtp_server(tmp_path, CN_ONLY) as (good, good_recorder),
    ):
        pol = policy("domain_validation", f"127.0.0.1:{bad}", f"127.0.0.1:{good}")
        report = send(pol, "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert f"127.0.0.1:{good}" == result.host
    assert [] == bad_recorder.senders
    assert 1 == len(good_recorder.messages)
    first = result.attempts[0].decision
    assert first is not None
    assert ("certificate-not-trusted",) == first.codes[:1]


def test_every_host_failing_defers_with_each_host_s_reason(tmp_path: Path) -> None:
    dead = closed_port()
    with smtp_server(tmp_path, SELF_SIGNED) as (port, _):
        pol = policy("domain_validation", f"127.0.0.1:{port}", f"127.0.0.1:{dead}")
        report = send(pol, "finance@fabrikam.com")
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    # The deciding reason is the last host's; every host's reason is kept.
    assert "connection-failed" == result.codes[0]
    assert "4.4.1" == result.enhanced
    assert "certificate-not-trusted" in result.codes


def test_mx_hosts_by_preference_then_name_with_sni_the_host_name(tmp_path: Path) -> None:
    """MX route under domain_validation: hosts tried by preference, ties by name; a host
    whose address refuses is skipped; SNI is the MX host's name."""
    tried: list[str] = []

    def mx(domain: str, timeout: float) -> list[tuple[int, str]]:
        return [(20, "b.mx.fabrikam.com"), (10, "z.mx.fabrikam.com"), (10, "a.mx.fabrikam.com")]

    def addresses(host: str, timeout: float) -> list[str]:
        tried.append(host)
        # 127.0.0.2 is loopback too, and nobody listens there: refused.
        return ["127.0.0.2"] if host.startswith("a.") else ["127.0.0.1"]

    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        pol = policy("domain_validation", mx=True)
        report = send(
            pol, "finance@fabrikam.com", port=port, mx_lookup=mx, address_lookup=addresses
        )
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert ["a.mx.fabrikam.com", "z.mx.fabrikam.com"] == tried
    assert "z.mx.fabrikam.com" == result.attempts[-1].target.host
    assert ["z.mx.fabrikam.com"] == recorder.server_names


def test_domain_without_mx_uses_the_domain_itself(tmp_path: Path) -> None:
    seen: list[str] = []

    def addresses(host: str, timeout: float) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"]

    with smtp_server(tmp_path, CN_ONLY) as (port, _):
        report = send(
            policy("domain_validation", mx=True),
            "finance@fabrikam.com",
            port=port,
            mx_lookup=lambda domain, timeout: [],
            address_lookup=addresses,
        )
    assert ("finance@fabrikam.com",) == report.delivered
    assert ["fabrikam.com"] == seen


@pytest.mark.parametrize(
    ("lookup_result", "outcome", "code", "status"),
    [
        pytest.param([(0, ".")], Outcome.FAILED, "null-mx", "5.1.10", id="null-mx"),
        pytest.param(
            MxLookupFailed("fabrikam.com", "NXDOMAIN", permanent=True),
            Outcome.FAILED,
            "domain-not-found",
            "5.4.4",
            id="nxdomain",
        ),
        pytest.param(
            RuntimeError("resolver broke"),
            Outcome.DEFERRED,
            "mx-lookup-failed",
            "4.4.3",
            id="error",
        ),
    ],
)
def test_mx_lookup_failures_become_results(
    lookup_result: Any, outcome: Outcome, code: str, status: str
) -> None:
    def mx(domain: str, timeout: float) -> Sequence[tuple[int, str]]:
        if isinstance(lookup_result, Exception):
            raise lookup_result
        return list(lookup_result)

    report = send(policy("domain_validation", mx=True), "finance@fabrikam.com", mx_lookup=mx)
    [result] = report.results
    assert (outcome, code, status) == (result.outcome, result.codes[0], result.enhanced)


def test_mx_route_without_dnspython_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the partner's fault: the caller's environment lacks dnspython; raised."""
    monkeypatch.setitem(sys.modules, "dns", None)
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    with pytest.raises(MissingDependency, match=r"dnspython.*tlsconnector\[probe\]"):
        send(policy("domain_validation", mx=True), "finance@fabrikam.com")


# -- the retry window, refusals, the deadline ----------------------------------------------


def test_queued_past_the_retry_window_fails(tmp_path: Path) -> None:
    with smtp_server(tmp_path, SELF_SIGNED) as (port, recorder):
        report = send(
            policy("domain_validation", f"127.0.0.1:{port}"),
            "finance@fabrikam.com",
            queued_since=NOW - dt.timedelta(hours=25),
        )
    [result] = report.results
    assert Outcome.FAILED == result.outcome
    assert ("message-expired", "certificate-not-trusted") == result.codes[:2]
    assert "5.4.7" == result.enhanced
    assert [] == recorder.senders


def test_queued_within_the_retry_window_defers(tmp_path: Path) -> None:
    with smtp_server(tmp_path, SELF_SIGNED) as (port, _):
        report = send(
            policy("domain_validation", f"127.0.0.1:{port}"),
            "finance@fabrikam.com",
            queued_since=NOW - dt.timedelta(hours=23),
        )
    assert ("finance@fabrikam.com",) == report.deferred


def test_connection_failures_past_the_retry_window_fail() -> None:
    report = send(
        policy("domain_validation", f"127.0.0.1:{closed_port()}"),
        "finance@fabrikam.com",
        queued_since=NOW - dt.timedelta(hours=2),
        retry_window=dt.timedelta(hours=1),
    )
    [result] = report.results
    assert Outcome.FAILED == result.outcome
    assert ("message-expired", "connection-failed") == result.codes


def test_recipients_refused_at_rcpt_get_the_server_s_reply(tmp_path: Path) -> None:
    """550 at RCPT: failed with the server's reply; 450: deferred; the accepted one is
    delivered in the same transaction."""
    recorder = Recorder(
        refuse={
            "nobody@fabrikam.com": "550 5.1.1 <nobody@fabrikam.com>: no such user",
            "busy@fabrikam.com": "450 4.2.1 mailbox busy",
        }
    )
    with smtp_server(tmp_path, CN_ONLY, recorder) as (port, _):
        report = send(
            policy("domain_validation", f"127.0.0.1:{port}"),
            "nobody@fabrikam.com",
            "finance@fabrikam.com",
            "busy@fabrikam.com",
        )
    nobody, finance, busy = report.results
    assert (Outcome.FAILED, "recipient-refused", "5.1.1") == (
        nobody.outcome,
        nobody.codes[0],
        nobody.enhanced,
    )
    assert nobody.reply is not None
    assert 550 == nobody.reply.code
    assert "no such user" in nobody.reply.text
    assert (Outcome.DEFERRED, "recipient-refused", "4.2.1") == (
        busy.outcome,
        busy.codes[0],
        busy.enhanced,
    )
    assert Outcome.DELIVERED == finance.outcome
    [envelope] = recorder.messages
    assert ["finance@fabrikam.com"] == envelope.rcpt_tos


def test_a_stalling_server_is_bounded_by_the_deadline() -> None:
    """Greets, then never answers EHLO: two such hosts, a 1 s step time-out and a
    2 s deadline give a deferral naming the deadline, well within the safety bound."""

    def stall(connection: socket.socket) -> None:
        connection.sendall(b"220 slow.example ESMTP\r\n")
        with contextlib.suppress(OSError):
            while connection.recv(100):  # EHLO arrives, never answered, until the client leaves
                pass

    started = time.monotonic()
    with scripted_server(stall) as one, scripted_server(stall) as two:
        report = send(
            policy("domain_validation", f"127.0.0.1:{one}", f"127.0.0.1:{two}"),
            "finance@fabrikam.com",
            timeout=1.5,
            deadline=2.0,
        )
    elapsed = time.monotonic() - started
    assert elapsed < 30  # a safety bound on a hang, not a timing assertion
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    assert "deadline-passed" == result.codes[0]
    assert "4.4.2" == result.enhanced


def test_a_server_answering_each_step_in_time_still_stops_at_the_deadline() -> None:
    """Each reply comes 0.5 s after the command, well within the 2 s step time-out, so
    only the overall deadline (1.2 s) stops the delivery: deferred, never delivered late."""

    def slow(connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        time.sleep(0.5)
        connection.sendall(b"220 slow.example ESMTP\r\n")
        replies = {
            b"EHLO": b"250 slow.example",
            b"MAIL": b"250 ok",
            b"RCPT": b"250 ok",
            b"DATA": b"354 go ahead",
            b"QUIT": b"221 bye",
        }
        for _ in range(50):
            line = stream.readline(1000)
            if not line:
                return
            if line.split()[:1] == [b"DATA"]:
                time.sleep(0.5)
                connection.sendall(b"354 go ahead\r\n")
                while stream.readline(100_000) not in (b".\r\n", b""):
                    pass
                line = b"END"
            time.sleep(0.5)
            connection.sendall(replies.get(line.split()[0], b"250 queued") + b"\r\n")

    started = time.monotonic()
    with scripted_server(slow) as port:
        report = send(
            policy("domain_validation", "192.0.2.1"),
            "bob@contoso.org",
            port=port,
            mx_lookup=lambda domain, timeout: [(10, "mx.contoso.org")],
            address_lookup=lambda host, timeout: ["127.0.0.1"],
            timeout=2.0,
            deadline=1.2,
        )
    assert time.monotonic() - started < 30  # a safety bound on a hang, not a timing assertion
    [result] = report.results
    assert (Outcome.DEFERRED, "deadline-passed") == (result.outcome, result.codes[0])


def test_a_host_s_refused_address_is_skipped_for_its_next_one(tmp_path: Path) -> None:
    with smtp_server(tmp_path, CN_ONLY) as (port, _):
        report = send(
            policy("domain_validation", "mx1.fabrikam.com"),
            "finance@fabrikam.com",
            port=port,
            address_lookup=lambda host, timeout: ["127.0.0.2", "127.0.0.1"],
        )
    [result] = report.results
    assert (Outcome.DELIVERED, "127.0.0.1") == (result.outcome, result.address)


def test_at_most_five_addresses_per_host_are_tried(tmp_path: Path) -> None:
    """The server listens on the sixth address: never reached."""
    refused = [f"127.0.0.{n}" for n in range(2, 7)]
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        report = send(
            policy("domain_validation", "mx1.fabrikam.com"),
            "finance@fabrikam.com",
            port=port,
            address_lookup=lambda host, timeout: [*refused, "127.0.0.1"],
        )
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    assert "1 more addresses not tried (at most 5 are)" in result.reasons[0].detail
    assert [] == recorder.senders


def test_at_most_ten_routed_hosts_are_tried() -> None:
    dead = closed_port()
    hosts = [f"127.0.0.{n}:{dead}" for n in range(2, 13)]  # eleven, all refusing
    report = send(policy("domain_validation", *hosts), "finance@fabrikam.com")
    [result] = report.results
    assert 10 == len(result.attempts)
    assert any("1 more routed hosts not tried" in r.detail for r in result.reasons)


def test_an_endless_multi_line_reply_is_cut_at_the_bound() -> None:
    def flood(connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            connection.sendall(b"220-flood\r\n" + b"220-more\r\n" * (MAX_REPLY_LINES * 50))

    with scripted_server(flood) as port:
        report = send(policy("domain_validation", f"127.0.0.1:{port}"), "finance@fabrikam.com")
    [result] = report.results
    assert ("protocol-error", Outcome.DEFERRED) == (result.codes[0], result.outcome)
    assert f"more than {MAX_REPLY_LINES} lines" in result.reasons[0].detail


def test_garbage_and_refusing_greetings_are_results() -> None:
    def garbage(connection: socket.socket) -> None:
        connection.sendall(b"hello \x1b[31m there\r\n")

    def refuse(connection: socket.socket) -> None:
        connection.sendall(b"554 5.3.2 go away\r\n")
        with contextlib.suppress(OSError):
            connection.recv(100)

    with scripted_server(garbage) as one, scripted_server(refuse) as two:
        report = send(
            policy("domain_validation", f"127.0.0.1:{one}", f"127.0.0.1:{two}"),
            "finance@fabrikam.com",
        )
    [result] = report.results
    assert Outcome.DEFERRED == result.outcome
    first, second = result.attempts
    assert first.error is not None
    assert second.error is not None
    assert "not an SMTP reply" in first.error.detail
    assert "\x1b" not in first.error.detail  # escaped, never echoed raw
    assert "554" in second.error.detail


def test_failed_tls_handshake_moves_to_the_next_host(tmp_path: Path) -> None:
    def broken_tls(connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        connection.sendall(b"220 broken.example ESMTP\r\n")
        stream.readline(1000)
        connection.sendall(b"250-broken.example\r\n250 STARTTLS\r\n")
        stream.readline(1000)
        connection.sendall(b"220 go ahead\r\n")
        connection.sendall(b"this is not TLS at all\r\n" * 4)

    with scripted_server(broken_tls) as bad, smtp_server(tmp_path, CN_ONLY) as (good, recorder):
        report = send(
            policy("domain_validation", f"127.0.0.1:{bad}", f"127.0.0.1:{good}"),
            "finance@fabrikam.com",
        )
    [result] = report.results
    assert Outcome.DELIVERED == result.outcome
    assert result.attempts[0].error is not None
    assert "tls-handshake-failed" == result.attempts[0].error.code
    assert 1 == len(recorder.messages)


# -- several domains, messages -----------------------------------------------------------


def test_recipients_are_grouped_by_domain_each_under_its_own_connector(tmp_path: Path) -> None:
    """fabrikam.com falls under the connector (a self-signed server: deferred); contoso.org
    under none (opportunistic by MX: delivered in plaintext), in one call."""
    with (
        smtp_server(tmp_path, SELF_SIGNED) as (partner, partner_recorder),
        smtp_server(tmp_path, None) as (plain, plain_recorder),
    ):
        report = send(
            policy("domain_validation", f"127.0.0.1:{partner}"),
            "finance@fabrikam.com",
            "bob@contoso.org",
            port=plain,
            mx_lookup=lambda domain, timeout: [(10, "mx.contoso.org")],
            address_lookup=lambda host, timeout: ["127.0.0.1"],
        )
    assert ("bob@contoso.org",) == report.delivered
    assert ("finance@fabrikam.com",) == report.deferred
    assert [] == partner_recorder.senders
    assert ["bob@contoso.org"] == plain_recorder.messages[0].rcpt_tos


def test_email_message_is_sent_without_bcc_and_dot_stuffed(tmp_path: Path) -> None:
    message = email.message.EmailMessage()
    message["From"] = SENDER
    message["To"] = "finance@fabrikam.com"
    message["Bcc"] = "secret@contoso.com"
    message["Subject"] = "dots"
    message.set_content("line one\n.\n..leading dots\n")
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        report = deliver(
            policy("domain_validation", f"127.0.0.1:{port}"),
            message,
            sender=SENDER,
            recipients=["finance@fabrikam.com"],
            at=NOW,
            timeout=5,
        )
    assert ("finance@fabrikam.com",) == report.delivered
    received = bytes(recorder.messages[0].original_content or b"")
    assert b"Bcc" not in received
    assert b"\r\n.\r\n..leading dots\r\n" in received


# -- the collecting step on its own, and check_host --------------------------------------


def test_a_gateway_s_own_smtplib_client_collects_and_sends_on_the_same_connection(
    tmp_path: Path,
) -> None:
    pol = policy("domain_validation", "192.0.2.1")
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="gw.contoso.com", timeout=WAIT)
        with client:
            attempt = starttls_and_collect(client, server_hostname="mx1.fabrikam.com")
            session = OutboundSession.create(
                recipient="finance@fabrikam.com",
                at=NOW,
                peer_host="mx1.fabrikam.com",
                attempt=attempt,
            )
            verdict = evaluate_outbound(pol, session)
            assert OutboundAction.DELIVER == verdict.action
            client.sendmail(SENDER, ["finance@fabrikam.com"], MESSAGE)
    assert attempt.tls is not None
    assert isinstance(attempt.tls.certificate, PresentedChain)
    assert ("server1.fabrikam.com",) == attempt.tls.certificate.cns
    assert ["mx1.fabrikam.com"] == recorder.server_names
    assert 1 == len(recorder.messages)


def test_collecting_from_a_plaintext_server_gives_no_tls(tmp_path: Path) -> None:
    with smtp_server(tmp_path, None) as (port, _):
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="gw.contoso.com", timeout=WAIT)
        with client:
            attempt = starttls_and_collect(client, server_hostname="mx1.fabrikam.com")
    assert None is attempt.tls


def test_presented_chain_of_an_ssl_socket(tmp_path: Path) -> None:
    with smtp_server(tmp_path, CN_ONLY) as (port, _):
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="gw.contoso.com", timeout=WAIT)
        with client:
            client.starttls(context=delivery.tls_client_context())
            assert isinstance(client.sock, ssl.SSLSocket)
            chain = presented_chain(client.sock)
    assert isinstance(chain, PresentedChain)
    assert 2 == len(chain.certificates)


def test_a_python_without_a_chain_api_gives_an_undecodable_chain() -> None:
    """Fail closed: no leaf-only chain is ever judged in place of the presented one."""

    class NoChain:
        pass

    chain = presented_chain(NoChain())  # type: ignore[arg-type]
    assert isinstance(chain, UndecodableCertificate)
    assert "no API" in chain.reason


def test_check_host_judges_without_sending(tmp_path: Path) -> None:
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        attempt = check_host(
            policy("domain_validation", "192.0.2.1"),
            "finance@fabrikam.com",
            SmartHost("127.0.0.1", port),
            at=NOW,
            timeout=5,
        )
    assert attempt.delivers
    assert "127.0.0.1" == attempt.address
    assert attempt.greeting is not None
    assert 220 == attempt.greeting.code
    assert 2 == len(attempt.chain)
    assert [] == recorder.senders


def starttls_then(handshake: bytes | None, answer: bytes = b"220 go ahead") -> Any:
    """A script: greets, offers STARTTLS, answers it with ``answer``, then answers the
    client's next bytes (its ClientHello) with ``handshake``; None: silence, until the
    client leaves. QUIT gets 221."""

    def script(connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        connection.sendall(b"220 odd.example ESMTP\r\n")
        stream.readline(1000)
        connection.sendall(b"250-odd.example\r\n250 STARTTLS\r\n")
        stream.readline(1000)
        connection.sendall(answer + b"\r\n")
        with contextlib.suppress(OSError):
            while data := connection.recv(1000):
                if data.upper().startswith(b"QUIT"):
                    connection.sendall(b"221 bye\r\n")
                elif handshake is not None:
                    connection.sendall(handshake)

    return script


def test_check_host_names_the_stage_an_attempt_ended_in() -> None:
    """220 to STARTTLS, then no TLS: the attempt ends at the tls-handshake stage (the
    probe's error names it), with tls-handshake-failed."""
    with scripted_server(starttls_then(b"this is not TLS at all\r\n" * 4)) as port:
        attempt = check_host(
            policy("domain_validation", "192.0.2.1"),
            "finance@fabrikam.com",
            SmartHost("127.0.0.1", port),
            at=NOW,
            timeout=5,
        )
    assert attempt.error is not None
    assert ("tls-handshake", "tls-handshake-failed") == (attempt.stage, attempt.error.code)
    assert attempt.error.detail.startswith("the TLS handshake failed: ")
    assert (attempt.decision, attempt.attempt) == (None, None)


def test_a_handshake_that_never_comes_is_a_tls_handshake_failure() -> None:
    """220 to STARTTLS, then silence: the handshake times out after the step time-out;
    a TLS failure (the next host is tried), not a deadline."""
    with scripted_server(starttls_then(None)) as port:
        attempt = check_host(
            policy("domain_validation", "192.0.2.1"),
            "finance@fabrikam.com",
            SmartHost("127.0.0.1", port),
            at=NOW,
            timeout=0.5,
            deadline=20,
        )
    assert attempt.error is not None
    assert ("tls-handshake", "tls-handshake-failed") == (attempt.stage, attempt.error.code)
    assert "the TLS handshake failed: timed out after 0.5 s" == attempt.error.detail


def test_check_host_notes_what_the_verdict_does_not_rest_on() -> None:
    """STARTTLS offered and then refused (454): the attempt has no TLS and says why."""
    with scripted_server(starttls_then(None, b"454 4.7.0 TLS not available")) as port:
        attempt = check_host(
            policy("opportunistic", "192.0.2.1"),
            "finance@fabrikam.com",
            SmartHost("127.0.0.1", port),
            at=NOW,
            timeout=5,
        )
    assert attempt.delivers
    assert StartTLS.REFUSED == attempt.starttls
    assert ("STARTTLS was offered but answered 454 4.7.0 TLS not available",) == attempt.notes


def test_data_sent_after_the_220_to_starttls_is_dropped_and_noted(tmp_path: Path) -> None:
    """CVE-2011-0411: a reply injected before the handshake is never read as the answer
    to the EHLO after it; the attempt notes it."""
    context = tls_context(CN_ONLY, tmp_path, Recorder())

    def script(connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        connection.sendall(b"220 odd.example ESMTP\r\n")
        stream.readline(1000)
        connection.sendall(b"250-odd.example\r\n250 STARTTLS\r\n")
        stream.readline(1000)
        connection.sendall(b"220 go ahead\r\n554 5.7.0 injected\r\n")
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.makefile("rb").readline(1000)  # the EHLO after STARTTLS
            tls.sendall(b"250 odd.example\r\n")
            with contextlib.suppress(OSError):
                tls.recv(100)

    with scripted_server(script) as port:
        attempt = check_host(
            policy("domain_validation", "192.0.2.1"),
            "finance@fabrikam.com",
            SmartHost("127.0.0.1", port),
            at=NOW,
            timeout=5,
        )
    assert attempt.delivers, attempt.error
    assert ("the server sent data after its 220 to STARTTLS: dropped",) == attempt.notes


def test_an_mx_lookup_that_uses_up_the_deadline_is_a_deadline() -> None:
    """The lookup fails only once the call's time is gone: deadline-passed, not an MX
    failure (the probe reports the same at its resolve stage)."""

    def mx(domain: str, timeout: float) -> Sequence[tuple[int, str]]:
        time.sleep(min(timeout, 2.0))
        raise MxLookupFailed(domain, "MX lookup failed: the lifetime expired")

    report = send(
        policy("domain_validation", mx=True), "finance@fabrikam.com", mx_lookup=mx, deadline=0.3
    )
    [result] = report.results
    assert (Outcome.DEFERRED, "deadline-passed") == (result.outcome, result.codes[0])


# -- the caller's bad arguments are raised -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"message": "text"}, TypeError, "bytes or an email.message.Message"),
        ({"recipients": "finance@fabrikam.com"}, TypeError, "not a single string"),
        ({"recipients": []}, ValueError, "nothing to deliver"),
        ({"recipients": ["ok@fabrikam.com", "no-domain"]}, Exception, r"recipients\[1\]"),
        ({"sender": "a@b\r\nRCPT TO:<x@y>"}, Exception, "sender.*control"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"deadline": 10_000}, ValueError, "deadline"),
        ({"helo": "bad name"}, ValueError, "helo"),
        ({"port": 70000}, ValueError, "port"),
        ({"retry_window": dt.timedelta(0)}, ValueError, "retry_window"),
    ],
)
def test_bad_arguments_are_raised(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments: dict[str, Any] = {
        "message": MESSAGE,
        "sender": SENDER,
        "recipients": ["finance@fabrikam.com"],
        "at": NOW,
    }
    arguments.update(kwargs)
    message = arguments.pop("message")
    with pytest.raises(error, match=match):
        deliver(policy("domain_validation", "127.0.0.1:9"), message, **arguments)


def test_bare_line_feeds_in_bytes_become_crlf_before_dot_stuffing(tmp_path: Path) -> None:
    """A lone LF never reaches the server: the data cannot end early at a lenient one."""
    raw = b"Subject: lf\n\nline\n.\nmore\n"
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        report = deliver(
            policy("domain_validation", f"127.0.0.1:{port}"),
            raw,
            sender=SENDER,
            recipients=["finance@fabrikam.com"],
            at=NOW,
            timeout=5,
        )
    assert ("finance@fabrikam.com",) == report.delivered
    received = bytes(recorder.messages[0].original_content or b"")
    assert b"Subject: lf\r\n\r\nline\r\n.\r\nmore\r\n" == received


def test_an_address_needing_smtputf8_fails_at_a_server_without_it(tmp_path: Path) -> None:
    with smtp_server(tmp_path, CN_ONLY) as (port, recorder):
        report = send(policy("domain_validation", f"127.0.0.1:{port}"), "jörg@fabrikam.com")
    [result] = report.results
    assert (Outcome.FAILED, "smtputf8-not-supported", "5.6.7") == (
        result.outcome,
        result.codes[0],
        result.enhanced,
    )
    assert [] == recorder.senders
