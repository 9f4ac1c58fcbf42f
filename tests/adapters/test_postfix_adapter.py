"""The Postfix policy adapter without sockets: framing, attribute -> fact mapping, and
the request -> decision -> ``action=`` reply mapping (tlsconnector.adapters.postfix).

Postfix decides nothing about connectors itself: it verifies the client certificate
against smtpd_tls_CAfile and tells the policy service the first subject CN
(``ccert_subject``, xtext) only when that worked, the fingerprint always.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tlsconnector.adapters.postfix.protocol as postfix
from tlsconnector import (
    FactsError,
    InboundAction,
    InboundDecision,
    MtaVerifiedCertificate,
    Policy,
    Reason,
    ReasonCode,
    SmtpReply,
    TLSFacts,
)
from tlsconnector.adapters.postfix.protocol import (
    PolicyAnswer,
    ProtocolError,
    RequestParser,
    decide_request,
    decision_record,
    decode_xtext,
    facts_from_postfix,
    format_reply,
    reply_for,
)

from certmint import NOW

FINGERPRINT = ":".join(["3A"] * 32)

FABRIKAM: dict[str, Any] = {
    "name": "Fabrikam Bank inbound",
    "sender_domains": ["fabrikam.com"],
    "require_tls": True,
    "tls_sender_certificate_name": "*.fabrikam.com",
    "restrict_domains_to_certificate": True,
}

# Postfix verified the chain; tlsconnector takes its word (section 7), so no trust store.
POLICY = Policy.from_mapping({"inbound": [FABRIKAM]}, trust=None)


def rcpt(**overrides: str | None) -> dict[str, str]:
    """A RCPT-state request as Postfix 3.7 sends it for a partner with a good
    certificate; ``None`` removes an attribute."""
    request = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "198.51.100.7",
        "client_name": "server1.fabrikam.com",
        "client_port": "41234",
        "reverse_client_name": "server1.fabrikam.com",
        "server_address": "203.0.113.25",
        "server_port": "25",
        "helo_name": "server1.fabrikam.com",
        "sender": "payments@fabrikam.com",
        "recipient": "finance@contoso.com",
        "recipient_count": "0",
        "queue_id": "",
        "instance": "1a2b.6566b0a8.c4d2e.0",
        "size": "0",
        "encryption_protocol": "TLSv1.3",
        "encryption_cipher": "TLS_AES_256_GCM_SHA384",
        "encryption_keysize": "256",
        "ccert_subject": "server1.fabrikam.com",
        "ccert_issuer": "Fabrikam+20Partner+20CA",
        "ccert_fingerprint": FINGERPRINT,
        "ccert_pubkey_fingerprint": FINGERPRINT,
    }
    for name, value in overrides.items():
        if value is None:
            request.pop(name, None)
        else:
            request[name] = value
    return request


def wire(request: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}\n".encode() for k, v in request.items()) + b"\n"


def answer(request: dict[str, str], policy: Policy = POLICY) -> PolicyAnswer:
    return decide_request(policy, request, at=NOW)


# --- framing ---------------------------------------------------------------------


def test_one_request_is_name_value_lines_ended_by_an_empty_line() -> None:
    parser = RequestParser()
    assert [rcpt()] == parser.feed(wire(rcpt()))
    assert not parser.pending


def test_several_requests_in_one_read_come_out_in_order() -> None:
    first, second = rcpt(recipient="a@contoso.com"), rcpt(recipient="b@contoso.com")
    assert [first, second] == RequestParser().feed(wire(first) + wire(second))


def test_a_request_split_into_single_bytes_is_reassembled() -> None:
    parser = RequestParser()
    data = wire(rcpt())
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    assert [[]] * (len(data) - 1) + [[rcpt()]] == results


def test_a_value_may_contain_equals_signs_and_be_empty() -> None:
    data = b"request=smtpd_access_policy\nsender=\nccert_subject=a=b\n\n"
    assert [{"request": "smtpd_access_policy", "sender": "", "ccert_subject": "a=b"}] == (
        RequestParser().feed(data)
    )


def test_crlf_line_ends_are_tolerated() -> None:
    data = b"request=smtpd_access_policy\r\nprotocol_state=RCPT\r\n\r\n"
    assert [{"request": "smtpd_access_policy", "protocol_state": "RCPT"}] == (
        RequestParser().feed(data)
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"request=smtpd_access_policy\nno equals sign\n\n", "has no '='"),
        (b"request=smtpd_access_policy\n=value\n\n", "bad attribute name"),
        (b"request=smtpd_access_policy\nbad name=x\n\n", "bad attribute name"),
        (b"request=smtpd_access_policy\nn\xc3\xa4me=x\n\n", "bad attribute name"),
        (b"request=smtpd_access_policy\nsender=a\nsender=b\n\n", "given twice"),
        (b"\n", "empty request"),
        (b"protocol_state=RCPT\n\n", "request=(absent)"),
        (b"request=junk\n\n", "only request=smtpd_access_policy"),
    ],
)
def test_a_malformed_request_is_a_protocol_error(data: bytes, message: str) -> None:
    parser = RequestParser()
    assert [] == parser.feed(data)
    assert isinstance(parser.error, ProtocolError)
    assert message in str(parser.error)


def test_a_line_over_the_line_bound_is_refused_before_its_end_arrives() -> None:
    parser = RequestParser(max_line_bytes=100)
    assert [] == parser.feed(b"request=smtpd_access_policy\nsender=" + b"x" * 200)
    assert "longer than 100 bytes" in str(parser.error)


def test_a_line_exactly_at_the_bound_is_accepted() -> None:
    line = b"sender=" + b"x" * (100 - len(b"sender=") - 1) + b"\n"
    assert 100 == len(line)
    requests = RequestParser(max_line_bytes=100).feed(
        b"request=smtpd_access_policy\n" + line + b"\n"
    )
    assert [99 - len("sender=")] == [len(r["sender"]) for r in requests]


def test_a_request_over_the_size_bound_is_refused() -> None:
    parser = RequestParser(max_request_bytes=1000)
    lines = b"".join(b"a%d=%s\n" % (i, b"x" * 40) for i in range(30))
    assert [] == parser.feed(b"request=smtpd_access_policy\n" + lines)
    assert "larger than 1000 bytes" in str(parser.error)


def test_the_default_bounds_are_64_kib_1000_attributes_and_8_kib_lines() -> None:
    assert (65536, 1000, 8192) == (
        postfix.MAX_REQUEST_BYTES,
        postfix.MAX_ATTRIBUTES,
        postfix.MAX_LINE_BYTES,
    )
    parser = RequestParser()
    lines = b"".join(b"a%d=1\n" % i for i in range(1001))
    assert [] == parser.feed(b"request=smtpd_access_policy\n" + lines + b"\n")
    assert "more than 1000 attributes" in str(parser.error)


def test_requests_before_an_error_are_returned_and_nothing_after_it() -> None:
    parser = RequestParser()
    assert [rcpt()] == parser.feed(wire(rcpt()) + b"garbage\n\n" + wire(rcpt()))
    assert parser.error is not None
    assert [] == parser.feed(wire(rcpt()))


def test_pending_tells_a_half_received_request() -> None:
    parser = RequestParser()
    parser.feed(b"request=smtpd_access_policy\nprotocol_st")
    assert parser.pending


def test_a_value_that_is_not_utf8_still_frames_and_is_refused_when_used() -> None:
    """Framing is bytes; a used attribute that is not UTF-8 is malformed facts: 451."""
    data = wire(rcpt(sender="PLACEHOLDER")).replace(b"PLACEHOLDER", b"p\xffy@fabrikam.com")
    (request,) = RequestParser().feed(data)
    result = answer(request)
    assert "451 4.3.0 Temporary failure, try again later" == result.reply
    assert "sender" in result.decision.reasons[0].detail  # type: ignore[union-attr]


def test_a_value_that_is_not_utf8_in_an_unused_attribute_is_ignored() -> None:
    data = wire(rcpt(helo_name="PLACEHOLDER")).replace(b"PLACEHOLDER", b"h\xffx")
    (request,) = RequestParser().feed(data)
    assert "DUNNO" == answer(request).reply


# --- xtext -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("server1.fabrikam.com", "server1.fabrikam.com"),
        ("Fabrikam+20Bank", "Fabrikam Bank"),
        ("a+2Bb+3Dc", "a+b=c"),
        ("caf+C3+A9.example", "caf\u00e9.example"),
        ("caf+c3+a9.example", "caf\u00e9.example"),
        ("nul+00byte", "nul\x00byte"),
        ("", ""),
    ],
)
def test_xtext_plus_hh_is_one_byte_of_utf8(encoded: str, decoded: str) -> None:
    assert decoded == decode_xtext(encoded, field="ccert_subject")


@pytest.mark.parametrize("encoded", ["bad+ZZ", "cut+4", "cut+", "+G0x", "+C3"])
def test_bad_xtext_is_malformed_facts_naming_the_attribute(encoded: str) -> None:
    with pytest.raises(FactsError) as caught:
        decode_xtext(encoded, field="ccert_subject")
    assert "ccert_subject" == caught.value.field


# --- attributes -> facts -------------------------------------------------------------


def test_the_attributes_map_to_inbound_facts() -> None:
    session = facts_from_postfix(rcpt(), at=NOW)
    assert ipaddress.ip_address("198.51.100.7") == session.peer_ip
    assert "payments@fabrikam.com" == session.mail_from
    assert "fabrikam.com" == session.sender_domain
    assert ("finance@contoso.com",) == session.rcpt_to
    assert NOW == session.at
    expected = MtaVerifiedCertificate(("server1.fabrikam.com",), True, FINGERPRINT)
    assert TLSFacts(expected) == session.tls


def test_the_subject_cn_is_xtext_decoded() -> None:
    session = facts_from_postfix(rcpt(ccert_subject="Fabrikam+20Bank+20Mail"), at=NOW)
    assert session.tls is not None
    assert isinstance(session.tls.certificate, MtaVerifiedCertificate)
    assert ("Fabrikam Bank Mail",) == session.tls.certificate.cns


def test_empty_subject_beside_a_fingerprint_is_an_untrusted_certificate() -> None:
    session = facts_from_postfix(rcpt(ccert_subject="", ccert_issuer=""), at=NOW)
    assert TLSFacts(MtaVerifiedCertificate((), False, FINGERPRINT)) == session.tls


def test_tls_without_subject_or_fingerprint_is_no_client_certificate() -> None:
    session = facts_from_postfix(rcpt(ccert_subject="", ccert_fingerprint=""), at=NOW)
    assert TLSFacts(None) == session.tls


@pytest.mark.parametrize("protocol", ["", None])
def test_empty_or_absent_encryption_protocol_is_no_tls(protocol: str | None) -> None:
    request = rcpt(encryption_protocol=protocol, ccert_subject="", ccert_fingerprint="")
    assert None is facts_from_postfix(request, at=NOW).tls


def test_certificate_facts_without_tls_are_malformed() -> None:
    with pytest.raises(FactsError) as caught:
        facts_from_postfix(rcpt(encryption_protocol=""), at=NOW)
    assert "ccert_subject" == caught.value.field


def test_a_verified_subject_without_fingerprint_keeps_no_fingerprint() -> None:
    session = facts_from_postfix(rcpt(ccert_fingerprint=""), at=NOW)
    assert TLSFacts(MtaVerifiedCertificate(("server1.fabrikam.com",), True, None)) == session.tls


def test_the_empty_sender_is_the_null_sender() -> None:
    session = facts_from_postfix(rcpt(sender=""), at=NOW)
    assert ("", None) == (session.mail_from, session.sender_domain)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("2001:db8::25", "2001:db8::25"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped is the IPv4 address
    ],
)
def test_ipv6_client_addresses(client: str, expected: str) -> None:
    session = facts_from_postfix(rcpt(client_address=client), at=NOW)
    assert ipaddress.ip_address(expected) == session.peer_ip


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"client_address": "unknown"}, "client_address"),
        ({"client_address": ""}, "client_address"),
        ({"client_address": None}, "client_address"),
        ({"client_address": "fe80::1%eth0"}, "client_address"),
        ({"client_address": "198.51.100.300"}, "client_address"),
        ({"sender": "no-domain"}, "sender"),
        ({"sender": None}, "sender"),
        ({"recipient": ""}, "recipient"),
        ({"recipient": None}, "recipient"),
        ({"ccert_subject": "bad+ZZ"}, "ccert_subject"),
        ({"ccert_fingerprint": "not a fingerprint"}, "ccert_fingerprint"),
    ],
)
def test_malformed_attributes_name_the_postfix_attribute(
    overrides: dict[str, str | None], field: str
) -> None:
    with pytest.raises(FactsError) as caught:
        facts_from_postfix(rcpt(**overrides), at=NOW)
    assert field == caught.value.field


# --- request -> decision -> reply ----------------------------------------------------


def test_partner_certificate_verified_by_postfix_gets_dunno_never_ok() -> None:
    result = answer(rcpt())
    assert "DUNNO" == result.reply
    assert result.decision is not None
    assert InboundAction.ACCEPT == result.decision.action
    assert "mta" == result.decision.chain_verified_by


def test_wrong_cn_from_the_trusted_ca_gets_550() -> None:
    result = answer(rcpt(ccert_subject="mail.contoso-evil.com"))
    assert (
        '550 5.7.1 Connector "Fabrikam Bank inbound": client certificate name does not match'
        == result.reply
    )
    assert result.decision is not None
    assert ("certificate-name-mismatch",) == result.decision.codes


def test_untrusted_certificate_gets_550_not_trusted() -> None:
    result = answer(rcpt(ccert_subject=""))
    assert '550 5.7.1 Connector "Fabrikam Bank inbound": client certificate not trusted' == (
        result.reply
    )
    assert result.decision is not None
    assert "certificate-not-trusted" == result.decision.codes[0]


def test_tls_without_client_certificate_gets_550_certificate_required() -> None:
    result = answer(rcpt(ccert_subject="", ccert_fingerprint=""))
    assert (
        '550 5.7.1 Connector "Fabrikam Bank inbound": a client certificate is required'
        == result.reply
    )


def test_no_tls_gets_530() -> None:
    result = answer(rcpt(encryption_protocol="", ccert_subject="", ccert_fingerprint=""))
    assert "530 5.7.0 Must issue a STARTTLS command first" == result.reply


def test_a_sender_no_connector_governs_gets_dunno() -> None:
    result = answer(rcpt(sender="news@example.org", ccert_subject="", ccert_fingerprint=""))
    assert "DUNNO" == result.reply
    assert result.decision is not None
    assert ("no-connector",) == result.decision.codes


def test_the_null_sender_is_governed_only_by_a_star_connector() -> None:
    request = rcpt(sender="", encryption_protocol="", ccert_subject="", ccert_fingerprint="")
    assert "DUNNO" == answer(request).reply
    everyone = Policy.from_mapping(
        {"inbound": [{"name": "All senders", "sender_domains": ["*"], "require_tls": True}]},
        trust=None,
    )
    assert "530 5.7.0 Must issue a STARTTLS command first" == answer(request, everyone).reply


@pytest.mark.parametrize(
    "state", ["CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"]
)
def test_states_other_than_rcpt_get_dunno_and_no_decision(state: str) -> None:
    # Even a session that would be refused at RCPT: tlsconnector decides only there.
    request = rcpt(
        protocol_state=state, encryption_protocol="", ccert_subject="", ccert_fingerprint=""
    )
    assert PolicyAnswer("DUNNO", None) == answer(request)


def test_missing_protocol_state_is_a_temporary_failure() -> None:
    result = answer(rcpt(protocol_state=None))
    assert "451 4.3.0 Temporary failure, try again later" == result.reply
    assert result.decision is not None
    assert InboundAction.TEMPFAIL == result.decision.action
    assert ("malformed-facts",) == result.decision.codes


@pytest.mark.parametrize(
    "overrides",
    [
        {"protocol_state": None},
        {"protocol_state": "BDAT"},
        {"client_address": None},
        {"sender": None},
        {"recipient": None},
    ],
)
def test_a_request_postfix_never_sends_breaks_the_protocol(
    overrides: dict[str, str | None],
) -> None:
    """Postfix always sends protocol_state (one of its states) and, at RCPT, the
    client address, sender and recipient (empty when unknown). Without them the peer
    is not Postfix: 451, and the service closes the connection after the answer."""
    result = answer(rcpt(**overrides))
    assert ("451 4.3.0 Temporary failure, try again later", True) == (
        result.reply,
        result.breaks_protocol,
    )
    assert result.decision is not None
    assert ("malformed-facts",) == result.decision.codes


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"protocol_state": "MAIL"},
        {"client_address": "unknown"},
        {"sender": "payments@fabrikam..com"},
        {"recipient": ""},
        {"ccert_subject": "server1+ZZ.fabrikam.com"},
    ],
)
def test_what_postfix_does_send_keeps_the_connection(overrides: dict[str, str]) -> None:
    assert not answer(rcpt(**overrides)).breaks_protocol


def test_an_untrusted_certificate_whose_cn_postfix_withheld_is_only_not_trusted() -> None:
    """Postfix sends an empty ccert_subject (and the fingerprint) when the client
    certificate did not verify: the only reason is certificate-not-trusted, not also
    a name mismatch against a CN that was never sent."""
    result = decide_request(POLICY, rcpt(ccert_subject=""), at=NOW)
    assert result.decision is not None
    assert ("certificate-not-trusted",) == result.decision.codes


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_address": "unknown"},
        {"sender": "payments@fabrikam..com"},
        {"ccert_subject": "server1+ZZ.fabrikam.com"},
    ],
)
def test_malformed_facts_are_a_temporary_failure_never_an_accept(
    overrides: dict[str, str],
) -> None:
    result = answer(rcpt(**overrides))
    assert "451 4.3.0 Temporary failure, try again later" == result.reply
    assert result.decision is not None
    assert ("malformed-facts",) == result.decision.codes


def test_an_error_while_deciding_is_a_temporary_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> InboundDecision:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(postfix, "evaluate_inbound", broken)
    result = answer(rcpt())
    assert "451 4.3.0 Temporary failure, try again later" == result.reply
    assert result.decision is not None
    assert "RuntimeError: disk on fire" in result.decision.reasons[0].detail


def test_attacker_bytes_never_reach_the_reply() -> None:
    """A hostile CN shows in the logged detail (escaped) but never in the reply."""
    result = answer(rcpt(ccert_subject="evil+0D+0Aaction=OK+00"))
    assert result.reply.startswith("550 5.7.1 ")
    assert all(" " <= c <= "~" for c in result.reply)
    assert "evil" not in result.reply


def test_a_reply_override_with_hostile_text_is_escaped_to_one_printable_line() -> None:
    replies = {
        ReasonCode.CERTIFICATE_NAME_MISMATCH: SmtpReply(550, "5.7.1", "no\r\naction=OK \u00e9")
    }
    result = decide_request(POLICY, rcpt(ccert_subject="x.example"), at=NOW, replies=replies)
    assert "550 5.7.1 no\\x0d\\x0aaction=OK \\xe9" == result.reply


def test_reply_for_refuses_replies_of_the_wrong_class() -> None:
    reasons = (Reason(ReasonCode.INTERNAL_ERROR, "x"),)
    tempfail_as_5xx = InboundDecision(
        InboundAction.TEMPFAIL, None, reasons, SmtpReply(550, "5.7.1", "x")
    )
    reject_without_reply = InboundDecision(InboundAction.REJECT, None, reasons, None)
    reject_2xx = InboundDecision(InboundAction.REJECT, None, reasons, SmtpReply(250, "2.0.0", "ok"))
    mismatched = InboundDecision(InboundAction.REJECT, None, reasons, SmtpReply(550, "4.7.1", "x"))
    for decision in (tempfail_as_5xx, reject_without_reply, reject_2xx, mismatched):
        assert "451 4.3.0 Temporary failure, try again later" == reply_for(decision)


def test_format_reply_is_action_then_an_empty_line() -> None:
    assert b"action=550 5.7.1 Go away\n\n" == format_reply("550 5.7.1 Go away")
    assert b"action=DUNNO\\x0a\n\n" == format_reply("DUNNO\n")


def test_decision_record_holds_what_an_operator_searches_for() -> None:
    request = rcpt(ccert_subject="mail.contoso-evil.com", queue_id="4Xyz12")
    record = decision_record(request, answer(request))
    assert {
        "client": "198.51.100.7",
        "sender": "payments@fabrikam.com",
        "recipient": "finance@contoso.com",
        "queue_id": "4Xyz12",
        "action": "reject",
        "reply": '550 5.7.1 Connector "Fabrikam Bank inbound": client certificate name does not match',
        "connector": "Fabrikam Bank inbound",
        "codes": ["certificate-name-mismatch"],
        "details": ["certificate CN (mail.contoso-evil.com) does not match '*.fabrikam.com'"],
        "ccert_subject": "mail.contoso-evil.com",
        "ccert_fingerprint": FINGERPRINT,
    } == record


class _LineByLine(postfix.RequestParser):
    """The parser without its whole-request fast path: the reference behaviour."""

    def _whole(self, block: bytes) -> None:
        return None


_PIECES = [
    b"request=smtpd_access_policy\n",
    b"protocol_state=RCPT\n",
    b"sender=a@fabrikam.com\n",
    b"sender=b@fabrikam.com\n",  # a repeated attribute
    b"recipient=b@contoso.com\n",
    b"bad name=x\n",
    b"no equals sign\n",
    b"ccert_subject=server1+2Efabrikam.com\r\n",
    b"helo_name=\xff\xfe\n",
    b"x=" + b"y" * 200 + b"\n",
    b"\n",
    b"\r\n",
]


@given(
    st.lists(st.sampled_from(_PIECES), max_size=30),
    st.integers(1, 8),
    st.integers(150, 400),
)
def test_the_fast_path_frames_exactly_like_the_line_by_line_parser(
    pieces: list[bytes], attributes: int, line_bytes: int
) -> None:
    """Whatever arrives, the whole-request fast path returns the same requests and the
    same error as parsing line by line, bounds included."""
    stream = b"".join(pieces)
    limits = {"max_attributes": attributes, "max_line_bytes": line_bytes}
    fast, slow = postfix.RequestParser(**limits), _LineByLine(**limits)
    cut = len(stream) // 2
    fast_out = fast.feed(stream[:cut]) + fast.feed(stream[cut:])
    slow_out = slow.feed(stream[:cut]) + slow.feed(stream[cut:])
    assert slow_out == fast_out
    assert str(slow.error) == str(fast.error)
    assert slow.pending == fast.pending


def test_an_overlong_ccert_subject_is_malformed_facts_not_an_exception() -> None:
    result = answer(rcpt(ccert_subject="a" * 1025))
    assert "451 4.3.0 Temporary failure, try again later" == result.reply
    assert result.decision is not None
    assert ("malformed-facts",) == result.decision.codes


@pytest.mark.parametrize("state", ["rcpt", "BDAT", "SOMETHING-NEW", ""])
def test_an_unknown_protocol_state_is_not_let_through(state: str) -> None:
    """Only the states Postfix sends get DUNNO; anything else is a temporary failure."""
    result = answer(rcpt(protocol_state=state))
    assert "451 4.3.0 Temporary failure, try again later" == result.reply


@pytest.mark.parametrize("state", ["CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE"])
def test_known_states_other_than_rcpt_get_dunno(state: str) -> None:
    assert "DUNNO" == answer(rcpt(protocol_state=state)).reply


# --- what an answer depends on (services may reuse answers by decision_key) ----------

_OTHER_ATTRIBUTES = sorted(set(rcpt()) - set(postfix.DECISION_ATTRIBUTES) - {"request"})
_VALUES = st.sampled_from(
    ["", "unknown", "198.51.100.9", "x@fabrikam.com", "TLSv1.2", FINGERPRINT, "+ZZ", "\udcff"]
)


@given(
    base=st.fixed_dictionaries(
        {
            "protocol_state": st.sampled_from(["RCPT", "MAIL", "RCPT", "BOGUS"]),
            "sender": st.sampled_from(["payments@fabrikam.com", "", "x@other.example"]),
            "encryption_protocol": st.sampled_from(["TLSv1.3", ""]),
            "ccert_subject": st.sampled_from(["server1.fabrikam.com", "mail.evil.example", ""]),
        }
    ),
    changes=st.dictionaries(st.sampled_from(_OTHER_ATTRIBUTES), _VALUES, max_size=6),
    hours=st.integers(-100_000, 100_000),
)
def test_no_attribute_outside_the_decision_key_and_no_time_changes_an_answer(
    base: dict[str, str], changes: dict[str, str], hours: int
) -> None:
    """The policy service reuses an answer for an equal decision_key: that is only
    right if every other attribute, and the clock, leave the answer unchanged."""
    request = rcpt(**base)
    other = {**request, **changes}
    assert postfix.decision_key(request) == postfix.decision_key(other)
    later = NOW + dt.timedelta(hours=hours)
    assert answer(request) == decide_request(POLICY, other, at=later)


def test_the_decision_key_tells_every_attribute_it_reads_apart_from_its_absence() -> None:
    request = rcpt()
    keys = {postfix.decision_key(request)}
    for name in postfix.DECISION_ATTRIBUTES:
        keys.add(postfix.decision_key({**request, name: request[name] + "x"}))
        keys.add(postfix.decision_key(rcpt(**{name: None})))
    assert 1 + 2 * len(postfix.DECISION_ATTRIBUTES) == len(keys)
