"""Revocation (specification section 11): CRLs and stapled OCSP responses.

Every CRL and OCSP response is real, minted with ``cryptography``'s builders through
the test PKI (``CA.crl``, ``CA.ocsp_response``); the session time is ``NOW``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsconnector import (
    InboundAction,
    InboundSession,
    OutboundAction,
    OutboundSession,
    Policy,
    PolicyError,
    PresentedChain,
    TLSFacts,
    TrustStore,
    evaluate_inbound,
    evaluate_outbound,
)
from tlsconnector._assessment import ChainVerdictCache
from tlsconnector._errors import FactsError
from tlsconnector._facts import ConnectionAttempt, MtaVerifiedCertificate
from tlsconnector._revocation import CrlSet, Revocation, RevocationList, check_revocation
from tlsconnector._validation import Purpose, validate_chain
from tlsconnector.policy_file import loading
from tlsconnector.policy_file.lint import LintCode, lint
from tlsconnector.policy_file.loading import load_policy
from tlsconnector.policy_file.schema import schema_text

from certmint import CA, NOW, Leaf

CDP = ["http://crl.fabrikam.example/issuing.crl"]
ROOT = CA("Fabrikam Revocation Root CA")
INTER = ROOT.intermediate("Fabrikam Revocation Issuing CA", crl_distribution_points=CDP)
LEAF = INTER.issue("server1.fabrikam.com", crl_distribution_points=CDP)
OTHER_LEAF = INTER.issue("server2.fabrikam.com", crl_distribution_points=CDP)
PLAIN_LEAF = INTER.issue("server3.fabrikam.com")  # no CRL distribution point
DAY = dt.timedelta(days=1)

INBOUND = {
    "name": "Fabrikam",
    "sender_domains": ["fabrikam.com"],
    "tls_sender_certificate_name": "*.fabrikam.com",
}
OUTBOUND = {
    "name": "To Fabrikam",
    "recipient_domains": ["fabrikam.com"],
    "tls_settings": "certificate_validation",
}


def trust(*crls: x509.CertificateRevocationList) -> TrustStore:
    return TrustStore.from_pem(ROOT.cert_pem(), crls=CrlSet.from_crls(crls))


def current() -> list[x509.CertificateRevocationList]:
    """A current, empty CRL of each CA of the path."""
    return [ROOT.crl(), INTER.crl()]


def policy(store: TrustStore, revocation: str | None = None) -> Policy:
    data: dict[str, Any] = {"inbound": [INBOUND], "outbound": [OUTBOUND]}
    if revocation is not None:
        data["trust"] = {"revocation": revocation}
    return Policy.from_mapping(data, trust=store)


def inbound(pol: Policy, leaf: Leaf = LEAF, at: dt.datetime = NOW) -> Any:
    tls = TLSFacts(PresentedChain.from_pem(leaf.chain_pem()))
    session = InboundSession.create(
        peer_ip="198.51.100.7",
        mail_from="a@fabrikam.com",
        rcpt_to=["b@contoso.com"],
        tls=tls,
        at=at,
    )
    return evaluate_inbound(pol, session)


def outbound(
    pol: Policy,
    leaf: Leaf = LEAF,
    *,
    staple: bytes | None = None,
    queued_since: dt.datetime | None = None,
) -> Any:
    tls = TLSFacts(PresentedChain.from_pem(leaf.chain_pem()), ocsp_response=staple)
    session = OutboundSession.create(
        recipient="b@fabrikam.com",
        at=NOW,
        attempt=ConnectionAttempt(tls),
        queued_since=queued_since,
    )
    return evaluate_outbound(pol, session)


def verdict(store: TrustStore, leaf: Leaf = LEAF, **kw: Any) -> Any:
    chain = PresentedChain.from_pem(leaf.chain_pem())
    return validate_chain(chain, trust=store, at=kw.pop("at", NOW), purpose=Purpose.OUTBOUND, **kw)


# --- CRLs: revoked certificates ------------------------------------------------------


def test_a_revoked_leaf_is_rejected_inbound_and_deferred_outbound() -> None:
    pol = policy(trust(ROOT.crl(), INTER.crl([(LEAF.cert, NOW - DAY)])))
    decision = inbound(pol)
    assert InboundAction.REJECT == decision.action
    assert ("certificate-revoked",) == decision.codes
    assert (550, "5.7.1") == (decision.smtp.code, decision.smtp.enhanced)
    assert "revoked" in decision.smtp.text
    out = outbound(pol)
    assert OutboundAction.DEFER == out.action
    assert "certificate-revoked" == out.codes[0]
    assert "4.7.5" == out.smtp.enhanced
    late = outbound(pol, queued_since=NOW - dt.timedelta(hours=25))
    assert OutboundAction.FAIL == late.action
    assert ("message-expired", "certificate-revoked") == late.codes[:2]
    assert "5.7.5" == late.reasons[1].enhanced


def test_the_same_policy_accepts_a_leaf_it_does_not_list() -> None:
    pol = policy(trust(ROOT.crl(), INTER.crl([(LEAF.cert, NOW - DAY)])))
    assert ("connector-satisfied",) == inbound(pol, OTHER_LEAF).codes
    assert OutboundAction.DELIVER == outbound(pol, OTHER_LEAF).action


def test_a_revoked_intermediate_is_revoked() -> None:
    store = trust(ROOT.crl([(INTER.cert, NOW - DAY)]), INTER.crl())
    result = verdict(store)
    assert "certificate-revoked" == result.code
    assert "certificate #2" in result.detail
    assert ("certificate-revoked",) == inbound(policy(store)).codes


def test_a_revocation_date_after_the_session_time_does_not_revoke_yet() -> None:
    store = trust(ROOT.crl(), INTER.crl([(LEAF.cert, NOW + dt.timedelta(hours=1))]))
    assert verdict(store).trusted
    assert "certificate-revoked" == verdict(store, at=NOW + dt.timedelta(hours=2)).code


def test_a_cached_verdict_never_outlives_a_revocation_date_or_a_next_update() -> None:
    cache = ChainVerdictCache()
    revoked_at = NOW + dt.timedelta(hours=1)
    store = trust(ROOT.crl(), INTER.crl([(LEAF.cert, revoked_at)]))
    chain = PresentedChain.from_pem(LEAF.chain_pem())
    first = cache.validate(chain, trust=store, at=NOW, purpose=Purpose.OUTBOUND)
    assert first.trusted
    assert first.valid_until is not None
    assert first.valid_until < revoked_at
    later = cache.validate(chain, trust=store, at=revoked_at, purpose=Purpose.OUTBOUND)
    assert "certificate-revoked" == later.code
    # The CRL's nextUpdate (NOW + 7 days) passing ends the answer too.
    plain = trust(*current())
    cache.validate(chain, trust=plain, at=NOW, purpose=Purpose.OUTBOUND)
    stale = cache.validate(
        chain, trust=plain, at=NOW + dt.timedelta(days=8), purpose=Purpose.OUTBOUND
    )
    assert stale.revocation_unknown is not None


def test_another_crl_set_never_reuses_a_cached_answer() -> None:
    cache = ChainVerdictCache()
    chain = PresentedChain.from_pem(LEAF.chain_pem())
    clean = cache.validate(chain, trust=trust(*current()), at=NOW, purpose=Purpose.OUTBOUND)
    assert clean.trusted
    assert clean.revocation_unknown is None
    revoking = trust(ROOT.crl(), INTER.crl([(LEAF.cert, NOW - DAY)]))
    assert (
        "certificate-revoked"
        == cache.validate(chain, trust=revoking, at=NOW, purpose=Purpose.OUTBOUND).code
    )


# --- CRLs that cannot be used ---------------------------------------------------------


def test_an_expired_crl_is_unknown_soft_accepts_listing_it() -> None:
    stale = INTER.crl([(LEAF.cert, NOW - DAY)], this_update=NOW - 9 * DAY, next_update=NOW - DAY)
    pol = policy(trust(ROOT.crl(), stale))
    decision = inbound(pol)
    assert InboundAction.ACCEPT == decision.action
    assert ("connector-satisfied", "revocation-unknown") == decision.codes
    assert "leaf certificate" in decision.reasons[1].detail
    out = outbound(pol)
    assert OutboundAction.DELIVER == out.action
    assert "revocation-unknown" == out.codes[-1]


def test_an_expired_crl_under_hard_is_a_temporary_failure() -> None:
    stale = INTER.crl(this_update=NOW - 9 * DAY, next_update=NOW - DAY)
    pol = policy(trust(ROOT.crl(), stale), "hard")
    decision = inbound(pol)
    assert InboundAction.TEMPFAIL == decision.action
    assert ("revocation-unknown",) == decision.codes
    assert (451, "4.7.5") == (decision.smtp.code, decision.smtp.enhanced)
    out = outbound(pol)
    assert OutboundAction.DEFER == out.action
    assert "revocation-unknown" == out.codes[0]


def test_hard_with_another_permanent_failure_rejects() -> None:
    pol = policy(trust(ROOT.crl()), "hard")  # no CRL of the intermediate
    wrong = INTER.issue("mail.contoso.com", crl_distribution_points=CDP)
    decision = inbound(pol, wrong)
    assert InboundAction.REJECT == decision.action
    assert ("revocation-unknown", "certificate-name-mismatch") == decision.codes


def test_a_crl_signed_with_the_wrong_key_is_unusable() -> None:
    impostor = CA("Fabrikam Revocation Issuing CA")  # same name, own key
    forged = INTER.crl([(LEAF.cert, NOW - DAY)], signing_key=impostor.key)
    assert forged.issuer == INTER.cert.subject
    result = verdict(trust(ROOT.crl(), forged))
    assert result.trusted
    assert result.revocation_unknown is not None


def test_a_crl_from_another_issuer_with_the_same_name_is_unusable() -> None:
    twin = ROOT.intermediate("Fabrikam Revocation Issuing CA")  # same name and parent
    result = verdict(trust(ROOT.crl(), twin.crl([(LEAF.cert, NOW - DAY)])))
    assert result.trusted
    assert result.revocation_unknown is not None
    own = twin.issue("server1.fabrikam.com", crl_distribution_points=CDP)
    assert (
        "certificate-revoked"
        == verdict(trust(ROOT.crl(), twin.crl([(own.cert, NOW - DAY)])), own).code
    )


@pytest.mark.parametrize(
    ("extensions", "entry_extensions", "why"),
    [
        ([(x509.DeltaCRLIndicator(1), True)], [], "delta"),
        (
            [
                (
                    x509.IssuingDistributionPoint(None, None, False, False, None, True, False),
                    True,
                )
            ],
            [],
            "indirect",
        ),
        (
            [],
            [(x509.CertificateIssuer([x509.DNSName("other.example")]), True)],
            "indirect",
        ),
        (
            [
                (
                    x509.IssuingDistributionPoint(
                        None,
                        None,
                        False,
                        False,
                        frozenset({x509.ReasonFlags.key_compromise}),
                        False,
                        False,
                    ),
                    True,
                )
            ],
            [],
            "some revocation reasons",
        ),
    ],
    ids=["delta", "indirect-idp", "indirect-entry", "only-some-reasons"],
)
def test_delta_indirect_and_partial_crls_are_unusable(
    extensions: list[Any], entry_extensions: list[Any], why: str
) -> None:
    crl = INTER.crl(
        [(LEAF.cert, NOW - DAY)], extensions=extensions, entry_extensions=entry_extensions
    )
    assert why in (RevocationList.from_crl(crl, "CRL").unusable or "")
    result = verdict(trust(ROOT.crl(), crl))
    assert result.trusted, "an unusable CRL revokes nothing"
    assert result.revocation_unknown is not None


def test_a_crl_without_next_update_is_unusable() -> None:
    crl = INTER.crl([(LEAF.cert, NOW - DAY)], next_update=None)
    assert crl.next_update_utc is None
    assert "nextUpdate" in (RevocationList.from_crl(crl, "CRL").unusable or "")
    assert verdict(trust(ROOT.crl(), crl)).revocation_unknown is not None


def test_a_scoped_crl_covers_only_its_scope() -> None:
    point = x509.UniformResourceIdentifier(CDP[0])
    users = x509.IssuingDistributionPoint([point], None, True, False, None, False, False)
    crl = INTER.crl([(LEAF.cert, NOW - DAY)], extensions=[(users, True)])
    assert "certificate-revoked" == verdict(trust(ROOT.crl(), crl)).code
    elsewhere = x509.IssuingDistributionPoint(
        [x509.UniformResourceIdentifier("http://elsewhere.example/x.crl")],
        None,
        False,
        False,
        None,
        False,
        False,
    )
    other = INTER.crl([(LEAF.cert, NOW - DAY)], extensions=[(elsewhere, True)])
    assert verdict(trust(ROOT.crl(), other)).trusted


def test_a_certificate_without_a_distribution_point_is_not_unknown() -> None:
    result = verdict(trust(), PLAIN_LEAF)
    # The intermediate names a distribution point: it is the one unknown.
    assert result.trusted
    assert "certificate #2" in (result.revocation_unknown or "")
    assert "leaf" not in (result.revocation_unknown or "")


def test_off_checks_nothing() -> None:
    store = trust(ROOT.crl(), INTER.crl([(LEAF.cert, NOW - DAY)]))
    pol = policy(store, "off")
    assert ("connector-satisfied",) == inbound(pol).codes
    assert ("connector-selected",) == outbound(pol).codes
    assert any(w.code is LintCode.REVOCATION_OFF for w in lint(pol))


# --- OCSP staples (outbound) ----------------------------------------------------------


def test_a_good_staple_is_a_usable_answer() -> None:
    pol = policy(trust(ROOT.crl()))  # no CRL of the intermediate: the staple answers
    assert "revocation-unknown" == outbound(pol).codes[-1]
    decision = outbound(pol, staple=INTER.ocsp_response(LEAF.cert))
    assert OutboundAction.DELIVER == decision.action
    assert ("connector-selected",) == decision.codes


def test_a_revoked_staple_revokes() -> None:
    pol = policy(trust(*current()))
    decision = outbound(pol, staple=INTER.ocsp_response(LEAF.cert, "revoked"))
    assert OutboundAction.DEFER == decision.action
    assert "certificate-revoked" == decision.codes[0]
    assert "OCSP" in decision.reasons[0].detail


def test_a_delegated_responder_with_ocsp_signing_is_accepted() -> None:
    responder = INTER.ocsp_responder()
    staple = INTER.ocsp_response(LEAF.cert, "revoked", responder=responder)
    assert "certificate-revoked" == verdict(trust(*current()), ocsp_response=staple).code


def test_a_responder_without_the_ocsp_signing_eku_is_not_believed() -> None:
    responder = INTER.ocsp_responder(eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    staple = INTER.ocsp_response(LEAF.cert, "revoked", responder=responder)
    result = verdict(trust(ROOT.crl()), ocsp_response=staple)
    assert result.trusted
    assert result.revocation_unknown is not None


def test_a_staple_for_another_certificate_is_not_an_answer() -> None:
    staple = INTER.ocsp_response(OTHER_LEAF.cert, "revoked")
    result = verdict(trust(ROOT.crl()), ocsp_response=staple)
    assert result.trusted
    assert result.revocation_unknown is not None


def test_a_staple_naming_the_serial_under_another_issuer_is_not_an_answer() -> None:
    staple = INTER.ocsp_response(LEAF.cert, "revoked", cert_id_issuer=ROOT.cert)
    result = verdict(trust(ROOT.crl()), ocsp_response=staple)
    assert result.trusted
    assert result.revocation_unknown is not None


def test_an_expired_staple_is_not_an_answer() -> None:
    staple = INTER.ocsp_response(
        LEAF.cert, "revoked", this_update=NOW - 5 * DAY, next_update=NOW - DAY
    )
    result = verdict(trust(ROOT.crl()), ocsp_response=staple)
    assert result.trusted
    assert result.revocation_unknown is not None
    # Under hard it is unknown, a deferral.
    assert (
        "revocation-unknown"
        == verdict(trust(ROOT.crl()), ocsp_response=staple, revocation=Revocation.HARD).code
    )


def test_a_staple_signed_by_an_impostor_is_not_believed() -> None:
    impostor = CA("Fabrikam Revocation Issuing CA")  # the issuer's name, its own key
    staple = INTER.ocsp_response(LEAF.cert, "revoked", responder=impostor.ocsp_responder())
    result = verdict(trust(ROOT.crl()), ocsp_response=staple)
    assert result.trusted
    assert result.revocation_unknown is not None


def test_garbage_staples_are_not_answers_and_json_staples_are_base64() -> None:
    assert verdict(trust(ROOT.crl()), ocsp_response=b"\x30\x03\x0a\x01\x00").trusted
    staple = INTER.ocsp_response(LEAF.cert)
    obj = {
        "recipient": "b@fabrikam.com",
        "at": NOW.isoformat(),
        "tls": {
            "peer_chain_pem": LEAF.chain_pem(),
            "ocsp_response": base64.b64encode(staple).decode(),
        },
    }
    session = OutboundSession.from_json(obj)
    assert session.attempt is not None
    assert session.attempt.tls is not None
    assert staple == session.attempt.tls.ocsp_response
    with pytest.raises(FactsError, match=r"tls\.ocsp_response"):
        OutboundSession.from_json({**obj, "tls": {"ocsp_response": "not base64!"}})
    with pytest.raises(FactsError, match="only outbound"):
        InboundSession.from_json(
            {
                "peer_ip": "198.51.100.7",
                "mail_from": "a@fabrikam.com",
                "rcpt_to": ["b@contoso.com"],
                "at": NOW.isoformat(),
                "tls": {"ocsp_response": "AA=="},
            }
        )


# --- MTA-verified certificates ---------------------------------------------------------


def test_an_mta_verified_cn_is_unknown_under_hard_and_noted_under_soft_with_crls() -> None:
    facts = TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), True))
    session = InboundSession.create(
        peer_ip="198.51.100.7",
        mail_from="a@fabrikam.com",
        rcpt_to=["b@contoso.com"],
        tls=facts,
        at=NOW,
    )
    assert InboundAction.TEMPFAIL == evaluate_inbound(policy(trust(), "hard"), session).action
    soft = evaluate_inbound(policy(trust(*current())), session)
    assert ("connector-satisfied", "revocation-unknown") == soft.codes
    assert ("connector-satisfied",) == evaluate_inbound(policy(trust()), session).codes


# --- the property: revocation never turns a reject into an accept ---------------------

_LEAVES = [
    LEAF,
    OTHER_LEAF,
    PLAIN_LEAF,
    INTER.issue("mail.contoso.com", crl_distribution_points=CDP),
    INTER.issue("old.fabrikam.com", not_after=NOW - DAY, crl_distribution_points=CDP),
    CA("Unknown CA").issue("server1.fabrikam.com", crl_distribution_points=CDP),
]
_CRLS = [
    ROOT.crl(),
    INTER.crl(),
    INTER.crl([(LEAF.cert, NOW - DAY), (OTHER_LEAF.cert, NOW + DAY)]),
    ROOT.crl([(INTER.cert, NOW - DAY)]),
    INTER.crl(this_update=NOW - 9 * DAY, next_update=NOW - DAY),
]


@settings(max_examples=60, deadline=None)
@given(
    leaf=st.sampled_from(_LEAVES),
    crls=st.lists(st.sampled_from(_CRLS), max_size=4),
    mode=st.sampled_from(["soft", "hard", "off"]),
    at=st.sampled_from([NOW, NOW + 2 * DAY]),
)
def test_revocation_never_turns_a_reject_into_an_accept(
    leaf: Leaf, crls: list[x509.CertificateRevocationList], mode: str, at: dt.datetime
) -> None:
    without = inbound(policy(trust(), "off"), leaf, at)
    with_crls = inbound(policy(trust(*crls), mode), leaf, at)
    if without.action is not InboundAction.ACCEPT:
        assert with_crls.action is not InboundAction.ACCEPT
    if with_crls.action is InboundAction.ACCEPT:
        assert without.action is InboundAction.ACCEPT


def test_check_revocation_of_a_bare_path_is_empty() -> None:
    result = check_revocation([ROOT.cert], CrlSet(()), NOW)
    assert result.revoked is None
    assert result.unknown is None


# --- the policy file: [trust] crl_files and revocation --------------------------------


def _write(tmp: Path, trust_lines: str) -> Path:
    (tmp / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp / "policy.toml"
    path.write_text(f'[trust]\nca_file = "ca.pem"\n{trust_lines}\n')
    return path


def test_crl_files_are_read_pem_or_der_relative_to_the_policy(tmp_path: Path) -> None:
    sub = tmp_path / "crls"
    sub.mkdir()
    (sub / "root.pem").write_bytes(ROOT.crl().public_bytes(serialization.Encoding.PEM))
    revoking = INTER.crl([(LEAF.cert, NOW - DAY)])
    (sub / "inter.crl").write_bytes(revoking.public_bytes(serialization.Encoding.DER))
    path = _write(tmp_path, 'crl_files = ["crls/root.pem", "crls/inter.crl"]\nrevocation = "hard"')
    pol = load_policy(path, use_system_trust=False)
    assert Revocation.HARD is pol.revocation
    assert pol.trust is not None
    assert 2 == len(pol.trust.crls)
    assert "certificate-revoked" == verdict(pol.trust).code


def test_every_trust_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "bad.crl").write_bytes(b"this is not a CRL")
    path = _write(
        tmp_path,
        'crl_files = ["missing.crl", "bad.crl", 7]\nrevocation = "sometimes"\ncolour = "red"',
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path, use_system_trust=False)
    text = str(caught.value)
    for needle in (
        "trust.crl_files[0]",
        "missing.crl",
        "trust.crl_files[1]",
        "not a decodable CRL",
        "trust.crl_files[2]",
        "trust.revocation",
        "sometimes",
        "trust.colour",
    ):
        assert needle in text, needle


def test_crl_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    der = INTER.crl([(i, NOW - DAY) for i in range(1, 50)]).public_bytes(serialization.Encoding.DER)
    (tmp_path / "big.crl").write_bytes(der)
    monkeypatch.setattr(loading, "MAX_CRL_BYTES", len(der) - 1)
    path = _write(tmp_path, 'crl_files = ["big.crl"]')
    with pytest.raises(PolicyError, match=r"trust.crl_files\[0\].*larger than"):
        load_policy(path, use_system_trust=False)
    monkeypatch.setattr(loading, "MAX_CRL_FILES", 1)
    path = _write(tmp_path, 'crl_files = ["big.crl", "big.crl"]')
    with pytest.raises(PolicyError, match="more than 1"):
        load_policy(path, use_system_trust=False)


def test_the_schema_knows_the_trust_keys() -> None:
    schema = json.loads(schema_text())
    ok = {"trust": {"crl_files": ["a.crl"], "revocation": "hard"}}
    jsonschema.validate(ok, schema)
    for bad in ({"revocation": "sometimes"}, {"crl_files": "a.crl"}, {"crl_files": [""]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"trust": bad}, schema)
    assert ["soft", "hard", "off"] == schema["properties"]["trust"]["properties"]["revocation"][
        "enum"
    ]
    assert [str(m) for m in Revocation] == ["soft", "hard", "off"]


# --- lint --------------------------------------------------------------------------


def test_lint_warns_about_stale_and_unusable_crls_at_the_given_time() -> None:
    delta = INTER.crl(extensions=[(x509.DeltaCRLIndicator(1), True)])
    pol = policy(trust(ROOT.crl(), INTER.crl(), delta))
    assert [LintCode.CRL_UNUSABLE] == [w.code for w in lint(pol, at=NOW)]
    stale = [w for w in lint(pol, at=NOW + 8 * DAY) if w.code is LintCode.CRL_STALE]
    assert 2 == len(stale)
    assert str(stale[0]).startswith("warning[crl-stale]: [trust]: the CRL of")
    assert not any(w.code is LintCode.CRL_STALE for w in lint(pol))  # no time known


def test_lint_uses_the_load_time_recorded_by_the_loader(tmp_path: Path) -> None:
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = INTER.crl(this_update=long_ago, next_update=long_ago + 7 * DAY)
    (tmp_path / "old.crl").write_bytes(old.public_bytes(serialization.Encoding.DER))
    pol = load_policy(_write(tmp_path, 'crl_files = ["old.crl"]'), use_system_trust=False)
    # A policy of [trust] alone also enforces nothing (empty-policy).
    assert [LintCode.CRL_STALE, LintCode.EMPTY_POLICY] == [w.code for w in lint(pol)]


def test_loading_for_the_lint_reads_the_system_bundle_only_to_carry_crls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tlsconnector check`` loads with load_policy_for_lint: no lint reads trust
    anchors, so the system's CA bundle is read only when CRLs must ride on it."""
    from tlsconnector._chains import TrustStore

    reads: list[str] = []

    def system() -> TrustStore:
        reads.append("read")
        return TrustStore((ROOT.cert,))

    monkeypatch.setattr(loading, "system_trust_store", system)
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = INTER.crl(this_update=long_ago, next_update=long_ago + 7 * DAY)
    (tmp_path / "old.crl").write_bytes(old.public_bytes(serialization.Encoding.DER))
    connector = '[[inbound]]\nname = "a"\nsender_domains = ["partner.com"]\n'
    with_crls = tmp_path / "with.toml"
    with_crls.write_text(f'[trust]\ncrl_files = ["old.crl"]\n\n{connector}')
    without = tmp_path / "without.toml"
    without.write_text(connector)

    plain = loading.load_policy_for_lint(without)
    assert plain.trust is None
    assert [] == reads
    assert load_policy(without).trust is not None  # deciding reads it
    assert ["read"] == reads
    reads.clear()
    pol = loading.load_policy_for_lint(with_crls)
    assert ["read"] == reads
    assert [LintCode.CRL_STALE] == [w.code for w in lint(pol)]
    assert [LintCode.CRL_STALE] == [w.code for w in lint(load_policy(with_crls))]
