"""Chain validation (spec section 7): paths, dates, SAN, EKU, name constraints on the
CN, and the hardening of every fail-open path (src/tlsconnector/_validation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from chaintools import (
    ANY_EKU,
    CLIENT,
    CODE_SIGNING,
    EXPIRED,
    NOT_TRUSTED,
    SERVER,
    check,
    code_of,
)
from tlsconnector._chains import (
    MAX_CHAIN_CERTIFICATES,
    PresentedChain,
    TrustStore,
)
from tlsconnector._errors import InvalidValue
from tlsconnector._validation import ChainVerdict, Purpose, validate_chain

import certmint
from certmint import CA, NOW

# --- validate_chain: paths, dates ------------------------------------------------------


def test_chain_via_intermediate_is_trusted(inter: CA, trust: TrustStore) -> None:
    """Leaf + intermediate up to a trusted root: trusted, no code."""
    leaf = inter.issue(not_after=certmint.DEFAULT_NOT_AFTER - timedelta(days=1))
    verdict = check(leaf, trust)
    assert ChainVerdict(True, None, "verified to trust anchor 'CN=Test Root CA'") == attrs.evolve(
        verdict, valid_from=None, valid_until=None
    )
    # The window in which the same path verifies: the intersection of its validities.
    assert (certmint.DEFAULT_NOT_BEFORE, leaf.cert.not_valid_after_utc) == (
        verdict.valid_from,
        verdict.valid_until,
    )


def test_leaf_directly_under_the_root_is_trusted(root: CA, trust: TrustStore) -> None:
    """No intermediate needed when the root issued the leaf."""
    assert check(root.issue(), trust).trusted


def test_presented_root_and_shuffled_intermediates_are_fine(root: CA, trust: TrustStore) -> None:
    """The validator builds the path itself: extra root, odd order do not matter."""
    leaf = root.intermediate("A").intermediate("B").issue()
    chain = PresentedChain((leaf.cert, *reversed(leaf.intermediates), root.cert))
    assert validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.OUTBOUND).trusted


def test_longest_presentable_chain_is_trusted(root: CA, trust: TrustStore) -> None:
    """MAX_CHAIN_CERTIFICATES presented (leaf + 9 intermediates) still validates."""
    ca = root
    for depth in range(MAX_CHAIN_CERTIFICATES - 1):
        ca = ca.intermediate(f"Depth {depth}")
    leaf = ca.issue()
    assert MAX_CHAIN_CERTIFICATES == 1 + len(leaf.intermediates)
    assert check(leaf, trust).trusted


def test_missing_intermediate_is_not_trusted(inter: CA, trust: TrustStore) -> None:
    """Intermediates are never fetched: without it there is no path."""
    verdict = check(inter.issue(), trust, intermediates=False)
    assert (False, NOT_TRUSTED) == (verdict.trusted, verdict.code)
    assert verdict.detail.startswith("no trusted path")


def test_self_signed_leaf_is_not_trusted(trust: TrustStore) -> None:
    """A self-signed certificate not in the trust store has no path."""
    assert NOT_TRUSTED == code_of(certmint.self_signed(), trust)


def test_unknown_ca_with_the_same_name_is_not_trusted(trust: TrustStore) -> None:
    """A CA named like the trusted root but with another key is a different CA."""
    impostor = CA("Test Root CA").intermediate()
    assert NOT_TRUSTED == code_of(impostor.issue(), trust)


def test_expired_leaf(inter: CA, trust: TrustStore) -> None:
    """A leaf past its notAfter is certificate-expired, and the detail says which."""
    leaf = inter.issue(not_after=datetime(2026, 6, 1, tzinfo=UTC))
    verdict = check(leaf, trust)
    assert (False, EXPIRED) == (verdict.trusted, verdict.code)
    assert "leaf certificate 'CN=server1.fabrikam.com' expired at 2026-06-01" in verdict.detail


def test_expired_intermediate(root: CA, trust: TrustStore) -> None:
    """An intermediate past its notAfter is certificate-expired too."""
    old = root.intermediate("Old Intermediate", not_after=datetime(2026, 6, 1, tzinfo=UTC))
    verdict = check(old.issue(), trust)
    assert EXPIRED == verdict.code
    assert "certificate #2 'CN=Old Intermediate'" in verdict.detail


def test_expired_trust_anchor() -> None:
    """An anchor past its notAfter (the issuer of the last presented cert) is
    certificate-expired."""
    old_root = CA("Old Root", not_after=datetime(2026, 6, 1, tzinfo=UTC))
    verdict = check(old_root.intermediate().issue(), TrustStore.from_pem(old_root.cert_pem()))
    assert EXPIRED == verdict.code
    assert "trust anchor 'CN=Old Root'" in verdict.detail


def test_not_yet_valid_leaf_is_not_trusted_rather_than_expired(
    inter: CA, trust: TrustStore
) -> None:
    """Spec section 7: not-yet-valid is certificate-not-trusted."""
    leaf = inter.issue(not_before=datetime(2027, 1, 1, tzinfo=UTC))
    assert NOT_TRUSTED == code_of(leaf, trust)


def test_not_after_is_inclusive(inter: CA, trust: TrustStore) -> None:
    """RFC 5280 4.1.2.5: valid at notAfter itself, expired one second later. Fractions
    of a second are dropped (X.509 times are whole seconds), as the validator does."""
    end = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    leaf = inter.issue(not_after=end)
    assert check(leaf, trust, at=end).trusted
    assert check(leaf, trust, at=end + timedelta(microseconds=999_999)).trusted
    assert EXPIRED == code_of(leaf, trust, at=end + timedelta(seconds=1))


def test_not_before_is_inclusive(inter: CA, trust: TrustStore) -> None:
    """Valid from notBefore itself; one second earlier is not-trusted (not expired)."""
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    leaf = inter.issue(not_before=start)
    assert check(leaf, trust, at=start).trusted
    assert NOT_TRUSTED == code_of(leaf, trust, at=start - timedelta(seconds=1))


def test_time_must_be_timezone_aware(inter: CA, trust: TrustStore) -> None:
    """A naive datetime is refused: the session time must say which zone it is in."""
    with pytest.raises(InvalidValue, match="timezone-aware"):
        check(inter.issue(), trust, at=datetime(2026, 11, 26, 12, 0))


def test_time_in_another_zone_is_converted(inter: CA, trust: TrustStore) -> None:
    """05:00+05:00 is midnight UTC: the same instant decides."""
    end = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    leaf = inter.issue(not_after=end)
    plus5 = timezone(timedelta(hours=5))
    assert check(leaf, trust, at=datetime(2026, 11, 26, 5, 0, tzinfo=plus5)).trusted
    assert EXPIRED == code_of(leaf, trust, at=datetime(2026, 11, 26, 5, 0, 1, tzinfo=plus5))


# --- validate_chain: SAN and EKU -------------------------------------------------------


@pytest.mark.parametrize("purpose", list(Purpose))
def test_leaf_without_san_is_accepted(inter: CA, trust: TrustStore, purpose: Purpose) -> None:
    """The SAN is optional (spec section 7): CN-only certificates validate both ways."""
    leaf = inter.issue(san=None)
    assert leaf.cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert check(leaf, trust, purpose=purpose).trusted


@pytest.mark.parametrize(
    ("purpose", "eku", "expected"),
    [
        (Purpose.INBOUND, None, None),
        (Purpose.INBOUND, [SERVER], None),
        (Purpose.INBOUND, [CLIENT], None),
        (Purpose.INBOUND, [SERVER, CLIENT], None),
        (Purpose.INBOUND, [CODE_SIGNING], NOT_TRUSTED),
        (Purpose.INBOUND, [ANY_EKU], NOT_TRUSTED),
        (Purpose.INBOUND, [CODE_SIGNING, SERVER], None),
        (Purpose.OUTBOUND, None, None),
        (Purpose.OUTBOUND, [SERVER], None),
        (Purpose.OUTBOUND, [CLIENT], NOT_TRUSTED),
        (Purpose.OUTBOUND, [SERVER, CLIENT], None),
        (Purpose.OUTBOUND, [CODE_SIGNING], NOT_TRUSTED),
        (Purpose.OUTBOUND, [ANY_EKU], NOT_TRUSTED),
    ],
    ids=lambda v: str(v),
)
def test_leaf_eku_rule(
    inter: CA,
    trust: TrustStore,
    purpose: Purpose,
    eku: list[x509.ObjectIdentifier] | None,
    expected: str | None,
) -> None:
    """Spec section 7: absent EKU is fine; inbound needs serverAuth or clientAuth (a
    serverAuth-only leaf passes although the client verifier is used); outbound needs
    serverAuth. anyExtendedKeyUsage alone does not count (BR 7.1.2.7.10)."""
    assert expected == code_of(inter.issue(eku=eku), trust, purpose=purpose)


@pytest.mark.parametrize(
    ("ca_eku", "leaf_eku", "purpose", "expected"),
    [
        ([SERVER], [SERVER], Purpose.OUTBOUND, None),
        ([SERVER], [SERVER, CLIENT], Purpose.INBOUND, None),
        ([SERVER, CLIENT], [CLIENT], Purpose.INBOUND, None),
        ([ANY_EKU], [SERVER], Purpose.OUTBOUND, None),
        ([CLIENT], [SERVER, CLIENT], Purpose.OUTBOUND, NOT_TRUSTED),
        ([SERVER], [CLIENT], Purpose.INBOUND, NOT_TRUSTED),
        ([CODE_SIGNING], None, Purpose.INBOUND, NOT_TRUSTED),
    ],
    ids=lambda v: str(v),
)
def test_ca_eku_restricts_what_it_issues(
    root: CA,
    trust: TrustStore,
    ca_eku: list[x509.ObjectIdentifier],
    leaf_eku: list[x509.ObjectIdentifier] | None,
    purpose: Purpose,
    expected: str | None,
) -> None:
    """An EKU on an intermediate constrains the chain (EKU chaining): the usages left
    along the whole path must still serve the purpose. A serverAuth-only public
    intermediate works outbound although the client verifier is used."""
    issuing = root.intermediate("EKU CA", eku=ca_eku)
    assert expected == code_of(issuing.issue(eku=leaf_eku), trust, purpose=purpose)


# --- validate_chain: name constraints on the CN ----------------------------------------


@pytest.mark.parametrize(
    ("permitted", "excluded", "cns", "trusted"),
    [
        (["fabrikam.com"], None, ["server1.fabrikam.com"], True),
        (["fabrikam.com"], None, ["fabrikam.com"], True),
        (["fabrikam.com"], None, ["SERVER1.Fabrikam.COM"], True),
        (["fabrikam.com"], None, ["*.fabrikam.com"], True),
        (["fabrikam.com"], None, ["evil.com"], False),
        (["fabrikam.com"], None, ["notfabrikam.com"], False),
        (["fabrikam.com"], None, ["fabrikam.com.evil.com"], False),
        (["fabrikam.com"], None, ["server1.fabrikam.com", "evil.com"], False),
        (["fabrikam.com"], None, ["Fabrikam Bank"], False),
        (["fabrikam.com"], None, ["server1.fabrikam.com."], False),
        (["fabrikam.com"], None, ["server1.fabrikam.com\x00.evil.com"], False),
        ([".fabrikam.com"], None, ["server1.fabrikam.com"], True),
        ([".fabrikam.com"], None, ["fabrikam.com"], False),
        ([".fabrikam.com"], None, ["*.fabrikam.com"], True),
        (["mail.fabrikam.com"], None, ["*.fabrikam.com"], False),
        (["fabrikam.com", "contoso.com"], None, ["mail.contoso.com"], True),
        (None, ["evil.com"], ["server1.fabrikam.com"], True),
        (None, ["evil.com"], ["mail.evil.com"], False),
        (None, ["evil.com"], ["MAIL.EVIL.COM."], False),
        (None, ["evil.com"], ["*.com"], False),
        (None, ["evil.com"], ["Fabrikam Bank"], True),
        (None, [".evil.com"], ["evil.com"], True),
        (None, [".evil.com"], ["*.com"], True),
        (None, [".evil.com"], ["*.evil.com"], False),
        (["fabrikam.com"], ["bad.fabrikam.com"], ["server1.fabrikam.com"], True),
        (["fabrikam.com"], ["bad.fabrikam.com"], ["x.bad.fabrikam.com"], False),
        (["fabrikam.com"], ["bad.fabrikam.com"], ["bad.fabrikam.com"], False),
        (["fabrikam.com"], ["bad.fabrikam.com"], ["*.fabrikam.com"], False),
    ],
    ids=lambda v: str(v),
)
def test_dns_name_constraints_apply_to_the_cn(
    root: CA,
    trust: TrustStore,
    permitted: list[str] | None,
    excluded: list[str] | None,
    cns: list[str],
    trusted: bool,
) -> None:
    """RFC 5280 4.2.1.10 DNS subtrees, applied to every CN (spec section 7):
    "x.com" is x.com and below, ".x.com" only below; ASCII case-insensitive. A wildcard
    CN must lie wholly inside a permitted subtree and is refused if it could stand for
    an excluded name. A CN that is not a DNS name fails under permitted subtrees."""
    ca = root.intermediate("Constrained CA", permitted_dns=permitted, excluded_dns=excluded)
    verdict = check(ca.issue(cns), trust)
    assert trusted == verdict.trusted
    if not trusted:
        assert NOT_TRUSTED == verdict.code
        assert "Constrained CA" in verdict.detail


def test_name_constraints_of_the_trust_anchor_apply() -> None:
    """The anchor's own NameConstraints count, not only the intermediates'."""
    root = CA("Partner Root", permitted_dns=["fabrikam.com"])
    anchors = TrustStore.from_pem(root.cert_pem())
    assert check(root.intermediate().issue("mail.fabrikam.com"), anchors).trusted
    verdict = check(root.intermediate().issue("mail.contoso.com"), anchors)
    assert NOT_TRUSTED == verdict.code
    assert "outside the DNS subtrees permitted by CA 'CN=Partner Root'" in verdict.detail


def test_san_inside_constraints_does_not_excuse_the_cn(root: CA, trust: TrustStore) -> None:
    """The validator checks the SAN; tlsconnector still checks the CN it will match."""
    ca = root.intermediate("Constrained CA", permitted_dns=["fabrikam.com"])
    verdict = check(ca.issue("mail.contoso.com", san=["mail.fabrikam.com"]), trust)
    assert NOT_TRUSTED == verdict.code


def test_name_constraint_detail_escapes_hostile_cn(root: CA, trust: TrustStore) -> None:
    """The detail shows the CN escaped: no raw NUL, newline or bidi control."""
    ca = root.intermediate("Constrained CA", permitted_dns=["fabrikam.com"])
    verdict = check(ca.issue("evil\x00\n\u202ecom"), trust)
    assert NOT_TRUSTED == verdict.code
    assert not any(c in verdict.detail for c in "\x00\n\u202e")
    assert "\\x00" in verdict.detail


@pytest.mark.filterwarnings("error")
def test_hostile_names_work_when_warnings_are_errors() -> None:
    """cryptography warns on CNs over 64 characters; with warnings turned into errors
    the library still decodes and decides instead of raising."""
    long_root = CA("R" * 100)
    anchors = TrustStore.from_pem(long_root.cert_pem())
    issuing = long_root.intermediate("I" * 100, permitted_dns=["fabrikam.com"])
    leaf = issuing.issue("x" * 100, not_before=datetime(2027, 1, 1, tzinfo=UTC))
    chain = PresentedChain.from_pem(leaf.chain_pem())
    assert ("x" * 100,) == chain.cns
    assert NOT_TRUSTED == validate_chain(chain, trust=anchors, at=NOW, purpose=Purpose.INBOUND).code
    verdict = check(issuing.issue("x" * 100), anchors)
    assert NOT_TRUSTED == verdict.code
    assert "outside the DNS subtrees permitted" in verdict.detail


def test_an_unrelated_expired_extra_certificate_does_not_make_the_chain_expired(
    trust: TrustStore,
) -> None:
    """Only certificates of the chain count (section 7): junk appended by the peer
    leaves an untrusted chain untrusted, not expired."""
    stranger = certmint.self_signed("server1.fabrikam.com")
    junk = certmint.self_signed(
        "junk",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    chain = PresentedChain.from_pem(certmint.pem(stranger.cert, junk.cert))
    verdict = validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
    assert "certificate-not-trusted" == verdict.code


def test_an_expired_intermediate_that_issued_the_leaf_still_counts(root: CA, trust: TrustStore) -> None:
    old = root.intermediate(
        "Old Issuing CA",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    leaf = old.issue("server1.fabrikam.com", not_before=datetime(2020, 6, 1, tzinfo=UTC))
    chain = PresentedChain.from_pem(leaf.chain_pem())
    verdict = validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
    assert "certificate-expired" == verdict.code


def test_an_rsa_hierarchy_validates_like_an_ec_one() -> None:
    """Public CAs mostly sign with RSA: such a chain is validated the same way."""
    root = CA("RSA Root", key_type="rsa-2048")
    issuing = root.intermediate("RSA Issuing CA", key_type="rsa-2048")
    chain = PresentedChain.from_pem(issuing.issue("server1.fabrikam.com").chain_pem())
    trust = TrustStore.from_pem(root.cert_pem())
    verdict = validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
    assert (True, "verified to trust anchor 'CN=RSA Root'") == (verdict.trusted, verdict.detail)
    assert isinstance(issuing.cert.public_key(), rsa.RSAPublicKey)
    with pytest.raises(ValueError, match="key_type must be one of"):
        CA("DSA Root", key_type="dsa-1024")


# --- hardening (issue: close every fail-open path) ----------------------------------


def _critical_eku_ca(parent: CA, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An intermediate CA of ``parent`` whose EKU (serverAuth, clientAuth) is critical."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certmint.DEFAULT_NOT_BEFORE)
        .not_valid_after(certmint.DEFAULT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([SERVER, CLIENT]), critical=True)
        .sign(parent.key, hashes.SHA256())
    )
    return cert, key


def _leaf_with_critical_eku(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, *, critical: bool
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server1.fabrikam.com")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certmint.DEFAULT_NOT_BEFORE)
        .not_valid_after(certmint.DEFAULT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([SERVER, CLIENT]), critical=critical)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_critical_eku_on_the_leaf_is_refused_as_cryptography_refuses_it(
    root: CA, trust: TrustStore, purpose: Purpose
) -> None:
    """Section 7: only the purpose check is replaced; the validator's criticality rule
    for the EKU stays (the WebPKI defaults refuse a critical EKU)."""
    for critical, expected in ((False, None), (True, NOT_TRUSTED)):
        leaf = _leaf_with_critical_eku(root.cert, root.key, critical=critical)  # type: ignore[arg-type]
        chain = PresentedChain.from_der(leaf.public_bytes(serialization.Encoding.DER))
        verdict = validate_chain(chain, trust=trust, at=NOW, purpose=purpose)
        assert expected == verdict.code


def test_a_critical_eku_on_a_ca_is_refused(root: CA, trust: TrustStore) -> None:
    ca_cert, ca_key = _critical_eku_ca(root, "Critical EKU Issuing CA")
    leaf = _leaf_with_critical_eku(ca_cert, ca_key, critical=False)
    chain = PresentedChain.from_der(
        [c.public_bytes(serialization.Encoding.DER) for c in (leaf, ca_cert)]
    )
    verdict = validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
    assert NOT_TRUSTED == verdict.code


MALFORMED_CONSTRAINTS = ["woodgrove..com", "woodgrove.com.", " woodgrove.com", "wood\x00grove.com"]


@pytest.mark.parametrize("constraint", MALFORMED_CONSTRAINTS)
@pytest.mark.parametrize("cn", ["server1.woodgrove.com", "server1.fabrikam.com"])
def test_a_malformed_excluded_dns_constraint_fails_closed(
    root: CA, trust: TrustStore, constraint: str, cn: str
) -> None:
    """Section 7: a DNS constraint that cannot be parsed is never "no constraint"; the
    CN check refuses every CN under that CA (the validator does the same for SANs)."""
    ca = root.intermediate("Malformed exclusion CA", excluded_dns=[constraint])
    verdict = check(ca.issue(cn), trust)
    assert NOT_TRUSTED == verdict.code
    assert "cannot be parsed" in verdict.detail
    assert "\x00" not in verdict.detail


@pytest.mark.parametrize("constraint", MALFORMED_CONSTRAINTS)
def test_a_malformed_permitted_dns_constraint_fails_closed(
    root: CA, trust: TrustStore, constraint: str
) -> None:
    ca = root.intermediate("Malformed permission CA", permitted_dns=[constraint])
    verdict = check(ca.issue("server1.woodgrove.com"), trust)
    assert NOT_TRUSTED == verdict.code
    assert "cannot be parsed" in verdict.detail


def test_well_formed_dns_constraints_still_apply_in_any_case(root: CA, trust: TrustStore) -> None:
    ca = root.intermediate("Upper-case CA", permitted_dns=["FABRIKAM.com", ".eu.fabrikam.com"])
    assert check(ca.issue("mx.fabrikam.com"), trust).trusted
    assert check(ca.issue("mx.eu.fabrikam.com"), trust).trusted
    assert NOT_TRUSTED == code_of(ca.issue("mx.woodgrove.com"), trust)


def test_an_expired_leaf_from_an_unknown_ca_is_not_trusted(trust: TrustStore) -> None:
    """Section 7: "expired" only for a chain that leads to a trust anchor."""
    expired = {
        "not_before": datetime(2020, 1, 1, tzinfo=UTC),
        "not_after": datetime(2021, 1, 1, tzinfo=UTC),
    }
    stranger = CA("Unknown CA")
    assert NOT_TRUSTED == code_of(stranger.issue("server1.fabrikam.com", **expired), trust)  # type: ignore[arg-type]
    assert NOT_TRUSTED == code_of(certmint.self_signed("server1.fabrikam.com", **expired), trust)  # type: ignore[arg-type]
    unknown_inter = stranger.intermediate("Unknown Issuing CA")
    leaf = unknown_inter.issue("server1.fabrikam.com", **expired)  # type: ignore[arg-type]
    assert NOT_TRUSTED == code_of(leaf, trust)


def test_an_expired_leaf_with_a_forged_issuer_name_is_not_trusted(root: CA, trust: TrustStore) -> None:
    """A stranger's CA with the trusted root's very name: the signature decides."""
    impostor = CA(root.name)
    leaf = impostor.issue(
        "server1.fabrikam.com",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    assert NOT_TRUSTED == code_of(leaf, trust)
    genuine = root.issue(
        "server1.fabrikam.com",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    assert EXPIRED == code_of(genuine, trust)


def test_the_trust_store_lists_its_name_constrained_cas(root: CA) -> None:
    constrained = root.intermediate("Woodgrove CA", permitted_dns=["woodgrove.com"])
    excluded = root.intermediate("No Fabrikam CA", excluded_dns=["fabrikam.com"])
    store = TrustStore.from_pem(root.cert_pem() + constrained.cert_pem() + excluded.cert_pem())
    assert (constrained.cert, excluded.cert) == store.name_constrained
    assert () == TrustStore.from_pem(root.cert_pem()).name_constrained
