"""EOP import (`tlsconnector import-eop`): connectors exported from Exchange Online
Protection with `Get-InboundConnector | ConvertTo-Json` and
`Get-OutboundConnector | ConvertTo-Json` become a policy file that `check` accepts.

Also the TOML writer the import uses, and the Policy -> mapping -> TOML round trip.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import InvalidValue, Policy, PolicyError, load_policy
from tlsconnector._errors import MISSING
from tlsconnector._reading import _INBOUND_KEYS, _OUTBOUND_KEYS
from tlsconnector.cli import main
from tlsconnector.eop.importing import (
    METADATA_FIELDS,
    EOPWarning,
    convert_export,
    decode_export,
    render_policy,
)
from tlsconnector.policy_file.writing import (
    dumps,
    dumps_policy,
    format_key,
    format_string,
    policy_to_mapping,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "fabrikam" / "policy.toml"

# ---------------------------------------------------------------------------------------
# Fixtures: what EOP really writes. Contoso's connectors for Fabrikam Bank, as
# `Get-InboundConnector "Fabrikam Bank inbound" | ConvertTo-Json -Depth 5` prints them:
# identity metadata, many null or empty settings, address spaces for SenderDomains.

COMMENT = "Forced TLS with Fabrikam Bank (regulator requirement)"

EOP_INBOUND: dict[str, Any] = {
    "Enabled": True,
    "ConnectorType": "Partner",
    "ConnectorSource": "Default",
    "Comment": COMMENT,
    "SenderIPAddresses": [],
    "SenderDomains": ["smtp:fabrikam.com;1"],
    "AssociatedAcceptedDomains": [],
    "RequireTls": True,
    "RestrictDomainsToIPAddresses": False,
    "RestrictDomainsToCertificate": True,
    "CloudServicesMailEnabled": False,
    "TreatMessagesAsInternal": False,
    "TlsSenderCertificateName": "*.fabrikam.com",
    "EFTestMode": False,
    "ScanAndDropRecipients": [],
    "EFSkipLastIP": False,
    "EFSkipIPs": [],
    "EFSkipMailGateway": [],
    "EFUsers": [],
    "TrustedOrganizations": [],
    "AdminDisplayName": "",
    "ExchangeVersion": "0.1 (8.0.535.0)",
    "Name": "Fabrikam Bank inbound",
    "DistinguishedName": "CN=Fabrikam Bank inbound,CN=Transport Settings,CN=contoso.onmicrosoft.com",
    "Identity": "Fabrikam Bank inbound",
    "ObjectCategory": "EURPR01A001.prod.outlook.com/Configuration/Schema/ms-Exch-SMTP-Inbound-Connector",
    "ObjectClass": ["top", "msExchSMTPInboundConnector"],
    "WhenChanged": "2026-03-02T09:14:07+01:00",
    "WhenCreated": "2026-03-01T16:40:55+01:00",
    "WhenChangedUTC": "2026-03-02T08:14:07Z",
    "WhenCreatedUTC": "2026-03-01T15:40:55Z",
    "ExchangeObjectId": "6f0c7a0e-2b1d-4a52-9a55-1f7f0d3c9b21",
    "OrganizationId": "EURPR01A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com - EURPR01A001.prod.outlook.com/ConfigurationUnits/...",
    "Id": "Fabrikam Bank inbound",
    "Guid": "6f0c7a0e-2b1d-4a52-9a55-1f7f0d3c9b21",
    "OriginatingServer": "AM0PR01A01DC001.EURPR01A001.prod.outlook.com",
    "IsValid": True,
    "ObjectState": "Unchanged",
}

EOP_OUTBOUND: dict[str, Any] = {
    "Enabled": True,
    "UseMXRecord": True,
    "Comment": COMMENT,
    "ConnectorType": "Partner",
    "ConnectorSource": "Default",
    "RecipientDomains": ["fabrikam.com"],
    "SmartHosts": [],
    "TlsDomain": "*.fabrikam.com",
    "TlsSettings": "DomainValidation",
    "IsTransportRuleScoped": False,
    "RouteAllMessagesViaOnPremises": False,
    "CloudServicesMailEnabled": False,
    "AllAcceptedDomains": False,
    "SenderRewritingEnabled": False,
    "TestMode": False,
    "LinkForModifiedConnector": "00000000-0000-0000-0000-000000000000",
    "ValidationRecipients": [],
    "IsValidated": False,
    "LastValidationTimestamp": None,
    "AdminDisplayName": "",
    "ExchangeVersion": "0.1 (8.0.535.0)",
    "Name": "Fabrikam Bank outbound",
    "DistinguishedName": "CN=Fabrikam Bank outbound,CN=Transport Settings,CN=contoso.onmicrosoft.com",
    "Identity": "Fabrikam Bank outbound",
    "Guid": "0b6e5a8e-5bd1-4c2e-8f0b-7f6f9a1b2c3d",
    "Id": "Fabrikam Bank outbound",
    "WhenChanged": "2026-03-02T09:15:00+01:00",
    "WhenCreated": "2026-03-01T16:45:00+01:00",
    "IsValid": True,
    "ObjectState": "Unchanged",
}

EXPECTED_INBOUND = {
    "name": "Fabrikam Bank inbound",
    "enabled": True,
    "type": "partner",
    "comment": COMMENT,
    "sender_domains": ["fabrikam.com"],
    "sender_ip_addresses": [],
    "require_tls": True,
    "tls_sender_certificate_name": "*.fabrikam.com",
    "restrict_domains_to_certificate": True,
    "restrict_domains_to_ip_addresses": False,
}

EXPECTED_OUTBOUND = {
    "name": "Fabrikam Bank outbound",
    "enabled": True,
    "type": "partner",
    "comment": COMMENT,
    "recipient_domains": ["fabrikam.com"],
    "use_mx_record": True,
    "smart_hosts": [],
    "tls_settings": "domain_validation",
    "tls_domain": "*.fabrikam.com",
    "is_transport_rule_scoped": False,
    "test_mode": False,
}


def inbound(**changes: Any) -> dict[str, Any]:
    """The Fabrikam inbound record with some fields changed (None value: the JSON null)."""
    record = copy.deepcopy(EOP_INBOUND)
    record.update(changes)
    return record


def outbound(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(EOP_OUTBOUND)
    record.update(changes)
    return record


def without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


def one_inbound(record: object) -> tuple[dict[str, Any], list[EOPWarning]]:
    mapping, warnings = convert_export(inbound=[record])
    (table,) = mapping["inbound"]
    return table, warnings


def one_outbound(record: object) -> tuple[dict[str, Any], list[EOPWarning]]:
    mapping, warnings = convert_export(outbound=[record])
    (table,) = mapping["outbound"]
    return table, warnings


def problems_of(**records: list[object]) -> list[tuple[str | None, str, object]]:
    """(connector, field, value) of every problem the conversion reports."""
    with pytest.raises(PolicyError) as info:
        convert_export(**records)  # type: ignore[arg-type]
    return [(p.connector, p.field, p.value) for p in info.value.problems]


def codes(warnings: list[EOPWarning]) -> list[str]:
    return [w.code for w in warnings]


# ---------------------------------------------------------------------------------------
# The Contoso / Fabrikam scenario


def test_fabrikam_export_converts_to_every_key_explicitly() -> None:
    """The realistic export becomes exactly the documented policy tables, every key set."""
    mapping, warnings = convert_export(inbound=[EOP_INBOUND], outbound=[EOP_OUTBOUND])
    assert {"inbound": [EXPECTED_INBOUND], "outbound": [EXPECTED_OUTBOUND]} == mapping
    assert list(_INBOUND_KEYS) == list(mapping["inbound"][0])
    assert list(_OUTBOUND_KEYS) == list(mapping["outbound"][0])
    assert [] == warnings  # metadata is silent, unused settings hold defaults


def test_fabrikam_export_imports_to_the_example_policy() -> None:
    """Importing Contoso's EOP connectors gives the policy shipped in examples/fabrikam
    (apart from [trust], which EOP does not export)."""
    mapping, _ = convert_export(inbound=[EOP_INBOUND], outbound=[EOP_OUTBOUND])
    example = attrs.evolve(load_policy(EXAMPLE), trust=None)
    assert example == Policy.from_mapping(mapping, trust=None)


# ---------------------------------------------------------------------------------------
# Reading the export: encodings, single object vs array


def test_single_object_and_array_give_the_same_records() -> None:
    single = json.dumps(EOP_INBOUND, indent=4).encode()
    array = json.dumps([EOP_INBOUND, EOP_INBOUND], indent=4).encode()
    assert [EOP_INBOUND] == decode_export(single, source="in.json")
    assert [EOP_INBOUND, EOP_INBOUND] == decode_export(array, source="in.json")


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b"\xef\xbb\xbf"),  # Out-File -Encoding utf8 in PowerShell 5
        ("utf-16-le", b"\xff\xfe"),  # '>' and Out-File in PowerShell 5 ("Unicode")
        ("utf-16-be", b"\xfe\xff"),  # -Encoding BigEndianUnicode
        ("utf-32-le", b"\xff\xfe\x00\x00"),  # -Encoding UTF32
        ("utf-8", b""),  # PowerShell 7
        ("utf-16-le", b""),  # UTF-16 without a BOM, told apart by its NUL bytes
    ],
)
def test_powershell_encodings_are_read(encoding: str, bom: bytes) -> None:
    text = json.dumps(inbound(Comment="Zahlungsverkehr \u2013 Bank"), ensure_ascii=False, indent=2)
    data = bom + text.replace("\n", "\r\n").encode(encoding)
    (record,) = decode_export(data, source="in.json")
    assert "Zahlungsverkehr \u2013 Bank" == record["Comment"]  # type: ignore[index]


def test_empty_export_has_no_connectors() -> None:
    """Get-InboundConnector found nothing: ConvertTo-Json wrote nothing (or a BOM)."""
    assert [] == decode_export(b"", source="in.json")
    assert [] == decode_export(b"\xff\xfe\r\x00\n\x00", source="in.json")


def test_powershell_5_array_wrapper_is_unwrapped() -> None:
    """PowerShell 5 sometimes writes an array as {"value": [...], "Count": n}."""
    data = json.dumps({"value": [EOP_INBOUND], "Count": 1}).encode()
    assert [EOP_INBOUND] == decode_export(data, source="in.json")
    table, _ = one_inbound(inbound(SenderDomains={"value": ["smtp:fabrikam.com;1"], "Count": 1}))
    assert ["fabrikam.com"] == table["sender_domains"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"Name": "x",', "not valid JSON"),
        (b'[{"Name": "x"}\n{"Name": "y"}]', "line 2, column 1"),
        (b"42", "must hold a JSON object or an array of objects, not a number"),
        (b'"Fabrikam"', "not a string"),
        (b'{"Name": "a", "Name": "b"}', "has the key 'Name' twice"),
        (b'{"Comment": "caf\xe9"}', "not valid UTF-8 text (byte 16)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_unreadable_exports_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidValue) as info:
        decode_export(data, source="in.json")
    assert "in.json" == info.value.value
    assert message in info.value.reason


# ---------------------------------------------------------------------------------------
# Field by field


@pytest.mark.parametrize(
    ("exported", "pattern"),
    [
        ("smtp:*;1", "*"),
        ("smtp:fabrikam.com;1", "fabrikam.com"),
        ("SMTP:*.fabrikam.com;1", "*.fabrikam.com"),
        ("smtp:fabrikam.com;100", "fabrikam.com"),
        ("smtp:fabrikam.com", "fabrikam.com"),
        ("fabrikam.com", "fabrikam.com"),
        ("*.fabrikam.com", "*.fabrikam.com"),
    ],
)
def test_sender_domains_address_spaces_become_patterns(exported: str, pattern: str) -> None:
    """SenderDomains are Exchange address spaces `smtp:<domain>;<cost>`; the cost
    has no meaning for inbound connectors and is dropped. Bare domains occur too."""
    table, _ = one_inbound(inbound(SenderDomains=[exported]))
    assert [pattern] == table["sender_domains"]


def test_names_ignore_ascii_case_only() -> None:
    """PowerShell ignores case in names; Unicode folding would make a long s (U+017F)
    match 's' and a dotted capital I (U+0130) match 'i', and must not."""
    assert [("Fabrikam Bank inbound", "inbound[0].SenderDomains[0]", "\u017fmtp:fabrikam.com;1")] == (
        problems_of(inbound=[inbound(SenderDomains=["\u017fmtp:fabrikam.com;1"])])
    )
    assert [("Fabrikam Bank outbound", "outbound[0].TlsSettings", "DOMA\u0130NVALIDATION")] == (
        problems_of(outbound=[outbound(TlsSettings="DOMA\u0130NVALIDATION")])
    )


def test_multi_valued_property_as_one_string() -> None:
    table, _ = one_inbound(inbound(SenderDomains="smtp:*;1", SenderIPAddresses="198.51.100.7"))
    assert ["*"] == table["sender_domains"]
    assert ["198.51.100.7"] == table["sender_ip_addresses"]


def test_multi_valued_null_is_empty() -> None:
    table, warnings = one_inbound(inbound(SenderIPAddresses=None))
    assert [] == table["sender_ip_addresses"]
    assert [] == warnings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("SenderDomains", {"Domain": "fabrikam.com", "Cost": 1}, "not an object; export with"),
        ("SenderDomains", ["smtp:fabrikam.com;1", 7], "must be a string, not a number"),
        ("SenderDomains", ["X400:c=us;a= ;p=Fabrikam;1"], "address space type 'X400'"),
        ("SenderDomains", ["smtp:fabrikam.com;one"], "the cost after ';' must be a number"),
        ("SenderDomains", ["smtp:;1"], "no domain after 'smtp:'"),
        ("SenderDomains", [], "must list at least one domain pattern"),
        ("SenderDomains", ["smtp:a.*.com;1"], "'*' is allowed only as the whole first label"),
        (
            "SenderDomains",
            "Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data.AddressSpace]",
            "ConvertTo-Json -Depth 5",
        ),
        ("SenderIPAddresses", ["198.51.100.1/24"], "host bits set; did you mean 198.51.100.0/24?"),
        ("SenderIPAddresses", ["198.51.100.20-198.51.100.10"], "is above range end"),
        ("TlsSenderCertificateName", "*.co.uk", "public suffix"),
        ("TlsSenderCertificateName", "*.com", "followed by at least two labels"),
        ("TlsSenderCertificateName", "", "an empty string is not 'no name'"),
        ("TlsSenderCertificateName", "<I>CN=Fabrikam CA<S>CN=mail.fabrikam.com", "issuer/subject"),
        ("TlsSenderCertificateName", ["*.fabrikam.com"], "must be a string or null, not an array"),
        ("RequireTls", None, "must be true or false, not null"),
        ("RequireTls", "True", "must be true or false, not a string"),
        ("ConnectorType", "Internal", "must be one of Partner, OnPremises (any case)"),
        ("ConnectorType", 1, "is a number: export enumerations by name"),
        ("Name", None, "is required"),
        ("Name", "", "non-empty string"),
        ("Comment", 5, "must be a string, not a number"),
    ],
)
def test_inbound_values_the_policy_would_reject(field: str, value: object, message: str) -> None:
    """The import fails naming the connector, the EOP field and the exported value."""
    record = inbound(**{field: value})
    with pytest.raises(PolicyError) as info:
        convert_export(inbound=[record])
    (problem,) = info.value.problems
    assert problem.field.startswith(f"inbound[0].{field}")
    assert message in problem.message
    if field != "Name":
        assert "Fabrikam Bank inbound" == problem.connector
    if isinstance(value, str) and value and field != "Name":
        assert value in (problem.value, [problem.value])


def test_every_problem_is_listed_at_once() -> None:
    """Section 8: all problems of all records, each with connector, field and value."""
    bad_in = inbound(
        SenderDomains=["smtp:fabrikam.com;1", "smtp:*x.com;1"],
        SenderIPAddresses=["198.51.100.1/24"],
        TlsSenderCertificateName="*.com",
        RequireTls=None,
    )
    bad_out = outbound(Name="Bad outbound", TlsSettings="Strict", SmartHosts=["10.0.0.0/8"])
    assert sorted(
        [
            ("Fabrikam Bank inbound", "inbound[0].SenderDomains[1]", "smtp:*x.com;1"),
            ("Fabrikam Bank inbound", "inbound[0].RequireTls", None),
            ("Fabrikam Bank inbound", "inbound[0].SenderIPAddresses[0]", "198.51.100.1/24"),
            ("Fabrikam Bank inbound", "inbound[0].TlsSenderCertificateName", "*.com"),
            ("Bad outbound", "outbound[0].TlsSettings", "Strict"),
            ("Bad outbound", "outbound[0].SmartHosts[0]", "10.0.0.0/8"),
        ],
        key=str,
    ) == sorted(problems_of(inbound=[bad_in], outbound=[bad_out]), key=str)


def test_combination_problems_name_every_eop_field() -> None:
    """RestrictDomainsToCertificate without a certificate name: both fields named."""
    record = inbound(TlsSenderCertificateName=None, RestrictDomainsToCertificate=True)
    assert [
        (
            "Fabrikam Bank inbound",
            "inbound[0].RestrictDomainsToCertificate, inbound[0].TlsSenderCertificateName",
            True,
        )
    ] == problems_of(inbound=[record])
    record = inbound(RestrictDomainsToIPAddresses=True, SenderIPAddresses=None)
    ((_, field, _),) = problems_of(inbound=[record])
    assert "inbound[0].RestrictDomainsToIPAddresses, inbound[0].SenderIPAddresses" == field


def test_sender_ip_addresses_keep_addresses_cidr_and_ranges() -> None:
    entries = ["198.51.100.7", "198.51.100.0/24", "198.51.100.10-198.51.100.20", "2001:db8::/32"]
    table, _ = one_inbound(inbound(SenderIPAddresses=entries, RestrictDomainsToIPAddresses=True))
    assert entries == table["sender_ip_addresses"]
    assert table["restrict_domains_to_ip_addresses"] is True


@pytest.mark.parametrize("name", ["*.fabrikam.com", "mail.fabrikam.com"])
def test_certificate_name_wildcard_or_plain(name: str) -> None:
    table, _ = one_inbound(inbound(TlsSenderCertificateName=name))
    assert name == table["tls_sender_certificate_name"]


def test_certificate_name_null_means_none() -> None:
    table, warnings = one_inbound(
        inbound(TlsSenderCertificateName=None, RestrictDomainsToCertificate=False)
    )
    assert "tls_sender_certificate_name" not in table
    assert [] == warnings


@pytest.mark.parametrize(
    ("exported", "kind"), [("Partner", "partner"), ("OnPremises", "on_premises"), ("onpremises", "on_premises")]
)
def test_connector_type(exported: str, kind: str) -> None:
    table, _ = one_inbound(inbound(ConnectorType=exported))
    assert kind == table["type"]


def test_comment_null_is_empty_and_text_is_kept() -> None:
    assert "" == one_inbound(inbound(Comment=None))[0]["comment"]
    text = 'Line one\nline "two"\tand a \\ backslash'
    assert text == one_inbound(inbound(Comment=text))[0]["comment"]


def test_disabled_connector_stays_disabled() -> None:
    assert one_inbound(inbound(Enabled=False))[0]["enabled"] is False


@pytest.mark.parametrize(
    ("exported", "mode"),
    [
        (None, "opportunistic"),
        ("EncryptionOnly", "encryption_only"),
        ("encryptiononly", "encryption_only"),
        ("CERTIFICATEVALIDATION", "certificate_validation"),
        ("CertificateValidation", "certificate_validation"),
        ("DomainValidation", "domain_validation"),
        ("domainvalidation", "domain_validation"),
    ],
)
def test_tls_settings(exported: str | None, mode: str) -> None:
    """TlsSettings null is opportunistic; the three names map case-insensitively."""
    domain = "*.fabrikam.com" if mode == "domain_validation" else None
    table, _ = one_outbound(outbound(TlsSettings=exported, TlsDomain=domain))
    assert mode == table["tls_settings"]
    assert domain == table.get("tls_domain")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Opportunistic", "must be one of EncryptionOnly, CertificateValidation, DomainValidation, or null"),
        ("", "must be one of"),
        (2, "is a number: export enumerations by name (PowerShell 7: ConvertTo-Json -EnumsAsStrings)"),
    ],
)
def test_unknown_tls_settings_fail(value: object, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        convert_export(outbound=[outbound(TlsSettings=value, TlsDomain=None)])
    (problem,) = info.value.problems
    assert ("outbound[0].TlsSettings", value) == (problem.field, problem.value)
    assert message in problem.message


@pytest.mark.parametrize("mode", ["EncryptionOnly", "CertificateValidation", None])
def test_tls_domain_with_another_mode_is_dropped_with_a_warning(mode: str | None) -> None:
    """EOP keeps TlsDomain but uses it only with DomainValidation; the policy refuses
    it with any other mode, so the import drops it and says so."""
    table, warnings = one_outbound(outbound(TlsSettings=mode, TlsDomain="*.fabrikam.com"))
    assert "tls_domain" not in table
    (warning,) = warnings
    assert ("tls-domain-dropped", ("TlsDomain",)) == (warning.code, warning.fields)
    assert "Fabrikam Bank outbound" == warning.connector
    assert 'TlsDomain = "*.fabrikam.com" was dropped' in str(warning)


def test_domain_validation_without_tls_domain_fails() -> None:
    ((connector, field, value),) = problems_of(
        outbound=[outbound(TlsSettings="DomainValidation", TlsDomain=None)]
    )
    assert ("Fabrikam Bank outbound", "outbound[0].TlsSettings, outbound[0].TlsDomain") == (
        connector,
        field,
    )
    assert "DomainValidation" == value


@pytest.mark.parametrize(
    ("exported", "host"),
    [
        ("mail.fabrikam.com", "mail.fabrikam.com"),
        ("[192.0.2.25]", "192.0.2.25"),
        ("192.0.2.25", "192.0.2.25"),
        ("[2001:db8::25]", "2001:db8::25"),
        ("Mail.Fabrikam.COM", "mail.fabrikam.com"),
    ],
)
def test_smart_hosts(exported: str, host: str) -> None:
    """Exchange writes IP smart hosts in brackets; our syntax takes them bare."""
    table, _ = one_outbound(outbound(UseMXRecord=False, SmartHosts=[exported]))
    assert table["use_mx_record"] is False
    policy = Policy.from_mapping({"outbound": [table]}, trust=None)
    assert [host] == [str(h) for h in policy.outbound[0].smart_hosts]


def test_smart_host_problems_name_the_entry() -> None:
    assert [("Fabrikam Bank outbound", "outbound[0].SmartHosts[1]", "[mail.fabrikam.com]")] == (
        problems_of(
            outbound=[outbound(UseMXRecord=False, SmartHosts=["mx.fabrikam.com", "[mail.fabrikam.com]"])]
        )
    )


def test_use_mx_record_false_without_smart_hosts_fails() -> None:
    ((_, field, _),) = problems_of(outbound=[outbound(UseMXRecord=False, SmartHosts=None)])
    assert "outbound[0].UseMXRecord, outbound[0].SmartHosts" == field


def test_transport_rule_scoped_and_test_mode() -> None:
    table, _ = one_outbound(
        outbound(IsTransportRuleScoped=True, RecipientDomains=None, TestMode=True)
    )
    assert table["is_transport_rule_scoped"] is True
    assert table["test_mode"] is True
    assert [] == table["recipient_domains"]


def test_recipient_domains_are_plain_domains() -> None:
    domains = ["fabrikam.com", "*.fabrikam.net", "*"]
    assert domains == one_outbound(outbound(RecipientDomains=domains))[0]["recipient_domains"]


def test_field_names_ignore_case_like_powershell() -> None:
    record = {k.lower(): v for k, v in EOP_INBOUND.items()}
    assert EXPECTED_INBOUND == one_inbound(record)[0]


def test_a_field_twice_in_different_case_fails() -> None:
    record = inbound(requiretls=False)
    ((_, field, value),) = problems_of(inbound=[record])
    assert ("inbound[0].requiretls", False) == (field, value)


def test_record_that_is_not_an_object_fails() -> None:
    assert [(None, "inbound[1]", "Fabrikam")] == problems_of(inbound=[EOP_INBOUND, "Fabrikam"])


def test_swapped_inputs_are_recognised() -> None:
    """An outbound record given as --inbound (and the reverse) is named as such."""
    with pytest.raises(PolicyError) as info:
        convert_export(inbound=[EOP_OUTBOUND], outbound=[EOP_INBOUND])
    messages = [p.message for p in info.value.problems]
    assert 2 == len(messages)
    assert "looks like an outbound connector" in messages[0]
    assert "pass it with --outbound" in messages[0]
    assert "looks like an inbound connector" in messages[1]


def test_same_name_in_both_directions_is_fine() -> None:
    mapping, _ = convert_export(
        inbound=[inbound(Name="Fabrikam Bank")], outbound=[outbound(Name="Fabrikam Bank")]
    )
    assert "Fabrikam Bank" == mapping["inbound"][0]["name"] == mapping["outbound"][0]["name"]


def test_duplicate_names_in_one_direction_fail() -> None:
    problems = problems_of(inbound=[inbound(), inbound(Name="FABRIKAM BANK INBOUND")])
    assert [("FABRIKAM BANK INBOUND", "inbound[1].Name", "FABRIKAM BANK INBOUND")] == problems


def test_outbound_tie_fails() -> None:
    """Two selectable connectors claiming one domain: the later by name is reported."""
    problems = problems_of(outbound=[outbound(), outbound(Name="Fabrikam backup")])
    assert [("Fabrikam Bank outbound", "outbound[0].RecipientDomains", "fabrikam.com")] == problems


# ---------------------------------------------------------------------------------------
# Absent fields: explicit defaults, and a warning listing them

INBOUND_DEFAULTS = {
    "Enabled": ("enabled", True),
    "ConnectorType": ("type", "partner"),
    "Comment": ("comment", ""),
    "SenderIPAddresses": ("sender_ip_addresses", []),
    "RequireTls": ("require_tls", True),
    "RestrictDomainsToCertificate": ("restrict_domains_to_certificate", False),
    "RestrictDomainsToIPAddresses": ("restrict_domains_to_ip_addresses", False),
}

OUTBOUND_DEFAULTS = {
    "Enabled": ("enabled", True),
    "ConnectorType": ("type", "partner"),
    "Comment": ("comment", ""),
    "UseMXRecord": ("use_mx_record", True),
    "SmartHosts": ("smart_hosts", []),
    "TlsSettings": ("tls_settings", "opportunistic"),
    "IsTransportRuleScoped": ("is_transport_rule_scoped", False),
    "TestMode": ("test_mode", False),
}


@pytest.mark.parametrize("field", sorted(INBOUND_DEFAULTS))
def test_absent_inbound_field_takes_the_documented_default(field: str) -> None:
    """An absent field is not false: it takes the documented default, and is reported."""
    table, warnings = one_inbound(without(EOP_INBOUND, field))
    key, default = INBOUND_DEFAULTS[field]
    assert default == table[key]
    (warning,) = warnings
    assert ("defaults-assumed", (field,)) == (warning.code, warning.fields)
    assert f"{field} (so {key} = {json.dumps(default)})" in warning.message


def test_absent_require_tls_is_true_not_eops_cmdlet_default() -> None:
    """EOP's documented default for RequireTls changed over time; a field missing from
    the export never weakens the policy."""
    assert one_inbound(without(EOP_INBOUND, "RequireTls"))[0]["require_tls"] is True


@pytest.mark.parametrize("field", sorted(OUTBOUND_DEFAULTS))
def test_absent_outbound_field_takes_the_documented_default(field: str) -> None:
    record = without(EOP_OUTBOUND, field)
    if field == "TlsSettings":
        record["TlsDomain"] = None
    table, warnings = one_outbound(record)
    key, default = OUTBOUND_DEFAULTS[field]
    assert default == table[key]
    (warning,) = warnings
    assert ("defaults-assumed", (field,)) == (warning.code, warning.fields)


def test_minimal_records_list_every_assumed_default_in_one_warning() -> None:
    mapping, warnings = convert_export(
        inbound=[{"Name": "Min in", "SenderDomains": ["smtp:*;1"]}],
        outbound=[{"Name": "Min out", "RecipientDomains": ["fabrikam.com"]}],
    )
    assert ["defaults-assumed", "defaults-assumed"] == codes(warnings)
    assert (
        "Enabled",
        "ConnectorType",
        "Comment",
        "SenderIPAddresses",
        "RequireTls",
        "TlsSenderCertificateName",
        "RestrictDomainsToCertificate",
        "RestrictDomainsToIPAddresses",
    ) == warnings[0].fields
    assert "TlsSenderCertificateName (so tls_sender_certificate_name is not set)" in warnings[0].message
    assert (
        "Enabled",
        "ConnectorType",
        "Comment",
        "UseMXRecord",
        "SmartHosts",
        "TlsSettings",
        "TlsDomain",
        "IsTransportRuleScoped",
        "TestMode",
    ) == warnings[1].fields
    assert list(_INBOUND_KEYS[:-3]) + list(_INBOUND_KEYS[-2:]) == list(mapping["inbound"][0])


def test_absent_required_fields_fail() -> None:
    assert [
        ("x", "inbound[0].SenderDomains", MISSING),  # absent, not given as null
        (None, "outbound[0].Name", None),
    ] == problems_of(inbound=[{"Name": "x", "RequireTls": True}], outbound=[{"RecipientDomains": ["a.com"]}])


def test_absent_recipient_domains_fail_unless_rule_scoped() -> None:
    ((_, field, _),) = problems_of(outbound=[without(EOP_OUTBOUND, "RecipientDomains")])
    assert "outbound[0].RecipientDomains, outbound[0].IsTransportRuleScoped" == field
    table, _ = one_outbound(without(outbound(IsTransportRuleScoped=True), "RecipientDomains"))
    assert [] == table["recipient_domains"]


# ---------------------------------------------------------------------------------------
# Fields with no meaning here: one warning per connector, never silently dropped


def test_unmapped_fields_one_warning_naming_each_field_and_value() -> None:
    record = inbound(
        TreatMessagesAsInternal=True,
        EFSkipIPs=["198.51.100.0/24"],
        TrustedOrganizations=["fabrikam.onmicrosoft.com"],
        CloudServicesMailEnabled=True,
        FutureSetting="on",
    )
    table, warnings = one_inbound(record)
    assert EXPECTED_INBOUND == table
    (warning,) = warnings
    assert "unmapped-fields" == warning.code
    assert (
        "CloudServicesMailEnabled",
        "TreatMessagesAsInternal",
        "EFSkipIPs",
        "TrustedOrganizations",
        "FutureSetting",
    ) == warning.fields
    text = str(warning)
    assert text.startswith("inbound connector 'Fabrikam Bank inbound' (record 1): ")
    assert "TreatMessagesAsInternal = true" in text
    assert 'EFSkipIPs = ["198.51.100.0/24"]' in text
    assert 'FutureSetting = "on" (unknown field)' in text
    assert "(unknown field)" not in text.split("FutureSetting")[0]


def test_outbound_unmapped_fields() -> None:
    record = outbound(
        RouteAllMessagesViaOnPremises=True,
        AllAcceptedDomains=True,
        ValidationRecipients=["postmaster@fabrikam.com"],
        SmtpDaneMode="Mandatory",
        MtaStsMode="Enforce",
    )
    _, warnings = one_outbound(record)
    (warning,) = warnings
    assert {
        "RouteAllMessagesViaOnPremises",
        "AllAcceptedDomains",
        "ValidationRecipients",
        "SmtpDaneMode",
        "MtaStsMode",
    } == set(warning.fields)
    assert "(unknown field)" not in warning.message


@pytest.mark.parametrize("value", [None, False, "", [], {}, {"value": [], "Count": 0}])
def test_default_values_of_unmapped_fields_are_not_reported(value: object) -> None:
    _, warnings = one_inbound(inbound(TreatMessagesAsInternal=value, SomethingNew=value))
    assert [] == warnings


@pytest.mark.parametrize("field", METADATA_FIELDS)
def test_metadata_is_ignored_silently(field: str) -> None:
    _, warnings = one_inbound(inbound(**{field: "something not default"}))
    assert [] == warnings


def test_values_in_warnings_are_escaped_and_bounded() -> None:
    _, warnings = one_inbound(inbound(Odd="\x1b[31mred\nnext" + "x" * 500))
    text = str(warnings[0])
    assert "\x1b" not in text
    assert "\n" not in text
    assert '"\\u001b[31mred\\nnext' in text
    assert len(text) < 400


def test_certificate_name_without_require_tls_warns() -> None:
    """The spec enforces a certificate name whenever it is set, which requires TLS."""
    table, warnings = one_inbound(inbound(RequireTls=False))
    assert table["require_tls"] is False
    assert ["certificate-implies-tls"] == codes(warnings)


def test_an_on_premises_connector_with_checks_warns_they_are_not_enforced() -> None:
    """Section 5.6: on-premises connectors take no part in partner evaluation."""
    table, warnings = one_inbound(inbound(ConnectorType="OnPremises"))
    assert "on_premises" == table["type"]
    assert ["on-premises-not-enforced"] == codes(warnings)
    _, warnings = one_inbound(inbound())
    assert "on-premises-not-enforced" not in codes(warnings)


# ---------------------------------------------------------------------------------------
# The written file: header, every key, comments; round trips


def render(mapping: dict[str, Any], warnings: list[EOPWarning] | None = None) -> str:
    return render_policy(
        mapping, warnings or [], sources={"inbound": "'in.json'", "outbound": "'out.json'"}
    )


def test_written_file_loads_back_to_the_same_policy(tmp_path: Path) -> None:
    """import -> TOML -> load_policy gives the policy Policy.from_mapping builds."""
    records = [
        inbound(),
        inbound(
            Name="Contoso relay",
            ConnectorType="OnPremises",
            SenderDomains=["smtp:*;1"],
            SenderIPAddresses=["203.0.113.0/28", "2001:db8:c::/48"],
            RestrictDomainsToIPAddresses=True,
            TlsSenderCertificateName=None,
            RestrictDomainsToCertificate=False,
            Comment='Relay "from" on-premises\n\tsecond line \u2013 ü',
        ),
    ]
    out = [
        outbound(),
        outbound(
            Name="Woodgrove smart host",
            RecipientDomains=["*.woodgrove.example"],
            UseMXRecord=False,
            SmartHosts=["[192.0.2.25]", "relay.woodgrove.example"],
            TlsSettings="CertificateValidation",
            TlsDomain=None,
        ),
    ]
    mapping, warnings = convert_export(inbound=records, outbound=out)
    text = render(mapping, warnings)
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    expected = Policy.from_mapping(mapping, trust=None)
    assert expected == load_policy(path, use_system_trust=False)
    assert mapping == tomllib.loads(text)


def test_written_file_has_a_header_and_writes_unset_names_as_comments() -> None:
    mapping, warnings = convert_export(
        inbound=[inbound(TlsSenderCertificateName=None, RestrictDomainsToCertificate=False)],
        outbound=[outbound(TlsSettings="EncryptionOnly")],
    )
    text = render(mapping, warnings)
    lines = text.splitlines()
    assert lines[0].startswith("# tlsconnector policy imported from Exchange Online Protection")
    assert "#   inbound: 'in.json' (Get-InboundConnector | ConvertTo-Json), 1 connector" in lines
    assert "# tls_sender_certificate_name is not set" in lines
    assert "# tls_domain is not set" in lines
    assert '# From EOP: Get-OutboundConnector record 1, "Fabrikam Bank outbound"' in lines
    assert any(line.startswith("# import warning (tls-domain-dropped): ") for line in lines)
    for key in (*_INBOUND_KEYS, *_OUTBOUND_KEYS):
        assert any(line.startswith((f"{key} = ", f"# {key} is not set")) for line in lines), key


def test_hostile_names_cannot_break_out_of_comments() -> None:
    """Names, values and file names with quotes, brackets, '#' and line breaks stay
    inside their strings and comments."""
    name = 'Evil" ]] # [[inbound]]\\'
    mapping, warnings = convert_export(inbound=[inbound(Name=name, Odd="x\ry\u2028z")])
    text = render_policy(mapping, warnings, sources={"inbound": "'a\nb.json'"})
    assert {"inbound": mapping["inbound"]} == tomllib.loads(text)
    assert name == tomllib.loads(text)["inbound"][0]["name"]


# The TOML writer


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("plain", '"plain"'),
        ('quote " and \\ backslash', '"quote \\" and \\\\ backslash"'),
        ("tab\tnewline\ncr\r", '"tab\\tnewline\\ncr\\r"'),
        ("nul\x00 esc\x1b del\x7f", '"nul\\u0000 esc\\u001B del\\u007F"'),
        ("Zürich \u2013 bücher.example", '"Zürich \u2013 bücher.example"'),
        ("bidi \u202e override", '"bidi \\u202E override"'),
        ("astral \U000e0001 tag", '"astral \\U000E0001 tag"'),
    ],
)
def test_strings_are_escaped_and_read_back(text: str, written: str) -> None:
    assert written == format_string(text)
    assert {"k": text} == tomllib.loads(f"k = {format_string(text)}")


def test_lone_surrogates_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        format_string("bad \ud800")
    # ...so a comment holding one fails the import rather than writing a broken file.
    with pytest.raises(ValueError, match="lone surrogate"):
        render(convert_export(inbound=[inbound(Comment="bad \udc00")])[0])


def test_keys_are_bare_or_quoted() -> None:
    assert "require_tls" == format_key("require_tls")
    assert '"a key.with dots"' == format_key("a key.with dots")


def test_unsupported_values_are_refused() -> None:
    for value in (None, 1.5, [{"a": 1}, "b"], [None]):
        with pytest.raises(TypeError):
            dumps({"k": value})


toml_keys = st.text(min_size=1, max_size=12)
toml_scalars = st.one_of(st.text(max_size=20), st.booleans(), st.integers(-(2**63), 2**63 - 1))
toml_tables = st.recursive(
    st.dictionaries(toml_keys, st.one_of(toml_scalars, st.lists(toml_scalars, max_size=4)), max_size=4),
    lambda children: st.dictionaries(
        toml_keys,
        st.one_of(toml_scalars, children, st.lists(children, min_size=1, max_size=3)),
        max_size=4,
    ),
    max_leaves=12,
)


@given(toml_tables)
def test_dumps_round_trips_through_tomllib(data: dict[str, Any]) -> None:
    """Any document of our value types reads back equal (arrays of scalars of one type
    or mixed, nested tables, arrays of tables, any key, any string)."""
    assert data == tomllib.loads(dumps(data, header=["generated\x00header"]))


names = st.text(
    st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda s: s.strip() != "" and s.isprintable())
DOMAINS = ["fabrikam.com", "*.fabrikam.com", "*", "bücher.example", "_tls.example.org", "*.co.uk"]
IPS = ["198.51.100.7", "2001:db8::1", "198.51.100.0/24", "198.51.100.10-198.51.100.20", "::ffff:198.51.100.9"]
CERTS = [None, "*.fabrikam.com", "mail.fabrikam.com", "*.bücher.example"]
HOSTS = ["mail.fabrikam.com", "192.0.2.1", "2001:db8::1", "mail.fabrikam.com:2525", "[2001:db8::1]:25"]
MODES = ["opportunistic", "encryption_only", "certificate_validation", "domain_validation"]


@st.composite
def inbound_tables(draw: st.DrawFn, name: str) -> dict[str, Any]:
    cert = draw(st.sampled_from(CERTS))
    ips = draw(st.lists(st.sampled_from(IPS), max_size=3))
    table: dict[str, Any] = {
        "name": name,
        "enabled": draw(st.booleans()),
        "type": draw(st.sampled_from(["partner", "on_premises"])),
        "comment": draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)),
        "sender_domains": draw(st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=3)),
        "sender_ip_addresses": ips,
        "require_tls": draw(st.booleans()),
        "restrict_domains_to_certificate": cert is not None and draw(st.booleans()),
        "restrict_domains_to_ip_addresses": bool(ips) and draw(st.booleans()),
    }
    if cert is not None:
        table["tls_sender_certificate_name"] = cert
    return table


def own(pattern: str, index: int) -> str:
    """A pattern only connector ``index`` uses: fabrikam.com -> c3.fabrikam.com."""
    if pattern == "*":
        return f"*.c{index}.example"
    if pattern.startswith("*."):
        return f"*.c{index}.{pattern[2:]}"
    return f"c{index}.{pattern}"


@st.composite
def outbound_tables(draw: st.DrawFn, name: str, index: int) -> dict[str, Any]:
    mode = draw(st.sampled_from(MODES))
    hosts = draw(st.lists(st.sampled_from(HOSTS), max_size=3))
    # Domains distinct per connector, so no two connectors tie (section 6.2).
    domains = [own(d, index) for d in draw(st.lists(st.sampled_from(DOMAINS), max_size=3))]
    table: dict[str, Any] = {
        "name": name,
        "enabled": draw(st.booleans()),
        "type": draw(st.sampled_from(["partner", "on_premises"])),
        "comment": draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)),
        "recipient_domains": domains or [f"c{index}.example"],
        "use_mx_record": not hosts or draw(st.booleans()),
        "smart_hosts": hosts,
        "tls_settings": mode,
        "is_transport_rule_scoped": draw(st.booleans()),
        "test_mode": draw(st.booleans()),
    }
    if mode == "domain_validation":
        table["tls_domain"] = draw(st.sampled_from(CERTS[1:]))
    return table


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    inbound_names = draw(st.lists(names, max_size=3, unique_by=str.casefold))
    outbound_names = draw(st.lists(names, max_size=3, unique_by=str.casefold))
    data = {
        "inbound": [draw(inbound_tables(n)) for n in inbound_names],
        "outbound": [draw(outbound_tables(n, i)) for i, n in enumerate(outbound_names)],
    }
    return Policy.from_mapping(data, trust=None)


@given(policies())
def test_policy_to_mapping_to_toml_round_trips(policy: Policy) -> None:
    """Policy -> mapping -> TOML -> Policy gives the same policy."""
    text = dumps_policy(policy_to_mapping(policy), header=["round trip"])
    assert policy == Policy.from_mapping(tomllib.loads(text), trust=None)


def test_policy_to_mapping_writes_every_key() -> None:
    policy = attrs.evolve(load_policy(EXAMPLE), trust=None)
    mapping = policy_to_mapping(policy)
    assert {"inbound": [EXPECTED_INBOUND], "outbound": [EXPECTED_OUTBOUND]} == mapping


# ---------------------------------------------------------------------------------------
# The command line, end to end


@pytest.fixture
def exports(tmp_path: Path) -> tuple[Path, Path]:
    """PowerShell 5 style files: UTF-16 LE with BOM, CRLF, 4-space indent."""
    inbound_path = tmp_path / "inbound.json"
    outbound_path = tmp_path / "outbound.json"
    text = json.dumps(inbound(TreatMessagesAsInternal=True), indent=4).replace("\n", "\r\n")
    inbound_path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    outbound_path.write_bytes(b"\xef\xbb\xbf" + json.dumps([EOP_OUTBOUND]).encode())
    return inbound_path, outbound_path


def test_cli_import_writes_a_policy_that_check_accepts(
    tmp_path: Path, exports: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inbound_path, outbound_path = exports
    policy = tmp_path / "policy.toml"
    status = main(
        ["import-eop", "--inbound", str(inbound_path), "--outbound", str(outbound_path), "-o", str(policy)]
    )
    captured = capsys.readouterr()
    assert 0 == status
    assert "" == captured.out
    assert (
        "warning: inbound connector 'Fabrikam Bank inbound' (record 1): fields with no "
        "equivalent in a tlsconnector policy were not imported: TreatMessagesAsInternal = true"
    ) in captured.err
    assert "1 inbound connector, 1 outbound connector" in captured.err
    assert 0 == main(["check", str(policy)])
    assert "valid (1 inbound connector, 1 outbound connector)" in capsys.readouterr().out
    example = attrs.evolve(load_policy(EXAMPLE), trust=None)
    assert example == load_policy(policy, use_system_trust=False)


def test_cli_import_without_output_prints_the_policy(
    exports: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, outbound_path = exports
    assert 0 == main(["import-eop", "--outbound", str(outbound_path)])
    captured = capsys.readouterr()
    assert {"inbound": [], "outbound": [EXPECTED_OUTBOUND]} == {
        "inbound": [], **tomllib.loads(captured.out)
    }
    assert "" == captured.err


def test_cli_import_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(EOP_INBOUND).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert 0 == main(["import-eop", "--inbound", "-"])
    assert [EXPECTED_INBOUND] == tomllib.loads(capsys.readouterr().out)["inbound"]


def test_cli_import_failure_lists_problems_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "inbound.json"
    bad.write_text(json.dumps([inbound(TlsSenderCertificateName="*.com", SenderIPAddresses=["bad"])]))
    policy = tmp_path / "policy.toml"
    assert 1 == main(["import-eop", "--inbound", str(bad), "-o", str(policy)])
    err = capsys.readouterr().err
    assert not policy.exists()
    assert "cannot convert the export (2 problems; nothing was written)" in err
    assert "connector 'Fabrikam Bank inbound': inbound[0].TlsSenderCertificateName = '*.com'" in err
    assert "inbound[0].SenderIPAddresses[0] = 'bad'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --inbound FILE, --outbound FILE, or both"),
        (["--inbound", "-", "--outbound", "-"], "only one of --inbound and --outbound"),
        (["--inbound", "{missing}"], ": cannot read: No such file or directory"),
        (["--inbound", "{notjson}"], "not valid JSON"),
    ],
)
def test_cli_import_usage_errors_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notjson.json").write_text("Name : Fabrikam Bank inbound\n")
    paths = {"{missing}": str(tmp_path / "missing.json"), "{notjson}": str(tmp_path / "notjson.json")}
    assert 2 == main(["import-eop", *[paths.get(a, a) for a in args]])
    assert message in capsys.readouterr().err


def test_cli_import_of_an_empty_export_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "inbound.json"
    empty.write_bytes(b"")
    assert 0 == main(["import-eop", "--inbound", str(empty)])
    captured = capsys.readouterr()
    assert "holds no connectors" in captured.err
    assert {} == tomllib.loads(captured.out)


def test_a_comment_toml_cannot_hold_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lone surrogate (valid JSON, invalid TOML text) is a clear error, not a crash;
    nothing is written."""
    export = tmp_path / "in.json"
    export.write_text(
        '{"Name": "Fabrikam", "SenderDomains": ["smtp:fabrikam.com;1"], "RequireTls": true,'
        ' "Comment": "x\\ud800y"}',
        encoding="utf-8",
    )
    out = tmp_path / "policy.toml"
    assert 1 == main(["import-eop", "--inbound", str(export), "-o", str(out)])
    assert "cannot write the policy" in capsys.readouterr().err
    assert not out.exists()
