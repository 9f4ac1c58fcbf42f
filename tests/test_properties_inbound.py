"""Property tests for inbound evaluation (specification sections 2-5, 7-9).

Each test states one guarantee a user of tlsconnector can rely on, whatever the
policy and the session facts. Certificates are real and minted once, at import
(never inside a Hypothesis example); every session is evaluated at ``certmint.NOW``.
Example counts come from the Hypothesis profile (``ci`` by default, ``long`` on demand).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from hypothesis import example, given, reject
from hypothesis import strategies as st

from tlsconnector import (
    CertificateName,
    DomainPattern,
    InboundAction,
    InboundConnector,
    InboundDecision,
    InboundSession,
    InvalidValue,
    MtaVerifiedCertificate,
    Policy,
    PolicyError,
    PresentedChain,
    TLSFacts,
    TrustStore,
    canonical_domain,
    evaluate_inbound,
)

from certmint import CA, NOW, self_signed

# --------------------------------------------------------------------------------------
# Real certificates, minted once for the whole module.

ROOT = CA("Fabrikam Partner Root CA")
INTER = ROOT.intermediate("Fabrikam Issuing CA")
TRUST = TrustStore.from_pem(ROOT.cert_pem())

_SERVER1 = INTER.issue("server1.fabrikam.com")
_PAST = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
_CHAIN_PEMS = {
    "server1": _SERVER1.chain_pem(),
    "upper-case": INTER.issue("SERVER1.Fabrikam.COM").chain_pem(),
    "eu": INTER.issue("mx.eu.fabrikam.com").chain_pem(),
    "contoso": INTER.issue("mail.contoso.com").chain_pem(),
    "apex": INTER.issue("fabrikam.com").chain_pem(),
    "two-labels": INTER.issue("a.b.fabrikam.com").chain_pem(),
    "wildcard-cn": INTER.issue("*.fabrikam.com").chain_pem(),
    "several-cns": INTER.issue(["Fabrikam Bank", "server1.fabrikam.com"]).chain_pem(),
    "san-only": INTER.issue(None, san=["server1.fabrikam.com"]).chain_pem(),
    "expired": INTER.issue(
        "server1.fabrikam.com", not_before=_PAST[0], not_after=_PAST[1]
    ).chain_pem(),
    "no-intermediate": _SERVER1.chain_pem(intermediates=False),
    "self-signed": self_signed("server1.fabrikam.com").chain_pem(),
}
CHAINS = {key: TLSFacts(PresentedChain.from_pem(text)) for key, text in _CHAIN_PEMS.items()}

# --------------------------------------------------------------------------------------
# Small pools, so that generated connectors and sessions actually meet.

SENDER_PATTERNS = [
    "fabrikam.com",
    "*.fabrikam.com",
    "eu.fabrikam.com",
    "*.eu.fabrikam.com",
    "*",
    "contoso.com",
]
CERT_NAMES = ["*.fabrikam.com", "server1.fabrikam.com", "mail.contoso.com", "*.eu.fabrikam.com"]
IP_ENTRIES = [
    "198.51.100.0/25",
    "198.51.100.10-198.51.100.20",
    "192.0.2.1",
    "2001:db8::/32",
    "::ffff:203.0.113.0/120",  # an IPv4-mapped block: the IPv4 block 203.0.113.0/24
]
SENDERS = [
    "a@fabrikam.com",
    "b@eu.fabrikam.com",
    "c@x.eu.fabrikam.com",
    "d@contoso.com",
    "e@mail.contoso.com",
    "f@example.org",
    "",
    "<>",
]
MTA_CNS = [
    "server1.fabrikam.com",
    "SERVER1.Fabrikam.COM",
    "mx.eu.fabrikam.com",
    "mail.contoso.com",
    "fabrikam.com",
    "a.b.fabrikam.com",
    "*.fabrikam.com",
    "Fabrikam Bank",
    "server1.fabrikam.com\x00.evil.example",
]

_NAME = st.text(alphabet="ABCDEFGHIJKabcdefghijk0123 -_éÄ", min_size=1, max_size=10).filter(
    lambda name: name.strip() != ""
)
_IP_LIST = st.lists(st.sampled_from(IP_ENTRIES), min_size=1, max_size=2, unique=True)


@st.composite
def connector_mapping(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """One ``[[inbound]]`` table as the TOML loader would hand it over; optional keys
    are sometimes left out so that the defaults take part too."""
    raw: dict[str, Any] = {
        "name": name,
        "sender_domains": draw(st.lists(st.sampled_from(SENDER_PATTERNS), min_size=1, max_size=3)),
    }
    optional = {
        "enabled": st.booleans() | st.just(True),
        "type": st.sampled_from(["partner", "partner", "on_premises"]),
        "require_tls": st.booleans(),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            raw[key] = draw(values)
    if draw(st.booleans()):
        raw["tls_sender_certificate_name"] = draw(st.sampled_from(CERT_NAMES))
        if draw(st.booleans()):
            raw["restrict_domains_to_certificate"] = draw(st.booleans())
    ip_mode = draw(st.sampled_from(["none", "listed", "restricted"]))
    if ip_mode != "none":
        raw["sender_ip_addresses"] = draw(_IP_LIST)
        raw["restrict_domains_to_ip_addresses"] = ip_mode == "restricted"
    return raw


@st.composite
def connector_mappings(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-5 inbound connectors with names unique under case folding (section 8)."""
    names = draw(st.lists(_NAME, min_size=1, max_size=5, unique_by=str.casefold))
    return [draw(connector_mapping(name)) for name in names]


_MAPPED_V4 = st.ip_addresses(v=4, network="198.51.100.0/24").map(lambda ip: f"::ffff:{ip}")
PEER_IPS = st.one_of(
    st.sampled_from(
        [
            "198.51.100.9",
            "198.51.100.10",
            "198.51.100.20",
            "198.51.100.21",
            "198.51.100.127",
            "198.51.100.128",
            "192.0.2.1",
            "192.0.2.2",
            "::ffff:192.0.2.1",
            "203.0.113.9",
            "::ffff:203.0.113.9",
            "2001:db8::25",
            "2001:db9::25",
        ]
    ),
    st.ip_addresses(v=4, network="198.51.100.0/24").map(str),
    _MAPPED_V4,
    st.ip_addresses(v=6, network="2001:db8::/31").map(str),
)
MTA_FACTS = st.builds(
    lambda cns, verified: TLSFacts(MtaVerifiedCertificate(tuple(cns), verified)),
    st.lists(st.sampled_from(MTA_CNS), max_size=2),
    st.booleans(),
)
TLS_FACTS = st.one_of(
    st.none(),
    st.just(TLSFacts(None)),
    MTA_FACTS,
    st.sampled_from(sorted(CHAINS)).map(CHAINS.__getitem__),
)


def make_session(peer_ip: str, mail_from: str, tls: TLSFacts | None) -> InboundSession:
    return InboundSession.create(
        peer_ip=peer_ip, mail_from=mail_from, tls=tls, at=NOW, rcpt_to=["finance@contoso.com"]
    )


SESSIONS = st.builds(make_session, PEER_IPS, st.sampled_from(SENDERS), TLS_FACTS)


def load(connectors: Sequence[dict[str, Any]]) -> Policy:
    """Build the policy; a configuration that fails to load is not a test case."""
    try:
        return Policy.from_mapping({"inbound": list(connectors)}, trust=TRUST)
    except PolicyError:
        reject()


def outcome(decision: InboundDecision) -> tuple[InboundAction, str | None, tuple[str, ...]]:
    """What a decision means, without the human-readable details."""
    return decision.action, decision.connector, decision.codes


def connector_named(policy: Policy, name: str) -> InboundConnector:
    (found,) = [c for c in policy.inbound if c.name == name]
    return found


_ASCII_SWAP = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_swapcase(text: str) -> str:
    """Swap the case of ASCII letters only (never Unicode case mapping)."""
    return text.translate(_ASCII_SWAP)


# ======================================================================================
# 1. Normalisation (section 2). tests/test_names.py holds the primitive-level details.

_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_U_LABEL = st.sampled_from(["bücher", "Bücher", "münchen", "straße", "пример", "例え"])
DOMAINS = st.builds(
    lambda labels, last, dot: ".".join([*labels, last]) + dot,
    st.lists(st.one_of(_LABEL, _U_LABEL), min_size=1, max_size=3),
    st.sampled_from(["com", "COM", "Example", "org", "de"]),
    st.sampled_from(["", "."]),
)


def canonical_or_reject(text: str) -> str:
    try:
        return canonical_domain(text)
    except InvalidValue:  # e.g. a generated "xn--" label that does not decode
        reject()


@given(DOMAINS)
def test_canonical_domain_is_idempotent_and_blind_to_ascii_case(domain: str) -> None:
    """Normalising twice changes nothing, and ASCII case never changes the canonical form."""
    canonical = canonical_or_reject(domain)
    assert canonical == canonical_domain(canonical)
    assert canonical == canonical_domain(ascii_swapcase(domain))


@given(DOMAINS, st.sampled_from(["", "*."]))
def test_patterns_and_certificate_names_survive_a_print_parse_round_trip(
    domain: str, prefix: str
) -> None:
    """What a pattern or a certificate name prints parses back to the same value."""
    text = prefix + canonical_or_reject(domain)
    pattern = DomainPattern.parse(text)
    assert pattern == DomainPattern.parse(str(pattern))
    try:
        name = CertificateName.parse(text)
    except InvalidValue:  # a wildcard directly over a public suffix
        reject()
    assert name == CertificateName.parse(str(name))


def swap_policy_case(connectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    swapped = []
    for raw in connectors:
        copy = dict(raw, sender_domains=[ascii_swapcase(p) for p in raw["sender_domains"]])
        if "tls_sender_certificate_name" in raw:
            copy["tls_sender_certificate_name"] = ascii_swapcase(raw["tls_sender_certificate_name"])
        swapped.append(copy)
    return swapped


def swap_session_case(session: InboundSession, *, peer_ip: str) -> InboundSession:
    local, _, domain = session.mail_from.rpartition("@")
    sender = f"{local}@{ascii_swapcase(domain)}" if domain else session.mail_from
    tls = session.tls
    if tls is not None and isinstance(tls.certificate, MtaVerifiedCertificate):
        facts = tls.certificate
        tls = TLSFacts(
            MtaVerifiedCertificate(tuple(ascii_swapcase(cn) for cn in facts.cns), facts.verified)
        )
    return make_session(peer_ip, sender, tls)


@given(connector_mappings(), PEER_IPS, st.sampled_from(SENDERS), TLS_FACTS)
def test_ascii_case_never_changes_a_decision(
    connectors: list[dict[str, Any]], peer_ip: str, sender: str, tls: TLSFacts | None
) -> None:
    """Swapping the case of ASCII letters in the configured domains and certificate
    names, in the sender's domain and in the presented CNs never changes the action,
    the deciding connector or the reason codes."""
    session = make_session(peer_ip, sender, tls)
    original = evaluate_inbound(load(connectors), session)
    swapped = evaluate_inbound(
        load(swap_policy_case(connectors)), swap_session_case(session, peer_ip=peer_ip)
    )
    assert outcome(original) == outcome(swapped)


# ======================================================================================
# 2. Connector order in the file never matters (section 5.5).


@given(connector_mappings().flatmap(st.permutations), st.lists(SESSIONS, min_size=1, max_size=3))
def test_decisions_do_not_depend_on_connector_order(
    connectors: list[dict[str, Any]], sessions: list[InboundSession]
) -> None:
    """The same connectors in any file order give the same decision, reasons and reply."""
    as_written = load(connectors)
    reversed_ = load(connectors[::-1])
    rotated = load(connectors[1:] + connectors[:1])
    for session in sessions:
        expected = evaluate_inbound(as_written, session)
        assert expected == evaluate_inbound(reversed_, session)
        assert expected == evaluate_inbound(rotated, session)


# ======================================================================================
# 3. Adding a check (section 5.3, 5.4).

STRENGTHENINGS = st.one_of(
    st.tuples(st.just("require_tls"), st.none()),
    st.tuples(st.just("certificate"), st.sampled_from(CERT_NAMES)),
    st.tuples(st.just("ip"), _IP_LIST),
)


def strengthen(raw: dict[str, Any], how: str, value: Any) -> dict[str, Any]:
    """The same connector with one more check: never a check replaced or loosened."""
    stricter = dict(raw)
    if how == "require_tls":
        stricter["require_tls"] = True
    elif how == "certificate":
        stricter.setdefault("tls_sender_certificate_name", value)
    elif not raw.get("restrict_domains_to_ip_addresses", False):
        # An unrestricted list has no effect, so replacing it adds exactly one check.
        stricter["restrict_domains_to_ip_addresses"] = True
        stricter["sender_ip_addresses"] = value
    return stricter


def before_and_after(
    connectors: list[dict[str, Any]], index: int, how: str, value: Any, session: InboundSession
) -> tuple[InboundDecision, InboundDecision, InboundConnector]:
    index %= len(connectors)
    stricter = [*connectors]
    stricter[index] = strengthen(connectors[index], how, value)
    before_policy = load(connectors)
    before = evaluate_inbound(before_policy, session)
    after = evaluate_inbound(load(stricter), session)
    return before, after, connector_named(before_policy, connectors[index]["name"])


# The spec's "restrict beats allow" (5.3) bounds monotonicity (see docs/inbound.md):
# the smallest counterexample to the unrestricted property: "A" restricts by IP, "B"
# requires nothing for the same domain and loses to "A" (5.3), so a session from
# another address is rejected. Restricting "B" to the peer's IP makes "B" a candidate,
# and it is satisfied.
_RESTRICT_BEATS_ALLOW = {
    "connectors": [
        {
            "name": "A",
            "sender_domains": ["fabrikam.com"],
            "require_tls": False,
            "restrict_domains_to_ip_addresses": True,
            "sender_ip_addresses": ["198.51.100.1"],
        },
        {"name": "B", "sender_domains": ["fabrikam.com"], "require_tls": False},
    ],
    "index": 1,
    "strengthening": ("ip", ["192.0.2.1"]),
    "session": make_session("192.0.2.1", "a@fabrikam.com", None),
}


@given(connector_mappings(), st.integers(0, 4), STRENGTHENINGS, SESSIONS)
@example(**_RESTRICT_BEATS_ALLOW)
def test_a_check_added_turns_a_reject_into_an_accept_only_through_restrict_beats_allow(
    connectors: list[dict[str, Any]],
    index: int,
    strengthening: tuple[str, Any],
    session: InboundSession,
) -> None:
    """Adding a check to a connector that already restricts (by certificate name or IP)
    never turns a reject into an accept. The only way a check added turns a reject into
    an accept is the strengthened connector itself accepting after having not been
    restricting (5.3): then it joins the restricting candidates that rejected before."""
    before, after, changed = before_and_after(connectors, index, *strengthening, session)
    assert InboundAction.TEMPFAIL not in (before.action, after.action)
    if before.action is InboundAction.REJECT and after.action is InboundAction.ACCEPT:
        assert not changed.restricts
        assert changed.name == after.connector
    if changed.restricts and before.action is InboundAction.REJECT:
        assert InboundAction.REJECT == after.action


# ======================================================================================
# 4. No TLS, no TLS-requiring connector (section 5.4).


@given(connector_mappings(), PEER_IPS, st.sampled_from(SENDERS))
def test_a_plaintext_session_is_never_accepted_by_a_connector_requiring_tls(
    connectors: list[dict[str, Any]], peer_ip: str, sender: str
) -> None:
    """A session without STARTTLS is accepted only by a connector that requires no TLS
    (neither require_tls nor a certificate name), or when no connector governs it."""
    policy = load(connectors)
    decision = evaluate_inbound(policy, make_session(peer_ip, sender, None))
    if decision.action is InboundAction.ACCEPT and decision.connector is not None:
        assert not connector_named(policy, decision.connector).requires_tls
    if decision.action is InboundAction.REJECT:
        assert decision.connector is not None
        rejecting = connector_named(policy, decision.connector)
        assert rejecting.requires_tls or rejecting.restricts


# ======================================================================================
# 5. Decisions are deterministic, well-formed values (sections 1, 5, 9).


@given(connector_mappings(), SESSIONS)
def test_decisions_are_deterministic_well_formed_values(
    connectors: list[dict[str, Any]], session: InboundSession
) -> None:
    """The same policy and session always give the same decision; it serialises to JSON
    with a known action; a reject carries reasons and a 5xx reply; an accept none."""
    policy = load(connectors)
    decision = evaluate_inbound(policy, session)
    assert decision == evaluate_inbound(policy, session)
    assert decision == evaluate_inbound(load(connectors), session)
    obj = json.loads(json.dumps(decision.to_dict()))
    assert obj["action"] in {"accept", "reject", "tempfail"}
    assert str(decision.action) == obj["action"]
    assert all({"code", "detail"} <= set(reason) for reason in obj["reasons"])
    if decision.action is InboundAction.REJECT:
        assert decision.reasons
        assert decision.smtp is not None
        assert 500 <= decision.smtp.code <= 599
        assert decision.smtp.enhanced.startswith("5.")
        assert obj["smtp"]["code"] == decision.smtp.code
    elif decision.action is InboundAction.ACCEPT:
        assert decision.smtp is None
        assert obj["smtp"] is None
        assert decision.reasons


# ======================================================================================
# 6. Hostile certificate names (sections 3 and 8).

_SUFFIXES = [
    ".fabrikam.com",
    ".FABRIKAM.COM",
    ".fabrikam.com.",
    ".fabrikam.com\x00",
    ".fabrikam.com.evil.example",
    "fabrikam.com",
    ".fabrikam.co",
    ".fabrikam\u2024com",  # ONE DOT LEADER
    ".fabrikam.\u0441om",  # Cyrillic es
]
_TRICKS = ["\x00", "\u202e", "\u200b", "\ufeff", " ", "\n", "\x7f", "\u212a", "\u0131", "_", "*"]
_LDHISH = st.from_regex(r"[A-Za-z0-9.*_-]{0,66}", fullmatch=True)
_NEAR_MISSES = [
    "*.fabrikam.com",
    "*.FABRIKAM.COM",
    "*.*.fabrikam.com",
    "*.com",
    "*",
    "fabrikam.com",
    "a.b.fabrikam.com",
    "xn--bcher-kva.fabrikam.com",
    "XN--a.fabrikam.com",
    "-a.fabrikam.com",
    "a-.fabrikam.com",
    "a_b.fabrikam.com",
    "server1.fabrikam.com.",
    ".server1.fabrikam.com",
    "server1..fabrikam.com",
    "1.fabrikam.com",
    "0x7f.fabrikam.com",
    "a" * 51 + ".fabrikam.com",  # 64 characters: the longest usable CN
    "a" * 52 + ".fabrikam.com",  # 65 characters
    "a" * 64 + ".fabrikam.com",  # a 64-octet label
]
HOSTILE_CNS = st.one_of(
    st.text(max_size=80),
    st.sampled_from(_NEAR_MISSES),
    st.sampled_from(_NEAR_MISSES).map(ascii_swapcase),
    st.builds(str.__add__, st.text(max_size=66), st.sampled_from(_SUFFIXES)),
    st.builds(str.__add__, _LDHISH, st.sampled_from(_SUFFIXES)),
    st.builds(
        lambda head, trick, tail, suffix: head + trick + tail + suffix,
        _LDHISH,
        st.sampled_from(_TRICKS),
        _LDHISH,
        st.sampled_from(_SUFFIXES),
    ),
)
_CHILD_OF_FABRIKAM = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.fabrikam\.com")
HOSTILE_POLICY = Policy.from_mapping(
    {
        "inbound": [
            {
                "name": "Fabrikam Bank inbound",
                "sender_domains": ["fabrikam.com"],
                "tls_sender_certificate_name": "*.fabrikam.com",
            }
        ]
    },
    trust=TRUST,
)


def covered_by_the_wildcard(cn: str) -> bool:
    """Section 3 written independently: ``*.fabrikam.com`` itself, or one LDH label (not
    an ``xn--`` label) over fabrikam.com, ASCII case-insensitive, at most 64 characters."""
    if len(cn) > 64:
        return False
    lowered = cn.translate(_ASCII_LOWER)
    if lowered == "*.fabrikam.com":
        return True  # equal patterns match (section 3 table)
    return _CHILD_OF_FABRIKAM.fullmatch(lowered) is not None and not lowered.startswith("xn--")


def _printable_ascii(text: str) -> bool:
    return all(" " <= char <= "~" for char in text)


@given(st.lists(HOSTILE_CNS, max_size=4), st.sampled_from([True, True, False]), PEER_IPS)
@example(["a.b.fabrikam.com"], True, "198.51.100.7")  # two labels (section 3)
@example(["fabrikam.com"], True, "198.51.100.7")  # the apex
@example(["xn--bcher-kva.fabrikam.com"], True, "198.51.100.7")  # rule 5
@example(["server1.fabrikam.com\x00.evil.example"], True, "198.51.100.7")  # rule 1
@example(["server1.fabrikam.com"], False, "198.51.100.7")  # not verified by the MTA
def test_hostile_cns_never_crash_and_never_accept_a_wrong_name(
    cns: list[str], verified: bool, peer_ip: str
) -> None:
    """Whatever text an MTA reports as the CN (NUL, bidi controls, look-alike letters,
    overlong labels), deciding never fails; the session is accepted exactly when the
    chain was verified and some CN is a single LDH label over fabrikam.com (or the
    identical wildcard), and the attacker's text never reaches a reply unescaped."""
    tls = TLSFacts(MtaVerifiedCertificate(tuple(cns), verified))
    decision = evaluate_inbound(HOSTILE_POLICY, make_session(peer_ip, "a@fabrikam.com", tls))
    json.dumps(decision.to_dict())
    accepted = decision.action is InboundAction.ACCEPT
    assert accepted == (verified and any(covered_by_the_wildcard(cn) for cn in cns))
    assert all(_printable_ascii(reason.detail) for reason in decision.reasons)
    if decision.smtp is not None:
        assert _printable_ascii(decision.smtp.text)
