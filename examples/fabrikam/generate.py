"""Regenerate the example's certificates and sessions (not needed to run the demo).

    python examples/fabrikam/generate.py

Writes ``partners-ca.pem`` (the trust anchor Contoso configured for Fabrikam),
``sessions.jsonl`` (recorded inbound sessions with the chains the peers presented) and
``outbound.jsonl`` (outbound deliveries to Fabrikam, with the servers' chains).
Private keys are thrown away: the decisions only need certificates.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).parent
AT = "2026-11-26T12:00:00Z"
UTC = dt.UTC


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    cn: str,
    *,
    san: list[str] | None = None,
    not_after: dt.datetime = dt.datetime(2035, 1, 1, tzinfo=UTC),
    not_before: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=UTC),
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cert, issuer_key = ca if ca is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in san]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def main() -> None:
    ca = make_ca("Fabrikam Partner Root CA")
    (HERE / "partners-ca.pem").write_text(pem(ca[0]))
    chains = {
        "server1": make_leaf(ca, "server1.fabrikam.com"),
        "server2": make_leaf(ca, "server2.fabrikam.com"),
        "apex": make_leaf(ca, "fabrikam.com"),
        "two-labels": make_leaf(ca, "a.b.fabrikam.com"),
        "san-only": make_leaf(ca, "Fabrikam Mail Gateway", san=["server1.fabrikam.com"]),
        "expired": make_leaf(
            ca,
            "server1.fabrikam.com",
            not_before=dt.datetime(2024, 1, 1, tzinfo=UTC),
            not_after=dt.datetime(2025, 1, 1, tzinfo=UTC),
        ),
        "self-signed": make_leaf(None, "server1.fabrikam.com"),
        "wildcard": make_leaf(ca, "*.fabrikam.com"),
        "contoso": make_leaf(ca, "mail.contoso.com"),
    }

    def session(peer: str, sender: str, tls: object) -> dict[str, object]:
        entry: dict[str, object] = {
            "peer_ip": peer,
            "mail_from": sender,
            "rcpt_to": ["finance@contoso.com"],
        }
        entry["tls"] = tls
        entry["at"] = AT
        return entry

    def chain(key: str) -> dict[str, str]:
        return {"peer_chain_pem": pem(chains[key])}

    sessions = [
        session("198.51.100.7", "payments@fabrikam.com", chain("server1")),
        session("198.51.100.8", "payments@fabrikam.com", chain("server2")),
        session("198.51.100.7", "payments@fabrikam.com", None),
        session("198.51.100.7", "payments@fabrikam.com", {}),
        session("198.51.100.7", "payments@fabrikam.com", chain("apex")),
        session("198.51.100.7", "payments@fabrikam.com", chain("two-labels")),
        session("198.51.100.7", "payments@fabrikam.com", chain("san-only")),
        session("198.51.100.7", "payments@fabrikam.com", chain("expired")),
        session("203.0.113.9", "payments@fabrikam.com", chain("self-signed")),
        session("::ffff:198.51.100.7", "PAYMENTS@FABRIKAM.COM.", chain("server1")),
        session(
            "198.51.100.7",
            "payments@fabrikam.com",
            {"peer_cn": ["server1.fabrikam.com"], "peer_verified": True},
        ),
        session("192.0.2.25", "newsletter@example.org", None),
        session("192.0.2.25", "", None),
    ]
    with (HERE / "sessions.jsonl").open("w") as out:
        for entry in sessions:
            out.write(json.dumps(entry) + "\n")

    def delivery(recipient: str, **facts: object) -> dict[str, object]:
        return {"recipient": recipient, **facts, "at": AT}

    yesterday = "2026-11-25T11:00:00Z"  # 25 hours before AT: past the retry window
    this_morning = "2026-11-26T08:00:00Z"
    deliveries = [
        delivery("treasury@fabrikam.com"),  # plan only: no "tls" key
        delivery("news@example.org"),
        delivery("treasury@fabrikam.com", peer_host="mx1.fabrikam.com", tls=chain("server1")),
        delivery("treasury@fabrikam.com", peer_host="mx2.fabrikam.com", tls=chain("wildcard")),
        delivery("treasury@fabrikam.com", peer_host="mx1.fabrikam.com", tls=None),
        delivery(
            "treasury@fabrikam.com",
            peer_host="mx1.fabrikam.com",
            tls=chain("self-signed"),
            queued_since=this_morning,
        ),
        delivery(
            "treasury@fabrikam.com",
            peer_host="server1.fabrikam.com",
            tls=chain("contoso"),
            queued_since=this_morning,
        ),
        delivery("treasury@fabrikam.com", peer_host="mx1.fabrikam.com", tls=chain("san-only")),
        delivery(
            "treasury@fabrikam.com",
            peer_host="mx1.fabrikam.com",
            tls=chain("expired"),
            queued_since=yesterday,
        ),
        delivery("treasury@fabrikam.com", connector="Fabrikam Bank (old)"),
    ]
    with (HERE / "outbound.jsonl").open("w") as out:
        for entry in deliveries:
            out.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
