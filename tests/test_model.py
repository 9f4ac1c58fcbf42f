"""Loading outbound connectors (specification sections 2, 3, 6, 8 and 9).

``Policy.from_mapping({"outbound": [...]}, trust=None)`` either returns a validated,
immutable policy or raises one :class:`PolicyError` listing **every** problem, each
naming the connector, the field (every key involved in a combination) and the value.
"""

from __future__ import annotations

from typing import Any

import pytest

from tlsconnector import (
    CertificateName,
    ConnectorType,
    DomainPattern,
    OutboundConnector,
    Policy,
    PolicyError,
    Problem,
    SmartHost,
    TLSMode,
)

FABRIKAM: dict[str, Any] = {
    "name": "Fabrikam Bank outbound",
    "recipient_domains": ["fabrikam.com"],
    "tls_settings": "domain_validation",
    "tls_domain": "*.fabrikam.com",
}


def load(*connectors: dict[str, Any]) -> Policy:
    return Policy.from_mapping({"outbound": list(connectors)}, trust=None)


def problems(*connectors: dict[str, Any]) -> list[Problem]:
    """The problems of a policy that must not load."""
    with pytest.raises(PolicyError) as info:
        load(*connectors)
    return list(info.value.problems)


def only_problem(*connectors: dict[str, Any]) -> Problem:
    (problem,) = problems(*connectors)
    return problem


def fields(problem: Problem) -> set[str]:
    """The keys a problem names (a combination names several, comma-separated)."""
    return {part.strip() for part in problem.field.split(",")}


def connector(**overrides: Any) -> dict[str, Any]:
    """A minimal valid connector, with ``overrides`` applied (None removes a key)."""
    raw: dict[str, Any] = {"name": "X", "recipient_domains": ["x.example"], **overrides}
    return {key: value for key, value in raw.items() if value is not None}


# --- The scenario connector and the defaults ----------------------------------------


def test_the_fabrikam_connector_loads_in_canonical_form() -> None:
    (loaded,) = load(FABRIKAM).outbound
    expected = OutboundConnector(
        name="Fabrikam Bank outbound",
        recipient_domains=(DomainPattern.parse("fabrikam.com"),),
        tls_settings=TLSMode.DOMAIN_VALIDATION,
        tls_domain=CertificateName.parse("*.fabrikam.com"),
    )
    assert expected == loaded


def test_defaults_are_mx_opportunistic_enabled_partner() -> None:
    (loaded,) = load(connector()).outbound
    assert loaded.enabled
    assert ConnectorType.PARTNER == loaded.type
    assert "" == loaded.comment
    assert loaded.use_mx_record
    assert () == loaded.smart_hosts
    assert TLSMode.OPPORTUNISTIC == loaded.tls_settings
    assert loaded.tls_domain is None
    assert not loaded.is_transport_rule_scoped
    assert not loaded.test_mode
    assert loaded.selectable_by_domain


def test_a_full_table_with_every_key_loads() -> None:
    """Every key of the section 9 example, spelled out."""
    raw = {
        **FABRIKAM,
        "enabled": True,
        "type": "partner",
        "comment": "Forced TLS with Fabrikam Bank",
        "use_mx_record": True,
        "smart_hosts": [],
        "is_transport_rule_scoped": False,
        "test_mode": False,
    }
    (loaded,) = load(raw).outbound
    assert "Forced TLS with Fabrikam Bank" == loaded.comment


# --- tls_settings and tls_domain (section 6) ----------------------------------------


def test_domain_validation_requires_tls_domain_naming_both_keys() -> None:
    problem = only_problem(connector(tls_settings="domain_validation"))
    assert "X" == problem.connector
    assert {"tls_settings", "tls_domain"} == fields(problem)
    assert "domain_validation" == problem.value
    assert "missing" in problem.message


@pytest.mark.parametrize("mode", ["opportunistic", "encryption_only", "certificate_validation"])
def test_tls_domain_is_refused_with_every_other_mode(mode: str) -> None:
    problem = only_problem(connector(tls_settings=mode, tls_domain="*.x.example"))
    assert "X" == problem.connector
    assert {"tls_domain", "tls_settings"} == fields(problem)
    assert "*.x.example" == problem.value
    assert mode in problem.message


def test_tls_domain_is_refused_with_the_default_mode_too() -> None:
    """No ``tls_settings`` is opportunistic, which takes no tls_domain."""
    problem = only_problem(connector(tls_domain="*.x.example"))
    assert {"tls_domain", "tls_settings"} == fields(problem)


@pytest.mark.parametrize(
    ("setting", "canonical"),
    [
        ("*.fabrikam.com", "*.fabrikam.com"),
        ("server1.fabrikam.com", "server1.fabrikam.com"),
        ("*.Fabrikam.COM.", "*.fabrikam.com"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("mx.xn--bcher-kva.example", "mx.xn--bcher-kva.example"),
    ],
)
def test_tls_domain_is_stored_in_canonical_form(setting: str, canonical: str) -> None:
    (loaded,) = load(connector(tls_settings="domain_validation", tls_domain=setting)).outbound
    assert loaded.tls_domain is not None
    assert canonical == str(loaded.tls_domain)


@pytest.mark.parametrize(
    "setting",
    [
        "*.com",  # a wildcard directly over a public suffix (section 3 rule 4)
        "*.co.uk",
        "*.s3.amazonaws.com",
        "a.*.fabrikam.com",  # inner wildcard
        "f*.fabrikam.com",  # partial wildcard
        "*.*.fabrikam.com",  # double wildcard
        "*",  # bare wildcard
        "192.0.2.1",  # an IP address is never a name (rule 6)
        "mail_1.fabrikam.com",  # no underscore in certificate names (rule 3)
        "",
        ".fabrikam.com",
        "BÜCHER.example",  # no Unicode case folding (section 2)
    ],
)
def test_an_invalid_tls_domain_is_a_configuration_error(setting: str) -> None:
    problem = only_problem(connector(tls_settings="domain_validation", tls_domain=setting))
    assert ("X", "tls_domain", setting) == (problem.connector, problem.field, problem.value)


def test_an_unknown_mode_is_refused_naming_the_choices() -> None:
    problem = only_problem(connector(tls_settings="strict"))
    assert ("tls_settings", "strict") == (problem.field, problem.value)
    assert all(str(mode) in problem.message for mode in TLSMode)


# --- Routes: use_mx_record and smart_hosts (section 6) ------------------------------


@pytest.mark.parametrize("hosts", [None, []], ids=["missing", "empty"])
def test_use_mx_record_false_needs_smart_hosts(hosts: list[str] | None) -> None:
    problem = only_problem(connector(use_mx_record=False, smart_hosts=hosts))
    assert "X" == problem.connector
    assert {"use_mx_record", "smart_hosts"} == fields(problem)
    assert problem.value is False


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("mail.x.com", "mail.x.com", None, "mail.x.com"),
        ("mail.x.com:2525", "mail.x.com", 2525, "mail.x.com:2525"),
        ("MAIL.X.Com.", "mail.x.com", None, "mail.x.com"),
        ("bücher.example:25", "xn--bcher-kva.example", 25, "xn--bcher-kva.example:25"),
        ("192.0.2.1", "192.0.2.1", None, "192.0.2.1"),
        ("192.0.2.1:25", "192.0.2.1", 25, "192.0.2.1:25"),
        ("2001:db8::1", "2001:db8::1", None, "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1", None, "2001:db8::1"),
        ("[2001:db8::1]:25", "2001:db8::1", 25, "[2001:db8::1]:25"),
        ("[2001:DB8:0:0::1]:587", "2001:db8::1", 587, "[2001:db8::1]:587"),
        ("mail.x.com:1", "mail.x.com", 1, "mail.x.com:1"),
        ("mail.x.com:65535", "mail.x.com", 65535, "mail.x.com:65535"),
    ],
)
def test_smart_hosts_are_names_or_ip_literals_with_an_optional_port(
    text: str, host: str, port: int | None, shown: str
) -> None:
    (loaded,) = load(connector(use_mx_record=False, smart_hosts=[text])).outbound
    assert (SmartHost(host, port),) == loaded.smart_hosts
    assert shown == str(loaded.smart_hosts[0])


@pytest.mark.parametrize(
    "text",
    [
        "192.0.2.0/24",  # CIDR is not a route
        "2001:db8::/32",
        "192.0.2.1-192.0.2.9",  # nor is a range
        "mail.x.com:0",  # ports are 1-65535
        "mail.x.com:70000",
        "mail.x.com:abc",
        "mail.x.com:",
        "192.0.2.1:+25",
        "mail.x.com:٢٥",  # Arabic-Indic digits are not a port
        "[::1",  # unclosed bracket
        "[2001:db8::1]x",
        "[192.0.2.1]:25",  # brackets are for IPv6
        "a:b:c",
        "-mail.x.com",
        "mail..x.com",
        "",
        "*.x.com",
    ],
)
def test_bad_smart_hosts_are_refused_with_their_index(text: str) -> None:
    raw = connector(use_mx_record=False, smart_hosts=["mx1.x.com", text])
    problem = only_problem(raw)
    assert ("X", "smart_hosts[1]", text) == (problem.connector, problem.field, problem.value)


def test_every_bad_smart_host_is_reported_at_once() -> None:
    hosts = ["192.0.2.0/24", "ok.x.com", "mail.x.com:0", "[::1", 25]
    found = problems(connector(use_mx_record=False, smart_hosts=hosts))
    expected = ["smart_hosts[0]", "smart_hosts[2]", "smart_hosts[3]", "smart_hosts[4]"]
    assert expected == sorted(p.field for p in found)


def test_smart_hosts_keep_their_configured_order() -> None:
    hosts = ["mx2.x.com", "192.0.2.25:2525", "[2001:db8::25]:25", "mx1.x.com"]
    (loaded,) = load(connector(use_mx_record=False, smart_hosts=hosts)).outbound
    assert hosts == [str(h) for h in loaded.smart_hosts]


# --- recipient_domains (sections 2 and 9) --------------------------------------------


def test_recipient_domains_is_required() -> None:
    problem = only_problem(connector(recipient_domains=None))
    assert "X" == problem.connector
    assert "recipient_domains" in fields(problem)


def test_a_missing_recipient_domains_names_is_transport_rule_scoped_too() -> None:
    problem = only_problem(connector(recipient_domains=None))
    assert {"recipient_domains", "is_transport_rule_scoped"} == fields(problem)


def test_an_empty_recipient_domains_names_both_keys() -> None:
    problem = only_problem(connector(recipient_domains=[]))
    assert "X" == problem.connector
    assert {"recipient_domains", "is_transport_rule_scoped"} == fields(problem)
    assert [] == problem.value


@pytest.mark.parametrize("domains", [None, []], ids=["missing", "empty"])
def test_a_rule_scoped_connector_may_serve_no_domain(domains: list[str] | None) -> None:
    (loaded,) = load(connector(recipient_domains=domains, is_transport_rule_scoped=True)).outbound
    assert () == loaded.recipient_domains
    assert not loaded.selectable_by_domain


@pytest.mark.parametrize(
    "pattern", ["a.*.com", "*x.com", "f*.x.com", "**", "*.*.com", ".x.com", "192.0.2.1", "x..com"]
)
def test_invalid_recipient_domain_patterns_are_refused(pattern: str) -> None:
    problem = only_problem(connector(recipient_domains=["ok.example", pattern]))
    assert ("recipient_domains[1]", pattern) == (problem.field, problem.value)


def test_recipient_domains_are_canonical() -> None:
    raw = connector(recipient_domains=["Fabrikam.COM.", "*.bücher.example", "*"])
    (loaded,) = load(raw).outbound
    assert ["fabrikam.com", "*.xn--bcher-kva.example", "*"] == [
        str(p) for p in loaded.recipient_domains
    ]


def test_a_wildcard_over_a_public_suffix_is_a_valid_scope() -> None:
    """Section 2: ``*.com`` is a valid address space (only certificate names refuse it)."""
    (loaded,) = load(connector(recipient_domains=["*.com"])).outbound
    assert ["*.com"] == [str(p) for p in loaded.recipient_domains]


# --- Ties between selectable connectors (section 6.2) ------------------------------


def test_two_selectable_connectors_with_the_same_pattern_are_an_error_naming_both() -> None:
    problem = only_problem(
        connector(name="Fabrikam A", recipient_domains=["fabrikam.com"]),
        connector(name="Fabrikam B", recipient_domains=["contoso.com", "fabrikam.com"]),
    )
    # One connector carries the problem, the message names the other.
    other = "Fabrikam A" if problem.connector == "Fabrikam B" else "Fabrikam B"
    assert problem.connector in {"Fabrikam A", "Fabrikam B"}
    assert repr(other) in problem.message
    assert "recipient_domains" in fields(problem)
    assert "fabrikam.com" == problem.value


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("fabrikam.com", "FABRIKAM.com."),
        ("bücher.example", "xn--bcher-kva.example"),
        ("*.fabrikam.com", "*.Fabrikam.COM"),
        ("*", "*"),
    ],
)
def test_patterns_tie_after_normalisation(first: str, second: str) -> None:
    problem = only_problem(
        connector(name="A", recipient_domains=[first]),
        connector(name="B", recipient_domains=[second]),
    )
    assert "recipient_domains" in fields(problem)


def test_a_tie_is_reported_whatever_the_file_order() -> None:
    a = connector(name="A", recipient_domains=["fabrikam.com"])
    b = connector(name="B", recipient_domains=["fabrikam.com"])
    assert problems(a, b) == problems(b, a)


@pytest.mark.parametrize(
    "unselectable",
    [{"enabled": False}, {"is_transport_rule_scoped": True}, {"test_mode": True}],
    ids=["disabled", "rule-scoped", "test-mode"],
)
def test_no_tie_when_one_connector_is_not_selectable(unselectable: dict[str, bool]) -> None:
    policy = load(
        connector(name="A", recipient_domains=["fabrikam.com"]),
        connector(name="B", recipient_domains=["fabrikam.com"], **unselectable),
    )
    assert ["A", "B"] == [c.name for c in policy.outbound]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("fabrikam.com", "*.fabrikam.com"),  # exact beats *.suffix
        ("*.fabrikam.com", "*.eu.fabrikam.com"),  # the longer suffix wins
        ("*.fabrikam.com", "*"),
        ("eu.fabrikam.com", "us.fabrikam.com"),  # never match the same domain
    ],
)
def test_different_specificity_is_not_a_tie(first: str, second: str) -> None:
    policy = load(
        connector(name="A", recipient_domains=[first]),
        connector(name="B", recipient_domains=[second]),
    )
    assert 2 == len(policy.outbound)


def test_duplicate_names_are_refused_case_insensitively() -> None:
    problem = only_problem(
        connector(name="Fabrikam", recipient_domains=["a.example"]),
        connector(name="FABRIKAM", recipient_domains=["b.example"]),
    )
    assert ("FABRIKAM", "name") == (problem.connector, problem.field)


# --- Types and unknown keys (sections 8 and 9) ---------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("enabled", "yes"),  # no coercion
        ("enabled", 1),
        ("type", "partners"),
        ("type", 1),
        ("comment", 5),
        ("recipient_domains", "fabrikam.com"),
        ("use_mx_record", "false"),
        ("smart_hosts", "mx.x.com"),
        ("tls_settings", True),
        ("tls_domain", ["*.x.example"]),
        ("is_transport_rule_scoped", "true"),
        ("test_mode", 0),
    ],
)
def test_a_wrong_type_is_an_error_naming_the_field(key: str, value: object) -> None:
    found = problems(connector(**{key: value}))
    assert any(("X", key, value) == (p.connector, p.field, p.value) for p in found), found


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("recipient_domains", ["ok.example", 7], "recipient_domains[1]"),
        ("smart_hosts", ["mx.x.com", None], "smart_hosts[1]"),
    ],
)
def test_a_wrong_item_type_names_the_item(key: str, value: list[Any], field: str) -> None:
    raw = connector(**{key: value})
    if key == "smart_hosts":
        raw["use_mx_record"] = False
    assert [field] == [p.field for p in problems(raw)]


@pytest.mark.parametrize("name", [None, "", "   ", 5, "tab\there"])
def test_a_connector_needs_a_printable_name(name: object) -> None:
    raw = {"recipient_domains": ["x.example"]} if name is None else connector(name=name)
    problem = only_problem(raw)
    assert ("outbound[0]", "name") == (problem.connector, problem.field)


@pytest.mark.parametrize("typo", ["tls_dommain", "sender_domains", "smarthosts", "TLS_settings"])
def test_unknown_keys_are_errors(typo: str) -> None:
    problem = only_problem(connector(**{typo: "x"}))
    assert ("X", typo, "x") == (problem.connector, problem.field, problem.value)
    assert "unknown key" in problem.message


def test_outbound_must_be_an_array_of_tables() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"outbound": {"name": "X"}}, trust=None)
    assert ["outbound"] == [p.field for p in info.value.problems]
    (problem,) = problems(connector(), "not a table")  # type: ignore[arg-type]
    assert "outbound[1]" == problem.field


def test_every_problem_is_reported_at_once_and_nothing_is_loaded() -> None:
    bad_types = connector(
        name="Types",
        enabled="yes",
        tls_settings="domain_validation",
        tls_domain="*.com",
        colour="red",
    )
    bad_route = connector(name="Route", use_mx_record=False, smart_hosts=["192.0.2.0/24", "[::1"])
    bad_scope = {"name": "Scope", "recipient_domains": []}
    tie_a = connector(name="Tie A", recipient_domains=["fabrikam.com"])
    tie_b = connector(name="Tie B", recipient_domains=["fabrikam.com"])
    found = problems(bad_types, bad_route, bad_scope, tie_a, tie_b)
    by_connector = sorted((p.connector or "", p.field) for p in found)
    assert [
        ("Route", "smart_hosts[0]"),
        ("Route", "smart_hosts[1]"),
        ("Scope", "recipient_domains, is_transport_rule_scoped"),
        ("Tie B", "recipient_domains"),
        ("Types", "colour"),
        ("Types", "enabled"),
        ("Types", "recipient_domains"),  # ties with Route, reported beside Route's problems
        ("Types", "tls_domain"),
    ] == by_connector
    assert all(p.message for p in found)


@pytest.mark.parametrize("value", [["domain_validation"], {"mode": "x"}, 3])
def test_tls_settings_of_the_wrong_type_is_one_problem(value: object) -> None:
    """A list or table where a string belongs names the field; no follow-on problems."""
    problem = only_problem(connector(tls_settings=value))
    assert ("tls_settings", value) == (problem.field, problem.value)


@pytest.mark.parametrize("host", ["fe80::1%eth0", "[fe80::1%eth0]:25"])
def test_smart_hosts_with_zone_identifiers_are_refused(host: str) -> None:
    problem = only_problem(connector(use_mx_record=False, smart_hosts=[host]))
    assert "zone" in problem.message
