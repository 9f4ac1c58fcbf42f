"""Presented chains and trust stores (spec section 7): decoding, bounds, the facts
read from the leaf (src/tlsconnector/_chains.py)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from chaintools import (
    with_extension,
)
from tlsconnector._chains import (
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_CERTIFICATES,
    MAX_CN_ATTRIBUTES,
    MAX_PEM_BYTES,
    PresentedChain,
    TrustStore,
)
from tlsconnector._errors import InvalidValue
from tlsconnector._validation import Purpose, validate_chain

import certmint
from certmint import CA, NOW

# --- decoding: PresentedChain.from_pem / from_der --------------------------------------


def test_from_pem_one_certificate(inter: CA) -> None:
    """A single PEM block is a chain holding just the leaf."""
    leaf = inter.issue()
    chain = PresentedChain.from_pem(leaf.chain_pem(intermediates=False))
    assert (leaf.cert,) == chain.certificates
    assert leaf.cert == chain.leaf
    assert () == chain.intermediates


def test_from_pem_several_certificates_keeps_order(root: CA) -> None:
    """Leaf first, then the intermediates, exactly as presented."""
    sub = root.intermediate("Sub CA").intermediate("Issuing CA")
    leaf = sub.issue()
    chain = PresentedChain.from_pem(leaf.chain_pem())
    assert (leaf.cert, *leaf.intermediates) == chain.certificates
    assert 3 == len(chain.certificates)


def test_from_pem_accepts_bytes_and_ignores_text_outside_blocks(inter: CA) -> None:
    """Bytes work like text; comments and other PEM blocks around certificates are ignored."""
    leaf = inter.issue()
    text = "subject=CN=whatever\n" + leaf.chain_pem() + "trailing noise \u00e9\n"
    assert PresentedChain.from_pem(text) == PresentedChain.from_pem(text.encode())
    assert (leaf.cert, *leaf.intermediates) == PresentedChain.from_pem(text).certificates


def test_from_der_single_and_list(inter: CA) -> None:
    """One DER blob is a one-certificate chain; a list is leaf-first."""
    leaf = inter.issue()
    assert (leaf.cert,) == PresentedChain.from_der(leaf.der()).certificates
    ders = [leaf.der(), *(c.public_bytes(serialization.Encoding.DER) for c in leaf.intermediates)]
    assert (leaf.cert, *leaf.intermediates) == PresentedChain.from_der(ders).certificates
    assert PresentedChain.from_der(ders) == PresentedChain.from_pem(leaf.chain_pem())


@pytest.mark.parametrize(
    "data",
    [
        "",
        b"",
        "  \n\t\n",
        "garbage",
        b"\x00" * 32,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "empty-bytes", "blank", "garbage", "nul", "bad-der", "bad-base64", "key-only"],
)
def test_from_pem_rejects_input_without_a_certificate(data: str | bytes) -> None:
    """Empty, blank or undecodable PEM is an InvalidValue, never another exception."""
    with pytest.raises(InvalidValue):
        PresentedChain.from_pem(data)


def test_from_pem_rejects_truncated_pem(inter: CA) -> None:
    """A PEM block cut off before its END line does not decode."""
    text = inter.issue().chain_pem(intermediates=False)
    with pytest.raises(InvalidValue, match="a BEGIN CERTIFICATE line without its END line"):
        PresentedChain.from_pem(text[: len(text) // 2])


def test_input_that_is_not_a_certificate_is_named_and_never_echoed(inter: CA) -> None:
    """A private key, a DER file, another PEM object or damaged PEM: the error says what
    the input is, and never shows its bytes (a key must not reach a log) nor
    cryptography's generic message."""
    leaf = inter.issue()
    key = leaf.key_pem()
    secret = key.splitlines()[1]
    cases = {
        key: "this is a private key, not a certificate",
        leaf.der(): "this looks like DER",
        leaf.chain_pem(intermediates=False).replace("M", "*", 3): "does not decode",
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n": "a PEM PUBLIC KEY, not",
        "just some text": "no PEM certificate block",
    }
    for data, expected in cases.items():
        for parse in (PresentedChain.from_pem, TrustStore.from_pem):
            with pytest.raises(InvalidValue) as caught:
                parse(data)
            message = str(caught.value)
            assert expected in message
            assert secret[:16] not in message
            assert "cryptography.io" not in message
            assert "MII" not in message
            assert "\\x30" not in message


def test_from_pem_rejects_a_chain_with_one_bad_block(inter: CA) -> None:
    """One undecodable block spoils the whole chain (nothing is half decoded)."""
    text = (
        inter.issue().chain_pem() + "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(InvalidValue):
        PresentedChain.from_pem(text)


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"\x30\x03\x02\x01\x00", [], [b""], "text is not DER"],
    ids=["empty", "one-byte", "wrong-structure", "empty-list", "empty-item", "str"],
)
def test_from_der_rejects_bad_input(data: bytes | list[bytes]) -> None:
    """Empty, undecodable or wrongly typed DER input is an InvalidValue."""
    with pytest.raises(InvalidValue):
        PresentedChain.from_der(data)


def test_from_der_rejects_truncated_der(inter: CA) -> None:
    """A DER certificate cut short does not decode; the error names the position."""
    der = inter.issue().der()
    with pytest.raises(InvalidValue, match="leaf certificate: undecodable DER") as info:
        PresentedChain.from_der(der[:-10])
    assert "undecodable DER" in info.value.reason
    with pytest.raises(InvalidValue, match="certificate #2"):
        PresentedChain.from_der([der, der[:50]])


def test_at_most_max_chain_certificates(inter: CA) -> None:
    """Exactly MAX_CHAIN_CERTIFICATES certificates are accepted; one more is refused by
    every constructor."""
    leaf = inter.issue()
    assert MAX_CHAIN_CERTIFICATES == len(
        PresentedChain.from_pem(certmint.pem(*[leaf.cert] * MAX_CHAIN_CERTIFICATES)).certificates
    )
    too_many = [leaf.cert] * (MAX_CHAIN_CERTIFICATES + 1)
    with pytest.raises(InvalidValue, match="more than 10 certificates"):
        PresentedChain.from_pem(certmint.pem(*too_many))
    with pytest.raises(InvalidValue, match="more than 10 certificates"):
        PresentedChain.from_der([leaf.der()] * (MAX_CHAIN_CERTIFICATES + 1))
    with pytest.raises(InvalidValue, match="more than 10 certificates"):
        PresentedChain(tuple(too_many))


def test_from_der_stops_reading_an_endless_sequence(inter: CA) -> None:
    """A lazy iterable is consumed only up to the bound."""
    der = inter.issue().der()

    def endless() -> Iterator[bytes]:
        while True:
            yield der

    with pytest.raises(InvalidValue, match="more than 10 certificates"):
        PresentedChain.from_der(endless())  # type: ignore[arg-type]  # an iterable, too


def test_oversized_certificate_is_refused(inter: CA) -> None:
    """A certificate over MAX_CERTIFICATE_BYTES (DER) is refused, as DER and as PEM."""
    big = with_extension(
        inter,
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"A" * 70_000),
    )
    assert len(big) > MAX_CERTIFICATE_BYTES
    with pytest.raises(InvalidValue, match="larger than 65536 bytes"):
        PresentedChain.from_der(big)
    cert = x509.load_der_x509_certificate(big)
    with pytest.raises(InvalidValue, match="larger than 65536 bytes"):
        PresentedChain.from_pem(certmint.pem(cert))


def test_oversized_pem_input_is_refused(inter: CA) -> None:
    """PEM input over MAX_PEM_BYTES is refused before decoding, even if mostly padding."""
    text = inter.issue().chain_pem() + "#" * MAX_PEM_BYTES
    with pytest.raises(InvalidValue, match="larger than"):
        PresentedChain.from_pem(text)
    with pytest.raises(InvalidValue, match="larger than"):
        PresentedChain.from_pem(text.encode())


def test_thousand_cn_attributes_are_refused(inter: CA) -> None:
    """1000 CN attributes in one subject: a bounded InvalidValue, not a slow match."""
    leaf = inter.issue([f"h{i}.fabrikam.com" for i in range(1000)])
    with pytest.raises(InvalidValue, match="more than 16 CN attributes"):
        PresentedChain.from_pem(leaf.chain_pem())


def test_max_cn_attributes_are_accepted(inter: CA) -> None:
    """Exactly MAX_CN_ATTRIBUTES CN attributes are still fine."""
    names = [f"h{i}.fabrikam.com" for i in range(MAX_CN_ATTRIBUTES)]
    assert tuple(names) == PresentedChain.from_der(inter.issue(names).der()).cns


def test_malformed_extension_is_an_invalid_value(inter: CA) -> None:
    """An extension whose content does not parse (lazily, in cryptography) fails at decoding."""
    der = with_extension(
        inter, x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02junk")
    )
    with pytest.raises(InvalidValue, match="undecodable"):
        PresentedChain.from_der(der)


def test_bit_string_cn_is_an_invalid_value(inter: CA) -> None:
    """A CN encoded as a BIT STRING makes cryptography raise TypeError; we turn it into
    InvalidValue."""
    unique = x509.NameAttribute(
        NameOID.X500_UNIQUE_IDENTIFIER, b"\x00abc", _type=_ASN1Type.BitString
    )
    der = inter.issue(None, extra_subject=[unique]).der()
    # Rewrite the attribute's OID 2.5.4.45 into 2.5.4.3 (CN); the signature is irrelevant.
    der = der.replace(bytes.fromhex("060355042d"), bytes.fromhex("0603550403"))
    with pytest.raises(InvalidValue, match="undecodable"):
        PresentedChain.from_der(der)


def test_direct_construction_is_validated(inter: CA) -> None:
    """PresentedChain(...) enforces the same invariants as the named constructors."""
    with pytest.raises(InvalidValue, match="at least one certificate"):
        PresentedChain(())
    with pytest.raises(InvalidValue, match=r"not an x509\.Certificate"):
        PresentedChain(("not a certificate",))  # type: ignore[arg-type]
    leaf = inter.issue()
    assert PresentedChain([leaf.cert]) == PresentedChain((leaf.cert,))


@given(st.binary(max_size=400))
def test_arbitrary_der_bytes_only_raise_invalid_value(data: bytes) -> None:
    """Whatever bytes arrive, from_der returns a chain or raises InvalidValue."""
    with contextlib.suppress(InvalidValue):
        PresentedChain.from_der(data)


_MUTATION_CA = CA("Mutation CA")
_MUTATION_LEAF = _MUTATION_CA.issue(["m.fabrikam.com", "n.fabrikam.com"], san=["m.fabrikam.com"])
_MUTATION_TRUST = TrustStore.from_pem(_MUTATION_CA.cert_pem())


@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_certificates_never_crash_nor_validate(changes: list[tuple[int, int]]) -> None:
    """A certificate with a few bytes changed decodes to a chain or an InvalidValue; a
    chain that decodes can be read and validated without crashing, and is trusted only
    if the bytes are in fact unchanged."""
    original = _MUTATION_LEAF.der()
    der = bytearray(original)
    for position, byte in changes:
        der[position % len(der)] = byte
    try:
        chain = PresentedChain.from_der(bytes(der))
    except InvalidValue:
        return
    assert isinstance(chain.cns, tuple)
    assert 95 == len(chain.fingerprint)
    for purpose in Purpose:
        verdict = validate_chain(chain, trust=_MUTATION_TRUST, at=NOW, purpose=purpose)
        assert verdict.trusted == (bytes(der) == original)


# --- facts read from the leaf: cns and fingerprint -------------------------------------


def test_cns_are_every_subject_cn_in_order(inter: CA) -> None:
    """cns lists each CN attribute of the leaf's subject, in order, unnormalised."""
    leaf = inter.issue(["Mail.Fabrikam.com", "second.fabrikam.com"])
    assert ("Mail.Fabrikam.com", "second.fabrikam.com") == PresentedChain.from_der(leaf.der()).cns


def test_cns_come_from_the_subject_only_never_the_san(inter: CA) -> None:
    """A name present only in the SAN is not a CN (spec section 3)."""
    leaf = inter.issue("Fabrikam Bank", san=["mail.fabrikam.com"])
    assert ("Fabrikam Bank",) == PresentedChain.from_der(leaf.der()).cns


def test_no_cn_gives_no_cns(inter: CA) -> None:
    """A leaf without any CN attribute has an empty cns, only SAN or not."""
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fabrikam")
    leaf = inter.issue(None, san=["mail.fabrikam.com"], extra_subject=[org])
    assert () == PresentedChain.from_der(leaf.der()).cns


def test_cns_keep_hostile_characters_verbatim(inter: CA) -> None:
    """NUL bytes, Unicode and long values come back as-is; judging them is the matcher's job."""
    hostile = ["mail.fabrikam.com\x00.evil.com", "b\u00fccher.example", "x" * 300]
    assert tuple(hostile) == PresentedChain.from_der(inter.issue(hostile).der()).cns


def test_cns_decode_other_string_types(inter: CA) -> None:
    """BMPString and UniversalString CNs are decoded to text."""
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, "bmp.fabrikam.com", _type=_ASN1Type.BMPString),
        x509.NameAttribute(
            NameOID.COMMON_NAME, "uni.fabrikam.com", _type=_ASN1Type.UniversalString
        ),
    ]
    leaf = inter.issue(None, extra_subject=attributes)
    assert ("bmp.fabrikam.com", "uni.fabrikam.com") == PresentedChain.from_der(leaf.der()).cns


def test_cn_of_a_non_string_type_is_unusable_text(inter: CA) -> None:
    """A CN encoded as an OCTET STRING is rendered '#'+hex, which can match no name."""
    der = inter.issue("oct.fabrikam.com").der()
    at = der.find(b"oct.fabrikam.com")
    assert b"\x0c" == der[at - 2 : at - 1]  # UTF8String tag
    der = der[: at - 2] + b"\x04" + der[at - 1 :]  # ... becomes OCTET STRING
    assert ("#" + b"oct.fabrikam.com".hex(),) == PresentedChain.from_der(der).cns


def test_fingerprint_is_sha256_of_leaf_der_in_postfix_form(inter: CA) -> None:
    """Upper-case hex pairs joined by ':' over SHA-256 of the leaf's DER."""
    leaf = inter.issue()
    digest = hashlib.sha256(leaf.der()).hexdigest().upper()
    expected = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    assert expected == PresentedChain.from_pem(leaf.chain_pem()).fingerprint


# --- TrustStore ------------------------------------------------------------------------


def test_trust_store_from_pem_keeps_every_anchor(root: CA) -> None:
    """A bundle of several anchors keeps them all, in order."""
    other = CA("Other Root")
    store = TrustStore.from_pem(root.cert_pem() + other.cert_pem())
    assert (root.cert, other.cert) == store.certificates
    assert store == TrustStore.from_pem((root.cert_pem() + other.cert_pem()).encode())


@pytest.mark.parametrize("data", ["", b"  ", "not pem", "-----BEGIN CERTIFICATE-----\nAA\n"])
def test_trust_store_rejects_empty_or_undecodable(data: str | bytes) -> None:
    """An empty or undecodable bundle is an InvalidValue."""
    with pytest.raises(InvalidValue):
        TrustStore.from_pem(data)


def test_trust_store_direct_construction_needs_anchors() -> None:
    """TrustStore(()) is refused like an empty bundle."""
    with pytest.raises(InvalidValue, match="at least one certificate"):
        TrustStore(())


