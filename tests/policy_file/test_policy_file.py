"""The policy file (sections 8 and 9): strict keys and types, every problem at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tlsconnector import (
    ConnectorType,
    Policy,
    PolicyError,
    Problem,
    load_policy,
)

from certmint import CA

ROOT = CA("Policy File Test Root")


def write(tmp_path: Path, text: str, *, ca: bool = True) -> Path:
    if ca:
        (tmp_path / "ca.pem").write_text(ROOT.cert_pem())
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, text))
    return list(info.value.problems)


def fields(found: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.connector, p.field) for p in found]


def test_the_spec_example_loads(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
            [trust]
            ca_file = "ca.pem"

            [[inbound]]
            name = "Fabrikam Bank inbound"
            enabled = true
            type = "partner"
            comment = ""
            sender_domains = ["fabrikam.com", "*.Fabrikam.COM."]
            sender_ip_addresses = ["198.51.100.0/24", "203.0.113.10-203.0.113.20"]
            require_tls = true
            tls_sender_certificate_name = "*.fabrikam.com"
            restrict_domains_to_certificate = true
            restrict_domains_to_ip_addresses = false
            """,
        )
    )
    (connector,) = policy.inbound
    assert "Fabrikam Bank inbound" == connector.name
    assert ["fabrikam.com", "*.fabrikam.com"] == [str(p) for p in connector.sender_domains]
    assert ConnectorType.PARTNER == connector.type
    assert "*.fabrikam.com" == str(connector.tls_sender_certificate_name)
    assert policy.trust is not None
    assert [ROOT.cert] == list(policy.trust.certificates)


def test_defaults(tmp_path: Path) -> None:
    policy = load_policy(
        write(tmp_path, '[trust]\nca_file = "ca.pem"\n[[inbound]]\nname = "x"\nsender_domains = ["*"]\n')
    )
    (c,) = policy.inbound
    assert (True, ConnectorType.PARTNER, "", True, None, False, False, 0) == (
        c.enabled,
        c.type,
        c.comment,
        c.require_tls,
        c.tls_sender_certificate_name,
        c.restrict_domains_to_certificate,
        c.restrict_domains_to_ip_addresses,
        len(c.sender_ip_addresses),
    )


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [trust]
        ca_file = "ca.pem"

        [[inbound]]
        name = "Fabrikam"
        sender_domains = ["a.*.com", "fabrikam.com"]
        sender_ip_addresses = ["198.51.100.1/24", "10.0.0.9-10.0.0.1"]
        require_tls = "yes"
        tls_sender_certificate_name = "*.com"
        restrict_domain_to_certificate = true

        [[inbound]]
        name = "fabrikam"
        sender_domains = ["contoso.com"]
        """,
    )
    assert [
        ("Fabrikam", "restrict_domain_to_certificate"),
        ("Fabrikam", "sender_domains[0]"),
        ("Fabrikam", "sender_ip_addresses[0]"),
        ("Fabrikam", "sender_ip_addresses[1]"),
        ("Fabrikam", "require_tls"),
        ("Fabrikam", "tls_sender_certificate_name"),
        ("fabrikam", "name"),
    ] == fields(found)
    by_field = {p.field: p for p in found}
    assert "a.*.com" == by_field["sender_domains[0]"].value
    assert "host bits" in by_field["sender_ip_addresses[0]"].message
    assert "yes" == by_field["require_tls"].value
    assert "boolean" in by_field["require_tls"].message
    assert "unknown key" in by_field["restrict_domain_to_certificate"].message


def test_the_error_message_names_connector_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(
            write(tmp_path, '[[inbound]]\nname = "Fabrikam"\nsender_domains = ["f*.x.com"]\n')
        )
    text = str(info.value)
    assert "connector 'Fabrikam'" in text
    assert "sender_domains[0]" in text
    assert "'f*.x.com'" in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('restrict_domains_to_certificate = true', "restrict_domains_to_certificate, tls_sender_certificate_name"),
        ('restrict_domains_to_ip_addresses = true', "restrict_domains_to_ip_addresses, sender_ip_addresses"),
        ('restrict_domains_to_ip_addresses = true\nsender_ip_addresses = []', "restrict_domains_to_ip_addresses, sender_ip_addresses"),
        ("sender_domains = []", "sender_domains"),
        ('type = "hybrid"', "type"),
        ("enabled = 1", "enabled"),
        ('sender_ip_addresses = "198.51.100.7"', "sender_ip_addresses"),
        ("sender_domains = [1]", "sender_domains[0]"),
        ('tls_sender_certificate_name = ""', "tls_sender_certificate_name"),
        ('tls_sender_certificate_name = "*.co.uk"', "tls_sender_certificate_name"),
        ('sender_ip_addresses = ["198.51.100.7-2001:db8::1"]', "sender_ip_addresses[0]"),
        ('comment = 5', "comment"),
    ],
)
def test_single_problems(tmp_path: Path, body: str, field: str) -> None:
    text = '[[inbound]]\nname = "C"\n' + body + "\n"
    if "sender_domains" not in body:
        text += 'sender_domains = ["fabrikam.com"]\n'
    found = problems(tmp_path, text)
    assert [("C", field)] == fields(found)


def test_missing_required_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, "[[inbound]]\nrequire_tls = true\n")
    assert [("inbound[0]", "name"), ("inbound[0]", "sender_domains")] == fields(found)


def test_combination_problems_name_every_key_involved(tmp_path: Path) -> None:
    (problem,) = problems(
        tmp_path,
        '[[inbound]]\nname = "C"\nsender_domains = ["x.com"]\nrestrict_domains_to_certificate = true\n',
    )
    assert "tls_sender_certificate_name" in problem.field
    assert "restrict_domains_to_certificate" in problem.field
    assert "missing" in problem.message


def test_unknown_top_level_and_trust_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, '[trust]\nca_dir = "x"\n[policy]\nx = 1\n')
    assert [(None, "policy"), (None, "trust.ca_dir")] == fields(found)


def test_missing_ca_file_is_a_problem_among_the_others(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[trust]\nca_file = "nowhere.pem"\n[[inbound]]\nname = "C"\nsender_domains = ["*.*"]\n',
    )
    assert [(None, "trust.ca_file"), ("C", "sender_domains[0]")] == fields(found)


def test_ca_file_that_is_not_pem(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    found = problems(tmp_path, '[trust]\nca_file = "bad.pem"\n')
    assert [(None, "trust.ca_file")] == fields(found)


def test_invalid_toml_is_one_problem_not_a_traceback(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "[[inbound]\nname = ")
    assert "(file)" == problem.field
    assert "TOML" in problem.message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'[[inbound]]\nname = "\xff"\n')
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(path)


def test_connectors_are_ordered_by_name_not_by_file(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            '[[inbound]]\nname = "b"\nsender_domains = ["*"]\n'
            '[[inbound]]\nname = "A"\nsender_domains = ["*"]\n',
        )
    )
    assert ["A", "b"] == [c.name for c in policy.inbound]


def test_deeply_nested_toml_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("comment = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    (problem,) = info.value.problems
    assert "(file)" == problem.field


def test_problems_spell_values_the_toml_way(tmp_path: Path) -> None:
    """An operator reads `require_tsl = true`, not Python's True."""
    (problem,) = problems(
        tmp_path, '[[inbound]]\nname = "C"\nsender_domains = ["x.com"]\nrequire_tsl = true\n'
    )
    assert "require_tsl = true:" in str(problem)


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        (
            {
                "inbound": [
                    {
                        "name": "a",
                        "sender_domains": ["fabrikam.com"],
                        "tls_sender_certificate_name": None,
                        "restrict_domains_to_certificate": True,
                    }
                ]
            },
            "connector 'a': tls_sender_certificate_name = None: must be a string",
        ),
        (
            {
                "outbound": [
                    {
                        "name": "b",
                        "recipient_domains": ["fabrikam.com"],
                        "tls_settings": "domain_validation",
                        "tls_domain": None,
                    }
                ]
            },
            "connector 'b': tls_domain = None: must be a string",
        ),
        (
            {"inbound": [{"name": "c", "sender_domains": ["fabrikam.com"], "comment": None}]},
            "connector 'c': comment = None: must be a string",
        ),
    ],
)
def test_none_from_python_is_a_problem_not_an_absent_key(
    mapping: dict[str, object], problem: str
) -> None:
    """TOML has no null, but Policy.from_mapping takes Python values: a setting given
    as None must not silently mean "not set" (a certificate name would be dropped
    while the connector still claims to restrict by it)."""
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(mapping, trust=None)
    assert [problem] == [str(p) for p in caught.value.problems]


# --- the line of each problem (tlsconnector._errors.Problem.line) -------------------------


def test_problems_carry_the_line_of_their_key_or_table(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(
        "top = 1\n"  # line 1
        "[trust]\n"
        'ca_file = "nothere.pem"\n'  # line 3
        "\n"
        "[[inbound]]\n"  # line 5
        'name = "Fabrikam"\n'
        "\n"
        "[[outbound]]\n"  # line 8
        'name = "Fabrikam"\n'
        'recipient_domains = ["a..b"]\n'  # line 10
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "policy.toml", use_system_trust=False)
    lines = {(p.field, p.line) for p in caught.value.problems}
    assert {
        ("top", 1),
        ("trust.ca_file", 3),
        ("sender_domains", 5),
        ("recipient_domains[0]", 10),
    } == lines
    assert "  - line 5: connector 'Fabrikam': sender_domains: missing (required)" in str(
        caught.value
    )


def test_a_duplicate_name_and_a_sub_table_get_their_own_lines(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(
        "[trust]\n"
        'revocation = "soft"\n'
        "[trust.extra]\n"  # line 3
        "x = 1\n"
        "[[inbound]]\n"  # line 5
        'name = "x"\n'
        'sender_domains = ["a.com"]\n'
        "[inbound.extra]\n"  # line 8: a key of the [[inbound]] above
        "foo = 1\n"
        "[[inbound]]\n"
        'name = "x"\n'  # line 11: the duplicate
        'sender_domains = ["b.com"]\n'
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "policy.toml", use_system_trust=False)
    lines = sorted((p.field, p.line) for p in caught.value.problems)
    assert [("extra", 8), ("name", 11), ("trust.extra", 3)] == lines


def test_inline_tables_give_no_line_rather_than_a_wrong_one(tmp_path: Path) -> None:
    # Tables written inline have no header of their own: no line for their keys.
    (tmp_path / "policy.toml").write_text('inbound = [{name = "A"}, {name = "B"}]\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "policy.toml", use_system_trust=False)
    assert [None, None] == [p.line for p in caught.value.problems]
