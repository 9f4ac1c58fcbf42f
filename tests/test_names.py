"""Specification tests for domain names, scope patterns and certificate names (sections 2, 3)."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tlsconnector._errors import InvalidValue
from tlsconnector._names import (
    CertificateName,
    DomainPattern,
    PatternKind,
    canonical_domain,
    is_public_suffix,
    match_certificate_name,
    usable_cn,
)

# --------------------------------------------------------------------------------------
# Hypothesis strategies: domains with mixed case, IDN labels and an optional trailing dot.

_ASCII_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_IDN_LABEL = st.sampled_from(["bücher", "Bücher", "münchen", "пример", "例え", "xn--bcher-kva"])
_LAST_LABEL = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,5}", fullmatch=True)
domain_texts = st.builds(
    lambda labels, last, dot: ".".join([*labels, last]) + dot,
    st.lists(st.one_of(_ASCII_LABEL, _IDN_LABEL), min_size=0, max_size=4),
    st.one_of(_LAST_LABEL, _IDN_LABEL),
    st.sampled_from(["", "."]),
)
pattern_texts = st.one_of(
    st.just("*"), domain_texts, domain_texts.map(lambda domain: "*." + domain)
)
# Fuzzing: names that are valid or one edit away from valid (a hostile character
# inserted), so that most examples get past the parser.
_HOSTILE = ["\x00", " ", "*", ".", "-", "_", ":", "@", "\u202e", "\u212a", "\u0131", "\u3002"]
hostile_domain_texts = st.builds(
    lambda domain, position, hostile: domain[:position] + hostile + domain[position:],
    domain_texts,
    st.integers(0, 40),
    st.sampled_from(_HOSTILE),
)


def mostly(
    valid: st.SearchStrategy[str], *hostile: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """Fuzzing input that gets past the parser most of the time: ``valid`` in about
    two draws of three, else one of the ``hostile`` strategies."""
    return st.integers(0, 5).flatmap(lambda pick: valid if pick < 4 else st.one_of(*hostile))


# ======================================================================================
# Section 2: canonical_domain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fabrikam.com", "fabrikam.com"),
        ("Fabrikam.COM", "fabrikam.com"),
        ("fabrikam.com.", "fabrikam.com"),
        ("FABRIKAM.com.", "fabrikam.com"),
        ("com", "com"),
        ("_dmarc.fabrikam.com", "_dmarc.fabrikam.com"),
        ("mail-1.fabrikam.com", "mail-1.fabrikam.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("mail.bücher.example", "mail.xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),
    ],
)
def test_canonical_domain_normalises(text: str, expected: str) -> None:
    """ASCII lower case, one trailing dot removed, U-labels to A-labels (section 2)."""
    assert expected == canonical_domain(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (".", "empty"),
        ("fabrikam.com..", "empty label"),
        ("a..b", "empty label"),
        (".fabrikam.com", "start with a dot"),
        ("*.fabrikam.com", r"'\*' is not allowed"),
        ("*", r"'\*' is not allowed"),
        ("a" * 64 + ".com", "longer than 63"),
        (".".join(["a" * 63] * 4), "longer than 253"),
        ("x" * 10_000, "longer than 253"),
        ("-fabrikam.com", "start or end with '-'"),
        ("fabrikam-.com", "start or end with '-'"),
        ("fab rikam.com", "only letters, digits"),
        ("fabrikam.com ", "only letters, digits"),
        ("fab\x00rikam.com", "only letters, digits"),
        ("fab@rikam.com", "only letters, digits"),
        ("198.51.100.7", "IP address"),
        ("[198.51.100.7]", "IP literal"),
        ("2001:db8::1", "':' is not allowed"),
        ("fabrikam.com:25", "':' is not allowed"),
        ("host.123", "numeric"),
        ("1.2.3.0x4", "numeric"),
        ("BÜCHER.example", "lower case"),
        ("\u202ebad.example", "IDNA 2008"),
        ("xn--zz.example", "A-label"),
        ("xn---bbk.example", "A-label"),
        ("fabrikam\u3002com", "IDNA 2008"),
    ],
)
def test_canonical_domain_refuses(text: str, reason: str) -> None:
    """Invalid names raise InvalidValue with a reason (section 2)."""
    with pytest.raises(InvalidValue, match=reason) as caught:
        canonical_domain(text)
    assert text == caught.value.value


@pytest.mark.parametrize("value", [None, b"fabrikam.com", 42, ["fabrikam.com"]])
def test_canonical_domain_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        canonical_domain(value)  # type: ignore[arg-type]


def test_canonical_domain_error_message_escapes_untrusted_text() -> None:
    """A bidi override or NUL in bad input is escaped in the message, never echoed raw."""
    with pytest.raises(InvalidValue) as caught:
        canonical_domain("\u202egood.example\x00")
    assert "\u202e" not in str(caught.value)
    assert "\x00" not in str(caught.value)


@given(domain_texts)
def test_canonical_domain_is_idempotent(text: str) -> None:
    """canonical_domain(canonical_domain(x)) == canonical_domain(x) (section 2)."""
    try:
        once = canonical_domain(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert once == canonical_domain(once)
    assert once.isascii()
    assert once == once.lower()


@given(mostly(domain_texts, hostile_domain_texts, st.text(max_size=80)))
def test_canonical_domain_only_ever_raises_invalid_value(text: str) -> None:
    """Arbitrary text gives a canonical name or InvalidValue, nothing else."""
    try:
        result = canonical_domain(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert result == canonical_domain(result)
    assert result.isascii()
    assert result == result.lower()
    assert len(result) <= 253


# ======================================================================================
# Section 2: DomainPattern


@pytest.mark.parametrize(
    ("text", "kind", "domain", "shown"),
    [
        ("fabrikam.com", PatternKind.EXACT, "fabrikam.com", "fabrikam.com"),
        ("Fabrikam.COM.", PatternKind.EXACT, "fabrikam.com", "fabrikam.com"),
        ("*.fabrikam.com", PatternKind.SUBTREE, "fabrikam.com", "*.fabrikam.com"),
        ("*.Fabrikam.com.", PatternKind.SUBTREE, "fabrikam.com", "*.fabrikam.com"),
        ("*.com", PatternKind.SUBTREE, "com", "*.com"),
        (
            "*.bücher.example",
            PatternKind.SUBTREE,
            "xn--bcher-kva.example",
            "*.xn--bcher-kva.example",
        ),
        ("*", PatternKind.ANY, None, "*"),
    ],
)
def test_pattern_parse_valid_forms(
    text: str, kind: PatternKind, domain: str | None, shown: str
) -> None:
    """The three forms of section 2, normalised like domains; str() is canonical."""
    pattern = DomainPattern.parse(text)
    assert DomainPattern(kind, domain) == pattern
    assert shown == str(pattern)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a.*.com", "whole first label"),
        ("*x.com", "whole first label"),
        ("f*.x.com", "whole first label"),
        ("**", "whole first label"),
        ("*.*.com", "only once"),
        ("*.", "empty"),
        ("*..com", "start with a dot"),
        ("", "empty"),
        (".fabrikam.com", "start with a dot"),
        ("fabrikam..com", "empty label"),
        ("198.51.100.7", "IP address"),
        ("*.198.51.100.7", "IP address"),
        ("[2001:db8::1]", "IP literal"),
        ("a" * 64 + ".com", "longer than 63"),
        ("*." + ".".join(["a" * 63] * 4), "longer than 253"),
    ],
)
def test_pattern_parse_refuses(text: str, reason: str) -> None:
    """'*' anywhere but as the whole first label, and any invalid domain, is refused."""
    with pytest.raises(InvalidValue, match=reason) as caught:
        DomainPattern.parse(text)
    assert text == caught.value.value


def test_pattern_parse_refuses_non_strings() -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        DomainPattern.parse(None)  # type: ignore[arg-type]


def test_exact_pattern_matches_only_that_domain() -> None:
    pattern = DomainPattern.parse("fabrikam.com")
    assert pattern.matches("fabrikam.com")
    assert not pattern.matches("mail.fabrikam.com")
    assert not pattern.matches("notfabrikam.com")
    assert not pattern.matches(None)


def test_subtree_pattern_matches_apex_and_subdomains_at_any_depth() -> None:
    """'*.fabrikam.com' is the domain and all its subdomains (Exchange address space)."""
    pattern = DomainPattern.parse("*.fabrikam.com")
    assert pattern.matches("fabrikam.com")
    assert pattern.matches("mail.fabrikam.com")
    assert pattern.matches("a.b.c.fabrikam.com")
    assert not pattern.matches("notfabrikam.com")
    assert not pattern.matches("fabrikam.com.evil.example")
    assert not pattern.matches("com")
    assert not pattern.matches(None)


def test_any_pattern_matches_everything_and_the_null_sender() -> None:
    pattern = DomainPattern.parse("*")
    assert pattern.matches("fabrikam.com")
    assert pattern.matches("com")
    assert pattern.matches(None)


def test_null_sender_is_matched_only_by_any() -> None:
    """Section 5.1: the null sender has no domain and only '*' matches it."""
    matched = [
        text for text in ["*", "*.com", "fabrikam.com"] if DomainPattern.parse(text).matches(None)
    ]
    assert matched == ["*"]


def test_specificity_exact_beats_longest_suffix_beats_any() -> None:
    """Section 2: exact > '*.suffix' with the longest suffix > '*'."""
    texts = ["*", "*.com", "*.fabrikam.com", "mail.fabrikam.com", "*.mail.fabrikam.com"]
    patterns = [DomainPattern.parse(text) for text in texts]
    matching = [p for p in patterns if p.matches("mail.fabrikam.com")]
    ranked = sorted(matching, key=lambda p: p.specificity, reverse=True)
    assert [str(p) for p in ranked] == [
        "mail.fabrikam.com",
        "*.mail.fabrikam.com",
        "*.fabrikam.com",
        "*.com",
        "*",
    ]


def test_specificity_values() -> None:
    assert DomainPattern.parse("fabrikam.com").specificity == (2, 2)
    assert DomainPattern.parse("*.fabrikam.com").specificity == (1, 2)
    assert DomainPattern.parse("*.com").specificity == (1, 1)
    assert DomainPattern.parse("*").specificity == (0, 0)


def test_exact_single_label_beats_any_subtree() -> None:
    assert DomainPattern.parse("com").specificity > DomainPattern.parse("*.a.b.c.com").specificity


def test_inconsistent_direct_construction_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="None exactly when kind is ANY"):
        DomainPattern(PatternKind.ANY, "fabrikam.com")
    with pytest.raises(ValueError, match="None exactly when kind is ANY"):
        DomainPattern(PatternKind.EXACT, None)


@given(pattern_texts)
def test_pattern_round_trips_through_str(text: str) -> None:
    """DomainPattern.parse(str(p)) == p, and parsing is idempotent."""
    try:
        pattern = DomainPattern.parse(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert pattern == DomainPattern.parse(str(pattern))


@given(domain_texts, domain_texts)
def test_subtree_matches_every_subdomain_of_its_suffix(suffix: str, prefix: str) -> None:
    try:
        pattern = DomainPattern.parse("*." + suffix)
        deeper = canonical_domain(prefix.rstrip(".") + "." + suffix)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert pattern.matches(deeper)
    assert pattern.matches(pattern.domain)


# ======================================================================================
# Public suffixes (a maintained PSL package, ICANN and private sections)


@pytest.mark.parametrize(
    ("name", "public"),
    [
        ("com", True),
        ("co.uk", True),
        ("s3.amazonaws.com", True),
        ("github.io", True),
        ("xn--p1ai", True),
        ("fabrikam.com", False),
        ("partner.co.uk", False),
        ("amazonaws.com", False),
        ("", False),
    ],
)
def test_is_public_suffix(name: str, public: bool) -> None:
    assert public == is_public_suffix(name)


# ======================================================================================
# Section 3: CertificateName.parse (the expected side)


@pytest.mark.parametrize(
    ("text", "canonical", "wildcard"),
    [
        ("mail.partner.com", "mail.partner.com", False),
        ("Mail.Partner.COM.", "mail.partner.com", False),
        ("*.partner.com", "*.partner.com", True),
        ("*.Partner.com.", "*.partner.com", True),
        ("*.partner.co.uk", "*.partner.co.uk", True),
        ("*.bücher.example", "*.xn--bcher-kva.example", True),
        ("mail.bücher.example", "mail.xn--bcher-kva.example", False),
        ("*.bucket.s3.amazonaws.com", "*.bucket.s3.amazonaws.com", True),
        ("localhost", "localhost", False),
    ],
)
def test_certificate_name_parse_valid(text: str, canonical: str, wildcard: bool) -> None:
    """Section 3: the expected side follows section 2's normalisation."""
    name = CertificateName.parse(text)
    assert canonical == name.text
    assert canonical == str(name)
    assert wildcard == name.is_wildcard


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*.com", "at least two labels"),
        ("*.co.uk", "public suffix"),
        ("*.s3.amazonaws.com", "public suffix"),
        ("*.github.io", "public suffix"),
        ("*", "exactly '\\*'"),
        ("**.partner.com", "exactly '\\*'"),
        ("f*.partner.com", "exactly '\\*'"),
        ("*x.partner.com", "exactly '\\*'"),
        ("*.*.partner.com", "exactly '\\*'"),
        ("a.*.partner.com", "exactly '\\*'"),
        ("_sip.partner.com", "no '_'"),
        ("*._tcp.partner.com", "no '_'"),
        ("198.51.100.7", "IP address"),
        ("*.51.100.7", "numeric"),
        ("2001:db8::1", "':'"),
        ("mail.partner.com..", "empty label"),
        ("", "empty"),
        ("mail partner.com", "only letters"),
    ],
)
def test_certificate_name_parse_refuses(text: str, reason: str) -> None:
    """An invalid setting is a configuration error (section 3)."""
    with pytest.raises(InvalidValue, match=reason) as caught:
        CertificateName.parse(text)
    assert text == caught.value.value


def test_certificate_name_parse_refuses_non_strings() -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        CertificateName.parse(42)  # type: ignore[arg-type]


# ======================================================================================
# Section 3: the matching table, row by row


def test_row1_plain_name_matches_equal_cn() -> None:
    assert match_certificate_name("mail.partner.com", "mail.partner.com")
    assert not match_certificate_name("mail.partner.com", "mx.partner.com")
    assert not match_certificate_name("mail.partner.com", "partner.com")
    assert not match_certificate_name("mail.partner.com", "a.mail.partner.com")


def test_row2_wildcard_setting_matches_cn_with_exactly_one_more_label() -> None:
    """Section 3 example: server1/server2.fabrikam.com are accepted under *.fabrikam.com."""
    assert match_certificate_name("*.fabrikam.com", "server1.fabrikam.com")
    assert match_certificate_name("*.fabrikam.com", "server2.fabrikam.com")


def test_row2_never_the_apex_nor_two_labels_deeper() -> None:
    assert not match_certificate_name("*.partner.com", "partner.com")
    assert not match_certificate_name("*.partner.com", "a.b.partner.com")
    assert not match_certificate_name("*.partner.com", "server1.other.com")
    assert not match_certificate_name("*.partner.com", "server1partner.com")


def test_row3_plain_setting_is_covered_by_wildcard_cn() -> None:
    assert match_certificate_name("mail.partner.com", "*.partner.com")
    assert not match_certificate_name("partner.com", "*.partner.com")
    assert not match_certificate_name("a.mail.partner.com", "*.partner.com")
    assert not match_certificate_name("mail.other.com", "*.partner.com")


def test_row4_wildcard_setting_matches_only_the_equal_wildcard_cn() -> None:
    assert match_certificate_name("*.partner.com", "*.partner.com")
    assert match_certificate_name("*.partner.com", "*.PARTNER.com")
    assert not match_certificate_name("*.partner.com", "*.mail.partner.com")
    assert not match_certificate_name("*.mail.partner.com", "*.partner.com")


# Rule 7 (and section 2 normalisation of the expected side): case


def test_comparison_is_ascii_case_insensitive() -> None:
    assert match_certificate_name("mail.partner.com", "MAIL.Partner.COM")
    assert match_certificate_name("MAIL.PARTNER.COM", "mail.partner.com")
    assert match_certificate_name("*.PARTNER.com", "Server1.partner.COM")
    assert match_certificate_name("Mail.partner.com", "*.Partner.Com")


# Trailing dots: stripped on the expected side, unusable on the CN side


def test_trailing_dot_is_stripped_from_the_setting() -> None:
    assert match_certificate_name("mail.partner.com.", "mail.partner.com")
    assert match_certificate_name("*.partner.com.", "server1.partner.com")


def test_trailing_dot_makes_a_cn_unusable() -> None:
    assert not usable_cn("mail.partner.com.")
    assert not match_certificate_name("mail.partner.com", "mail.partner.com.")
    assert not match_certificate_name("mail.partner.com.", "mail.partner.com.")


# Rule 1: printable ASCII only, nothing trimmed


@pytest.mark.parametrize(
    "cn",
    [
        "mail.partner.com\x00",
        "mail.partner.com\x00.evil.com",
        "\x00mail.partner.com",
        " mail.partner.com",
        "mail.partner.com ",
        "mail.partner.com\n",
        "mail.partner.com\t",
        "mail.partner.com\x7f",
        "mail.partner.com\x1b",
        "\u202email.partner.com",
        "mail.partner.com\u200b",
        "mail.pärtner.com",
        "mail.partner.com\xa0",
        "\uff4d\uff41\uff49\uff4c.partner.com",  # fullwidth "mail"
    ],
)
def test_rule1_non_printable_or_non_ascii_cn_is_unusable(cn: str) -> None:
    """NUL, space, control, DEL, bidi and any non-ASCII character: unusable, never trimmed."""
    assert not usable_cn(cn)
    assert not match_certificate_name("mail.partner.com", cn)
    assert not match_certificate_name("*.partner.com", cn)


def test_rule1_idn_setting_matches_only_the_a_label_cn() -> None:
    """A U-label setting is compared as A-labels; the CN must be given in A-labels."""
    assert match_certificate_name("mail.bücher.example", "mail.xn--bcher-kva.example")
    assert match_certificate_name("*.bücher.example", "mail.xn--bcher-kva.example")
    assert match_certificate_name("*.bücher.example", "*.XN--BCHER-KVA.example")
    assert match_certificate_name("mail.bücher.example", "*.xn--bcher-kva.example")
    assert not match_certificate_name("mail.bücher.example", "mail.bücher.example")
    assert not match_certificate_name("*.bücher.example", "mail.bücher.example")


# Rule 2: length and empty labels


def test_rule2_cn_of_64_characters_is_usable_65_is_not() -> None:
    cn64 = "a" * 50 + "." + "b" * 9 + ".com"
    cn65 = "a" * 51 + "." + "b" * 9 + ".com"
    assert len(cn64) == 64
    assert len(cn65) == 65
    assert usable_cn(cn64)
    assert match_certificate_name(cn64, cn64)
    assert not usable_cn(cn65)
    assert not match_certificate_name(cn65, cn65)


def test_rule2_long_setting_can_still_match_a_wildcard_cn() -> None:
    """The 64-character bound is on the presented CN; a longer setting is still valid."""
    long_name = "a" * 60 + ".partner.com"
    assert match_certificate_name(long_name, "*.partner.com")


@pytest.mark.parametrize(
    "cn", ["", ".", ".mail.partner.com", "mail..partner.com", "mail.partner.com.", "*..partner.com"]
)
def test_rule2_empty_labels_and_edge_dots_are_unusable(cn: str) -> None:
    assert not usable_cn(cn)


# Rule 3: literal labels are LDH


@pytest.mark.parametrize(
    "cn",
    [
        "_sip.partner.com",
        "mail_1.partner.com",
        "-mail.partner.com",
        "mail-.partner.com",
        "a" * 64,
        "mail.partner.com:25",
        "mail@partner.com",
        "mail/partner.com",
        "CN=mail.partner.com",
    ],
)
def test_rule3_non_ldh_labels_are_unusable(cn: str) -> None:
    assert not usable_cn(cn)


def test_rule3_ldh_labels_are_usable() -> None:
    assert usable_cn("mail-1.partner.com")
    assert usable_cn("a" * 63)
    assert usable_cn("a" * 60 + ".com")
    assert usable_cn("localhost")


# Rule 4: wildcard shape and public suffixes


@pytest.mark.parametrize(
    "cn",
    [
        "*",
        "*.",
        "*.com",
        "**.partner.com",
        "*.*.partner.com",
        "f*.partner.com",
        "*x.partner.com",
        "mail.*.partner.com",
        "a.*.com",
        "mail.partner.*",
    ],
)
def test_rule4_malformed_wildcards_are_unusable(cn: str) -> None:
    assert not usable_cn(cn)
    assert not match_certificate_name("mail.partner.com", cn)
    assert not match_certificate_name("*.partner.com", cn)


@pytest.mark.parametrize("cn", ["*.co.uk", "*.s3.amazonaws.com", "*.github.io", "*.CO.UK"])
def test_rule4_wildcard_over_public_suffix_is_unusable(cn: str) -> None:
    assert not usable_cn(cn)


def test_rule4_wildcard_over_public_suffix_matches_nothing() -> None:
    assert not match_certificate_name("partner.co.uk", "*.co.uk")
    assert not match_certificate_name("bucket.s3.amazonaws.com", "*.s3.amazonaws.com")


def test_rule4_wildcard_just_under_a_public_suffix_is_usable() -> None:
    assert usable_cn("*.partner.co.uk")
    assert match_certificate_name("mail.partner.co.uk", "*.partner.co.uk")
    assert usable_cn("*.bucket.s3.amazonaws.com")


# Rule 5: a wildcard never stands for an xn-- label


def test_rule5_wildcard_setting_never_matches_an_a_label() -> None:
    assert not match_certificate_name("*.partner.com", "xn--bcher-kva.partner.com")
    assert not match_certificate_name("*.partner.com", "XN--bcher-kva.partner.com")
    assert not match_certificate_name("*.partner.com", "Xn--bcher-kva.partner.com")


def test_rule5_wildcard_cn_never_covers_an_a_label() -> None:
    assert not match_certificate_name("bücher.partner.com", "*.partner.com")
    assert not match_certificate_name("xn--bcher-kva.partner.com", "*.partner.com")


def test_rule5_a_labels_in_the_suffix_are_fine() -> None:
    assert match_certificate_name("*.xn--bcher-kva.example", "mail.xn--bcher-kva.example")
    assert match_certificate_name("mail.xn--bcher-kva.example", "mail.xn--bcher-kva.example")


# Rule 6: IP-like names are never names


@pytest.mark.parametrize(
    "cn",
    [
        "198.51.100.7",
        "10.0.0.1",
        "2001:db8::1",
        "::1",
        "[198.51.100.7]",
        "mail.123",
        "*.100.7",
        "1.2.3.0x4",
    ],
)
def test_rule6_ip_like_cn_is_unusable(cn: str) -> None:
    assert not usable_cn(cn)


@pytest.mark.parametrize("expected", ["198.51.100.7", "2001:db8::1", "mail.123", "*.51.100.7"])
def test_rule6_ip_like_setting_is_invalid_and_matches_nothing(expected: str) -> None:
    with pytest.raises(InvalidValue):
        CertificateName.parse(expected)
    assert not match_certificate_name(expected, expected)


def test_rule6_digits_are_fine_in_other_labels() -> None:
    assert usable_cn("123.partner.com")
    assert match_certificate_name("*.partner.com", "123.partner.com")


# Several CN attributes; the API never raises


def test_any_usable_matching_cn_is_a_match() -> None:
    name = CertificateName.parse("*.fabrikam.com")
    assert name.matches_any(["bad\x00cn", "other.example", "server1.fabrikam.com"])
    assert not name.matches_any(["fabrikam.com", "a.b.fabrikam.com"])
    assert not name.matches_any([])


def test_an_invalid_setting_matches_nothing() -> None:
    assert not match_certificate_name("*.com", "mail.com")
    assert not match_certificate_name("*.co.uk", "*.co.uk")
    assert not match_certificate_name("", "")


@pytest.mark.parametrize(
    ("expected", "cn"),
    [(None, "mail.partner.com"), ("mail.partner.com", None), (b"x.com", b"x.com"), (1, 2.0)],
)
def test_match_certificate_name_never_raises_on_wrong_types(expected: object, cn: object) -> None:
    assert not match_certificate_name(expected, cn)  # type: ignore[arg-type]


@given(st.text(max_size=100), st.text(max_size=100))
def test_match_certificate_name_never_raises(expected: str, cn: str) -> None:
    """Arbitrary text on both sides: a boolean, never an exception."""
    assert isinstance(match_certificate_name(expected, cn), bool)


@given(
    st.text(alphabet="*.-_aAzZ09xn\x00 é", max_size=30),
    st.text(alphabet="*.-_aAzZ09xn\x00 é", max_size=30),
)
def test_match_certificate_name_never_raises_on_name_shaped_text(expected: str, cn: str) -> None:
    assert isinstance(match_certificate_name(expected, cn), bool)


@given(domain_texts)
def test_a_valid_plain_setting_matches_its_own_canonical_form(text: str) -> None:
    try:
        name = CertificateName.parse(text)
    except InvalidValue:
        event("invalid input")
        return
    event("valid input: assertions reached")
    assert name == CertificateName.parse(str(name))
    if len(name.text) <= 64:
        assert name.matches_cn(name.text.upper())


@given(st.text(max_size=100))
def test_a_usable_cn_is_printable_ascii_of_at_most_64_characters(cn: str) -> None:
    if usable_cn(cn):
        assert len(cn) <= 64
        assert all(0x21 <= ord(char) <= 0x7E for char in cn)
