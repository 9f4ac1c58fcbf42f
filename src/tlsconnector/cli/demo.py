"""The embedded demo: Contoso and Fabrikam Bank, a regulated partner with forced TLS.

Everything happens in memory: the connectors are built with
:meth:`~tlsconnector.Policy.from_mapping` (the example of the specification, section 9),
a test CA and the partner's certificates are minted with :mod:`tlsconnector.testing._pki`,
and 20 inbound and outbound sessions are decided at one fixed time,
:data:`AT`. No file, no network and no clock is read, so the output is the same on
every run (the minted keys differ, but no decision or text depends on them).

The rows are built from the library's own decisions; nothing in the table is typed
in by hand except the label saying what each session was.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._decisions import InboundDecision, OutboundDecision, printable
from tlsconnector._facts import (
    ConnectionAttempt,
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
)
from tlsconnector._inbound import evaluate_inbound
from tlsconnector._model import Direction, Policy
from tlsconnector._outbound import evaluate_outbound
from tlsconnector.cli import family
from tlsconnector.cli._common import EXIT_OK, _print_json
from tlsconnector.testing._pki import CA, Leaf, self_signed

__all__ = [
    "AT",
    "DEMO_POLICY",
    "DemoRow",
    "Direction",
    "demo",
    "demo_policy",
    "format_header",
    "format_table",
    "run_demo",
]

UTC = dt.UTC

#: The one session time of the demo (never the wall clock).
AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

#: Validity of the demo CAs and of the good partner certificates: around :data:`AT`.
VALID_FROM = dt.datetime(2026, 1, 1, tzinfo=UTC)
VALID_UNTIL = dt.datetime(2027, 12, 31, tzinfo=UTC)
#: The expired certificates ran out five months before :data:`AT`.
EXPIRED_ON = dt.datetime(2026, 6, 30, tzinfo=UTC)

#: Where the partner's mail comes from (documentation addresses, RFC 5737).
FABRIKAM_IP = "198.51.100.7"
OTHER_IP = "203.0.113.9"

#: Contoso's connectors for Fabrikam Bank, as in the specification's example (section 9).
DEMO_POLICY: Mapping[str, Any] = {
    "inbound": [
        {
            "name": "Fabrikam Bank inbound",
            "comment": "Forced TLS with Fabrikam Bank (regulator requirement)",
            "sender_domains": ["fabrikam.com"],
            "require_tls": True,
            "tls_sender_certificate_name": "*.fabrikam.com",
            "restrict_domains_to_certificate": True,
        }
    ],
    "outbound": [
        {
            "name": "Fabrikam Bank outbound",
            "comment": "Forced TLS with Fabrikam Bank (regulator requirement)",
            "recipient_domains": ["fabrikam.com"],
            "use_mx_record": True,
            "tls_settings": "domain_validation",
            "tls_domain": "*.fabrikam.com",
        }
    ],
}


def demo_policy(trust: TrustStore | None) -> Policy:
    """The demo's policy, trusting ``trust`` (the demo's test root)."""
    return Policy.from_mapping(DEMO_POLICY, trust=trust)


@attrs.frozen
class DemoRow:
    """One demo session: what it was (``label``) and what the library decided."""

    direction: Direction
    label: str
    decision: InboundDecision | OutboundDecision

    def to_dict(self) -> dict[str, Any]:
        """The decision's JSON object (section 9) with a ``session`` label first."""
        return {"session": self.label, **self.decision.to_dict()}


@attrs.frozen
class _Certificates:
    """Everything minted for one demo run."""

    root: CA
    issuing: CA
    server1: Leaf
    server2: Leaf
    apex: Leaf
    two_labels: Leaf
    self_signed: Leaf
    expired: Leaf
    san_only: Leaf
    mx1: Leaf
    mx1_self_signed: Leaf
    mx1_expired: Leaf


def _mint() -> _Certificates:
    root = CA("Fabrikam Partner Root CA", not_before=VALID_FROM, not_after=VALID_UNTIL)
    issuing = root.intermediate(
        "Fabrikam Issuing CA 1", not_before=VALID_FROM, not_after=VALID_UNTIL
    )

    def good(cn: str, **kwargs: Any) -> Leaf:
        return issuing.issue(cn, not_before=VALID_FROM, not_after=VALID_UNTIL, **kwargs)

    def expired(cn: str) -> Leaf:
        return issuing.issue(cn, not_before=VALID_FROM, not_after=EXPIRED_ON)

    return _Certificates(
        root=root,
        issuing=issuing,
        server1=good("server1.fabrikam.com"),
        server2=good("server2.fabrikam.com"),
        apex=good("fabrikam.com"),
        two_labels=good("a.b.fabrikam.com"),
        self_signed=self_signed(
            "server1.fabrikam.com", not_before=VALID_FROM, not_after=VALID_UNTIL
        ),
        expired=expired("server1.fabrikam.com"),
        # The right name only in the subjectAltName: the CN is what counts (section 3).
        san_only=good("mail.fabrikam-hosting.net", san=["server1.fabrikam.com"]),
        mx1=good("mx1.fabrikam.com"),
        mx1_self_signed=self_signed(
            "mx1.fabrikam.com", not_before=VALID_FROM, not_after=VALID_UNTIL
        ),
        mx1_expired=expired("mx1.fabrikam.com"),
    )


def _chain(leaf: Leaf, *, intermediates: bool = True) -> TLSFacts:
    return TLSFacts(PresentedChain.from_pem(leaf.chain_pem(intermediates=intermediates)))


def _inbound_sessions(certs: _Certificates) -> list[tuple[str, InboundSession]]:
    def session(
        tls: TLSFacts | None, *, sender: str = "payments@fabrikam.com", ip: str = FABRIKAM_IP
    ) -> InboundSession:
        return InboundSession.create(
            peer_ip=ip, mail_from=sender, rcpt_to=["finance@contoso.com"], tls=tls, at=AT
        )

    verified = TLSFacts(MtaVerifiedCertificate(("server3.fabrikam.com",), verified=True))
    return [
        ("server1.fabrikam.com, trusted CA", session(_chain(certs.server1))),
        ("server2.fabrikam.com, trusted CA", session(_chain(certs.server2))),
        ("server3.fabrikam.com, verified by the MTA", session(verified)),
        ("fabrikam.com (the apex), trusted CA", session(_chain(certs.apex))),
        ("a.b.fabrikam.com (two labels), trusted CA", session(_chain(certs.two_labels))),
        ("server1.fabrikam.com, self-signed", session(_chain(certs.self_signed))),
        ("server1.fabrikam.com, expired 2026-06-30", session(_chain(certs.expired))),
        (
            "server1.fabrikam.com only in the SAN",
            session(_chain(certs.san_only)),
        ),
        (
            "server2.fabrikam.com, no intermediate CA",
            session(_chain(certs.server2, intermediates=False)),
        ),
        ("TLS without a client certificate", session(TLSFacts(None))),
        ("no TLS", session(None)),
        (
            "example.org, no TLS (no connector governs it)",
            session(None, sender="news@example.org", ip=OTHER_IP),
        ),
    ]


def _outbound_sessions(certs: _Certificates) -> list[tuple[str, OutboundSession]]:
    def attempt(
        tls: TLSFacts | None,
        *,
        recipient: str = "treasury@fabrikam.com",
        peer_host: str = "mx1.fabrikam.com",
        queued_for: dt.timedelta = dt.timedelta(minutes=5),
    ) -> OutboundSession:
        return OutboundSession.create(
            recipient=recipient,
            peer_host=peer_host,
            attempt=ConnectionAttempt(tls),
            queued_since=AT - queued_for,
            at=AT,
        )

    plan = OutboundSession.create(recipient="treasury@fabrikam.com", at=AT)
    return [
        ("plan for fabrikam.com (before connecting)", plan),
        ("mx1.fabrikam.com, trusted CA", attempt(_chain(certs.mx1))),
        ("mx1.fabrikam.com, no STARTTLS offered", attempt(None)),
        ("mx1.fabrikam.com, self-signed", attempt(_chain(certs.mx1_self_signed))),
        ("fabrikam.com (the apex) as CN, trusted CA", attempt(_chain(certs.apex))),
        (
            "mx1.fabrikam.com, expired, queued 2 h",
            attempt(_chain(certs.mx1_expired), queued_for=dt.timedelta(hours=2)),
        ),
        (
            "mx1.fabrikam.com, expired, queued 30 h",
            attempt(_chain(certs.mx1_expired), queued_for=dt.timedelta(hours=30)),
        ),
        (
            "example.org, no STARTTLS (no connector)",
            attempt(None, recipient="info@example.org", peer_host="mx.example.org"),
        ),
    ]


def run_demo() -> tuple[Policy, list[DemoRow]]:
    """Mint the certificates, build the policy, decide every demo session at :data:`AT`."""
    certs = _mint()
    policy = demo_policy(TrustStore((certs.root.cert,)))
    rows = [
        DemoRow(Direction.INBOUND, label, evaluate_inbound(policy, session))
        for label, session in _inbound_sessions(certs)
    ]
    rows += [
        DemoRow(Direction.OUTBOUND, label, evaluate_outbound(policy, session))
        for label, session in _outbound_sessions(certs)
    ]
    return policy, rows


_TITLES = {
    Direction.INBOUND: "Inbound: mail from Fabrikam Bank to Contoso",
    Direction.OUTBOUND: "Outbound: mail from Contoso to Fabrikam Bank",
}


def format_header(policy: Policy) -> str:
    """What the demo sets up: the time, the trust anchor and the connectors."""
    lines = [
        "tlsconnector demo: Contoso and Fabrikam Bank, a regulated partner with forced TLS",
        f"Session time (fixed): {AT.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "Trusted CA: Fabrikam Partner Root CA (minted in memory, with Fabrikam Issuing CA 1)",
        "",
    ]
    for inbound in policy.inbound:
        checks = ["require_tls" if inbound.require_tls else "no TLS requirement"]
        if inbound.tls_sender_certificate_name is not None:
            checks.append(f"certificate CN {inbound.tls_sender_certificate_name}")
        domains = ", ".join(str(p) for p in inbound.sender_domains)
        lines.append(
            f"Inbound connector {printable(inbound.name)!r}: from {domains}; {', '.join(checks)}"
        )
    for outbound in policy.outbound:
        domains = ", ".join(str(p) for p in outbound.recipient_domains)
        route = "MX" if outbound.use_mx_record else "smart hosts"
        tls = str(outbound.tls_settings)
        if outbound.tls_domain is not None:
            tls += f", certificate CN {outbound.tls_domain}"
        lines.append(
            f"Outbound connector {printable(outbound.name)!r}: to {domains}; {route}; {tls}"
        )
    return "\n".join(lines)


_HEADINGS = ("SESSION", "ACTION", "CONNECTOR", "REASONS")


def table_cells(row: DemoRow) -> tuple[str, str, str, str]:
    """The four cells of one table row: session, action, connector, reason codes."""
    decision = row.decision
    connector = printable(decision.connector) if decision.connector is not None else "(none)"
    return (row.label, str(decision.action), connector, ", ".join(decision.codes))


def format_table(rows: Sequence[DemoRow]) -> str:
    """The rows as one aligned table per direction, inbound first."""
    cells = [table_cells(row) for row in rows]
    widths = [max(len(c[i]) for c in [_HEADINGS, *cells]) for i in range(len(_HEADINGS))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out: list[str] = []
    for direction in Direction:
        chosen = [c for row, c in zip(rows, cells, strict=True) if row.direction is direction]
        if not chosen:
            continue
        if out:
            out.append("")
        out += [f"== {_TITLES[direction]} ==", line(_HEADINGS)]
        out += [line(c) for c in chosen]
    return "\n".join(out)


def demo(args: argparse.Namespace) -> int:
    """``tlsconnector demo``: the table, or one JSON object per session (``--json``)."""
    policy, rows = run_demo()
    if args.json:
        for row in rows:
            _print_json(row.to_dict())
        return EXIT_OK
    print(format_header(policy))
    print()
    print(format_table(rows))
    return EXIT_OK


#: The command line restricted to this module's commands (demo).
main = family("demo")
