"""Import Exchange Online Protection (EOP) connectors into a policy (an edge, but pure).

Input: the JSON written by ``Get-InboundConnector | ConvertTo-Json`` and
``Get-OutboundConnector | ConvertTo-Json`` (bytes, see :func:`decode_export`, or the
decoded records). Output: a policy mapping (section 9 file format) with every key
explicit, plus warnings for everything that had no place in it. Records our policy
would reject raise one :class:`PolicyError` listing every problem, each naming the
connector, the EOP field (with the record's position in its export) and the value as
EOP wrote it. Nothing here reads files, the clock or the environment.

Every choice made where EOP and the specification leave room is written down in
``docs/eop-import.md``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from tlsconnector._errors import MESSAGE_LIMIT, InvalidValue, PolicyError, Problem, printable, show
from tlsconnector._model import Policy
from tlsconnector._reading import _INBOUND_KEYS, _OUTBOUND_KEYS
from tlsconnector.policy_file.writing import dumps_policy

__all__ = [
    "INBOUND_FIELDS",
    "METADATA_FIELDS",
    "OUTBOUND_FIELDS",
    "UNMAPPED_FIELDS",
    "EOPWarning",
    "convert_export",
    "decode_export",
    "render_policy",
]

Direction = Literal["inbound", "outbound"]

#: EOP property -> policy key, for ``Get-InboundConnector`` records.
INBOUND_FIELDS: Mapping[str, str] = {
    "Name": "name",
    "Enabled": "enabled",
    "ConnectorType": "type",
    "Comment": "comment",
    "SenderDomains": "sender_domains",
    "SenderIPAddresses": "sender_ip_addresses",
    "RequireTls": "require_tls",
    "TlsSenderCertificateName": "tls_sender_certificate_name",
    "RestrictDomainsToCertificate": "restrict_domains_to_certificate",
    "RestrictDomainsToIPAddresses": "restrict_domains_to_ip_addresses",
}

#: EOP property -> policy key, for ``Get-OutboundConnector`` records.
OUTBOUND_FIELDS: Mapping[str, str] = {
    "Name": "name",
    "Enabled": "enabled",
    "ConnectorType": "type",
    "Comment": "comment",
    "RecipientDomains": "recipient_domains",
    "UseMXRecord": "use_mx_record",
    "SmartHosts": "smart_hosts",
    "TlsSettings": "tls_settings",
    "TlsDomain": "tls_domain",
    "IsTransportRuleScoped": "is_transport_rule_scoped",
    "TestMode": "test_mode",
}

#: Identity, bookkeeping and session fields: they describe the object, not the mail
#: flow, and are ignored without a warning whatever they hold.
METADATA_FIELDS: tuple[str, ...] = (
    "AdminDisplayName",
    "ConnectorSource",
    "DistinguishedName",
    "ExchangeObjectId",
    "ExchangeVersion",
    "Guid",
    "Id",
    "Identity",
    "IsValid",
    "IsValidated",
    "LastValidationTimestamp",
    "LinkForModifiedConnector",
    "ObjectCategory",
    "ObjectClass",
    "ObjectState",
    "OrganizationId",
    "OriginatingServer",
    "PSComputerName",
    "PSShowComputerName",
    "RunspaceId",
    "WhenChanged",
    "WhenChangedUTC",
    "WhenCreated",
    "WhenCreatedUTC",
)

#: Known EOP settings with no equivalent in a tlsconnector policy. Holding anything but
#: a default (null, false, "", []) they are listed in the connector's one
#: ``unmapped-fields`` warning; so is every field this module does not know.
UNMAPPED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "inbound": (
        "AssociatedAcceptedDomains",
        "ClientHostNames",
        "CloudServicesMailEnabled",
        "EFSkipIPs",
        "EFSkipLastIP",
        "EFSkipMailGateway",
        "EFTestMode",
        "EFUsers",
        "ScanAndDropRecipients",
        "TreatMessagesAsInternal",
        "TrustedOrganizations",
    ),
    "outbound": (
        "AllAcceptedDomains",
        "CloudServicesMailEnabled",
        "MtaStsMode",
        "RouteAllMessagesViaOnPremises",
        "SenderRewritingEnabled",
        "SmtpDaneMode",
        "ValidationRecipients",
    ),
}

_FIELDS: Mapping[Direction, Mapping[str, str]] = {
    "inbound": INBOUND_FIELDS,
    "outbound": OUTBOUND_FIELDS,
}
_KEYS: Mapping[Direction, tuple[str, ...]] = {"inbound": _INBOUND_KEYS, "outbound": _OUTBOUND_KEYS}
_COMMON = frozenset({"Name", "Enabled", "ConnectorType", "Comment"})


def _fold(text: str) -> str:
    """PowerShell ignores case in property and enumeration names: ASCII case only here
    (never Unicode folding, which would make e.g. '\u017fmtp' (long s) equal 'smtp')."""
    return text.lower() if text.isascii() else text


_METADATA = frozenset(_fold(f) for f in METADATA_FIELDS)

# EOP TlsSettings values (case-insensitive) -> tls_settings; null is opportunistic.
_TLS_SETTINGS = {
    "encryptiononly": "encryption_only",
    "certificatevalidation": "certificate_validation",
    "domainvalidation": "domain_validation",
}
_CONNECTOR_TYPES = {"partner": "partner", "onpremises": "on_premises"}

#: An export larger than this is refused (the CLI reads at most this much).
MAX_EXPORT_BYTES = 16 * 1024 * 1024


@attrs.frozen
class EOPWarning:
    """Something the import did that a reader of the policy should know about.

    ``code`` is one of ``unmapped-fields``, ``defaults-assumed``,
    ``tls-domain-dropped``, ``certificate-implies-tls``, ``on-premises-not-enforced``;
    ``fields`` names the EOP
    fields concerned; ``index`` is the record's position in its export (from 0).
    """

    direction: str
    index: int
    connector: str | None
    code: str
    message: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        who = show(self.connector) if self.connector is not None else "(no valid name)"
        message = printable(self.message, MESSAGE_LIMIT)  # EOP field names are the export's
        return f"{self.direction} connector {who} (record {self.index + 1}): {message}"


# --------------------------------------------------------------------------------------
# Bytes -> records


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _encoding(data: bytes) -> tuple[str, bytes]:
    """The text encoding of an export and its bytes without the BOM.

    PowerShell 5 writes UTF-16 LE with a BOM (``>`` and ``Out-File``), PowerShell 7
    UTF-8 without one; ``-Encoding`` can ask for UTF-8 with a BOM, UTF-16 BE or UTF-32.
    """
    boms = (
        (b"\xff\xfe\x00\x00", "utf-32-le"),  # before UTF-16 LE, which it begins with
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    )
    for bom, name in boms:
        if data.startswith(bom):
            return name, data[len(bom) :]
    # No BOM: JSON's own detection (RFC 4627 section 3) tells UTF-16/32 from UTF-8 by
    # the NUL bytes of the first characters.
    return json.detect_encoding(data), data


def decode_export(data: bytes, *, source: str) -> list[object]:
    """The records of one ``ConvertTo-Json`` export: a single object, or an array.

    An empty export (``Get-InboundConnector`` found nothing, so ``ConvertTo-Json``
    wrote nothing) has no records. Raises :class:`InvalidValue` (value: ``source``)
    when the bytes are not text in a known encoding, not JSON, or not an object or
    an array.
    """
    if len(data) > MAX_EXPORT_BYTES:
        raise InvalidValue(source, f"larger than {MAX_EXPORT_BYTES} bytes")
    encoding, body = _encoding(data)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidValue(
            source,
            f"not valid {encoding.upper()} text (byte {exc.start}); export with "
            "Out-File -Encoding utf8",
        ) from None
    if not text.strip():
        return []
    try:
        decoded: object = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidValue(
            source, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _DuplicateKey as exc:
        raise InvalidValue(source, f"a JSON object has the key {show(exc.args[0])} twice") from None
    except RecursionError:
        raise InvalidValue(source, "not valid JSON: nested too deeply") from None
    decoded = _unwrap(decoded)
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return list(decoded)
    raise InvalidValue(
        source, f"must hold a JSON object or an array of objects, not {_json_type(decoded)}"
    )


def _unwrap(value: object) -> object:
    """PowerShell 5 sometimes writes an array as ``{"value": [...], "Count": n}``."""
    if isinstance(value, dict) and len(value) == 2:
        keys = {_fold(str(k)): v for k, v in value.items()}
        if set(keys) == {"value", "count"} and isinstance(keys["value"], list):
            return keys["value"]
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json_text(value: object, limit: int = 120) -> str:
    """A value as JSON text for a message: escaped (ASCII only) and bounded."""
    try:
        text = json.dumps(value, ensure_ascii=True, sort_keys=False)
    except (TypeError, ValueError):
        text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------
# Value conversions (each raises InvalidValue with the EOP text)


def _address_space(text: str) -> str:
    """``smtp:fabrikam.com;1`` -> ``fabrikam.com``; a bare domain is returned as is.

    EOP exports SenderDomains as Exchange address spaces ``type:address;cost``. Only
    the SMTP type names mail domains; the cost orders send connectors in Exchange and
    has no meaning for inbound connectors, so it is dropped.
    """
    if ":" not in text:
        return text
    kind, _, rest = text.partition(":")
    address, semicolon, cost = rest.partition(";")
    if _fold(kind) != "smtp":
        raise InvalidValue(
            text, f"address space type {kind!r} is not supported: only smtp names mail domains"
        )
    if semicolon and not (cost.isascii() and cost.isdigit()):
        raise InvalidValue(text, "malformed address space: the cost after ';' must be a number")
    if not address:
        raise InvalidValue(text, "malformed address space: no domain after 'smtp:'")
    return address


def _smart_host(text: str) -> str:
    """``[192.0.2.1]`` (Exchange's spelling of an IP smart host) -> ``192.0.2.1``."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.ip_address(text[1:-1]))
        except ValueError:
            return text  # left for the policy to report with its own message
    return text


def _as_is(text: str) -> str:
    return text


# .NET type names where values should be: ConvertTo-Json's -Depth cut the object off.
_TYPE_NAME = re.compile(r"(System|Microsoft\.Exchange)\.[\w.`]+(\[.*\])?")


class _Record:
    """One EOP record being converted: case-insensitive field access, problems,
    warnings, and where each policy key came from (to name EOP fields in errors)."""

    def __init__(
        self,
        direction: Direction,
        index: int,
        raw: Mapping[str, object],
        problems: list[Problem],
    ) -> None:
        self.direction: Direction = direction
        self.index = index
        self.path = f"{direction}[{index}]"
        self.problems = problems
        self.connector: str | None = None
        #: Policy keys whose EOP field could not be converted (already reported).
        self.failed: set[str] = set()
        #: Policy keys (lists) of which some items could not be converted.
        self.partial: set[str] = set()
        self.fields: dict[str, tuple[str, object]] = {}
        for raw_key, value in raw.items():
            key = str(raw_key)  # JSON keys are strings; a program's dict may not be
            folded = _fold(key)
            if folded in self.fields:
                other = self.fields[folded][0]
                self.problem(
                    key, value, f"appears twice (also as {other!r}; EOP field names ignore case)"
                )
            self.fields[folded] = (key, value)
        name = self.lookup("Name")[1]
        if isinstance(name, str) and name.strip():
            self.connector = name
        self.used: set[str] = set()
        #: "Field (so key = value)" for every mapped field absent from the record.
        self.absent: list[tuple[str, str]] = []
        self.table: dict[str, Any] = {}
        #: policy key, or ``key[i]`` -> (EOP field path, the value as exported)
        self.origins: dict[str, tuple[str, object]] = {}

    def lookup(self, field: str) -> tuple[bool, object]:
        found = self.fields.get(_fold(field))
        return (False, None) if found is None else (True, found[1])

    def get(self, field: str) -> tuple[bool, object]:
        self.used.add(_fold(field))
        return self.lookup(field)

    def where(self, field: str) -> str:
        return f"{self.path}.{field}"

    def problem(self, field: str, value: object, message: str) -> None:
        self.problems.append(Problem(self.connector, self.where(field), value, message))
        base, bracket, _ = field.partition("[")
        for eop, key in _FIELDS[self.direction].items():
            if _fold(eop) == _fold(base):
                (self.partial if bracket else self.failed).add(key)

    def reported(self, field: str) -> bool:
        """Whether a policy problem about ``field`` repeats one reported already."""
        base = field.partition("[")[0]
        return base in self.failed or (field == base and base in self.partial)

    def put(self, field: str, key: str, value: object, original: object) -> None:
        self.table[key] = value
        self.origins[key] = (self.where(field), original)

    def assume(self, field: str, key: str, value: object) -> None:
        """``field`` is absent: ``key`` takes ``value`` (None: stays unset); noted."""
        if value is None:
            self.absent.append((field, f"{key} is not set"))
        else:
            self.table[key] = value
            self.absent.append((field, f"{key} = {_json_text(value)}"))

    def warn(self, warnings: list[EOPWarning], code: str, message: str, *fields: str) -> None:
        warnings.append(
            EOPWarning(self.direction, self.index, self.connector, code, message, tuple(fields))
        )

    # -- field readers -----------------------------------------------------------

    def name(self) -> None:
        present, value = self.get("Name")
        if not present or value is None:
            self.problem("Name", value, "is required")
        elif isinstance(value, str):
            self.put("Name", "name", value, value)  # validated by the policy
        else:
            self.problem("Name", value, f"must be a string, not {_json_type(value)}")

    def boolean(self, field: str, key: str, default: bool) -> None:
        """true or false; absent: ``default``; null is a problem (EOP never writes it)."""
        present, value = self.get(field)
        if not present:
            self.assume(field, key, default)
        elif isinstance(value, bool):
            self.put(field, key, value, value)
        else:
            self.problem(field, value, f"must be true or false, not {_json_type(value)}")

    def common(self) -> None:
        """The settings every connector has: name, enabled, type and comment."""
        self.name()
        self.boolean("Enabled", "enabled", True)
        self.choice("ConnectorType", "type", _CONNECTOR_TYPES, null=None, absent="partner")
        self.comment()

    def comment(self) -> None:
        present, value = self.get("Comment")
        if not present:
            self.assume("Comment", "comment", "")
        elif value is None or isinstance(value, str):
            self.put("Comment", "comment", value or "", value)  # EOP: null = no comment
        else:
            self.problem("Comment", value, f"must be a string, not {_json_type(value)}")

    def certificate_name(self, field: str, key: str) -> str | None:
        """A name or null (no name); absent: not set. Validated later by the policy."""
        present, value = self.get(field)
        if not present:
            self.assume(field, key, None)
        elif value is None:
            pass
        elif not isinstance(value, str):
            self.problem(field, value, f"must be a string or null, not {_json_type(value)}")
        elif value == "":
            self.problem(
                field, value, "an empty string is not 'no name' (EOP exports null for none)"
            )
        elif value.startswith("<I>"):
            self.problem(
                field,
                value,
                "an issuer/subject (<I>...<S>...) certificate cannot be expressed: "
                "tlsconnector matches the subject CN against a domain or *.domain name",
            )
        else:
            return value
        return None

    def choice(
        self, field: str, key: str, choices: Mapping[str, str], *, null: str | None, absent: str
    ) -> str | None:
        """One of EOP's enumeration names (any case); ``null``: what JSON null means."""
        present, value = self.get(field)
        spelled = ", ".join(_EOP_SPELLING[v] for v in choices.values())
        if null is not None:
            spelled += ", or null"
        if not present:
            self.assume(field, key, absent)
            return absent
        if value is None and null is not None:
            self.put(field, key, null, value)
            return null
        if isinstance(value, str) and _fold(value) in choices:
            chosen = choices[_fold(value)]
            self.put(field, key, chosen, value)
            return chosen
        if isinstance(value, int) and not isinstance(value, bool):
            self.problem(
                field,
                value,
                "is a number: export enumerations by name (PowerShell 7: ConvertTo-Json "
                f"-EnumsAsStrings); expected {spelled}",
            )
        else:
            self.problem(field, value, f"must be one of {spelled} (any case)")
        return None

    def multi_or_empty(self, field: str, key: str, convert: Callable[[str], str]) -> None:
        """:meth:`multi`; an absent ``field`` is an empty list (noted as assumed)."""
        if self.lookup(field)[0]:
            self.multi(field, key, convert)
        else:
            self.assume(field, key, [])

    def multi(self, field: str, key: str, convert: Callable[[str], str]) -> list[str] | None:
        """A multi-valued property: an array of strings, one string, or null (empty).

        Absent: None, and the key stays unset (the caller decides).
        """
        present, value = self.get(field)
        if not present:
            return None
        value = _unwrap(value)
        if value is None:
            self.put(field, key, [], None)
            return []
        items: list[tuple[str, object]]
        if isinstance(value, str):
            items = [(field, value)]
        elif isinstance(value, list):
            items = [(f"{field}[{i}]", item) for i, item in enumerate(value)]
        else:
            self.problem(
                field,
                value,
                f"must be an array of strings or one string, not {_json_type(value)}; "
                "export with ConvertTo-Json -Depth 5, or select the values as strings",
            )
            return None
        result: list[str] = []
        for where, item in items:
            if not isinstance(item, str):
                self.problem(where, item, f"must be a string, not {_json_type(item)}")
                continue
            if _TYPE_NAME.fullmatch(item):
                self.problem(
                    where,
                    item,
                    "is a .NET type name, not a value: ConvertTo-Json stopped at its "
                    "default depth; export again with ConvertTo-Json -Depth 5",
                )
                continue
            try:
                converted = convert(item)
            except InvalidValue as exc:
                self.problem(where, item, exc.reason)
                continue
            self.origins[f"{key}[{len(result)}]"] = (self.where(where), item)
            result.append(converted)
        # With bad items, the rest is still checked by the policy (every problem at
        # once); the record is not converted either way.
        self.put(field, key, result, value)
        return result


_EOP_SPELLING = {
    "encryption_only": "EncryptionOnly",
    "certificate_validation": "CertificateValidation",
    "domain_validation": "DomainValidation",
    "partner": "Partner",
    "on_premises": "OnPremises",
}


def _specific_fields(record: _Record, direction: Direction) -> list[str]:
    """The fields of ``record`` that only a ``direction`` connector has."""
    inbound, outbound = (
        {_fold(f) for f in (*_FIELDS[d], *UNMAPPED_FIELDS[d])} for d in ("inbound", "outbound")
    )
    specific = inbound - outbound if direction == "inbound" else outbound - inbound
    return sorted(key for folded, (key, _) in record.fields.items() if folded in specific)


def _looks_like(record: _Record, direction: Direction) -> bool:
    """Whether the record carries any field specific to ``direction``."""
    return bool(_specific_fields(record, direction))


def _convert_inbound(r: _Record, warnings: list[EOPWarning]) -> None:
    r.common()
    # Absent SenderDomains stays absent: the policy reports the required key.
    r.multi("SenderDomains", "sender_domains", _address_space)
    r.multi_or_empty("SenderIPAddresses", "sender_ip_addresses", _as_is)
    # Absent RequireTls: our policy's default (true), not EOP's cmdlet default (false):
    # a field missing from the export never weakens the policy (docs/eop-import.md).
    r.boolean("RequireTls", "require_tls", True)
    name = r.certificate_name("TlsSenderCertificateName", "tls_sender_certificate_name")
    if name is not None:
        r.put("TlsSenderCertificateName", "tls_sender_certificate_name", name, name)
    r.boolean("RestrictDomainsToCertificate", "restrict_domains_to_certificate", False)
    r.boolean("RestrictDomainsToIPAddresses", "restrict_domains_to_ip_addresses", False)
    if name is not None and r.table.get("require_tls") is False:
        # Section 5.4: TLS is required whenever a certificate name is set.
        r.warn(
            warnings,
            "certificate-implies-tls",
            "TlsSenderCertificateName is set while RequireTls is false: tlsconnector "
            "enforces a certificate name whenever it is set, so this connector requires "
            "TLS (require_tls stays false in the file)",
            "TlsSenderCertificateName",
            "RequireTls",
        )
    checks = (
        r.table.get("require_tls") is True
        or name is not None
        or r.table.get("restrict_domains_to_ip_addresses") is True
    )
    if r.table.get("type") == "on_premises" and checks:
        # Section 5.6: on-premises connectors take no part in partner evaluation.
        r.warn(
            warnings,
            "on-premises-not-enforced",
            "ConnectorType is OnPremises: tlsconnector loads and validates this connector "
            "but does not enforce its TLS, certificate or IP settings on partner mail",
            "ConnectorType",
        )


def _convert_outbound(r: _Record, warnings: list[EOPWarning]) -> None:
    r.common()
    r.multi("RecipientDomains", "recipient_domains", _address_space)
    r.boolean("UseMXRecord", "use_mx_record", True)
    r.multi_or_empty("SmartHosts", "smart_hosts", _smart_host)
    mode = r.choice(
        "TlsSettings", "tls_settings", _TLS_SETTINGS, null="opportunistic", absent="opportunistic"
    )
    domain = r.certificate_name("TlsDomain", "tls_domain")
    if domain is not None and mode == "domain_validation":
        r.put("TlsDomain", "tls_domain", domain, domain)
    elif domain is not None and mode is not None:
        # EOP keeps TlsDomain but uses it only with DomainValidation; our policy refuses
        # it with any other mode (section 6), so it is dropped (docs/eop-import.md).
        r.warn(
            warnings,
            "tls-domain-dropped",
            f"TlsDomain = {_json_text(domain)} was dropped: EOP uses it only with "
            f"TlsSettings DomainValidation, and this connector's TLS mode is {mode}",
            "TlsDomain",
        )
    r.boolean("IsTransportRuleScoped", "is_transport_rule_scoped", False)
    r.boolean("TestMode", "test_mode", False)
    if not r.lookup("RecipientDomains")[0] and r.table.get("is_transport_rule_scoped"):
        # A rule-scoped connector may serve no domain (section 9); otherwise the
        # policy reports the missing key.
        r.assume("RecipientDomains", "recipient_domains", [])


def _is_default(value: object) -> bool:
    """null, false, "", [] and {} are the values an unused EOP setting holds."""
    value = _unwrap(value)
    return value is None or value is False or value in ("", [], {})


def _unmapped(r: _Record, warnings: list[EOPWarning]) -> None:
    known = {_fold(f) for f in UNMAPPED_FIELDS[r.direction]}
    listed: list[str] = []
    fields: list[str] = []
    for folded, (key, value) in r.fields.items():
        if folded in r.used or folded in _METADATA or _is_default(value):
            continue
        note = "" if folded in known else " (unknown field)"
        listed.append(f"{key} = {_json_text(value)}{note}")
        fields.append(key)
    if listed:
        r.warn(
            warnings,
            "unmapped-fields",
            "fields with no equivalent in a tlsconnector policy were not imported: "
            + "; ".join(listed),
            *fields,
        )


def _translate(problem: Problem, r: _Record) -> Problem:
    """A problem found by Policy.from_mapping, told in the export's terms."""
    eop_names = {v: k for k, v in _FIELDS[r.direction].items()}
    labels: list[str] = []
    parts = problem.field.split(", ")
    for part in parts:
        if part in r.origins:
            labels.append(r.origins[part][0])
            continue
        base, bracket, rest = part.partition("[")
        labels.append(r.where(eop_names.get(base, base) + bracket + rest))
    # The value as exported: the policy's value is that of the first field named.
    value = r.origins[parts[0]][1] if parts[0] in r.origins else problem.value
    return Problem(r.connector, ", ".join(labels), value, problem.message)


def _convert_record(
    direction: Direction,
    index: int,
    raw: object,
    problems: list[Problem],
    warnings: list[EOPWarning],
) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(
                None,
                f"{direction}[{index}]",
                raw,
                f"must be a JSON object (one connector), not {_json_type(raw)}",
            )
        )
        return None
    before = len(problems)
    r = _Record(direction, index, raw, problems)
    other: Direction = "outbound" if direction == "inbound" else "inbound"
    if _looks_like(r, other) and not _looks_like(r, direction):
        found = _specific_fields(r, other)
        r.problem(
            "(record)",
            ", ".join(found),
            f"looks like an {other} connector: it has {other} fields ({', '.join(found)}) "
            f"and no {direction} fields; pass it with --{other}",
        )
        return None
    convert = _convert_inbound if direction == "inbound" else _convert_outbound
    convert(r, warnings)
    if r.absent:
        r.warn(
            warnings,
            "defaults-assumed",
            "absent from the export, defaults assumed: "
            + "; ".join(f"{field} (so {effect})" for field, effect in r.absent),
            *(field for field, _ in r.absent),
        )
    _unmapped(r, warnings)
    # Every key explicit, in the documented order (absent certificate names stay out:
    # TOML has no null).
    table = {key: r.table[key] for key in _KEYS[direction] if key in r.table}
    try:
        Policy.from_mapping({direction: [table]}, trust=None)
    except PolicyError as exc:
        # Every problem at once (section 8): the policy's own checks run on what did
        # convert; those about a field already reported above are left out.
        for p in exc.problems:
            if not any(r.reported(part) for part in p.field.split(", ")):
                problems.append(_translate(p, r))
    if len(problems) > before:
        return None
    return table


def convert_export(
    *, inbound: Sequence[object] = (), outbound: Sequence[object] = ()
) -> tuple[dict[str, Any], list[EOPWarning]]:
    """Convert decoded EOP records into a policy mapping and warnings.

    Raises :class:`PolicyError` listing every problem when some record cannot be
    converted or the policy would be invalid; nothing is half converted. The
    mapping loads with :meth:`Policy.from_mapping` (and written with
    :func:`render_policy`, with :func:`tlsconnector.load_policy`).
    """
    problems: list[Problem] = []
    warnings: list[EOPWarning] = []
    mapping: dict[str, Any] = {"inbound": [], "outbound": []}
    names: dict[str, list[str | None]] = {"inbound": [], "outbound": []}
    direction: Direction
    for direction, records in (("inbound", inbound), ("outbound", outbound)):
        for index, raw in enumerate(records):
            table = _convert_record(direction, index, raw, problems, warnings)
            if table is not None:
                mapping[direction].append(table)
                names[direction].append(table["name"])
    if problems:
        raise PolicyError(problems)
    # Checks across connectors of one direction: duplicate names, outbound ties.
    for direction in ("inbound", "outbound"):
        try:
            Policy.from_mapping({direction: mapping[direction]}, trust=None)
        except PolicyError as exc:
            for p in exc.problems:
                problems.append(_across(direction, p, names[direction]))
    if problems:
        raise PolicyError(problems)
    return mapping, warnings


def _across(direction: Direction, problem: Problem, names: list[str | None]) -> Problem:
    eop_names = {v: k for k, v in _FIELDS[direction].items()}
    field = ", ".join(eop_names.get(part, part) for part in problem.field.split(", "))
    hits = [i for i, name in enumerate(names) if name == problem.connector]
    where = f"{direction}[{hits[0]}]" if len(hits) == 1 else direction
    return Problem(problem.connector, f"{where}.{field}", problem.value, problem.message)


# --------------------------------------------------------------------------------------
# Mapping -> TOML text


def render_policy(
    mapping: Mapping[str, Any],
    warnings: Sequence[EOPWarning] = (),
    *,
    sources: Mapping[str, str] | None = None,
) -> str:
    """The policy file for an imported mapping: a header saying where it came from,
    and above each connector the EOP record it came from and its warnings."""
    sources = sources or {}
    header = [
        "tlsconnector policy imported from Exchange Online Protection connectors",
        "by `tlsconnector import-eop`.",
    ]
    cmdlets = {"inbound": "Get-InboundConnector", "outbound": "Get-OutboundConnector"}
    for direction in ("inbound", "outbound"):
        if direction in sources:
            count = len(mapping.get(direction, ()))
            header.append(
                f"  {direction}: {sources[direction]} ({cmdlets[direction]} | ConvertTo-Json), "
                f"{count} connector{'s' if count != 1 else ''}"
            )
    header += [
        "Every key is written explicitly, so this file does not depend on defaults",
        "(EOP's documented defaults have changed over time). Validate it with",
        "`tlsconnector check`; see docs/eop-import.md for how each EOP field maps.",
        "",
        "No [trust] table: chains are validated against the system CA bundle. To trust",
        "only your partners' CAs, add (the path is relative to this file):",
        "[trust]",
        'ca_file = "partners-ca.pem"',
    ]
    notes: dict[tuple[str, int], list[str]] = {}
    for direction in ("inbound", "outbound"):
        for index, table in enumerate(mapping.get(direction, ())):
            notes[(direction, index)] = [
                f"From EOP: {cmdlets[direction]} record {index + 1}, "
                f"{_json_text(table.get('name'))}"
            ]
    # Warnings are indexed by record; converted tables keep record order, and a
    # conversion with problems never reaches here, so record i is table i.
    for warning in warnings:
        key = (warning.direction, warning.index)
        if key in notes:
            message = printable(warning.message, MESSAGE_LIMIT)
            notes[key].append(f"import warning ({warning.code}): {message}")
    return dumps_policy(mapping, header=header, notes=notes)
