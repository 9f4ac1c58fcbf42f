"""The aiosmtpd adapter end to end: a real aiosmtpd server on 127.0.0.1 enforcing the
Fabrikam inbound connector, and smtplib clients presenting real certificates
(docs/aiosmtpd.md).

Python's ssl module verifies client certificates at the real current time, so every
certificate here is minted valid around the real clock, not the fixed test time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.x509.oid import ExtendedKeyUsageOID

import tlsconnector.adapters.aiosmtpd as adapter
from tlsconnector import InboundDecision, Policy, load_policy
from tlsconnector._decisions import InboundAction, Reason, ReasonCode, SmtpReply
from tlsconnector.adapters.aiosmtpd import (
    TLSConnectorHandler,
    reply_line,
    requires_starttls,
    server_tls_context,
    smtp_kwargs,
    tls_facts,
)

from certmint import CA, Leaf, self_signed
from loopthread import LoopThread

WAIT = 10.0
#: What a client sees when the server ends the TLS handshake: an SSL alert, a reset,
#: or (TLS 1.3, where the client finishes first) the connection closed at its next command.
HANDSHAKE_ABORTED = (smtplib.SMTPServerDisconnected, ssl.SSLError, ConnectionError)
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
VALID = {"not_before": NOW - dt.timedelta(days=1), "not_after": NOW + dt.timedelta(days=30)}

PARTNER_ROOT = CA("Fabrikam Partner Root", **VALID)
PARTNER_ISSUING = PARTNER_ROOT.intermediate("Fabrikam Issuing CA", **VALID)
PARTNER = PARTNER_ISSUING.issue("server1.fabrikam.com", **VALID)
WRONG_CN = PARTNER_ISSUING.issue("mail.example.org", **VALID)
UNTRUSTED = self_signed("server1.fabrikam.com", **VALID)
SERVER = CA("Contoso Server CA", **VALID).issue("mx.contoso.example", **VALID)

POLICY = """
[trust]
ca_file = "partner-ca.pem"

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
"""


class Delivery:
    """The user's own delivery handler: keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 2.0.0 Message accepted for delivery"


class Files:
    """Certificates and the policy, written where a real deployment keeps them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "partner-ca.pem").write_text(PARTNER_ROOT.cert_pem())
        self.policy_path = root / "policy.toml"
        self.policy_path.write_text(POLICY)
        self.server_cert, self.server_key = self.pair(SERVER, "server")

    def pair(self, leaf: Leaf, name: str) -> tuple[Path, Path]:
        cert, key = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        cert.write_text(leaf.chain_pem())  # the leaf, then its intermediates
        key.write_text(leaf.key_pem())
        return cert, key


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def policy(files: Files) -> Policy:
    return load_policy(files.policy_path, use_system_trust=False)


class Server:
    """A running aiosmtpd server whose handler is tlsconnector's, wrapping Delivery."""

    def __init__(self, port: int, delivery: Delivery, decisions: list[InboundDecision]) -> None:
        self.port = port
        self.delivery = delivery
        self.decisions = decisions


@contextlib.contextmanager
def running(
    policy: Policy,
    files: Files,
    *,
    clock: Callable[[], dt.datetime] = lambda: NOW,
    delivery: Any = None,
    **overrides: Any,
) -> Iterator[Server]:
    delivery = delivery or Delivery()
    decisions: list[InboundDecision] = []
    handler = TLSConnectorHandler(
        policy,
        delivery=delivery,
        clock=clock,
        on_decision=lambda session, envelope, address, decision: decisions.append(decision),
    )
    kwargs = smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key)
    kwargs.update(overrides)

    def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
        return SMTP(handler, hostname="mx.contoso.example", loop=loop, **kwargs)

    thread = LoopThread(factory)
    try:
        yield Server(thread.port, delivery, decisions)
    finally:
        thread.stop()


def client_context(files: Files, leaf: Leaf | None) -> ssl.SSLContext:
    """The sending side: presents ``leaf`` (with intermediates) when given; it does not
    check the server's certificate (not what these tests are about)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if leaf is not None:
        cert, key = files.pair(leaf, "client")
        context.load_cert_chain(cert, key)
    return context


MESSAGE = b"Subject: payment run\r\n\r\nThe November payment file.\r\n"


def send(
    server: Server,
    files: Files,
    *,
    tls: bool = True,
    leaf: Leaf | None = None,
    sender: str = "payments@fabrikam.com",
    recipients: tuple[str, ...] = ("finance@contoso.com",),
) -> dict[str, tuple[int, bytes]]:
    """Send one message; return smtplib's refused recipients (empty: all accepted)."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=WAIT) as client:
        client.ehlo("mail.fabrikam.com")
        if tls:
            client.starttls(context=client_context(files, leaf))
            client.ehlo("mail.fabrikam.com")
        return client.sendmail(sender, list(recipients), MESSAGE)


# -- the Fabrikam scenario over real TLS ---------------------------------------------


def test_partner_certificate_is_accepted_and_delivered(policy: Policy, files: Files) -> None:
    """server1.fabrikam.com from the partner CA (sent with its intermediate): 250, and
    the message reaches the wrapped delivery handler."""
    with running(policy, files) as server:
        refused = send(server, files, leaf=PARTNER)
    assert {} == refused
    assert [("payments@fabrikam.com", ["finance@contoso.com"])] == [
        (sender, rcpts) for sender, rcpts, _ in server.delivery.messages
    ]
    assert server.delivery.messages[0][2].endswith(b"The November payment file.\r\n")
    (decision,) = server.decisions
    assert (InboundAction.ACCEPT, "Fabrikam Bank inbound") == (
        decision.action,
        decision.connector,
    )
    assert "tlsconnector" == decision.chain_verified_by  # checked again (docs)


def test_wrong_cn_from_the_partner_ca_is_refused_550(policy: Policy, files: Files) -> None:
    with running(policy, files) as server, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(server, files, leaf=WRONG_CN)
    code, text = caught.value.recipients["finance@contoso.com"]
    assert 550 == code
    assert text.startswith(b'5.7.1 Connector "Fabrikam Bank inbound"')
    assert [] == server.delivery.messages
    assert ("certificate-name-mismatch",) == server.decisions[0].codes


def test_untrusted_certificate_aborts_the_handshake_never_250(policy: Policy, files: Files) -> None:
    """The ssl module verifies a certificate it asks for: an untrusted one ends the
    TLS handshake (the client sees an SSL error or a closed connection), so the
    policy is never even asked, and nothing is accepted (docs/aiosmtpd.md, limits)."""
    with running(policy, files) as server, pytest.raises(HANDSHAKE_ABORTED):
        send(server, files, leaf=UNTRUSTED)
    assert [] == server.delivery.messages
    assert [] == server.decisions


def test_server_auth_only_certificate_aborts_the_handshake(policy: Policy, files: Files) -> None:
    """A limit of the ssl module, against section 7: OpenSSL checks a client
    certificate for the clientAuth purpose, so a partner reusing a serverAuth-only
    server certificate is refused in the handshake (docs/aiosmtpd.md, limits)."""
    server_auth_only = PARTNER_ISSUING.issue(
        "server1.fabrikam.com", eku=[ExtendedKeyUsageOID.SERVER_AUTH], **VALID
    )
    with running(policy, files) as server, pytest.raises(HANDSHAKE_ABORTED):
        send(server, files, leaf=server_auth_only)
    assert ([], []) == (server.delivery.messages, server.decisions)


def test_client_must_send_its_intermediates(policy: Policy, files: Files) -> None:
    """Nothing is fetched (section 7): a leaf sent without its intermediate does not
    verify, and the handshake ends."""
    with running(policy, files) as server, pytest.raises(HANDSHAKE_ABORTED):
        send(server, files, leaf=Leaf(PARTNER.cert, PARTNER.key, ()))
    assert [] == server.delivery.messages


def test_cn_outside_name_constraints_aborts_the_handshake(policy: Policy, files: Files) -> None:
    """OpenSSL applies a CA's DNS name constraints to the CN of a certificate without a
    SAN, as section 7 asks: such a certificate never reaches the policy."""
    constrained = PARTNER_ROOT.intermediate(
        "Contoso-only CA", permitted_dns=["contoso.com"], **VALID
    )
    with running(policy, files) as server, pytest.raises(HANDSHAKE_ABORTED):
        send(server, files, leaf=constrained.issue("server1.fabrikam.com", **VALID))
    assert ([], []) == (server.delivery.messages, server.decisions)


# -- the chain is checked again with tlsconnector's rules (spec section 7) ------------


def refusal(server: Server, files: Files, leaf: Leaf) -> tuple[int, tuple[str, ...]]:
    """Send with ``leaf`` (refused, nothing delivered): the RCPT reply code and the
    decision's reason codes."""
    delivered = len(server.delivery.messages)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(server, files, leaf=leaf)
    assert delivered == len(server.delivery.messages)
    code, _ = caught.value.recipients["finance@contoso.com"]
    return code, server.decisions[-1].codes


def test_cn_outside_permitted_subtree_with_a_permitted_san_is_refused(
    policy: Policy, files: Files
) -> None:
    """Issue item 1: a CA constrained to woodgrove.com issues CN=server1.fabrikam.com
    with SAN mail.woodgrove.com. OpenSSL checks the constraint on the SAN only (the
    handshake succeeds); tlsconnector applies it to the CN: 550, not trusted."""
    woodgrove = PARTNER_ROOT.intermediate("Woodgrove CA", permitted_dns=["woodgrove.com"], **VALID)
    leaf = woodgrove.issue("server1.fabrikam.com", san=["mail.woodgrove.com"], **VALID)
    with running(policy, files) as server:
        assert (550, ("certificate-not-trusted",)) == refusal(server, files, leaf)
    assert "tlsconnector" == server.decisions[0].chain_verified_by


def test_cn_inside_excluded_subtree_with_an_unrelated_san_is_refused(
    policy: Policy, files: Files
) -> None:
    """The excluded-subtree variant: a CA excluding fabrikam.com issues
    CN=server1.fabrikam.com with SAN mail.example.net; the handshake succeeds, the
    policy refuses it (550, not trusted)."""
    no_fabrikam = PARTNER_ROOT.intermediate(
        "Anything-but-Fabrikam CA", excluded_dns=["fabrikam.com"], **VALID
    )
    leaf = no_fabrikam.issue("server1.fabrikam.com", san=["mail.example.net"], **VALID)
    with running(policy, files) as server:
        assert (550, ("certificate-not-trusted",)) == refusal(server, files, leaf)


def test_leaf_straight_from_the_root_is_accepted(policy: Policy, files: Files) -> None:
    """A partner leaf issued by the trust anchor itself (no intermediate)."""
    with running(policy, files) as server:
        refused = send(server, files, leaf=PARTNER_ROOT.issue("server2.fabrikam.com", **VALID))
    assert {} == refused
    assert [("connector-satisfied", "tlsconnector")] == [
        (d.codes[0], d.chain_verified_by) for d in server.decisions
    ]


def test_validity_is_checked_again_at_the_clock_time(policy: Policy, files: Files) -> None:
    """The handshake checks dates at the real time; tlsconnector again at the session's
    time: a handler clock past the partner's notAfter gives certificate-expired."""
    later = NOW + dt.timedelta(days=60)
    with running(policy, files, clock=lambda: later) as server:
        assert (550, ("certificate-expired",)) == refusal(server, files, PARTNER)


def test_the_policy_trust_store_decides_not_the_tls_context(files: Files) -> None:
    """A policy without trust anchors, served with a context of your own that trusts
    the partner CA: the handshake succeeds, tlsconnector finds no anchor and refuses
    (never the "MTA verified" accept the context's own verification would give)."""
    bare = Policy.from_mapping(
        {
            "inbound": [
                {
                    "name": "Fabrikam Bank inbound",
                    "sender_domains": ["fabrikam.com"],
                    "tls_sender_certificate_name": "*.fabrikam.com",
                }
            ]
        },
        trust=None,
    )
    context = server_tls_context(bare, certfile=files.server_cert, keyfile=files.server_key)
    context.load_verify_locations(cadata=PARTNER_ROOT.cert_pem())
    context.verify_mode = ssl.CERT_OPTIONAL
    with running(bare, files, tls_context=context) as server:
        assert (550, ("certificate-not-trusted",)) == refusal(server, files, PARTNER)
    assert "no trust anchors" in server.decisions[0].reasons[0].detail


def test_presented_chain_is_what_the_client_sent(policy: Policy, files: Files) -> None:
    """The facts hold the client's leaf and intermediate, in its order, and never the
    trust anchor the server's own store adds to the verified chain."""
    seen: list[tuple[str, ...]] = []

    def record(session: Session, *_: object) -> None:
        facts = tls_facts(session)
        assert facts is not None
        assert facts.certificate is not None
        seen.append(tuple(c.subject.rfc4514_string() for c in facts.certificate.certificates))

    handler = TLSConnectorHandler(policy, delivery=Delivery(), clock=lambda: NOW)
    handler.on_decision = record
    kwargs = smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key)
    thread = LoopThread(lambda loop: SMTP(handler, hostname="mx.test", loop=loop, **kwargs))
    try:
        assert {} == send(Server(thread.port, handler.delivery, []), files, leaf=PARTNER)
    finally:
        thread.stop()
    assert [("CN=server1.fabrikam.com", "CN=Fabrikam Issuing CA")] == seen


def test_without_a_chain_api_only_the_leaf_is_checked(
    policy: Policy, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python exposing no chain at all: the leaf alone is validated. A leaf from the
    anchor is still accepted; one from an intermediate has no path and fails closed
    as not trusted (docs/aiosmtpd.md)."""
    monkeypatch.setattr(adapter, "_presented_chain_der", lambda ssl_object: None)
    with running(policy, files) as server:
        assert {} == send(server, files, leaf=PARTNER_ROOT.issue("server2.fabrikam.com", **VALID))
        assert (550, ("certificate-not-trusted",)) == refusal(server, files, PARTNER)


@pytest.mark.parametrize(("sent", "code"), [(10, 250), (11, 451)])
def test_chain_bound_applies_to_what_the_client_sent(
    policy: Policy, files: Files, sent: int, code: int
) -> None:
    """At most MAX_CHAIN_CERTIFICATES (10) presented certificates: the partner's leaf
    and intermediate padded with unrelated CA certificates verify in the handshake; 10
    are accepted, 11 are malformed facts (451), never an accept."""
    padding = tuple(CA(f"Unrelated CA {i}", **VALID).cert for i in range(sent - 2))
    leaf = Leaf(PARTNER.cert, PARTNER.key, (*PARTNER.intermediates, *padding))
    with running(policy, files) as server:
        if code == 250:
            assert {} == send(server, files, leaf=leaf)
        else:
            assert (code, ("malformed-facts",)) == refusal(server, files, leaf)
            assert "more than 10 certificates" in server.decisions[0].reasons[0].detail


class ResumingContext:
    """A client context that offers the TLS session of its previous connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.session: ssl.SSLSession | None = None
        self.resumed: list[bool] = []
        self.sockets: list[ssl.SSLSocket] = []

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None) -> ssl.SSLSocket:
        wrapped = self.context.wrap_socket(
            sock, server_hostname=server_hostname, session=self.session
        )
        self.resumed.append(wrapped.session_reused)
        self.sockets.append(wrapped)
        return wrapped


def send_resuming(server: Server, client: ResumingContext) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=WAIT) as smtp:
        smtp.ehlo("mail.fabrikam.com")
        smtp.starttls(context=client)  # type: ignore[arg-type]  # duck-typed by smtplib
        smtp.ehlo("mail.fabrikam.com")
        try:
            return smtp.sendmail("payments@fabrikam.com", ["finance@contoso.com"], MESSAGE)
        finally:
            client.session = client.sockets[-1].session  # TLS 1.3: known after the handshake


def test_default_context_never_resumes_so_the_chain_is_always_known(
    policy: Policy, files: Files
) -> None:
    """A resumed session has no peer chain: server_tls_context issues no tickets, so a
    partner's second connection is a full handshake and is accepted again."""
    client = ResumingContext(client_context(files, PARTNER))
    with running(policy, files) as server:
        assert ({}, {}) == (send_resuming(server, client), send_resuming(server, client))
    assert [False, False] == client.resumed
    assert 2 == len(server.delivery.messages)


def test_resumed_session_without_chain_is_a_temporary_failure(policy: Policy, files: Files) -> None:
    """A context of your own that allows resumption: the resumed session has the leaf
    but not the intermediates, so the chain cannot be checked: 451, never an accept
    and never a permanent refusal of a partner that would pass a full handshake."""
    context = server_tls_context(policy, certfile=files.server_cert, keyfile=files.server_key)
    context.options &= ~ssl.OP_NO_TICKET
    context.num_tickets = 2
    client = ResumingContext(client_context(files, PARTNER))
    with running(policy, files, tls_context=context) as server:
        assert {} == send_resuming(server, client)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send_resuming(server, client)
    assert [False, True] == client.resumed
    assert 451 == caught.value.recipients["finance@contoso.com"][0]
    assert 1 == len(server.delivery.messages)
    assert ("malformed-facts",) == server.decisions[-1].codes
    assert "a resumed TLS session" in server.decisions[-1].reasons[0].detail


def test_tls_without_client_certificate_is_refused_550(policy: Policy, files: Files) -> None:
    with running(policy, files) as server, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(server, files, leaf=None)
    code, text = caught.value.recipients["finance@contoso.com"]
    assert (550, b'5.7.1 Connector "Fabrikam Bank inbound": a client certificate is required') == (
        code,
        text,
    )
    assert [] == server.delivery.messages


def test_without_tls_only_a_governed_sender_is_refused_530_at_rcpt(
    policy: Policy, files: Files
) -> None:
    """The default (require_starttls=False): plaintext comes in; a sender whose connector
    requires TLS is refused at RCPT with RFC 3207's 530 5.7.0, one no connector governs
    gets through without TLS."""
    with running(policy, files) as server:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(server, files, tls=False)
        refused = send(server, files, tls=False, sender="someone@example.org")
    assert (530, b"5.7.0 Must issue a STARTTLS command first") == caught.value.recipients[
        "finance@contoso.com"
    ]
    assert {} == refused
    assert ["someone@example.org"] == [sender for sender, _, _ in server.delivery.messages]
    assert [("tls-required", "certificate-missing"), ("no-connector",)] == [
        d.codes for d in server.decisions
    ]


def test_require_starttls_true_refuses_every_plaintext_mail_530(
    policy: Policy, files: Files
) -> None:
    """require_starttls=True: aiosmtpd refuses MAIL before STARTTLS for every sender,
    governed or not, before the handler is asked."""
    with running(policy, files, require_starttls=True) as server:
        for sender in ("payments@fabrikam.com", "someone@example.org"):
            with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                send(server, files, tls=False, sender=sender)
            assert 530 == caught.value.smtp_code
    assert ([], []) == (server.delivery.messages, server.decisions)


def test_failed_client_certificate_handshake_is_logged_as_one_line(
    policy: Policy, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    """An untrusted client certificate: one warning line naming the TLS error, and no
    traceback from tlsconnector or aiosmtpd ("SMTP session exception")."""
    with caplog.at_level(logging.INFO), running(policy, files) as server:
        with pytest.raises(HANDSHAKE_ABORTED):
            send(server, files, leaf=UNTRUSTED)
        assert {} == send(server, files, leaf=PARTNER)  # the server still serves
    failed = [r for r in caplog.records if "handshake failed" in r.getMessage()]
    assert 1 == len(failed)
    (line,) = failed
    assert ("tlsconnector.adapters.aiosmtpd", logging.WARNING) == (line.name, line.levelno)
    assert "\n" not in line.getMessage()
    assert "SSLCertVerificationError: self-signed certificate" in line.getMessage()
    assert [] == [r.getMessage() for r in caplog.records if r.exc_info]


def test_other_exceptions_go_to_the_delivery_handlers_hook(policy: Policy) -> None:
    class Own(Delivery):
        def __init__(self) -> None:
            super().__init__()
            self.errors: list[Exception] = []

        async def handle_exception(self, error: Exception) -> str:
            self.errors.append(error)
            return "421 4.3.0 own answer"

    own = Own()
    handler = TLSConnectorHandler(policy, delivery=own)
    error = ValueError("boom")
    assert "421 4.3.0 own answer" == asyncio.run(handler.handle_exception(error))
    assert [error] == own.errors
    bare = TLSConnectorHandler(policy, delivery=Delivery())
    assert "500 Error: (ValueError) bad\\x0aline" == asyncio.run(
        bare.handle_exception(ValueError("bad\nline"))
    )


def test_sender_no_connector_governs_is_accepted(policy: Policy, files: Files) -> None:
    """TLS without a client certificate, from a domain no connector governs: 250."""
    with running(policy, files) as server:
        refused = send(server, files, sender="newsletter@example.org")
    assert {} == refused
    assert 1 == len(server.delivery.messages)
    assert ("no-connector",) == server.decisions[0].codes


def test_null_sender_no_connector_governs_is_accepted(policy: Policy, files: Files) -> None:
    """A bounce (MAIL FROM:<>) is matched only by a "*" connector (section 5.1)."""
    with running(policy, files) as server:
        refused = send(server, files, sender="")
    assert {} == refused
    assert ("no-connector",) == server.decisions[0].codes


def test_every_recipient_is_decided(policy: Policy, files: Files) -> None:
    with running(policy, files) as server:
        refused = send(
            server, files, leaf=PARTNER, recipients=("finance@contoso.com", "ap@contoso.com")
        )
    assert {} == refused
    assert [["finance@contoso.com", "ap@contoso.com"]] == [
        rcpts for _, rcpts, _ in server.delivery.messages
    ]
    assert 2 == len(server.decisions)


# -- never fail open -----------------------------------------------------------------


def test_error_while_deciding_is_451_never_accept(policy: Policy, files: Files) -> None:
    """A broken clock makes deciding fail: 451 4.3.0, even for the good partner."""

    def broken_clock() -> dt.datetime:
        raise RuntimeError("clock unavailable")

    with (
        running(policy, files, clock=broken_clock) as server,
        pytest.raises(smtplib.SMTPRecipientsRefused) as caught,
    ):
        send(server, files, leaf=PARTNER)
    assert (451, b"4.3.0 Temporary failure, try again later") == caught.value.recipients[
        "finance@contoso.com"
    ]
    assert [] == server.delivery.messages
    assert ("internal-error",) == server.decisions[0].codes


def test_malformed_facts_are_451(policy: Policy, files: Files) -> None:
    """A clock without a timezone is malformed facts (field `at`): a temporary failure."""
    with (
        running(policy, files, clock=lambda: dt.datetime(2026, 11, 26)) as server,
        pytest.raises(smtplib.SMTPRecipientsRefused) as caught,
    ):
        send(server, files, sender="newsletter@example.org")
    assert 451 == caught.value.recipients["finance@contoso.com"][0]
    assert "at = " in server.decisions[0].reasons[0].detail


@pytest.mark.parametrize(
    "sender",
    ["payments@[192.0.2.999]", "payments@-fabrikam.com", "payments@" + "a" * 64 + ".fabrikam.com"],
)
def test_malformed_sender_domain_is_451_never_accept(
    policy: Policy, files: Files, sender: str
) -> None:
    """Section 8: a sender domain that cannot be normalised (a bad address literal, a
    leading hyphen, a label over 63 octets) is malformed facts at the SMTP edge: a
    temporary failure, even with the partner's certificate."""
    with (
        running(policy, files) as server,
        pytest.raises(smtplib.SMTPRecipientsRefused) as caught,
    ):
        send(server, files, leaf=PARTNER, sender=sender)
    assert 451 == caught.value.recipients["finance@contoso.com"][0]
    assert [] == server.delivery.messages
    assert "mail_from = " in server.decisions[0].reasons[0].detail


def test_failing_on_decision_hook_is_451(policy: Policy, files: Files) -> None:
    def audit(*_: object) -> None:
        raise OSError("audit log full")

    handler = TLSConnectorHandler(policy, delivery=Delivery(), on_decision=audit)
    kwargs = smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key)
    thread = LoopThread(lambda loop: SMTP(handler, hostname="mx.test", loop=loop, **kwargs))
    try:
        server = Server(thread.port, handler.delivery, [])
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(server, files, leaf=PARTNER)
    finally:
        thread.stop()
    assert 451 == caught.value.recipients["finance@contoso.com"][0]


def test_reply_line_never_turns_an_odd_reply_into_success() -> None:
    """A refusal without a usable reply falls back to 451 4.3.0."""
    reason = (Reason(ReasonCode.CERTIFICATE_MISSING, "none", "X"),)
    odd = [
        InboundDecision(InboundAction.REJECT, "X", reason, None),
        InboundDecision(InboundAction.REJECT, "X", reason, SmtpReply(250, "2.0.0", "ok")),
        InboundDecision(InboundAction.REJECT, "X", reason, SmtpReply(550, "4.7.1", "mixed")),
        InboundDecision(InboundAction.TEMPFAIL, None, reason, SmtpReply(550, "5.7.1", "perm")),
    ]
    assert ["451 4.3.0 Temporary failure, try again later"] * 4 == [reply_line(d) for d in odd]
    fine = InboundDecision(InboundAction.REJECT, "X", reason, SmtpReply(550, "5.7.1", "a\r\nb"))
    assert "550 5.7.1 a\\x0d\\x0ab" == reply_line(fine)


# -- fitting real servers ------------------------------------------------------------


def test_delivery_rcpt_hook_runs_only_for_accepted_recipients(policy: Policy, files: Files) -> None:
    """The user's handle_RCPT keeps validating mailboxes, after the policy accepted."""

    class Mailboxes(Delivery):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

        async def handle_RCPT(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            address: str,
            options: list[str],
        ) -> str:
            self.asked.append(address)
            if address != "finance@contoso.com":
                return "550 5.1.1 No such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    mailboxes = Mailboxes()
    with running(policy, files, delivery=mailboxes) as server:
        refused = send(
            server, files, leaf=PARTNER, recipients=("finance@contoso.com", "nobody@contoso.com")
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server, files, leaf=WRONG_CN)
    assert {"nobody@contoso.com": (550, b"5.1.1 No such user")} == refused
    assert ["finance@contoso.com", "nobody@contoso.com"] == mailboxes.asked  # not WRONG_CN's
    assert [["finance@contoso.com"]] == [rcpts for _, rcpts, _ in mailboxes.messages]


def test_delivery_handlers_other_hooks_are_kept(policy: Policy) -> None:
    """aiosmtpd finds hooks with dir(handler): the delivery's own stay visible."""

    class WithHooks(Delivery):
        async def handle_EHLO(self, *args: Any) -> str:
            return "250 HELP"

        async def handle_MAIL(self, *args: Any) -> str:
            return "250 OK"

    delivery = WithHooks()
    handler = TLSConnectorHandler(policy, delivery=delivery)
    assert {"handle_DATA", "handle_EHLO", "handle_MAIL", "handle_RCPT"} <= set(dir(handler))
    assert delivery.handle_EHLO == handler.handle_EHLO  # type: ignore[attr-defined]


def test_delivery_without_handle_data_is_refused(policy: Policy) -> None:
    with pytest.raises(TypeError, match="handle_DATA"):
        TLSConnectorHandler(policy, delivery=object())


def test_works_under_aiosmtpd_controller(policy: Policy, files: Files) -> None:
    """The documented way to run it: Controller(handler, **smtp_kwargs(...))."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    delivery = Delivery()
    controller = Controller(
        TLSConnectorHandler(policy, delivery=delivery),
        hostname="127.0.0.1",
        port=port,
        server_hostname="mx.contoso.example",
        ready_timeout=WAIT,
        **smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key),
    )
    controller.start()
    try:
        refused = send(Server(port, delivery, []), files, leaf=PARTNER)
    finally:
        controller.stop()
    assert {} == refused
    assert 1 == len(delivery.messages)


# -- the helpers ---------------------------------------------------------------------


def test_tls_context_asks_for_a_certificate_verified_against_the_policy_anchors(
    policy: Policy, files: Files
) -> None:
    context = server_tls_context(policy, certfile=files.server_cert, keyfile=files.server_key)
    assert ssl.CERT_OPTIONAL == context.verify_mode
    assert ["Fabrikam Partner Root"] == [
        dict(entry[0] for entry in ca["subject"])["commonName"] for ca in context.get_ca_certs()
    ]


def test_policy_without_trust_anchors_asks_for_no_certificate(files: Files) -> None:
    """No anchors: no certificate could verify, so none is asked for (each governed
    sender then gets certificate-missing), rather than aborting every handshake."""
    bare = Policy.from_mapping(
        {"inbound": [{"name": "F", "sender_domains": ["fabrikam.com"]}]}, trust=None
    )
    context = server_tls_context(bare, certfile=files.server_cert, keyfile=files.server_key)
    assert ssl.CERT_NONE == context.verify_mode


def test_requires_starttls_follows_the_policy_and_smtp_kwargs_does_not(
    policy: Policy, files: Files
) -> None:
    relaxed = Policy.from_mapping(
        {"inbound": [{"name": "Allow", "sender_domains": ["*"], "require_tls": False}]},
        trust=None,
    )
    disabled = Policy.from_mapping(
        {"inbound": [{"name": "Off", "sender_domains": ["x.com"], "enabled": False}]},
        trust=None,
    )
    assert (True, False, False) == tuple(map(requires_starttls, (policy, relaxed, disabled)))
    kwargs = smtp_kwargs(policy, certfile=files.server_cert, keyfile=files.server_key)
    assert {"tls_context", "require_starttls"} == set(kwargs)
    assert kwargs["require_starttls"] is False  # refused per sender, by the handler
    override = smtp_kwargs(
        policy, certfile=files.server_cert, keyfile=files.server_key, require_starttls=True
    )
    assert override["require_starttls"] is True


def test_session_without_starttls_has_no_tls_facts() -> None:
    session = Session(asyncio.new_event_loop())
    try:
        assert tls_facts(session) is None
    finally:
        session.loop.close()
