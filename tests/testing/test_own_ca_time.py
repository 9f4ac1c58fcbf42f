"""The session time of a test PKI built on the user's own CA (CertificateAuthority.valid_at).

A CA made today with ``openssl req -x509`` (notBefore = today, 2026-12-01 here) is not
valid at DEFAULT_TIME (2026-11-26T12:00Z). The checks and strategies decide at the
authority's ``valid_at`` unless told otherwise, so chains it mints are trusted and a
check is not passed vacuously (docs/testing.md, "Certificates and the test CA").
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import settings
from hypothesis import strategies as st
from test_testing_toolkit import first

from tlsconnector import (
    InboundAction,
    InboundSession,
    InvalidValue,
    OutboundAction,
    Policy,
    PresentedChain,
    load_policy,
)
from tlsconnector._validation import Purpose, validate_chain
from tlsconnector.testing import (
    DEFAULT_TIME,
    CertificateAuthority,
    Issuer,
    _checks,
    assert_forced_tls,
    assert_never_delivered_without_validation,
    assert_only_from_addresses,
    certificates,
    default_authority,
    inbound_sessions,
    outbound_sessions,
    tls_facts,
    trusting,
)

from certmint import CA, hand_made_ca

UTC = dt.UTC
#: When the user ran openssl: today on this machine's calendar, after DEFAULT_TIME.
TODAY = dt.datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
#: Noon UTC of the day after the later start of the CA and the minted window.
EXPECTED_AT = dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SEARCH = 300
HOLDS = 100


def openssl_like_ca(
    not_before: dt.datetime = TODAY,
    days: int = 30,
    cn: str = "Fabrikam Partner Test CA",
    *,
    key_usage: bool = True,
) -> tuple[str, str]:
    """What docs/postfix.md's ``openssl req -x509 -newkey ec -pkeyopt
    ec_paramgen_curve:P-256 -nodes -days 30 -subj '/O=Fabrikam/CN=...' -addext
    "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign"``
    writes (OpenSSL 3.0: the key identifiers, the two extensions; ``key_usage=False``:
    without the second -addext, as plain ``openssl req -x509`` makes it), as PEM."""
    key, cert = hand_made_ca(
        cn,
        organization="Fabrikam",
        not_before=not_before,
        not_after=not_before + dt.timedelta(days=days),
        key_cert_sign=True if key_usage else None,
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture(scope="module")
def own_ca() -> tuple[str, str]:
    return openssl_like_ca()


@pytest.fixture(scope="module")
def authority(own_ca: tuple[str, str]) -> CertificateAuthority:
    return CertificateAuthority.from_pem(*own_ca)


POLICY_TOML = """\
[trust]
ca_file = "partners-ca.pem"
revocation = "{revocation}"

[[inbound]]
name = "Fabrikam"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.fabrikam.com"
sender_ip_addresses = ["198.51.100.0/25"]
restrict_domains_to_ip_addresses = {restrict}

[[outbound]]
name = "Fabrikam out"
recipient_domains = ["fabrikam.com"]
tls_settings = "domain_validation"
tls_domain = "*.fabrikam.com"
"""


def users_policy(
    tmp_path: Path, ca_pem: str, revocation: str = "soft", *, restrict: bool = False
) -> Policy:
    """The user's own policy file, its [trust] ca_file their CA (as in the README);
    ``restrict``: the inbound connector also restricts the domain to its addresses."""
    (tmp_path / "partners-ca.pem").write_text(ca_pem)
    text = POLICY_TOML.format(revocation=revocation, restrict=str(restrict).lower())
    (tmp_path / "policy.toml").write_text(text)
    return load_policy(tmp_path / "policy.toml", use_system_trust=False)


@pytest.fixture(autouse=True)
def _derandomized() -> Iterator[None]:
    """The searches here are derandomized and forget past failures (no example
    database, which every check shares): the same examples on every run, so a test
    that counts on a search reaching something never flakes."""
    settings.register_profile(
        "own-ca-derandomized", settings.default, derandomize=True, database=None
    )
    previous = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile("own-ca-derandomized")
    try:
        yield
    finally:
        settings.load_profile(previous)


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Every (session, decision) the checks evaluate, in order."""
    seen: list[tuple[Any, Any]] = []

    def recording(evaluate: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(policy: Policy, session: Any, **options: Any) -> Any:
            decision = evaluate(policy, session, **options)
            seen.append((session, decision))
            return decision

        return wrapper

    monkeypatch.setattr(_checks, "evaluate_inbound", recording(_checks.evaluate_inbound))
    monkeypatch.setattr(_checks, "evaluate_outbound", recording(_checks.evaluate_outbound))
    return seen


def accepted_chains(seen: list[tuple[Any, Any]]) -> list[Any]:
    """The sessions accepted (delivered) on a presented chain, not on MTA facts."""
    found = []
    for session, decision in seen:
        if isinstance(session, InboundSession):
            tls = session.tls
        else:
            tls = session.attempt.tls if session.attempt is not None else None
        chain = tls is not None and isinstance(tls.certificate, PresentedChain)
        if chain and decision.action in (InboundAction.ACCEPT, OutboundAction.DELIVER):
            found.append(session)
    return found


def trusted_chains(seen: list[tuple[Any, Any]]) -> list[Any]:
    """The inbound sessions on a presented chain that no certificate check failed: the
    chain was trusted and its CN matched (accepted, or refused for the address only)."""
    return [
        session
        for session, decision in seen
        if isinstance(session, InboundSession)
        and session.tls is not None
        and isinstance(session.tls.certificate, PresentedChain)
        and not any(code.startswith("certificate-") for code in decision.codes)
    ]


# ======================================================================================
# valid_at


def test_a_ca_made_today_gets_a_session_time_inside_its_validity(
    own_ca: tuple[str, str], authority: CertificateAuthority
) -> None:
    cert = x509.load_pem_x509_certificate(own_ca[0].encode())
    assert DEFAULT_TIME < cert.not_valid_before_utc  # the trap: not valid at DEFAULT_TIME
    assert EXPECTED_AT == authority.valid_at
    with pytest.raises(AttributeError):
        authority.valid_at = DEFAULT_TIME  # type: ignore[misc]  # read-only


def test_the_toolkits_own_authorities_and_a_ca_valid_then_keep_default_time() -> None:
    assert DEFAULT_TIME == default_authority().valid_at
    assert DEFAULT_TIME == CertificateAuthority("Another test root").valid_at
    assert DEFAULT_TIME == default_authority().impostor.valid_at
    own = CA("Own Root")  # certmint's default validity, 2026-01-01 .. 2027-12-31
    key = own.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert DEFAULT_TIME == CertificateAuthority.from_pem(own.cert_pem(), key).valid_at


@pytest.mark.parametrize(
    ("not_before", "days", "expected"),
    [
        # Valid at DEFAULT_TIME (a 10-year CA made in 2025): DEFAULT_TIME.
        (dt.datetime(2025, 3, 1, tzinfo=UTC), 3650, DEFAULT_TIME),
        # Starts after DEFAULT_TIME: noon UTC of the day after it starts.
        (
            dt.datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC),
            365,
            dt.datetime(2027, 7, 1, 12, 0, tzinfo=UTC),
        ),
        # Ends before DEFAULT_TIME, after the window starts: noon after the window starts.
        (dt.datetime(2025, 1, 1, tzinfo=UTC), 400, dt.datetime(2026, 1, 2, 12, 0, tzinfo=UTC)),
        # Meets the window for less than a day and a half: the middle of what is left.
        (
            dt.datetime(2027, 12, 30, 6, 0, 1, tzinfo=UTC),
            30,
            dt.datetime(2027, 12, 30, 15, 0, tzinfo=UTC),
        ),
        # Meets it for one instant (validity is inclusive at both ends): that instant.
        (dt.datetime(2025, 1, 1, tzinfo=UTC), 365, dt.datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_valid_at_lies_inside_the_ca_and_the_minted_window(
    not_before: dt.datetime, days: int, expected: dt.datetime
) -> None:
    authority = CertificateAuthority.from_pem(*openssl_like_ca(not_before, days))
    assert expected == authority.valid_at
    chain = authority.issue("mail.fabrikam.com")
    policy = trusting(Policy.from_mapping({}, trust=None), authority)
    assert policy.trust is not None
    verdict = validate_chain(
        chain.presented, trust=policy.trust, at=authority.valid_at, purpose=Purpose.INBOUND
    )
    assert verdict.trusted, verdict.detail


@pytest.mark.parametrize(
    ("not_before", "days", "shown"),
    [
        (dt.datetime(2028, 1, 5, tzinfo=UTC), 3650, "2028-01-05T00:00:00+00:00 .. 2038-01-02"),
        (dt.datetime(2020, 1, 1, tzinfo=UTC), 2191, "2020-01-01T00:00:00+00:00 .. 2025-12-31"),
    ],
)
def test_a_ca_that_never_meets_the_minted_window_is_refused_naming_both(
    tmp_path: Path, not_before: dt.datetime, days: int, shown: str
) -> None:
    cert_pem, key_pem = openssl_like_ca(not_before, days)
    window = r"2026-01-01T00:00:00\+00:00 \.\. 2027-12-31T00:00:00\+00:00"
    message = rf"CA certificate: valid {re.escape(shown)}.*minted.*{window}"
    with pytest.raises(InvalidValue, match=message) as refused:
        CertificateAuthority.from_pem(cert_pem, key_pem)
    assert "O=Fabrikam" in str(refused.value)  # names the CA
    (tmp_path / "ca.pem").write_text(cert_pem)
    (tmp_path / "ca.key").write_text(key_pem)
    with pytest.raises(InvalidValue, match=r"ca\.pem'?: " + message):
        CertificateAuthority.from_files(tmp_path / "ca.pem", tmp_path / "ca.key")


def test_a_ca_without_key_usage_is_refused_since_no_chain_it_signs_validates() -> None:
    """Plain ``openssl req -x509`` (OpenSSL 3.0's default config) writes no keyUsage;
    the validator never trusts a path through such a CA, so refusing it is the only
    way the user learns why (the hint names the openssl option)."""
    with pytest.raises(
        InvalidValue,
        match=r"O=Fabrikam'?: CA certificate: no keyUsage extension, so no chain it signs "
        r"validates .*keyUsage=critical,keyCertSign,cRLSign",
    ):
        CertificateAuthority.from_pem(*openssl_like_ca(key_usage=False))


# ======================================================================================
# The checks decide at valid_at


def test_the_checks_accept_chains_from_a_ca_made_today_without_at(
    tmp_path: Path,
    own_ca: tuple[str, str],
    authority: CertificateAuthority,
    decisions: list[tuple[Any, Any]],
) -> None:
    policy = users_policy(tmp_path, own_ca[0])
    assert_forced_tls(
        policy,
        "fabrikam.com",
        certificate_name="*.fabrikam.com",
        authority=authority,
        max_examples=HOLDS,
    )
    assert accepted_chains(decisions), "no minted chain was ever accepted: the check was vacuous"
    assert {EXPECTED_AT} == {session.at for session, _ in decisions}
    decisions.clear()
    restricted = users_policy(tmp_path, own_ca[0], restrict=True)
    assert_only_from_addresses(
        restricted, "fabrikam.com", ["198.51.100.0/25"], authority=authority, max_examples=HOLDS
    )
    assert trusted_chains(decisions)
    decisions.clear()
    assert_never_delivered_without_validation(
        policy,
        "fabrikam.com",
        certificate_name="*.fabrikam.com",
        authority=authority,
        max_examples=HOLDS,
    )
    assert accepted_chains(decisions)
    assert {EXPECTED_AT} == {session.at for session, _ in decisions}


def test_assert_forced_tls_with_a_ca_made_today_finds_a_name_one_label_off(
    tmp_path: Path, own_ca: tuple[str, str], authority: CertificateAuthority
) -> None:
    """revocation = "hard" refuses MTA-verified facts (no revocation answer), so only a
    minted chain can be accepted: at DEFAULT_TIME nothing is, and the check held."""
    policy = users_policy(tmp_path, own_ca[0], revocation="hard")
    with pytest.raises(AssertionError, match=r"no certificate CN \(.*\) matches") as failure:
        assert_forced_tls(
            policy,
            "fabrikam.com",
            certificate_name="mail.fabrikam.com",
            authority=authority,
            max_examples=SEARCH,
        )
    assert "presented chain" in str(failure.value)
    assert f"at: {EXPECTED_AT.isoformat()}" in str(failure.value)


def test_an_explicit_at_wins(
    tmp_path: Path,
    own_ca: tuple[str, str],
    authority: CertificateAuthority,
    decisions: list[tuple[Any, Any]],
) -> None:
    policy = users_policy(tmp_path, own_ca[0], revocation="hard")
    # At DEFAULT_TIME the user's CA is not yet valid: no chain is accepted, the
    # wrong certificate name goes unnoticed. The time asked for is the time used.
    assert_forced_tls(
        policy,
        "fabrikam.com",
        certificate_name="mail.fabrikam.com",
        authority=authority,
        at=DEFAULT_TIME,
        max_examples=HOLDS,
    )
    assert {DEFAULT_TIME} == {session.at for session, _ in decisions}
    assert not accepted_chains(decisions)


# ======================================================================================
# The strategies decide at valid_at


def test_the_strategies_draw_at_the_authoritys_valid_at(
    tmp_path: Path, own_ca: tuple[str, str], authority: CertificateAuthority
) -> None:
    from tlsconnector import evaluate_inbound, evaluate_outbound

    policy = users_policy(tmp_path, own_ca[0])
    inbound = first(
        inbound_sessions(policy, authority=authority),
        lambda s: (
            evaluate_inbound(policy, s).action is InboundAction.ACCEPT
            and s.tls is not None
            and isinstance(s.tls.certificate, PresentedChain)
        ),
    )
    assert EXPECTED_AT == inbound.at
    outbound = first(
        outbound_sessions(policy, authority=authority),
        lambda s: (
            evaluate_outbound(policy, s).action is OutboundAction.DELIVER
            and s.attempt is not None
            and s.attempt.tls is not None
            and isinstance(s.attempt.tls.certificate, PresentedChain)
        ),
    )
    assert EXPECTED_AT == outbound.at
    # A trusted chain drawn around valid_at is valid then; tls_facts' trusted chains too.
    chain = first(
        certificates(authority=authority, issuers=st.just(Issuer.TRUSTED)),
        lambda c: c.not_before == EXPECTED_AT,  # "valid from exactly at"
    )
    assert chain.not_before == EXPECTED_AT
    one_second = dt.timedelta(seconds=1)
    facts = first(
        tls_facts(["*.fabrikam.com"], authority=authority, trusted_only=True),
        lambda f: (
            isinstance(f.certificate, PresentedChain)
            and f.certificate.leaf.not_valid_before_utc == EXPECTED_AT - one_second
        ),
    )
    assert isinstance(facts.certificate, PresentedChain)
    # Without an authority: DEFAULT_TIME, as before.
    default = first(inbound_sessions(policy), lambda s: True)
    assert DEFAULT_TIME == default.at
