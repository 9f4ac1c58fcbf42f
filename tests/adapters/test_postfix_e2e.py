"""End to end with a real Postfix: Contoso's MX enforces the Fabrikam Bank connector.

Postfix (from Debian packages, installed by ``.ci/run``) runs from a throwaway
``config_directory`` with its own ``queue_directory``, ``data_directory``, log file
and Maildir under one temporary directory; ``/etc/postfix`` is never touched. Postfix
asks ``tlsconnector serve postfix`` at RCPT TO (``check_policy_service``); clients
are Python's ``smtplib`` with real certificates minted for the test. Two loopback
listeners: a partner-only one where Postfix requires TLS (``encrypt``) and a public-MX
one where Postfix only offers it (``may``) and the connector forces it.

Without Postfix the module is skipped, except under ``CI=true`` where a missing
Postfix is a failure. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import ipaddress
import json
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from postfix_instance import free_port, tool
from test_postfix_server import PolicyService

from tlsconnector.cli import main

from certmint import CA, Leaf

pytestmark = pytest.mark.postfix

WAIT = 20.0  # seconds: the bound on every wait
MASTER_CF_TEMPLATES = (Path("/usr/share/postfix/master.cf.dist"), Path("/etc/postfix/master.cf"))
DEFAULT_ACTION = "451 4.3.5 Policy service unavailable, try again later"
#: How Postfix words a refusal at RCPT TO before the policy service's text.
REJECTED = "<alice@contoso.com>: Recipient address rejected"
POLICY = """
[trust]
ca_file = "partners-ca.pem"

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
"""


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix did not listen on port {port}") from None
            time.sleep(0.05)


@attrs.frozen
class Mx:
    """Contoso's MX: a running Postfix and its policy service."""

    base: Path
    #: The partner-only listener: TLS required by Postfix (smtpd_tls_security_level=encrypt).
    port: int
    #: A public-MX listener: TLS offered (may); tlsconnector forces it per connector.
    open_port: int
    service: PolicyService
    certs: dict[str, tuple[Path, Path]]
    mx_ca: Path
    maildir: Path

    def log_tail(self) -> str:
        path = self.base / "postfix.log"
        return (
            "".join(path.read_text(errors="replace").splitlines(True)[-15:])
            if path.exists()
            else ""
        )


def _write_leaf(directory: Path, name: str, leaf: Leaf) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_text(leaf.chain_pem())
    key.write_text(leaf.key_pem())
    key.chmod(0o600)
    return cert, key


def _mint(base: Path) -> tuple[dict[str, tuple[Path, Path]], Path, Path]:
    """Certificates valid now (Postfix checks them against the real clock)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    valid = {"not_before": now - dt.timedelta(days=1), "not_after": now + dt.timedelta(days=30)}
    partner_ca = CA("Fabrikam Partner CA", **valid)
    impostor_ca = CA("Fabrikam Partner CA", **valid)  # same name, another key: untrusted
    contoso_ca = CA("Contoso MX CA", **valid)
    (base / "partners-ca.pem").write_text(partner_ca.cert_pem())
    (base / "contoso-ca.pem").write_text(contoso_ca.cert_pem())
    mx_leaf = contoso_ca.issue(
        "mx.contoso.com",
        san=["mx.contoso.com", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        **valid,
    )
    certs = {
        "mx": _write_leaf(base, "mx", mx_leaf),
        "partner": _write_leaf(base, "partner", partner_ca.issue("server1.fabrikam.com", **valid)),
        "wrong-cn": _write_leaf(
            base, "wrong-cn", partner_ca.issue("mail.contoso-evil.com", **valid)
        ),
        "untrusted": _write_leaf(
            base, "untrusted", impostor_ca.issue("server1.fabrikam.com", **valid)
        ),
        "server-auth-only": _write_leaf(
            base,
            "server-auth-only",
            partner_ca.issue(
                "server1.fabrikam.com", eku=[ExtendedKeyUsageOID.SERVER_AUTH], **valid
            ),
        ),
    }
    return certs, base / "partners-ca.pem", base / "contoso-ca.pem"


def _configure(
    base: Path,
    postconf: str,
    *,
    smtp_port: int,
    open_port: int,
    policy_port: int,
    certs: dict[str, tuple[Path, Path]],
    ca: Path,
) -> None:
    etc = base / "etc"
    etc.mkdir()
    template = next(p for p in MASTER_CF_TEMPLATES if p.exists())
    shutil.copyfile(template, etc / "master.cf")
    (etc / "main.cf").write_text("")
    owner = pwd.getpwnam("postfix")
    for name in ("queue", "data", "mail"):
        (base / name).mkdir()
    os.chown(base / "data", owner.pw_uid, owner.pw_gid)
    os.chown(base / "mail", owner.pw_uid, owner.pw_gid)
    mx_cert, mx_key = certs["mx"]
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": base / "queue",
        "data_directory": base / "data",
        "maillog_file": base / "postfix.log",
        "maillog_file_prefixes": base,
        "myhostname": "mx.contoso.com",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mydestination": "",
        "alias_maps": "",
        "alias_database": "",
        "default_transport": "error:this test delivers nothing outside contoso.com",
        "smtp_dns_support_level": "disabled",
        # Contoso's mailboxes: alice@contoso.com delivered to a Maildir.
        "virtual_mailbox_domains": "contoso.com",
        "virtual_mailbox_base": base / "mail",
        "virtual_mailbox_maps": "inline:{ {alice@contoso.com=contoso.com/alice/} }",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
        # Forced TLS, and ask every client for a certificate verified against Fabrikam's CA.
        "smtpd_tls_security_level": "encrypt",
        "smtpd_tls_cert_file": mx_cert,
        "smtpd_tls_key_file": mx_key,
        "smtpd_tls_ask_ccert": "yes",
        "smtpd_tls_CAfile": ca,
        "smtpd_tls_fingerprint_digest": "sha256",
        "smtpd_tls_received_header": "yes",
        # The connector decision at RCPT TO; then Postfix's own relay rules.
        "smtpd_recipient_restrictions": (
            f"check_policy_service inet:127.0.0.1:{policy_port}, permit_auth_destination, reject"
        ),
        "smtpd_policy_service_default_action": DEFAULT_ACTION,
    }
    _run(postconf, "-c", str(etc), "-e", *(f"{k}={v}" for k, v in settings.items()))
    _run(postconf, "-c", str(etc), "-MX", "smtp/inet")
    _run(
        postconf,
        "-c",
        str(etc),
        "-M",
        f"127.0.0.1:{smtp_port}/inet=127.0.0.1:{smtp_port} inet n - n - - smtpd",
    )
    _run(
        postconf,
        "-c",
        str(etc),
        "-M",
        f"127.0.0.1:{open_port}/inet=127.0.0.1:{open_port} inet n - n - - smtpd"
        " -o smtpd_tls_security_level=may",
    )
    # Debian prepares the chroot only from its systemd unit, which does not run here.
    _run(postconf, "-c", str(etc), "-F", "*/*/chroot = n")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=WAIT)


@pytest.fixture(scope="module")
def mx() -> Iterator[Mx]:
    with _running_mx(_mint, POLICY) as running:
        yield running


Minter = Callable[[Path], tuple[dict[str, tuple[Path, Path]], Path, Path]]


@contextlib.contextmanager
def _running_mx(mint: Minter, policy: str) -> Iterator[Mx]:
    """A Postfix and its policy service under a new temporary directory: ``mint``
    writes the certificates there (returning them, the file Postfix's
    smtpd_tls_CAfile names and the MX's CA); ``policy`` is the policy file's text."""
    postfix, postconf, postsuper = tool("postfix"), tool("postconf"), tool("postsuper")
    base = Path(tempfile.mkdtemp(prefix="tlsconnector-postfix-"))
    base.chmod(0o755)  # Postfix's daemons run as the postfix user and must reach it
    etc = str(base / "etc")
    service: PolicyService | None = None
    started = False
    try:
        certs, partner_ca, contoso_ca = mint(base)
        (base / "policy.toml").write_text(policy)
        # Every answer is recorded, for the replay test below.
        service = PolicyService(
            base / "policy.toml", "--record", str(base / "recorded.jsonl")
        ).start()
        port, open_port = free_port(), free_port()
        _configure(
            base,
            postconf,
            smtp_port=port,
            open_port=open_port,
            policy_port=service.port,
            certs=certs,
            ca=partner_ca,
        )
        started = True
        try:
            _run(postfix, "-c", etc, "start")
        except subprocess.CalledProcessError as exc:
            log = base / "postfix.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"postfix start failed: {exc.stderr}\n{tail}") from None
        _wait_for_port(port)
        _wait_for_port(open_port)
        maildir = base / "mail" / "contoso.com" / "alice"
        yield Mx(base, port, open_port, service, certs, contoso_ca, maildir)
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
        if service is not None:
            service.stop()
        shutil.rmtree(base, ignore_errors=True)


@attrs.frozen
class Outcome:
    """What the SMTP client saw: the first refusal, or the queue id of the message."""

    code: int
    text: str
    stage: str  # "mail", "rcpt" or "data"


def send(
    mx: Mx,
    *,
    sender: str,
    cert: str | None = None,
    tls: bool = True,
    subject: str = "",
    port: int | None = None,
) -> Outcome:
    """One message to alice@contoso.com (on the partner-only listener unless ``port``
    says otherwise); stops at the first refusal."""
    port = mx.port if port is None else port
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=WAIT) as smtp:
        smtp.ehlo()
        if tls:
            context = ssl.create_default_context(cafile=str(mx.mx_ca))
            if cert is not None:
                context.load_cert_chain(*mx.certs[cert])
            smtp.starttls(context=context)
            smtp.ehlo()
        code, text = smtp.mail(sender)
        if code != 250:
            return Outcome(code, text.decode(), "mail")
        code, text = smtp.rcpt("alice@contoso.com")
        if code != 250:
            return Outcome(code, text.decode(), "rcpt")
        message = f"From: {sender}\r\nTo: alice@contoso.com\r\nSubject: {subject}\r\n\r\nHello.\r\n"
        code, text = smtp.data(message.encode())
        return Outcome(code, text.decode(), "data")


def delivered(mx: Mx, subject: str) -> email.message.Message:
    """The message with ``subject`` in alice's Maildir (polled, bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for path in (mx.maildir / "new").glob("*") if (mx.maildir / "new").is_dir() else ():
            message = email.message_from_bytes(path.read_bytes())
            if message["Subject"] == subject:
                return message
        time.sleep(0.05)
    raise AssertionError(f"{subject!r} was not delivered; Postfix log:\n{mx.log_tail()}")


def decision_for(mx: Mx, sender: str) -> dict[str, object]:
    return mx.service.wait_for(lambda e: e["event"] == "decision" and e.get("sender") == sender)


def test_partner_certificate_is_accepted_and_delivered(mx: Mx) -> None:
    subject = f"statement {uuid.uuid4()}"
    outcome = send(mx, sender="payments@fabrikam.com", cert="partner", subject=subject)
    assert (250, "data") == (outcome.code, outcome.stage), mx.log_tail()
    message = delivered(mx, subject)
    assert 'Client CN "server1.fabrikam.com"' in " ".join(message.get_all("Received", []))
    event = decision_for(mx, "payments@fabrikam.com")
    assert ("accept", "DUNNO", ["connector-satisfied"]) == (
        event["action"],
        event["reply"],
        event["codes"],
    )


def test_wrong_cn_from_the_trusted_ca_is_refused_at_rcpt(mx: Mx) -> None:
    outcome = send(mx, sender="wrong-cn@fabrikam.com", cert="wrong-cn")
    mismatch = 'Connector "Fabrikam Bank inbound": client certificate name does not match'
    assert Outcome(550, f"5.7.1 {REJECTED}: {mismatch}", "rcpt") == outcome
    assert ["certificate-name-mismatch"] == decision_for(mx, "wrong-cn@fabrikam.com")["codes"]


def test_untrusted_certificate_is_refused_at_rcpt(mx: Mx) -> None:
    outcome = send(mx, sender="untrusted@fabrikam.com", cert="untrusted")
    assert (550, "rcpt") == (outcome.code, outcome.stage)
    assert "client certificate not trusted" in outcome.text
    event = decision_for(mx, "untrusted@fabrikam.com")
    assert "certificate-not-trusted" == event["codes"][0]  # type: ignore[index]
    assert ("", True) == (event["ccert_subject"], bool(event["ccert_fingerprint"]))


def test_postfix_does_not_verify_a_certificate_without_client_auth_eku(mx: Mx) -> None:
    """A documented deviation (docs/postfix.md): tlsconnector accepts a partner's
    serverAuth-only certificate (specification section 7), but Postfix verifies client
    certificates for the TLS client purpose, so it withholds the CN and the session is
    refused as untrusted. Partners sending to a Postfix MX need clientAuth in the EKU."""
    outcome = send(mx, sender="server-auth-only@fabrikam.com", cert="server-auth-only")
    assert (550, "rcpt") == (outcome.code, outcome.stage)
    event = decision_for(mx, "server-auth-only@fabrikam.com")
    assert "certificate-not-trusted" == event["codes"][0]  # type: ignore[index]


def test_tls_without_client_certificate_is_refused_at_rcpt(mx: Mx) -> None:
    outcome = send(mx, sender="nocert@fabrikam.com")
    assert (550, "rcpt") == (outcome.code, outcome.stage)
    assert "a client certificate is required" in outcome.text


def test_no_tls_gets_530_from_postfix_itself(mx: Mx) -> None:
    outcome = send(mx, sender="plain@fabrikam.com", tls=False)
    assert Outcome(530, "5.7.0 Must issue a STARTTLS command first", "mail") == outcome
    # Postfix refused before asking: a later session is logged, this one never was.
    send(mx, sender="marker@example.org")
    decision_for(mx, "marker@example.org")
    assert not any(e.get("sender") == "plain@fabrikam.com" for e in mx.service.events)


def test_a_sender_no_connector_governs_is_delivered(mx: Mx) -> None:
    subject = f"newsletter {uuid.uuid4()}"
    outcome = send(mx, sender="news@example.org", subject=subject)
    assert (250, "data") == (outcome.code, outcome.stage), mx.log_tail()
    delivered(mx, subject)
    assert ["no-connector"] == decision_for(mx, "news@example.org")["codes"]


def test_on_a_public_mx_tlsconnector_forces_tls_for_the_partner_only(mx: Mx) -> None:
    """With smtpd_tls_security_level=may (a public MX must accept plaintext, RFC 3207
    section 4), the connector still requires TLS for fabrikam.com: 530 at RCPT."""
    outcome = send(mx, sender="plain-open@fabrikam.com", tls=False, port=mx.open_port)
    text = f"5.7.0 {REJECTED}: Must issue a STARTTLS command first"
    assert Outcome(530, text, "rcpt") == outcome
    event = decision_for(mx, "plain-open@fabrikam.com")
    assert ["tls-required", "certificate-missing"] == event["codes"]


def test_on_a_public_mx_other_senders_may_still_send_without_tls(mx: Mx) -> None:
    subject = f"plaintext newsletter {uuid.uuid4()}"
    outcome = send(
        mx, sender="news-open@example.org", tls=False, subject=subject, port=mx.open_port
    )
    assert (250, "data") == (outcome.code, outcome.stage), mx.log_tail()
    delivered(mx, subject)


# --- a name-constrained CA in smtpd_tls_CAfile ---------------------------------------

WOODGROVE_POLICY = (
    POLICY
    + """
[[inbound]]
name = "Woodgrove inbound"
sender_domains = ["woodgrove.com"]
require_tls = true
tls_sender_certificate_name = "*.woodgrove.com"
"""
)


def _mint_woodgrove(base: Path) -> tuple[dict[str, tuple[Path, Path]], Path, Path]:
    """One trust file for Postfix and the policy: Fabrikam's partner root and a CA
    whose name constraints permit only woodgrove.com."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    valid = {"not_before": now - dt.timedelta(days=1), "not_after": now + dt.timedelta(days=30)}
    root = CA("Fabrikam Partner Root CA", **valid)
    woodgrove = CA("Woodgrove Issuing CA", permitted_dns=["woodgrove.com"], **valid)
    contoso_ca = CA("Contoso MX CA", **valid)
    (base / "partners-ca.pem").write_text(root.cert_pem() + woodgrove.cert_pem())
    (base / "contoso-ca.pem").write_text(contoso_ca.cert_pem())
    mx_leaf = contoso_ca.issue(
        "mx.contoso.com",
        san=["mx.contoso.com", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        **valid,
    )
    certs = {
        "mx": _write_leaf(base, "mx", mx_leaf),
        # OpenSSL checks the DNS SAN against the constraint and never the CN: Postfix
        # verifies this chain and sends ccert_subject=server1.fabrikam.com.
        "woodgrove-for-fabrikam": _write_leaf(
            base,
            "woodgrove-for-fabrikam",
            woodgrove.issue("server1.fabrikam.com", san=["mail.woodgrove.com"], **valid),
        ),
        "woodgrove": _write_leaf(
            base,
            "woodgrove",
            woodgrove.issue("mail.woodgrove.com", san=["mail.woodgrove.com"], **valid),
        ),
        "partner": _write_leaf(
            base,
            "partner",
            root.issue("server1.fabrikam.com", san=["server1.fabrikam.com"], **valid),
        ),
    }
    return certs, base / "partners-ca.pem", base / "contoso-ca.pem"


@pytest.fixture(scope="module")
def woodgrove_mx() -> Iterator[Mx]:
    with _running_mx(_mint_woodgrove, WOODGROVE_POLICY) as running:
        yield running


def test_the_service_warns_that_postfix_does_not_apply_name_constraints_to_the_cn(
    woodgrove_mx: Mx,
) -> None:
    (warning,) = [e for e in woodgrove_mx.service.events if e["event"] == "name-constrained-ca"]
    assert "Woodgrove Issuing CA" in warning["ca"]
    assert "smtpd_tls_CAfile" in warning["message"]


def test_a_cn_outside_the_name_constraints_postfix_verified_is_refused_at_rcpt(
    woodgrove_mx: Mx,
) -> None:
    """The woodgrove-constrained CA issued CN=server1.fabrikam.com with a woodgrove
    SAN: Postfix verifies it (OpenSSL applies the constraint to the SAN only) and sends
    the Fabrikam CN; tlsconnector refuses it as not trusted (specification section 7)."""
    outcome = send(woodgrove_mx, sender="spoof@fabrikam.com", cert="woodgrove-for-fabrikam")
    assert (550, "rcpt") == (outcome.code, outcome.stage), woodgrove_mx.log_tail()
    assert "client certificate not trusted" in outcome.text
    event = decision_for(woodgrove_mx, "spoof@fabrikam.com")
    assert ["certificate-not-trusted"] == event["codes"]
    assert "server1.fabrikam.com" == event["ccert_subject"]  # Postfix did verify it


def test_a_cn_inside_the_name_constraints_is_accepted(woodgrove_mx: Mx) -> None:
    subject = f"woodgrove {uuid.uuid4()}"
    outcome = send(woodgrove_mx, sender="billing@woodgrove.com", cert="woodgrove", subject=subject)
    assert (250, "data") == (outcome.code, outcome.stage), woodgrove_mx.log_tail()
    delivered(woodgrove_mx, subject)
    assert ["connector-satisfied"] == decision_for(woodgrove_mx, "billing@woodgrove.com")["codes"]


def test_a_fabrikam_certificate_from_the_unconstrained_root_is_refused_too(
    woodgrove_mx: Mx,
) -> None:
    """Behind Postfix the path is unknown (only the CN arrives, the same CN as the
    attack above), so a CN that the woodgrove constraints exclude is refused whichever
    CA issued it (fail closed, specification section 7; docs/postfix.md says to keep
    such a CA out of the trust file of partners it does not cover). The same partner
    is accepted by the MX whose trust file holds no constrained CA (the tests above)."""
    outcome = send(woodgrove_mx, sender="payments@fabrikam.com", cert="partner")
    assert (550, "rcpt") == (outcome.code, outcome.stage), woodgrove_mx.log_tail()
    event = decision_for(woodgrove_mx, "payments@fabrikam.com")
    assert ["certificate-not-trusted"] == event["codes"]
    assert "Woodgrove Issuing CA" in event["details"][0]  # type: ignore[index]


def test_a_recording_of_the_real_postfix_run_replays_to_the_same_decisions(
    mx: Mx, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every RCPT Postfix asked about in this module was recorded (serve postfix
    --record); replayed under the same policy each decides as it was answered:
    tlsconnector diff --old recorded finds nothing, and inbound --sessions agrees.

    The test sends its own sessions through Postfix (an accepted partner, a wrong CN
    from the trusted CA refused at RCPT, a sender no connector governs), so it holds
    alone as well as after the other tests of the module."""
    own = {
        "replay-partner@fabrikam.com": ("partner", 250, "data"),
        "replay-wrong-cn@fabrikam.com": ("wrong-cn", 550, "rcpt"),
        "replay-marker@example.org": (None, 250, "data"),
    }
    for sender, (cert, code, stage) in own.items():
        outcome = send(mx, sender=sender, cert=cert)
        assert (code, stage) == (outcome.code, outcome.stage), mx.log_tail()
        decision_for(mx, sender)
    answered = [e for e in mx.service.events if e["event"] == "decision"]
    record = mx.base / "recorded.jsonl"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # the recorder's thread writes soon after
        if record.exists() and record.read_text().count("\n") >= len(answered):
            break
        time.sleep(0.05)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["action"], e["connector"], e["codes"]) for e in answered] == [
        (line["recorded"]["action"], line["recorded"]["connector"], line["recorded"]["codes"])
        for line in lines
    ]
    mine = {
        line["mail_from"]: (line["recorded"]["action"], line["recorded"]["codes"])
        for line in lines
        if line.get("mail_from") in own
    }
    assert {
        "replay-partner@fabrikam.com": ("accept", ["connector-satisfied"]),
        "replay-wrong-cn@fabrikam.com": ("reject", ["certificate-name-mismatch"]),
        "replay-marker@example.org": ("accept", ["no-connector"]),
    } == mine
    policy = str(mx.base / "policy.toml")
    capsys.readouterr()
    assert 0 == main(["diff", "--old", "recorded", "--new", policy, "--inbound", str(record)])
    assert f"inbound: {len(lines)} sessions, 0 decisions change\n" == capsys.readouterr().out
    assert 0 == main(["inbound", "--policy", policy, "--sessions", str(record), "--json"])
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["action"], e["connector"], e["codes"]) for e in answered] == [
        (d["action"], d["connector"], [r["code"] for r in d["reasons"]]) for d in replayed
    ]


def test_when_the_policy_service_is_down_postfix_defers(mx: Mx) -> None:
    """Runs last: it stops the service. Postfix then uses its default action (451)."""
    mx.service.stop()
    outcome = send(mx, sender="payments@fabrikam.com", cert="partner")
    assert Outcome(451, f"4.3.5 {REJECTED}: {DEFAULT_ACTION[10:]}", "rcpt") == outcome
