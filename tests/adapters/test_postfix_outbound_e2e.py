"""End to end with a real Postfix: Contoso's Postfix delivers to Fabrikam only as the
outbound connectors say (specification sections 6, 7 and 10, Postfix by pinning).

Postfix (Debian's package) runs from a throwaway config_directory configured by the
``tlsconnector postfix-config --shell`` script, with ``tlsconnector serve
postfix-outbound`` as a subprocess answering its ``transport`` and ``tlspolicy``
socketmaps. Partners are aiosmtpd servers on 127.0.0.1 presenting certificates minted
for the test; every connector routes to smart hosts ``[127.0.0.1]:PORT``. Mail is
submitted with Postfix's own ``sendmail``; delivery is checked by what each partner
received, deferral by the queue (``postqueue -j``) and the 4.x status Postfix logged.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from postfix_instance import (
    WAIT,
    PostfixInstance,
    ServiceProcess,
    free_port,
    postfix_instance,
    wait_until,
)

from certmint import CA, Leaf, self_signed
from loopthread import LoopThread

pytestmark = pytest.mark.postfix

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
ROOT = CA("Fabrikam Partner Root CA")
ISSUING = ROOT.intermediate("Fabrikam Issuing CA")
OTHER_ROOT = CA("Fabrikam Partner Root CA")  # the same name, another key: untrusted
#: CN under *.fabrikam.com, a SAN naming another host: the CN is what counts.
CN_ONLY = ISSUING.issue("server1.fabrikam.com", san=["mail.example.org"])
#: The SAN matches, the CN does not (Postfix alone would accept it: SAN first).
SAN_ONLY = ISSUING.issue("mail.example.org", san=["server1.fabrikam.com"])
TWO_LABELS = ISSUING.issue("a.b.fabrikam.com")
EXPIRED = ISSUING.issue(
    "server1.fabrikam.com",
    not_before=NOW - dt.timedelta(days=60),
    not_after=NOW - dt.timedelta(days=1),
)
SELF_SIGNED = self_signed("server1.fabrikam.com")
UNTRUSTED = OTHER_ROOT.issue("server1.fabrikam.com")
ROTATED = ISSUING.issue("server2.fabrikam.com")
#: Shortest --pin-lifetime the service accepts: the rotation test waits for it.
PIN_LIFETIME = 60.0


class Partner:
    """An aiosmtpd server on 127.0.0.1: STARTTLS with ``leaf`` (plaintext only when
    None); ``present`` swaps the certificate for new connections (a rotation)."""

    def __init__(self, directory: Path, name: str, leaf: Leaf | None) -> None:
        self.directory = directory
        self.name = name
        self.received: list[tuple[tuple[str, ...], bool]] = []
        self.context = self._context(leaf)
        self.server = LoopThread(self._factory)
        self.port = self.server.port

    def _context(self, leaf: Leaf | None) -> ssl.SSLContext | None:
        if leaf is None:
            return None
        chain = self.directory / f"{self.name}-{uuid.uuid4().hex}.pem"
        key = chain.with_suffix(".key")
        chain.write_text(leaf.chain_pem())
        key.write_text(leaf.key_pem())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        return context

    def _factory(self, loop: asyncio.AbstractEventLoop) -> SMTP:
        return SMTP(
            self, hostname=f"{self.name}.fabrikam.test", tls_context=self.context, loop=loop
        )

    def present(self, leaf: Leaf) -> None:
        self.context = self._context(leaf)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((tuple(envelope.rcpt_tos), session.ssl is not None))
        return "250 2.0.0 Ok: queued"

    def got(self, recipient: str) -> bool:
        return any(recipient in rcpts for rcpts, _ in self.received)

    def over_tls(self, recipient: str) -> bool:
        return all(tls for rcpts, tls in self.received if recipient in rcpts)


@attrs.define
class Connector:
    domain: str
    mode: str
    partners: tuple[str, ...]  # partner names, or "closed" for a port nobody listens on


#: One connector per case: its recipient domain, TLS mode and smart hosts.
CONNECTORS = {
    "cn-only": Connector("cn-only.fabrikam.com", "domain_validation", ("cn-only",)),
    "san-only": Connector("san-only.fabrikam.com", "domain_validation", ("san-only",)),
    "two-labels": Connector("two-labels.fabrikam.com", "domain_validation", ("two-labels",)),
    "expired": Connector("expired.fabrikam.com", "domain_validation", ("expired",)),
    "self-signed": Connector("self-signed.fabrikam.com", "domain_validation", ("self-signed",)),
    "untrusted": Connector("untrusted.fabrikam.com", "certificate_validation", ("untrusted",)),
    "self-signed-enc": Connector("enc.fabrikam.com", "encryption_only", ("self-signed-enc",)),
    "plain-dv": Connector("plain-dv.fabrikam.com", "domain_validation", ("plain-dv",)),
    "plain-enc": Connector("plain-enc.fabrikam.com", "encryption_only", ("plain-enc",)),
    "failover": Connector("failover.fabrikam.com", "domain_validation", ("closed", "failover")),
    "rotating": Connector("rotating.fabrikam.com", "domain_validation", ("rotating",)),
}
LEAVES: dict[str, Leaf | None] = {
    "cn-only": CN_ONLY,
    "san-only": SAN_ONLY,
    "two-labels": TWO_LABELS,
    "expired": EXPIRED,
    "self-signed": SELF_SIGNED,
    "untrusted": UNTRUSTED,
    "self-signed-enc": SELF_SIGNED,
    "plain-dv": None,
    "plain-enc": None,
    "failover": CN_ONLY,
    "rotating": CN_ONLY,
}


def policy_text(ports: dict[str, int]) -> str:
    parts = ['[trust]\nca_file = "partners-ca.pem"\n']
    for name, connector in CONNECTORS.items():
        hosts = ", ".join(f'"127.0.0.1:{ports[p]}"' for p in connector.partners)
        parts.append(
            f'\n[[outbound]]\nname = "Fabrikam {name}"\n'
            f'recipient_domains = ["{connector.domain}"]\nuse_mx_record = false\n'
            f'smart_hosts = [{hosts}]\ntls_settings = "{connector.mode}"\n'
        )
        if connector.mode == "domain_validation":
            parts.append('tls_domain = "*.fabrikam.com"\n')
    return "".join(parts)


@attrs.frozen
class Contoso:
    postfix: PostfixInstance
    service: ServiceProcess
    partners: dict[str, Partner]


def _apply_postfix_config(policy: Path, service_port: int, instance: PostfixInstance) -> None:
    """Configure the instance with the ``postfix-config --shell`` script, as a user would."""
    script = subprocess.run(
        [
            sys.executable, "-m", "tlsconnector", "postfix-config",
            "--policy", str(policy), "--outbound-maps", f"127.0.0.1:{service_port}", "--shell",
        ],
        check=True, capture_output=True, text=True, timeout=WAIT,
    ).stdout  # fmt: skip
    subprocess.run(
        ["/bin/sh", "-c", script],
        check=True, capture_output=True, text=True, timeout=WAIT,
        env={**os.environ, "MAIL_CONFIG": str(instance.etc)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def contoso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contoso]:
    directory = tmp_path_factory.mktemp("outbound-e2e")
    directory.chmod(0o755)
    partners = {name: Partner(directory, name, leaf) for name, leaf in LEAVES.items()}
    ports = {name: p.port for name, p in partners.items()} | {"closed": free_port()}
    (directory / "partners-ca.pem").write_text(ROOT.cert_pem())
    policy = directory / "policy.toml"
    policy.write_text(policy_text(ports))
    service = ServiceProcess(
        ["serve", "postfix-outbound", "--policy", str(policy), "--listen", "127.0.0.1:0",
         "--pin-lifetime", str(PIN_LIFETIME), "--probe-deadline", "15"]
    )  # fmt: skip
    try:
        service.start()
        settings = {"default_transport": "error:this test delivers only through connectors"}
        with postfix_instance(
            settings, configure=lambda pf: _apply_postfix_config(policy, service.port, pf)
        ) as postfix:
            yield Contoso(postfix, service, partners)
    finally:
        service.stop()
        for partner in partners.values():
            partner.server.stop()


def send(contoso: Contoso, case: str) -> str:
    """A new message to a new recipient of ``case``'s connector; the recipient."""
    recipient = f"treasury-{uuid.uuid4().hex[:12]}@{CONNECTORS[case].domain}"
    message = f"From: payments@contoso.com\nTo: {recipient}\nSubject: {case}\n\nHello.\n"
    contoso.postfix.sendmail("payments@contoso.com", recipient, message)
    return recipient


def describe(contoso: Contoso) -> str:
    answers = [e for e in contoso.service.drain() if e["event"] in ("answer", "probe")][-6:]
    return f"Postfix log:\n{contoso.postfix.log_tail()}\nservice: {answers}"


def delivered(contoso: Contoso, case: str, recipient: str, *, timeout: float = WAIT) -> None:
    partner = contoso.partners[CONNECTORS[case].partners[-1]]
    wait_until(
        lambda: partner.got(recipient), f"{recipient} was not delivered", timeout=timeout,
        describe=lambda: describe(contoso),
    )  # fmt: skip
    assert partner.over_tls(recipient)
    wait_until(lambda: contoso.postfix.queued(recipient) is None, f"{recipient} still queued")


def deferred(contoso: Contoso, recipient: str) -> tuple[dict[str, Any], str]:
    """Wait until Postfix deferred ``recipient`` with a 4.x status: its queue entry and
    the status line Postfix logged."""

    def found() -> bool:
        entry = contoso.postfix.queued(recipient)
        return (
            entry is not None
            and entry["queue_name"] == "deferred"
            and any("status=deferred" in line for line in contoso.postfix.log_lines_for(recipient))
        )

    wait_until(found, f"{recipient} was not deferred", describe=lambda: describe(contoso))
    entry = contoso.postfix.queued(recipient)
    assert entry is not None
    line = next(x for x in contoso.postfix.log_lines_for(recipient) if "status=deferred" in x)
    assert " dsn=4." in line, line
    return entry, line


def never_received(contoso: Contoso, recipient: str) -> None:
    assert not any(p.got(recipient) for p in contoso.partners.values())


# -- the certificate matrix ------------------------------------------------------------


def test_cn_matching_the_wildcard_with_another_san_is_delivered_over_tls(
    contoso: Contoso,
) -> None:
    recipient = send(contoso, "cn-only")
    delivered(contoso, "cn-only", recipient)
    probe = contoso.service.wait_for(lambda e: e["event"] == "probe" and bool(e.get("pins")))
    assert probe["pins"][0]["sha256"]


def test_a_matching_san_with_another_cn_is_deferred(contoso: Contoso) -> None:
    """Postfix alone (secure, match=.fabrikam.com) would deliver: it reads the SAN."""
    recipient = send(contoso, "san-only")
    _, line = deferred(contoso, recipient)
    never_received(contoso, recipient)
    assert "dsn=4.7.5" in line


def test_a_two_label_cn_under_the_wildcard_is_deferred(contoso: Contoso) -> None:
    recipient = send(contoso, "two-labels")
    _, line = deferred(contoso, recipient)
    assert "dsn=4.7.5" in line
    never_received(contoso, recipient)


@pytest.mark.parametrize("case", ["expired", "self-signed", "untrusted"])
def test_an_expired_self_signed_or_untrusted_certificate_is_deferred(
    contoso: Contoso, case: str
) -> None:
    """Postfix checks no date or chain at the fingerprint level: the service never pins
    such a leaf, so Postfix has nothing it may deliver to."""
    recipient = send(contoso, case)
    _, line = deferred(contoso, recipient)
    assert "dsn=4.7.5" in line
    never_received(contoso, recipient)


def test_a_self_signed_certificate_under_encryption_only_is_delivered(contoso: Contoso) -> None:
    recipient = send(contoso, "self-signed-enc")
    delivered(contoso, "self-signed-enc", recipient)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        # The service probed, found no STARTTLS and answered TEMP.
        ("plain-dv", "dsn=4.7.5"),
        # The service answered 'encrypt'; Postfix found no STARTTLS.
        ("plain-enc", "dsn=4.7.4"),
    ],
)
def test_a_plaintext_partner_never_receives_the_mail(
    contoso: Contoso, case: str, status: str
) -> None:
    recipient = send(contoso, case)
    _, line = deferred(contoso, recipient)
    assert status in line
    contoso.postfix.flush()  # and again: still never in plaintext
    deferred(contoso, recipient)
    never_received(contoso, recipient)
    assert not contoso.partners[case].received


def test_when_the_first_smart_host_fails_the_second_is_used(contoso: Contoso) -> None:
    recipient = send(contoso, "failover")
    delivered(contoso, "failover", recipient)


def test_a_rotated_certificate_is_deferred_then_delivered_after_the_pin_refresh(
    contoso: Contoso,
) -> None:
    """The pin is the old leaf's digest: after the partner rotates, Postfix refuses the
    new leaf until the service probes again (the pin's lifetime), then delivers."""
    first = send(contoso, "rotating")
    delivered(contoso, "rotating", first)
    contoso.partners["rotating"].present(ROTATED)
    second = send(contoso, "rotating")
    _, line = deferred(contoso, second)
    assert "dsn=4.7.5" in line
    assert "Server certificate not verified" in line
    never_received(contoso, second)

    def retried_and_delivered() -> bool:
        if contoso.partners["rotating"].got(second):
            return True
        contoso.postfix.flush()
        return False

    wait_until(
        retried_and_delivered,
        f"{second} was not delivered after the pin refresh",
        timeout=PIN_LIFETIME + 60,
        every=3.0,
        describe=lambda: describe(contoso),
    )
    assert contoso.partners["rotating"].over_tls(second)


def test_when_the_service_is_down_mail_stays_queued_and_never_goes_out(contoso: Contoso) -> None:
    """Runs last: it stops the service. The transport map cannot be read, so Postfix
    defers with a 4.x status; the partner (which would accept plaintext) gets nothing."""
    contoso.service.stop()
    recipient = send(contoso, "plain-enc")
    entry, line = deferred(contoso, recipient)
    assert "dsn=4.3.0, status=deferred (address resolver failure)" in line
    contoso.postfix.flush()
    deferred(contoso, recipient)
    assert "deferred" == entry["queue_name"]
    never_received(contoso, recipient)
