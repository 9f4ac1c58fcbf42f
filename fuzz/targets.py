"""Fuzz targets for tlsconnector's parsers: the certificate, session and policy inputs.

Pure Python, no fuzzer import: ``fuzz/run.py`` drives these with atheris (coverage
guided), and ``tests/test_hostile.py`` replays the seeds and every input a fuzzer ever
crashed on. Each target takes one input (``bytes``) and either returns or raises:

* only :class:`~tlsconnector.InvalidValue`, :class:`~tlsconnector.FactsError` and
  :class:`~tlsconnector.PolicyError` may escape the library (they are caught here);
  anything else propagates and is a crash;
* :class:`InvariantViolation` when a decision breaks a safety rule: no inbound session
  is accepted under a connector with a certificate name unless it presented a trusted
  certificate (validated here, or MTA-verified) whose CN matches that name, judged by
  an oracle written independently of tlsconnector's matcher (specification section 3).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlsconnector import (
    FactsError,
    InboundAction,
    InboundSession,
    InvalidValue,
    MtaVerifiedCertificate,
    OutboundAction,
    OutboundSession,
    Policy,
    PolicyError,
    PresentedChain,
    Purpose,
    TLSFacts,
    evaluate_inbound,
    evaluate_outbound,
    load_policy,
    match_certificate_name,
    plan_routes,
    validate_chain,
)
from tlsconnector.testing import CertificateAuthority, MintedChain

__all__ = ["KNOWN_BUGS", "TARGETS", "InvariantViolation", "seeds"]

#: Everything tlsconnector raises on purpose.
DOCUMENTED = (InvalidValue, FactsError, PolicyError)

AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
AUTHORITY = CertificateAuthority("Fuzz Partner Root CA")
TRUST = AUTHORITY.trust_store
WILDCARD = "*.fabrikam.com"

POLICY = Policy.from_mapping(
    {
        "inbound": [
            {
                "name": "Fabrikam Bank inbound",
                "sender_domains": ["fabrikam.com", "*.fabrikam.com"],
                "tls_sender_certificate_name": WILDCARD,
            },
            {
                "name": "Contoso by address",
                "sender_domains": ["contoso.com"],
                "sender_ip_addresses": ["198.51.100.0/24", "2001:db8::/32"],
                "restrict_domains_to_ip_addresses": True,
            },
            {"name": "Everyone else", "sender_domains": ["*"], "require_tls": False},
        ],
        "outbound": [
            {
                "name": "Fabrikam Bank outbound",
                "recipient_domains": ["fabrikam.com"],
                "tls_settings": "domain_validation",
                "tls_domain": WILDCARD,
            },
            {
                "name": "Relay",
                "recipient_domains": ["*"],
                "use_mx_record": False,
                "smart_hosts": ["[2001:db8::25]:587"],
            },
        ],
    },
    trust=TRUST,
)


class InvariantViolation(AssertionError):
    """A decision broke a safety rule (never an expected outcome)."""


#: Known, reported bugs in tlsconnector, tolerated so that fuzzing can go past them:
#: name -> predicate on the exception. Each should also have a strict-xfail test in
#: tests/test_hostile.py until it is fixed. FUZZ_STRICT=1 disables the tolerance.
KNOWN_BUGS: dict[str, Callable[[BaseException], bool]] = {
    # (none open: RecursionError from deeply nested TOML and from rendering deeply
    # nested values in error messages were fixed; tests/test_hostile.py keeps them.)
}


_SEEN_KNOWN: set[str] = set()


def _tolerated(exc: BaseException) -> bool:
    if os.environ.get("FUZZ_STRICT") == "1":
        return False
    for name, matches in KNOWN_BUGS.items():
        if matches(exc):
            if name not in _SEEN_KNOWN:  # say so once per run, so it is not forgotten
                _SEEN_KNOWN.add(name)
                print(f"fuzz: known bug {name!r} reached ({type(exc).__name__})", file=sys.stderr)
            return True
    return False


# --------------------------------------------------------------------------------------
# The oracle: section 3 for the wildcard "*.fabrikam.com", written without tlsconnector.

_CHILD = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.fabrikam\.com")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def covered_by_wildcard(cn: str) -> bool:
    """Whether a presented CN matches ``*.fabrikam.com`` (section 3): the identical
    wildcard, or one LDH label (not ``xn--``) over fabrikam.com; at most 64 characters;
    ASCII case-insensitive; nothing trimmed."""
    if len(cn) > 64:
        return False
    lowered = cn.translate(_ASCII_LOWER)
    if lowered == WILDCARD:
        return True
    return _CHILD.fullmatch(lowered) is not None and not lowered.startswith("xn--")


def _governed_by_certificate_name(domain: str | None) -> bool:
    return domain is not None and (domain == "fabrikam.com" or domain.endswith(".fabrikam.com"))


def _trusted(tls: TLSFacts | None, purpose: Purpose) -> bool:
    certificate = tls.certificate if tls is not None else None
    if isinstance(certificate, MtaVerifiedCertificate):
        return certificate.verified
    if isinstance(certificate, PresentedChain):
        return validate_chain(certificate, trust=TRUST, at=AT, purpose=purpose).trusted
    return False


def _cns(tls: TLSFacts | None) -> tuple[str, ...]:
    certificate = tls.certificate if tls is not None else None
    if isinstance(certificate, PresentedChain | MtaVerifiedCertificate):
        return certificate.cns
    return ()


def check_inbound(session: InboundSession) -> None:
    """Evaluate under :data:`POLICY` and apply the invariant."""
    decision = evaluate_inbound(POLICY, session)
    json.dumps(decision.to_dict())
    if decision.action is InboundAction.TEMPFAIL:
        raise InvariantViolation(f"evaluate_inbound returned tempfail: {decision}")
    if decision.action is not InboundAction.ACCEPT:
        return
    if not _governed_by_certificate_name(session.sender_domain):
        return
    cns = _cns(session.tls)
    if not _trusted(session.tls, Purpose.INBOUND) or not any(map(covered_by_wildcard, cns)):
        raise InvariantViolation(
            f"accepted mail from {session.sender_domain!r} without a trusted certificate "
            f"matching {WILDCARD}: CNs {cns!r}, decision {decision.to_dict()}"
        )


def check_outbound(session: OutboundSession) -> None:
    decision = evaluate_outbound(POLICY, session)
    json.dumps(decision.to_dict())
    if decision.action is not OutboundAction.DELIVER or session.attempt is None:
        return
    if decision.connector == "Fabrikam Bank outbound":
        tls = session.attempt.tls
        cns = _cns(tls)
        if not _trusted(tls, Purpose.OUTBOUND) or not any(map(covered_by_wildcard, cns)):
            raise InvariantViolation(
                f"delivered to {session.recipient!r} without a trusted certificate matching "
                f"{WILDCARD}: CNs {cns!r}, decision {decision.to_dict()}"
            )


# --------------------------------------------------------------------------------------
# Targets


def _guard(run: Callable[[], None]) -> None:
    try:
        run()
    except DOCUMENTED:
        return
    except InvariantViolation:
        raise
    except BaseException as exc:
        if isinstance(exc, Exception) and _tolerated(exc):
            return
        raise


def _split(data: bytes) -> list[bytes]:
    """Cut an input into 1 to 4 parts: the first byte says how many, then each part is
    a 2-byte length and its bytes (the last part takes what is left)."""
    if not data:
        return [b""]
    count, rest = data[0] % 4 + 1, data[1:]
    parts = []
    for _ in range(count - 1):
        if len(rest) < 2:
            break
        size = int.from_bytes(rest[:2], "big")
        parts.append(rest[2 : 2 + size])
        rest = rest[2 + size :]
    parts.append(rest)
    return parts


def _use_chain(chain: PresentedChain) -> None:
    for purpose in Purpose:
        validate_chain(chain, trust=TRUST, at=AT, purpose=purpose)
    _ = chain.fingerprint
    for cn in chain.cns:
        # The library's matcher never raises, and agrees with the oracle (section 3).
        if match_certificate_name(WILDCARD, cn) != covered_by_wildcard(cn):
            raise InvariantViolation(f"match_certificate_name disagrees with section 3 on {cn!r}")
    check_inbound(
        InboundSession.create(
            peer_ip="198.51.100.7", mail_from="a@fabrikam.com", tls=TLSFacts(chain), at=AT
        )
    )


def certificate(data: bytes) -> None:
    """PresentedChain.from_der / from_pem, then validation, CN matching and a decision."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        _guard(lambda: _use_chain(PresentedChain.from_der(body)))
    elif mode == 1:
        _guard(lambda: _use_chain(PresentedChain.from_der(_split(body))))
    else:
        _guard(lambda: _use_chain(PresentedChain.from_pem(body)))


def _session_json(text: str) -> None:
    try:
        obj: Any = json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON: the CLI's business (tests/test_hostile.py covers it)
    _guard(lambda: check_inbound(InboundSession.from_json(obj, default_at=AT)))
    _guard(lambda: check_outbound(OutboundSession.from_json(obj, default_at=AT)))


def _mint(cns: list[str]) -> MintedChain | None:
    try:
        return AUTHORITY.issue(cns)
    except (ValueError, UnicodeError):
        return None  # text cryptography cannot encode (lone surrogates): not our input


def _session_with_cn(text: str) -> None:
    """A trusted, valid chain (or MTA-verified facts) whose CNs the fuzzer chose: the
    decision must follow section 3 exactly, both ways."""
    cns = text.split("\n")[:4]
    sessions = [TLSFacts(MtaVerifiedCertificate(tuple(cns), True))]
    chain = _mint(cns)
    if chain is not None:
        sessions.append(chain.tls_facts())
    for tls in sessions:
        session = InboundSession.create(
            peer_ip="198.51.100.7", mail_from="a@eu.fabrikam.com", tls=tls, at=AT
        )
        decision = evaluate_inbound(POLICY, session)
        expected = any(map(covered_by_wildcard, cns))
        if (decision.action is InboundAction.ACCEPT) != expected:
            raise InvariantViolation(
                f"CNs {cns!r}: expected {'accept' if expected else 'reject'}, "
                f"got {decision.to_dict()}"
            )


def session(data: bytes) -> None:
    """JSON Lines sessions (both directions), and CN text in real trusted chains."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    text = body.decode("utf-8", "replace")
    if mode == 0:
        _session_json(text)
    elif mode == 1:
        _guard(lambda: _session_with_cn(text))
    else:
        wrapped: dict[str, Any] = {
            "peer_ip": "198.51.100.7",
            "mail_from": "a@fabrikam.com",
            "at": AT.isoformat(),
            "tls": {"peer_chain_pem": text},
        }
        _session_json(json.dumps(wrapped))


_SESSIONS = [
    ("198.51.100.7", "a@fabrikam.com"),
    ("2001:db8::7", "b@contoso.com"),
    ("203.0.113.9", ""),
]


def _use_policy(policy: Policy) -> None:
    for peer, sender in _SESSIONS:
        for tls in (None, TLSFacts(MtaVerifiedCertificate(("mx.fabrikam.com",), True))):
            evaluate_inbound(
                policy, InboundSession.create(peer_ip=peer, mail_from=sender, tls=tls, at=AT)
            )
    domains = {p.domain for c in policy.outbound for p in c.recipient_domains if p.domain}
    plan_routes(policy, sorted(domains)[:8])
    for domain in sorted(domains)[:4]:
        evaluate_outbound(policy, OutboundSession.create(recipient=f"a@{domain}", at=AT))


def _from_mapping(data: object) -> None:
    try:
        policy = Policy.from_mapping(data, trust=TRUST)  # type: ignore[arg-type]
    except PolicyError as exc:
        str(exc)  # every problem renders (escaped, bounded)
        raise
    _use_policy(policy)


def _load_file(raw: bytes) -> None:
    if b"ca_file" in raw:
        return  # a fuzzed ca_file could name /dev/stdin: not worth a hung fuzzer
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.toml"
        path.write_bytes(raw)
        try:
            policy = load_policy(path, use_system_trust=False)
        except PolicyError as exc:
            str(exc)
            raise
        _use_policy(policy)


def policy(data: bytes) -> None:
    """Policy.from_mapping of TOML- and JSON-decoded input; load_policy of raw bytes."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        try:
            decoded: Any = tomllib.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            return
        _guard(lambda: _from_mapping(decoded))
    elif mode == 1:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return
        _guard(lambda: _from_mapping(decoded))
    else:
        _guard(lambda: _load_file(body))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "certificate": certificate,
    "session": session,
    "policy": policy,
}


# --------------------------------------------------------------------------------------
# Seeds


def seeds(target: str) -> list[bytes]:
    """A small starting corpus for ``target``: valid inputs of every shape."""
    leaf = AUTHORITY.issue("server1.fabrikam.com")
    odd = AUTHORITY.issue(["Fabrikam Bank", "mx.eu.fabrikam.com"], sans=["fabrikam.com"])
    if target == "certificate":
        der = leaf.presented.leaf.public_bytes(_der())
        inter = leaf.presented.certificates[1].public_bytes(_der())
        two = bytes([1]) + len(der).to_bytes(2, "big") + der + inter
        return [
            b"\x00" + der,
            b"\x01" + two,
            b"\x02" + leaf.pem.encode(),
            b"\x02" + odd.pem.encode(),
        ]
    if target == "session":
        inbound = {
            "peer_ip": "198.51.100.7",
            "mail_from": "payments@fabrikam.com",
            "rcpt_to": ["finance@contoso.com"],
            "tls": {"peer_chain_pem": leaf.pem},
            "at": "2026-11-26T12:00:00Z",
        }
        mta = {
            "peer_ip": "::ffff:198.51.100.7",
            "mail_from": "<>",
            "tls": {"peer_cn": ["mx.fabrikam.com"], "peer_verified": True},
        }
        outbound = {
            "recipient": "b@fabrikam.com",
            "connector": None,
            "peer_host": "mx1.fabrikam.com",
            "tls": {"peer_chain_pem": odd.pem},
            "queued_since": "2026-11-25T12:00:00Z",
        }
        return [
            b"\x00" + json.dumps(inbound).encode(),
            b"\x00" + json.dumps(mta).encode(),
            b"\x00" + json.dumps(outbound).encode(),
            b"\x01mx.fabrikam.com\nFabrikam Bank",
            b"\x02" + odd.pem.encode(),
        ]
    if target == "policy":
        example = Path(__file__).parent.parent / "examples" / "fabrikam" / "policy.toml"
        text = example.read_text().replace('ca_file = "partners-ca.pem"', "")
        mapping = {"inbound": [{"name": "x", "sender_domains": ["*.fabrikam.com"]}]}
        return [
            b"\x00" + text.encode(),
            b"\x01" + json.dumps(mapping).encode(),
            b"\x02" + text.encode(),
        ]
    raise KeyError(target)


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER
