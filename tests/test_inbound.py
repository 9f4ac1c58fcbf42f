"""Inbound evaluation (specification section 5): the regulated-partner scenario.

Contoso receives mail from Fabrikam Bank. Certificates are real, minted per test
module with ``certmint``; the session time is ``certmint.NOW``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tlsconnector import (
    FactsError,
    InboundAction,
    InboundDecision,
    InboundSession,
    InvalidValue,
    MtaVerifiedCertificate,
    Policy,
    PresentedChain,
    ReasonCode,
    SmtpReply,
    TLSFacts,
    TrustStore,
    UndecodableCertificate,
    evaluate_inbound,
)

from certmint import CA, NOW, Leaf, self_signed

ROOT = CA("Fabrikam Partner Root CA")
INTER = ROOT.intermediate("Fabrikam Issuing CA")
TRUST = TrustStore.from_pem(ROOT.cert_pem())

FABRIKAM: dict[str, Any] = {
    "name": "Fabrikam Bank inbound",
    "sender_domains": ["fabrikam.com"],
    "require_tls": True,
    "tls_sender_certificate_name": "*.fabrikam.com",
    "restrict_domains_to_certificate": True,
}


def policy(*connectors: dict[str, Any]) -> Policy:
    return Policy.from_mapping({"inbound": list(connectors)}, trust=TRUST)


def chain(leaf: Leaf, *, intermediates: bool = True) -> TLSFacts:
    return TLSFacts(PresentedChain.from_pem(leaf.chain_pem(intermediates=intermediates)))


def session(
    tls: TLSFacts | None,
    *,
    mail_from: str = "payments@fabrikam.com",
    peer_ip: str = "198.51.100.7",
    at: dt.datetime = NOW,
) -> InboundSession:
    return InboundSession.create(
        peer_ip=peer_ip, mail_from=mail_from, rcpt_to=["finance@contoso.com"], tls=tls, at=at
    )


def decide(tls: TLSFacts | None, *connectors: dict[str, Any], **kw: Any) -> InboundDecision:
    return evaluate_inbound(policy(*(connectors or (FABRIKAM,))), session(tls, **kw))


# --- The scenario: *.fabrikam.com, CN only -----------------------------------------


@pytest.mark.parametrize("cn", ["server1.fabrikam.com", "server2.fabrikam.com"])
def test_partner_servers_are_accepted_under_the_wildcard(cn: str) -> None:
    decision = decide(chain(INTER.issue(cn)))
    assert InboundAction.ACCEPT == decision.action
    assert "Fabrikam Bank inbound" == decision.connector
    assert ("connector-satisfied",) == decision.codes
    assert decision.smtp is None
    assert "tlsconnector" == decision.chain_verified_by


@pytest.mark.parametrize("cn", ["fabrikam.com", "a.b.fabrikam.com", "server1.fabrikam.org"])
def test_apex_two_label_and_foreign_names_are_refused(cn: str) -> None:
    decision = decide(chain(INTER.issue(cn)))
    assert InboundAction.REJECT == decision.action
    assert ("certificate-name-mismatch",) == decision.codes
    assert decision.smtp is not None
    assert (550, "5.7.1") == (decision.smtp.code, decision.smtp.enhanced)


def test_the_san_is_never_read() -> None:
    """The right name only in the subjectAltName is still a mismatch (section 3)."""
    leaf = INTER.issue("Fabrikam Mail Gateway", san=["server1.fabrikam.com"])
    assert ("certificate-name-mismatch",) == decide(chain(leaf)).codes


def test_a_matching_cn_is_enough_whatever_the_san_says() -> None:
    leaf = INTER.issue("server1.fabrikam.com", san=["evil.example"])
    assert InboundAction.ACCEPT == decide(chain(leaf)).action


def test_any_of_several_cns_may_match() -> None:
    leaf = INTER.issue(["Fabrikam Bank", "server1.fabrikam.com"])
    assert InboundAction.ACCEPT == decide(chain(leaf)).action


def test_upper_case_cn_matches() -> None:
    assert InboundAction.ACCEPT == decide(chain(INTER.issue("SERVER1.Fabrikam.COM"))).action


def test_cn_with_a_nul_byte_never_matches() -> None:
    leaf = INTER.issue("server1.fabrikam.com\x00.evil.example")
    decision = decide(chain(leaf))
    assert ("certificate-name-mismatch",) == decision.codes
    # The attacker's bytes never reach the reply or the detail unescaped.
    assert "\x00" not in decision.reasons[0].detail
    assert decision.smtp is not None
    assert "\x00" not in decision.smtp.text


def test_sender_domain_case_and_trailing_dot_are_normalised() -> None:
    leaf = INTER.issue("server1.fabrikam.com")
    decision = decide(chain(leaf), mail_from="Payments@FABRIKAM.com.")
    assert "Fabrikam Bank inbound" == decision.connector
    assert InboundAction.ACCEPT == decision.action


def test_idn_setting_matches_the_a_label_cn() -> None:
    connector = {
        "name": "Bücher",
        "sender_domains": ["bücher.example"],
        "tls_sender_certificate_name": "*.bücher.example",
    }
    leaf = INTER.issue("mx.xn--bcher-kva.example")
    decision = decide(chain(leaf), connector, mail_from="a@xn--bcher-kva.example")
    assert InboundAction.ACCEPT == decision.action
    decision = decide(chain(leaf), connector, mail_from="a@bücher.EXAMPLE")
    assert "Bücher" == decision.connector


# --- TLS and certificate presence ---------------------------------------------------


def test_no_starttls_is_refused_with_the_rfc_3207_reply() -> None:
    decision = decide(None)
    assert InboundAction.REJECT == decision.action
    assert ("tls-required", "certificate-missing") == decision.codes
    assert decision.smtp is not None
    assert "530 5.7.0 Must issue a STARTTLS command first" == str(decision.smtp)


def test_tls_without_a_client_certificate_is_refused() -> None:
    decision = decide(TLSFacts(None))
    assert ("certificate-missing",) == decision.codes
    assert decision.smtp is not None
    assert 550 == decision.smtp.code


def test_require_tls_alone_accepts_any_tls_session() -> None:
    connector = {"name": "TLS only", "sender_domains": ["fabrikam.com"], "require_tls": True}
    assert InboundAction.ACCEPT == decide(TLSFacts(None), connector).action
    assert ("tls-required",) == decide(None, connector).codes


def test_a_certificate_name_implies_tls_even_when_require_tls_is_false() -> None:
    connector = dict(FABRIKAM, require_tls=False)
    assert "tls-required" in decide(None, connector).codes


# --- Chains -------------------------------------------------------------------------


def test_untrusted_self_signed_certificate() -> None:
    decision = decide(chain(self_signed("server1.fabrikam.com")))
    assert ("certificate-not-trusted",) == decision.codes


def test_expired_certificate() -> None:
    leaf = INTER.issue(
        "server1.fabrikam.com",
        not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    assert ("certificate-expired",) == decide(chain(leaf)).codes


def test_not_yet_valid_certificate_is_not_trusted() -> None:
    leaf = INTER.issue("server1.fabrikam.com", not_before=NOW + dt.timedelta(days=1))
    assert ("certificate-not-trusted",) == decide(chain(leaf)).codes


def test_the_session_time_decides_validity_not_the_clock() -> None:
    leaf = INTER.issue("server1.fabrikam.com")
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert ("certificate-expired",) == decide(chain(leaf), at=later).codes


def test_missing_intermediate_is_not_trusted() -> None:
    """Nothing is fetched: the peer must present its intermediates (section 7)."""
    leaf = INTER.issue("server1.fabrikam.com")
    assert ("certificate-not-trusted",) == decide(chain(leaf, intermediates=False)).codes


def test_name_constrained_ca_cannot_vouch_for_names_outside_its_subtree() -> None:
    constrained = ROOT.intermediate("Contoso-only CA", permitted_dns=["contoso.com"])
    decision = decide(chain(constrained.issue("server1.fabrikam.com")))
    assert ("certificate-not-trusted",) == decision.codes


def test_name_constrained_ca_within_its_subtree_is_trusted() -> None:
    constrained = ROOT.intermediate("Fabrikam-only CA", permitted_dns=["fabrikam.com"])
    assert InboundAction.ACCEPT == decide(chain(constrained.issue("mx.fabrikam.com"))).action


@pytest.mark.parametrize(
    ("eku", "accepted"),
    [
        (None, True),
        (["server"], True),
        (["client"], True),
        (["server", "client"], True),
        (["code"], False),
    ],
)
def test_extended_key_usage_for_inbound_peers(eku: list[str] | None, accepted: bool) -> None:
    """serverAuth or clientAuth: partners reuse their server certificate (section 7)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID as Oid

    oids = {"server": Oid.SERVER_AUTH, "client": Oid.CLIENT_AUTH, "code": Oid.CODE_SIGNING}
    leaf = INTER.issue("server1.fabrikam.com", eku=None if eku is None else [oids[e] for e in eku])
    decision = decide(chain(leaf))
    assert accepted == (InboundAction.ACCEPT == decision.action), decision.codes
    if not accepted:
        assert ("certificate-not-trusted",) == decision.codes


def test_untrusted_and_mismatched_reports_both() -> None:
    decision = decide(chain(self_signed("fabrikam.com")))
    assert ("certificate-not-trusted", "certificate-name-mismatch") == decision.codes


def test_policy_without_trust_anchors_trusts_no_chain() -> None:
    bare = Policy.from_mapping({"inbound": [FABRIKAM]}, trust=None)
    decision = evaluate_inbound(bare, session(chain(INTER.issue("server1.fabrikam.com"))))
    assert ("certificate-not-trusted",) == decision.codes


# --- MTA-verified facts -------------------------------------------------------------


def test_mta_verified_cn_is_accepted_and_recorded_as_such() -> None:
    facts = TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), verified=True))
    decision = decide(facts)
    assert InboundAction.ACCEPT == decision.action
    assert "mta" == decision.chain_verified_by


def test_mta_unverified_cn_counts_as_untrusted() -> None:
    facts = TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), verified=False))
    assert ("certificate-not-trusted",) == decide(facts).codes


def test_an_unverified_certificate_whose_cn_the_mta_withheld_is_only_not_trusted() -> None:
    """Postfix sends an empty ccert_subject for an untrusted client certificate: there
    is no CN to compare, so the refusal says only why (docs/postfix.md)."""
    facts = TLSFacts(MtaVerifiedCertificate((), verified=False, fingerprint="AA:BB"))
    decision = decide(facts)
    assert ("certificate-not-trusted",) == decision.codes
    assert decision.smtp is not None
    assert 550 == decision.smtp.code


WOODGROVE_CA = ROOT.intermediate("Woodgrove CA", permitted_dns=["woodgrove.com"])
NO_FABRIKAM_CA = ROOT.intermediate("Anything but Fabrikam CA", excluded_dns=["fabrikam.com"])


@pytest.mark.parametrize("constrained", [WOODGROVE_CA, NO_FABRIKAM_CA], ids=["permitted", "excluded"])
def test_an_mta_verified_cn_that_a_constrained_ca_of_the_store_excludes_is_not_trusted(
    constrained: CA,
) -> None:
    """Section 7: an MTA (OpenSSL) applies DNS name constraints to the CN only when the
    leaf has no DNS SAN, and a CN fact says nothing of the path: a CN that a
    name-constrained CA of the trust store could exclude is refused."""
    trust = TrustStore.from_pem(ROOT.cert_pem() + constrained.cert_pem())
    pol = Policy.from_mapping({"inbound": [FABRIKAM]}, trust=trust)
    facts = TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), verified=True))
    decision = evaluate_inbound(pol, session(facts))
    assert ("certificate-not-trusted",) == decision.codes
    assert "does not apply DNS name constraints to the CN" in decision.reasons[0].detail
    assert constrained.name in decision.reasons[0].detail
    assert "mta" == decision.chain_verified_by


def test_an_mta_verified_cn_inside_every_constraint_of_the_store_is_accepted() -> None:
    fabrikam_only = ROOT.intermediate("Fabrikam-only CA", permitted_dns=["fabrikam.com"])
    trust = TrustStore.from_pem(ROOT.cert_pem() + fabrikam_only.cert_pem())
    pol = Policy.from_mapping({"inbound": [FABRIKAM]}, trust=trust)
    facts = TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), verified=True))
    assert InboundAction.ACCEPT == evaluate_inbound(pol, session(facts)).action


def test_the_core_refuses_the_woodgrove_chain_that_openssl_accepts() -> None:
    """The chain behind the MTA case above, judged by tlsconnector itself: a CN outside
    the CA's permitted subtree, with a SAN inside it (which OpenSSL checks instead)."""
    leaf = WOODGROVE_CA.issue("server1.fabrikam.com", san=["mail.woodgrove.com"])
    assert ("certificate-not-trusted",) == decide(chain(leaf)).codes


# --- IP restrictions ----------------------------------------------------------------

IP_ONLY: dict[str, Any] = {
    "name": "Fabrikam by IP",
    "sender_domains": ["fabrikam.com"],
    "require_tls": True,
    "restrict_domains_to_ip_addresses": True,
    "sender_ip_addresses": ["198.51.100.10-198.51.100.20", "2001:db8::/32", "192.0.2.1"],
}


@pytest.mark.parametrize(
    ("peer", "accepted"),
    [
        ("198.51.100.10", True),
        ("198.51.100.20", True),
        ("198.51.100.9", False),
        ("198.51.100.21", False),
        ("::ffff:198.51.100.15", True),
        ("::ffff:198.51.100.21", False),
        ("2001:db8:1::25", True),
        ("2001:db9::25", False),
        ("192.0.2.1", True),
    ],
)
def test_ip_restriction(peer: str, accepted: bool) -> None:
    decision = decide(TLSFacts(None), IP_ONLY, peer_ip=peer)
    assert accepted == (InboundAction.ACCEPT == decision.action)
    if not accepted:
        assert ("ip-not-allowed",) == decision.codes


def test_every_failed_check_is_reported_in_order() -> None:
    connector = dict(FABRIKAM, restrict_domains_to_ip_addresses=True, sender_ip_addresses=["192.0.2.1"])
    decision = decide(None, connector)
    assert ("tls-required", "certificate-missing", "ip-not-allowed") == decision.codes
    assert decision.smtp is not None
    assert 530 == decision.smtp.code


# --- Which connectors take part -----------------------------------------------------


def test_sender_outside_every_connector_is_not_governed() -> None:
    decision = decide(None, mail_from="news@example.org")
    assert InboundAction.ACCEPT == decision.action
    assert decision.connector is None
    assert ("no-connector",) == decision.codes


def test_null_sender_is_only_governed_by_star() -> None:
    assert ("no-connector",) == decide(None, mail_from="").codes
    star = {"name": "Everyone", "sender_domains": ["*"], "require_tls": True}
    assert ("tls-required",) == decide(None, star, mail_from="<>").codes


def test_disabled_connector_takes_no_part() -> None:
    assert ("no-connector",) == decide(None, dict(FABRIKAM, enabled=False)).codes


def test_disabled_connector_does_not_shadow_a_less_specific_one() -> None:
    """Disabled connectors are dropped before specificity is compared (section 2)."""
    exact_off = dict(FABRIKAM, enabled=False)
    broad = {"name": "All subdomains", "sender_domains": ["*.fabrikam.com"], "require_tls": True}
    decision = decide(None, exact_off, broad)
    assert "All subdomains" == decision.connector


def test_on_premises_connector_takes_no_part() -> None:
    assert ("no-connector",) == decide(None, dict(FABRIKAM, type="on_premises")).codes


def test_most_specific_pattern_wins() -> None:
    exact = dict(FABRIKAM, name="Exact")
    broad = {"name": "Any fabrikam", "sender_domains": ["*.fabrikam.com"], "require_tls": False}
    leaf = INTER.issue("server1.fabrikam.com")
    assert "Exact" == decide(chain(leaf), exact, broad).connector
    # A subdomain is only covered by the wildcard pattern.
    decision = decide(None, exact, broad, mail_from="a@eu.fabrikam.com")
    assert "Any fabrikam" == decision.connector


def test_subtree_pattern_covers_the_apex_and_deep_subdomains() -> None:
    broad = dict(FABRIKAM, sender_domains=["*.fabrikam.com"])
    for sender in ("a@fabrikam.com", "a@x.y.z.fabrikam.com"):
        assert "tls-required" in decide(None, broad, mail_from=sender).codes


def test_restrict_beats_allow() -> None:
    """An allow-only connector at the same specificity loses (section 5.3)."""
    allow = {
        "name": "A allow-only",
        "sender_domains": ["fabrikam.com"],
        "require_tls": False,
    }
    decision = decide(None, allow, FABRIKAM)
    assert InboundAction.REJECT == decision.action
    assert "Fabrikam Bank inbound" == decision.connector


def test_restricting_an_allow_only_connector_can_let_it_accept() -> None:
    """The one way a check added turns a reject into an accept (docs/inbound.md): a
    connector that does not restrict loses to restricting ones (5.3); once restricted,
    it is a candidate, and a satisfied candidate accepts (5.5)."""
    by_other_ip = dict(IP_ONLY, name="A by ip", sender_ip_addresses=["198.51.100.1"])
    allow = {"name": "B allow", "sender_domains": ["fabrikam.com"], "require_tls": False}
    assert InboundAction.REJECT == decide(None, by_other_ip, allow, peer_ip="192.0.2.1").action
    by_ip = dict(allow, restrict_domains_to_ip_addresses=True, sender_ip_addresses=["192.0.2.1"])
    decision = decide(None, by_other_ip, by_ip, peer_ip="192.0.2.1")
    assert InboundAction.ACCEPT == decision.action
    assert "B allow" == decision.connector


def test_a_tls_only_connector_never_switches_off_a_certificate_check() -> None:
    """Section 5.3: require_tls alone does not restrict. A second connector for the
    partner's domain with only require_tls (a "DR site") is dropped when a restricting
    connector governs the domain, so the certificate name is still enforced."""
    dr_site = {"name": "A Fabrikam DR site", "sender_domains": ["fabrikam.com"], "require_tls": True}
    wrong_name = chain(INTER.issue("server1.woodgrove.com"))
    decision = decide(wrong_name, dr_site, FABRIKAM)
    assert InboundAction.REJECT == decision.action
    assert "Fabrikam Bank inbound" == decision.connector
    assert ("certificate-name-mismatch",) == decision.codes
    assert InboundAction.ACCEPT == decide(chain(INTER.issue("server1.fabrikam.com")), dr_site, FABRIKAM).action


def test_tls_only_connectors_do_not_restrict_each_other() -> None:
    """Without a restricting candidate, every candidate decides: one satisfied is enough."""
    tls = {"name": "A tls", "sender_domains": ["fabrikam.com"], "require_tls": True}
    allow = {"name": "B allow", "sender_domains": ["fabrikam.com"], "require_tls": False}
    decision = decide(None, tls, allow)
    assert InboundAction.ACCEPT == decision.action
    assert "B allow" == decision.connector


def test_several_satisfied_candidates_report_the_first_by_name() -> None:
    b = dict(FABRIKAM, name="B connector")
    a = dict(FABRIKAM, name="A connector")
    decision = decide(chain(INTER.issue("server1.fabrikam.com")), b, a)
    assert "A connector" == decision.connector


def test_one_satisfied_candidate_is_enough() -> None:
    strict = dict(FABRIKAM, name="A strict")
    by_ip = dict(IP_ONLY, name="B by ip")
    decision = decide(TLSFacts(None), strict, by_ip, peer_ip="192.0.2.1")
    assert InboundAction.ACCEPT == decision.action
    assert "B by ip" == decision.connector


def test_rejection_lists_every_candidates_failures_and_names_the_first() -> None:
    strict = dict(FABRIKAM, name="A strict")
    by_ip = dict(IP_ONLY, name="B by ip")
    decision = decide(TLSFacts(None), by_ip, strict, peer_ip="203.0.113.1")
    assert "A strict" == decision.connector
    assert [("certificate-missing", "A strict"), ("ip-not-allowed", "B by ip")] == [
        (str(r.code), r.connector) for r in decision.reasons
    ]


def test_decision_json_has_the_keys_of_section_9() -> None:
    decision = decide(None)
    obj = decision.to_dict()
    assert {"action", "connector", "reasons", "smtp"} <= set(obj)
    assert "reject" == obj["action"]
    assert {"code": 530, "enhanced": "5.7.0", "text": "Must issue a STARTTLS command first"} == obj[
        "smtp"
    ]
    assert all({"code", "detail"} <= set(r) for r in obj["reasons"])


def test_tempfail_is_451_and_never_accepts() -> None:
    decision = InboundDecision.tempfail("policy reload failed")
    assert InboundAction.TEMPFAIL == decision.action
    assert decision.smtp is not None
    assert (451, "4.3.0") == (decision.smtp.code, decision.smtp.enhanced)


# --- Facts that must never fail open (review findings) ------------------------------


@pytest.mark.parametrize("verified", ["false", "true", 0, 1, None])
def test_mta_facts_need_a_real_boolean(verified: object) -> None:
    """"false" is not False: a non-boolean verified flag is refused, never trusted."""
    with pytest.raises(InvalidValue, match="verified"):
        MtaVerifiedCertificate(("server1.fabrikam.com",), verified=verified)  # type: ignore[arg-type]


def test_mta_facts_cns_must_be_a_tuple_of_strings() -> None:
    with pytest.raises(InvalidValue, match="tuple"):
        MtaVerifiedCertificate("server1.fabrikam.com", verified=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="string"):
        MtaVerifiedCertificate((1, 2), verified=True)  # type: ignore[arg-type]


def test_tls_facts_refuse_unknown_certificate_types() -> None:
    with pytest.raises(InvalidValue, match="PresentedChain"):
        TLSFacts("-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]


def test_an_undecodable_client_chain_is_malformed_facts_inbound() -> None:
    with pytest.raises(FactsError) as info:
        session(TLSFacts(UndecodableCertificate("truncated")))
    assert "tls.peer_chain_pem" == info.value.field


def test_postmaster_without_a_domain_is_a_recipient_only() -> None:
    """RFC 5321 4.5.1: a bare "postmaster" is a valid RCPT TO, not a reverse-path."""
    with pytest.raises(FactsError) as info:
        session(None, mail_from="postmaster")
    assert "mail_from" == info.value.field
    ok = InboundSession.create(
        peer_ip="192.0.2.1", mail_from="", rcpt_to=["<Postmaster>"], tls=None, at=NOW
    )
    assert ("Postmaster",) == ok.rcpt_to


def test_overlong_cn_facts_are_refused() -> None:
    with pytest.raises(InvalidValue, match="longer than"):
        MtaVerifiedCertificate(("a" * 5000,), verified=True)


def test_reply_overrides_cannot_change_the_reply_class() -> None:
    """A profile may reword a refusal, never turn it into a success or a 4xx."""
    replies = {
        ReasonCode.TLS_REQUIRED: SmtpReply(250, "2.0.0", "fine"),
        ReasonCode.CERTIFICATE_MISSING: SmtpReply(550, "2.0.0", "fine"),
    }
    no_tls = evaluate_inbound(policy(FABRIKAM), session(None), replies=replies)
    assert no_tls.smtp is not None
    assert (530, "5.7.0") == (no_tls.smtp.code, no_tls.smtp.enhanced)
    no_cert = evaluate_inbound(policy(FABRIKAM), session(TLSFacts(None)), replies=replies)
    assert no_cert.smtp is not None
    assert (550, "5.7.1") == (no_cert.smtp.code, no_cert.smtp.enhanced)
    reworded = {ReasonCode.TLS_REQUIRED: SmtpReply(530, "5.7.0", "Use TLS, {connector}")}
    decision = evaluate_inbound(policy(FABRIKAM), session(None), replies=reworded)
    assert 'Use TLS, "Fabrikam Bank inbound"' == (decision.smtp.text if decision.smtp else "")


def test_reasons_escape_huge_hostile_cns_in_bounded_space() -> None:
    facts = TLSFacts(MtaVerifiedCertificate(("\u202e" * 1000,), verified=True))
    decision = decide(facts)
    assert ("certificate-name-mismatch",) == decision.codes
    assert len(decision.reasons[0].detail) < 200
    assert decision.reasons[0].detail.isascii()


@pytest.mark.parametrize(
    ("sender", "canonical"),
    [
        ("postmaster@[192.0.2.1]", "[192.0.2.1]"),
        ("a@[IPv6:2001:DB8:0::1]", "[IPv6:2001:db8::1]"),
    ],
)
def test_address_literal_senders_are_only_governed_by_star(sender: str, canonical: str) -> None:
    """RFC 5321 address literals are valid senders; no domain pattern but * covers them."""
    s = session(None, mail_from=sender)
    assert canonical == s.sender_domain
    assert ("no-connector",) == evaluate_inbound(policy(FABRIKAM), s).codes
    star = {"name": "Everyone", "sender_domains": ["*"], "require_tls": True}
    assert ("tls-required",) == evaluate_inbound(policy(star), s).codes


@pytest.mark.parametrize("bad", ["a@[192.0.2.256]", "a@[IPv6:fe80::1%eth0]", "a@[x]", "a@[1.2.3.4"])
def test_bad_address_literals_are_malformed_facts(bad: str) -> None:
    with pytest.raises(FactsError) as info:
        session(None, mail_from=bad)
    assert "mail_from" == info.value.field


def test_an_unquoted_local_part_with_a_space_is_accepted() -> None:
    """Postfix hands "john doe"@fabrikam.com over as john doe@fabrikam.com."""
    s = InboundSession.create(
        peer_ip="192.0.2.1",
        mail_from="john doe@fabrikam.com",
        rcpt_to=["jane doe@contoso.com"],
        tls=None,
        at=NOW,
    )
    assert "fabrikam.com" == s.sender_domain
    with pytest.raises(FactsError, match="control"):
        session(None, mail_from="a\x00b@fabrikam.com")
