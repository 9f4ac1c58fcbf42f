"""Stapled OCSP responses, outbound (spec section 11, issue 16): the delivery helper
and the probe ask for a staple on the connection that carries the message, and pass
what the server stapled to the verdict.

The partner is a real SMTP server on 127.0.0.1 (tests/adapters/stapling_server.py)
whose TLS (pyOpenSSL) staples an OCSP response minted with the test PKI. The leaf
names a CRL distribution point and no CRL is configured, so under ``revocation =
"hard"`` only a usable staple can let the message go: a delivery under "hard" shows
that the staple reached the core. Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest
from stapling_server import WAIT, stapling_server

from tlsconnector import (
    OutboundAction,
    OutboundSession,
    Policy,
    TrustStore,
    evaluate_outbound,
)
from tlsconnector.adapters.smtp import (
    CHAIN_APIS,
    Outcome,
    TLSSocket,
    check_host,
    deliver,
    starttls_and_collect,
    tls_client_context,
)
from tlsconnector.cli import main

from certmint import CA, NOW

CDP = ["http://crl.fabrikam.example/issuing.crl"]
ROOT = CA("Stapling Test Root")
#: No CRL distribution point: the intermediate is never "unknown", only the leaf can be.
INTERMEDIATE = ROOT.intermediate("Stapling Test Issuing CA")
LEAF = INTERMEDIATE.issue("server1.fabrikam.com", crl_distribution_points=CDP)

GOOD = INTERMEDIATE.ocsp_response(LEAF.cert, "good")
REVOKED = INTERMEDIATE.ocsp_response(LEAF.cert, "revoked")
#: "revoked", about the leaf's serial under another issuer (the CertID's issuer name and
#: key hashes are the root's): a staple about another certificate (stapling_server.py
#: says why not another serial).
FOR_ANOTHER_CERTIFICATE = INTERMEDIATE.ocsp_response(LEAF.cert, "revoked", cert_id_issuer=ROOT.cert)
EXPIRED = INTERMEDIATE.ocsp_response(
    LEAF.cert,
    "good",
    this_update=NOW - dt.timedelta(days=5),
    next_update=NOW - dt.timedelta(days=1),
)

MESSAGE = b"From: a@contoso.com\r\nTo: finance@fabrikam.com\r\nSubject: hi\r\n\r\nHello.\r\n"
SENDER = "a@contoso.com"
RECIPIENT = "finance@fabrikam.com"


def connector(host: str) -> dict[str, Any]:
    return {
        "name": "Fabrikam Bank outbound",
        "recipient_domains": ["fabrikam.com"],
        "use_mx_record": False,
        "smart_hosts": [host],
        "tls_settings": "certificate_validation",
    }


def policy(revocation: str, host: str = "192.0.2.1") -> Policy:
    """The outbound connector validates the chain with the test root as trust anchor;
    no CRL files."""
    return Policy.from_mapping(
        {"trust": {"revocation": revocation}, "outbound": [connector(host)]},
        trust=TrustStore.from_pem(ROOT.cert_pem()),
    )


def send(revocation: str, port: int) -> Any:
    [result] = deliver(
        policy(revocation, f"127.0.0.1:{port}"),
        MESSAGE,
        sender=SENDER,
        recipients=[RECIPIENT],
        at=NOW,
        timeout=5.0,
        deadline=30.0,
    ).results
    return result


# -- deliver() --------------------------------------------------------------------------


@pytest.mark.parametrize("revocation", ["soft", "hard"])
def test_a_good_staple_delivers_also_under_hard(revocation: str) -> None:
    """Without a CRL, "hard" defers a leaf with a distribution point unless the staple
    answers: delivered, so the good staple reached the verdict. The handshake asked for
    it, and the attempt shows the staple the verdict was given."""
    with stapling_server(LEAF, GOOD) as server:
        result = send(revocation, server.port)
    assert Outcome.DELIVERED == result.outcome, result.reasons
    assert ("delivered",) == result.codes[:1]
    assert "revocation-unknown" not in result.codes
    [attempt] = result.attempts
    assert attempt.ocsp_requested
    assert GOOD == attempt.ocsp_response
    assert attempt.attempt is not None
    assert attempt.attempt.tls is not None
    assert GOOD == attempt.attempt.tls.ocsp_response
    assert CHAIN_APIS[2] == attempt.chain_api
    [connection] = server.connections
    assert connection.staple_requested
    assert [(f"<{SENDER}>", [f"<{RECIPIENT}>"], MESSAGE)] == server.messages


@pytest.mark.parametrize("revocation", ["soft", "hard"])
def test_a_revoked_staple_defers_and_the_message_never_reaches_the_server(
    revocation: str,
) -> None:
    """certificate-revoked, defer 4.7.5, whatever the mode: QUIT before MAIL FROM, so the
    server never sees a sender, let alone DATA."""
    with stapling_server(LEAF, REVOKED) as server:
        result = send(revocation, server.port)
    assert Outcome.DEFERRED == result.outcome
    assert "certificate-revoked" == result.codes[0]
    assert "4.7.5" == result.enhanced
    assert result.decision is not None
    assert OutboundAction.DEFER == result.decision.action
    [connection] = server.connections
    assert "MAIL" not in connection.verbs
    assert "DATA" not in connection.verbs
    assert "QUIT" == connection.verbs[-1]
    assert [] == server.messages


def test_no_staple_under_hard_defers_as_revocation_unknown() -> None:
    """The client asked, the server stapled nothing: no answer for the leaf, so "hard"
    defers (revocation-unknown, 4.7.5) and nothing is sent."""
    with stapling_server(LEAF, None) as server:
        result = send("hard", server.port)
    assert Outcome.DEFERRED == result.outcome
    assert "revocation-unknown" == result.codes[0]
    assert "4.7.5" == result.enhanced
    [attempt] = result.attempts
    assert (True, None) == (attempt.ocsp_requested, attempt.ocsp_response)
    assert server.connections[0].staple_requested
    assert [] == server.messages


def test_no_staple_under_soft_delivers_with_revocation_unknown_beside() -> None:
    with stapling_server(LEAF, None) as server:
        result = send("soft", server.port)
    assert Outcome.DELIVERED == result.outcome
    assert "revocation-unknown" in result.codes
    assert 1 == len(server.messages)


@pytest.mark.parametrize(
    "staple",
    [
        pytest.param(FOR_ANOTHER_CERTIFICATE, id="another-certificate"),
        pytest.param(EXPIRED, id="expired"),
    ],
)
def test_a_staple_that_does_not_answer_for_the_leaf_is_no_answer(staple: bytes) -> None:
    """A staple for another certificate, or past its nextUpdate, answers nothing (as the
    core says): "hard" defers as if none had come; it is passed on all the same."""
    with stapling_server(LEAF, staple) as server:
        result = send("hard", server.port)
    assert Outcome.DEFERRED == result.outcome
    assert "revocation-unknown" == result.codes[0]
    assert staple == result.attempts[0].ocsp_response
    assert [] == server.messages


def test_a_revoked_staple_about_another_certificate_never_revokes_the_leaf() -> None:
    """Under "soft" the same staple (status revoked, another CertID) is no answer: the
    message goes, with revocation-unknown beside."""
    with stapling_server(LEAF, FOR_ANOTHER_CERTIFICATE) as server:
        result = send("soft", server.port)
    assert Outcome.DELIVERED == result.outcome
    assert "certificate-revoked" not in result.codes
    assert "revocation-unknown" in result.codes
    assert FOR_ANOTHER_CERTIFICATE == result.attempts[0].ocsp_response


def test_check_host_reads_the_staple_without_sending() -> None:
    with stapling_server(LEAF, REVOKED) as server:
        attempt = check_host(
            policy("soft"), RECIPIENT, f"127.0.0.1:{server.port}", at=NOW, timeout=5
        )
    assert not attempt.delivers
    assert attempt.decision is not None
    assert "certificate-revoked" == attempt.decision.codes[0]
    assert REVOKED == attempt.ocsp_response
    assert "MAIL" not in server.connections[0].verbs


# -- a gateway's own smtplib client --------------------------------------------------------


def test_a_gateway_s_smtplib_client_gets_the_staple_and_sends_over_the_tls_socket() -> None:
    """starttls_and_collect without a context asks for a staple; smtplib then sends the
    message over the TLSSocket it leaves in place."""
    pol = policy("hard")
    with stapling_server(LEAF, GOOD) as server:
        client = smtplib.SMTP(
            "127.0.0.1", server.port, local_hostname="gw.contoso.com", timeout=WAIT
        )
        with client:
            attempt = starttls_and_collect(client, server_hostname="mx1.fabrikam.com")
            assert isinstance(client.sock, TLSSocket)
            session = OutboundSession.create(
                recipient=RECIPIENT, at=NOW, peer_host="mx1.fabrikam.com", attempt=attempt
            )
            verdict = evaluate_outbound(pol, session)
            assert OutboundAction.DELIVER == verdict.action, verdict.codes
            client.sendmail(SENDER, [RECIPIENT], MESSAGE)
    assert attempt.tls is not None
    assert GOOD == attempt.tls.ocsp_response
    assert 1 == len(server.messages)


def test_a_gateway_s_own_ssl_context_keeps_the_ssl_path_without_a_staple() -> None:
    """An ssl.SSLContext passed in is used as before: Python's ssl sends no
    status_request, so the server staples nothing and hard defers."""
    with stapling_server(LEAF, GOOD) as server:
        client = smtplib.SMTP(
            "127.0.0.1", server.port, local_hostname="gw.contoso.com", timeout=WAIT
        )
        with client:
            attempt = starttls_and_collect(
                client, server_hostname="mx1.fabrikam.com", context=tls_client_context()
            )
            assert isinstance(client.sock, ssl.SSLSocket)
    assert attempt.tls is not None
    assert None is attempt.tls.ocsp_response
    assert not server.connections[0].staple_requested
    session = OutboundSession.create(recipient=RECIPIENT, at=NOW, attempt=attempt)
    assert "revocation-unknown" == evaluate_outbound(policy("hard"), session).codes[0]


def test_a_session_cut_before_the_reply_to_the_message_is_not_delivered() -> None:
    """The server reads the whole message, then drops the connection without a reply
    and without TLS close_notify: a protocol error, deferred, never delivered."""
    with stapling_server(LEAF, GOOD, cut_after_data=True) as server:
        result = send("soft", server.port)
    assert 1 == len(server.messages)  # the server did read it all
    assert Outcome.DEFERRED == result.outcome
    assert "protocol-error" == result.codes[0]
    assert "without close_notify" in result.reasons[0].detail


# -- the probe ------------------------------------------------------------------------------


def probe_json(tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(
        '[trust]\nca_file = "ca.pem"\nrevocation = "hard"\n\n[[outbound]]\n'
        'name = "Fabrikam Bank outbound"\nrecipient_domains = ["fabrikam.com"]\n'
        'tls_settings = "certificate_validation"\n'
    )
    argv = ["probe", "--policy", str(path), "--at", NOW.isoformat(), "--timeout", "5"]
    argv += ["--recipient", RECIPIENT, "--host", f"127.0.0.1:{port}"]
    status = main([*argv, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def test_the_probe_reports_a_revoked_staple_as_not_deliverable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 (would not deliver), certificate-revoked; the report shows that a staple
    was asked for and the one that came (base64, as the session fact)."""
    with stapling_server(LEAF, REVOKED) as server:
        status, result = probe_json(tmp_path, server.port, capsys)
    assert 3 == status
    assert "defer" == result["action"]
    assert "certificate-revoked" == result["reasons"][0]["code"]
    tls = result["probe"]["tls"]
    assert tls["ocsp_requested"] is True
    assert REVOKED == base64.b64decode(tls["ocsp_response"])
    assert "MAIL" not in server.connections[0].verbs


def test_the_probe_delivers_with_a_good_staple_under_hard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with stapling_server(LEAF, GOOD) as server:
        status, result = probe_json(tmp_path, server.port, capsys)
    assert (0, "deliver") == (status, result["action"])


def test_the_probe_s_text_says_what_was_stapled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text('[trust]\nca_file = "ca.pem"\n')
    argv = ["probe", "--policy", str(path), "--at", NOW.isoformat(), "--timeout", "5"]
    with stapling_server(LEAF, REVOKED) as server:
        main([*argv, "--recipient", RECIPIENT, "--host", f"127.0.0.1:{server.port}"])
    with stapling_server(LEAF, None) as server:
        main([*argv, "--recipient", RECIPIENT, "--host", f"127.0.0.1:{server.port}"])
    out = capsys.readouterr().out
    assert f"  OCSP staple: {len(REVOKED)} bytes stapled, passed to the verdict\n" in out
    assert "  OCSP staple: asked for, none stapled\n" in out
