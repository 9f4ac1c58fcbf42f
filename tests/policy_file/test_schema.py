"""The JSON Schema of the policy file (draft 2020-12): shipped in the package, printed by
`tlsconnector schema`, and in step with what the loader accepts."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from test_eop import EOP_INBOUND, EOP_OUTBOUND

from tlsconnector import (
    ConnectorType,
    InboundConnector,
    OutboundConnector,
    Policy,
    PolicyError,
    TLSMode,
)
from tlsconnector._reading import _INBOUND_KEYS, _OUTBOUND_KEYS, _TRUST_KEYS
from tlsconnector.cli import main
from tlsconnector.eop.importing import convert_export, render_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "fabrikam" / "policy.toml"
SCHEMA: dict[str, Any] = json.loads(
    resources.files("tlsconnector.policy_file").joinpath("policy.schema.json").read_text("utf-8")
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# The example of the specification, section 9.
SPEC_EXAMPLE = """
[trust]
ca_file = "partners-ca.pem"          # relative to this file; optional

[[inbound]]
name = "Fabrikam Bank inbound"
enabled = true                        # default true
type = "partner"                      # "partner" (default) | "on_premises"
comment = ""
sender_domains = ["fabrikam.com"]     # required, non-empty
sender_ip_addresses = []
require_tls = true                    # default true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
restrict_domains_to_ip_addresses = false

[[outbound]]
name = "Fabrikam Bank outbound"
enabled = true
type = "partner"
comment = ""
recipient_domains = ["fabrikam.com"]  # required, non-empty (may be empty when is_transport_rule_scoped)
use_mx_record = true                  # default true
smart_hosts = []
tls_settings = "domain_validation"    # default "opportunistic"
tls_domain = "*.fabrikam.com"
is_transport_rule_scoped = false
test_mode = false
"""


def errors(document: Any) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(document)]


def loader_accepts(document: dict[str, Any]) -> bool:
    try:
        Policy.from_mapping(document, trust=None)
    except PolicyError:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert "https://json-schema.org/draft/2020-12/schema" == SCHEMA["$schema"]
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_fabrikam_example_validates() -> None:
    assert [] == errors(tomllib.loads(EXAMPLE.read_text("utf-8")))


def test_the_spec_example_validates() -> None:
    assert [] == errors(tomllib.loads(SPEC_EXAMPLE))


def test_an_imported_eop_policy_validates() -> None:
    mapping, warnings = convert_export(inbound=[EOP_INBOUND], outbound=[EOP_OUTBOUND])
    assert [] == errors(tomllib.loads(render_policy(mapping, warnings)))


INBOUND = '[[inbound]]\nname = "In"\nsender_domains = ["fabrikam.com"]\n'
OUTBOUND = '[[outbound]]\nname = "Out"\nrecipient_domains = ["fabrikam.com"]\n'

# Each file is refused by the schema and by the loader alike.
BAD = {
    # Taplo's root "$schema" key is not part of a policy: use the #:schema directive.
    "unknown top-level key": '"$schema" = "policy.schema.json"\n' + INBOUND,
    "unknown trust key": '[trust]\nca_path = "ca.pem"\n',
    "unknown inbound key (a typo)": INBOUND + "require_tsl = true\n",
    "unknown outbound key": OUTBOUND + 'tls_mode = "domain_validation"\n',
    "wrong type: boolean as string": INBOUND + 'require_tls = "yes"\n',
    "wrong type: string as array": '[[inbound]]\nname = "In"\nsender_domains = "fabrikam.com"\n',
    "wrong type: number in array": '[[inbound]]\nname = "In"\nsender_domains = [1]\n',
    "wrong type: inbound not an array of tables": '[inbound]\nname = "In"\n',
    "bad enum: tls_settings": OUTBOUND + 'tls_settings = "strict"\n',
    "bad enum: type": INBOUND + 'type = "internal"\n',
    "bad enum: EOP spelling": OUTBOUND + 'tls_settings = "DomainValidation"\ntls_domain = "a.b.c"\n',
    "missing name (inbound)": '[[inbound]]\nsender_domains = ["fabrikam.com"]\n',
    "missing name (outbound)": '[[outbound]]\nrecipient_domains = ["fabrikam.com"]\n',
    "blank name": '[[inbound]]\nname = "  "\nsender_domains = ["fabrikam.com"]\n',
    "missing sender_domains": '[[inbound]]\nname = "In"\n',
    "empty sender_domains": '[[inbound]]\nname = "In"\nsender_domains = []\n',
    "missing recipient_domains": '[[outbound]]\nname = "Out"\n',
    "empty recipient_domains": '[[outbound]]\nname = "Out"\nrecipient_domains = []\n',
    "domain_validation without tls_domain": OUTBOUND + 'tls_settings = "domain_validation"\n',
    "tls_domain with another mode": OUTBOUND
    + 'tls_settings = "certificate_validation"\ntls_domain = "*.fabrikam.com"\n',
    "tls_domain with the default mode": OUTBOUND + 'tls_domain = "*.fabrikam.com"\n',
    "restrict_domains_to_certificate without a name": INBOUND
    + "restrict_domains_to_certificate = true\n",
    "restrict_domains_to_ip_addresses without addresses": INBOUND
    + "restrict_domains_to_ip_addresses = true\n",
    "restrict_domains_to_ip_addresses with an empty list": INBOUND
    + "restrict_domains_to_ip_addresses = true\nsender_ip_addresses = []\n",
    "use_mx_record = false without smart hosts": OUTBOUND + "use_mx_record = false\n",
    "use_mx_record = false with empty smart hosts": OUTBOUND
    + "use_mx_record = false\nsmart_hosts = []\n",
    "inner wildcard in a domain pattern": '[[inbound]]\nname = "In"\nsender_domains = ["a.*.com"]\n',
    "partial wildcard certificate name": INBOUND + 'tls_sender_certificate_name = "f*.fabrikam.com"\n',
    "CIDR as a smart host": OUTBOUND + 'use_mx_record = false\nsmart_hosts = ["192.0.2.0/24"]\n',
    "host name as an IP entry": INBOUND + 'sender_ip_addresses = ["mail.fabrikam.com"]\n',
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_bad_files_fail_the_schema_and_the_loader(text: str) -> None:
    document = tomllib.loads(text)
    assert errors(document) != []
    assert not loader_accepts(document)


GOOD = {
    "minimal inbound": INBOUND,
    "minimal outbound": OUTBOUND,
    "empty policy": "",
    "trust only": '[trust]\nca_file = "ca.pem"\n',
    "rule-scoped outbound without domains": '[[outbound]]\nname = "Rule"\n'
    "is_transport_rule_scoped = true\n",
    "rule-scoped outbound with empty domains": '[[outbound]]\nname = "Rule"\n'
    "is_transport_rule_scoped = true\nrecipient_domains = []\n",
    "smart hosts": OUTBOUND
    + 'use_mx_record = false\nsmart_hosts = ["mail.fabrikam.com:2525", "[2001:db8::1]:25", '
    '"192.0.2.1", "2001:db8::2"]\n',
    "every TLS mode": OUTBOUND + 'tls_settings = "encryption_only"\n',
    "IP restriction": INBOUND
    + "restrict_domains_to_ip_addresses = true\nsender_ip_addresses = "
    '["198.51.100.7", "2001:db8::/32", "198.51.100.10-198.51.100.20", "::ffff:198.51.100.9"]\n',
    "internationalised names": '[[inbound]]\nname = "Bücher"\nsender_domains = ["*.bücher.example", "*"]\n'
    'tls_sender_certificate_name = "*.bücher.example"\nrestrict_domains_to_certificate = true\n',
    "restrict false without a name": INBOUND + "restrict_domains_to_certificate = false\n",
}


@pytest.mark.parametrize("text", GOOD.values(), ids=GOOD.keys())
def test_good_files_pass_the_schema_and_the_loader(text: str) -> None:
    document = tomllib.loads(text)
    assert [] == errors(document)
    assert loader_accepts(document)


def test_the_schema_names_the_offending_key() -> None:
    document = tomllib.loads(INBOUND + "require_tsl = true\n")
    (error,) = VALIDATOR.iter_errors(document)
    assert "'require_tsl' was unexpected" in error.message
    assert ["inbound", 0] == list(error.absolute_path)


# ---------------------------------------------------------------------------------------
# In step with the loader


def connector_schema(direction: str) -> dict[str, Any]:
    definition: dict[str, Any] = SCHEMA["$defs"][direction]
    return definition


def resolved(direction: str, key: str) -> dict[str, Any]:
    """A property's schema, with a ``$ref`` to ``$defs`` merged in."""
    prop: dict[str, Any] = dict(connector_schema(direction)["properties"][key])
    ref = prop.pop("$ref", None)
    if ref is not None:
        prop = {**SCHEMA["$defs"][ref.rsplit("/", 1)[1]], **prop}
    return prop


@pytest.mark.parametrize(
    ("direction", "keys"), [("inbound", _INBOUND_KEYS), ("outbound", _OUTBOUND_KEYS)]
)
def test_schema_keys_are_exactly_the_loaders_keys(direction: str, keys: tuple[str, ...]) -> None:
    definition = connector_schema(direction)
    assert set(keys) == set(definition["properties"])
    assert definition["additionalProperties"] is False
    assert {"inbound", "outbound", "trust"} == set(SCHEMA["properties"])
    assert SCHEMA["additionalProperties"] is False
    assert set(_TRUST_KEYS) == set(SCHEMA["properties"]["trust"]["properties"])


@pytest.mark.parametrize(
    ("direction", "cls"), [("inbound", InboundConnector), ("outbound", OutboundConnector)]
)
def test_schema_defaults_are_the_models_defaults(direction: str, cls: type) -> None:
    """Every key with a default in the model has the same default in the schema, and
    every key of the schema has a description for the editor to show."""
    for field in attrs.fields(cls):
        prop = resolved(direction, field.name)
        assert prop.get("description"), field.name
        if field.default is attrs.NOTHING:
            continue  # required
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = []  # sender_ip_addresses: an empty IPSet
        if default is None:
            assert "default" not in prop, field.name  # unset: leave the key out
            continue
        if isinstance(default, ConnectorType | TLSMode):
            default = default.value
        if isinstance(default, tuple):
            default = list(default)
        assert default == prop["default"], field.name


def test_schema_enums_are_the_models_enums() -> None:
    assert [m.value for m in ConnectorType] == SCHEMA["$defs"]["type"]["enum"]
    assert [m.value for m in TLSMode] == resolved("outbound", "tls_settings")["enum"]


def test_required_keys() -> None:
    assert ["name", "sender_domains"] == connector_schema("inbound")["required"]
    assert ["name"] == connector_schema("outbound")["required"]  # domains: conditional


# ---------------------------------------------------------------------------------------
# Shipped and printed


def test_schema_command_prints_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["schema"])
    assert SCHEMA == json.loads(capsys.readouterr().out)


def test_schema_is_package_data() -> None:
    """The file sits inside the package, so wheels carry it (hatch includes every file
    under src/tlsconnector)."""
    import tlsconnector

    package = Path(tlsconnector.__file__).parent
    assert (package / "policy_file" / "policy.schema.json").is_file()
