"""Reading a policy: a decoded mapping (the TOML file, or Python) becomes the model.

Every problem is reported at once (section 8), each naming the connector, the
field(s) and the value; nothing is half loaded. Unknown keys are errors. A fast path
reads plain valid connector tables; the general reader stays the reference and words
every problem (tests/test_reading.py holds them equal). Pure: no files.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar

from tlsconnector._model import (
    ConnectorType,
    InboundConnector,
    OutboundConnector,
    Policy,
    SmartHost,
    TLSMode,
    _name_key,
)
from tlsconnector._revocation_settings import Revocation

from ._addresses import IPRange, IPSet
from ._errors import MISSING, InvalidValue, PolicyError, Problem
from ._names import CertificateName, DomainPattern, PatternKind

if TYPE_CHECKING:
    from tlsconnector._chains import TrustStore

__all__ = ["policy_from_mapping"]

T = TypeVar("T")

_TOP_LEVEL_KEYS = ("trust", "inbound", "outbound")


C = TypeVar("C", "InboundConnector", "OutboundConnector")


def _read_tables(
    data: Mapping[str, Any],
    direction: str,
    fast: Callable[[object, _Parsers], C | None],
    general: Callable[[object, int, list[Problem], _Parsers], C | None],
    problems: list[Problem],
    parsers: _Parsers,
    reuse: _Tables[C] | None = None,
) -> tuple[list[object], list[C | None]]:
    """One direction's tables and the connector built from each (None where a table
    has a problem, which is recorded); names are checked for duplicates.

    Speed: a table the fast reader accepts is built without the general reader's
    bookkeeping; any other table, valid or not, takes the general path, which words
    every problem. Both build the same connector (a property test checks). With
    ``reuse`` (the same direction's tables of an earlier load), a table that reads
    alike (:meth:`_Tables.same`) is not read again: its earlier connector is taken.
    """
    raw_tables = data.get(direction, [])
    if not isinstance(raw_tables, list):
        message = "must be an array of tables"
        if isinstance(raw_tables, Mapping):  # [inbound] written for [[inbound]]
            message += (
                f": write [[{direction}]] (two brackets) above each connector, not [{direction}]"
            )
        problems.append(Problem(None, direction, raw_tables, message))
        raw_tables = []
    built: list[C | None] = []
    earlier = None if reuse is None else reuse.same
    for index, raw in enumerate(raw_tables):
        connector = None if earlier is None else earlier(raw, index)
        if connector is None:
            connector = fast(raw, parsers)
        if connector is None:
            connector = general(raw, index, problems, parsers)
        built.append(connector)
    _check_duplicate_names(raw_tables, built, direction, problems)
    return raw_tables, built


def _plain(table: dict[Any, Any]) -> bool:
    """Whether every key of ``table`` is a ``str`` and every value a ``str``, a ``bool``
    or a ``list`` of ``str`` (exactly those types, no subclass): the only values a
    connector is built from. Two plain tables that are equal (``==``) hold the same
    keys and values of the same types (a ``str`` never equals a ``bool`` or a
    ``list``), which ``==`` alone does not say (``1 == 1.0 == True``)."""
    for key, value in table.items():
        kind = type(value)
        if type(key) is not str:
            return False
        if kind is list:
            for item in value:
                if type(item) is not str:
                    return False
        elif kind is not str and kind is not bool:
            return False
    return True


class _Tables(Generic[C]):
    """One direction's tables as a load decoded them, and the connector built from
    each (None for a table with a problem; none has one in a loaded policy).

    Kept by a policy loaded for reuse (``load_policy(..., keep_tables=True)``): the
    decoded file is the loader's own, never seen or changed by anyone else, so the
    tables stay what the connectors were built from. Decoded by tomli, a table that
    built a connector is plain (:func:`_plain`: the reader takes only booleans,
    strings and arrays of strings, and tomli makes no subclass), so a plain table
    equal to it holds the same values of the same types.
    """

    __slots__ = ("built", "by_name", "tables")

    def __init__(self, tables: list[object], built: list[C | None]) -> None:
        self.tables: list[object] = tables
        self.built: list[C | None] = built
        #: Where each connector's table is, by its exact name (unique in a loaded
        #: policy: names are compared case-insensitively for duplicates).
        self.by_name: dict[str, int] = {c.name: i for i, c in enumerate(built) if c is not None}

    def same(self, raw: object, index: int) -> C | None:
        """The earlier connector of the table ``raw`` (at ``index`` in its direction)
        when reading ``raw`` would build an equal one for sure, else None.

        A connector is read from its own table alone: its direction's keys, nothing
        of ``[trust]`` or of any other table (a table's position names only a
        connector without a valid name, which is a problem and not built). So a plain
        ``raw`` (:func:`_plain`) equal to an earlier table (plain too, see the class)
        reads alike; the earlier table is found at the same position or by its
        connector's name.
        Whatever ``raw`` holds, it is only compared (a problem in it is found and
        worded by the readers, as without reuse).
        """
        if type(raw) is not dict:
            return None
        name = raw.get("name")
        if type(name) is not str:
            return None
        built = self.built
        found = built[index] if index < len(built) else None
        if found is None or found.name != name:  # not at the same position: by name
            position = self.by_name.get(name)
            if position is None:
                return None
            index, found = position, built[position]
        # Equal first (compared in C, and most changed tables differ), then plain.
        if found is not None and raw == self.tables[index] and _plain(raw):
            return found
        return None


class _Sources:
    """The tables a policy was loaded from, both directions (see :class:`_Tables`)."""

    __slots__ = ("inbound", "outbound")

    def __init__(
        self, inbound: _Tables[InboundConnector], outbound: _Tables[OutboundConnector]
    ) -> None:
        self.inbound = inbound
        self.outbound = outbound


def _remembering(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse``, remembering what it returned for each text (not its errors)."""
    seen: dict[str, T] = {}

    def parse_once(text: str) -> T:
        if not isinstance(text, str):
            return parse(text)  # raises InvalidValue, naming the type
        value = seen.get(text)
        if value is None:
            value = seen[text] = parse(text)
        return value

    return parse_once


class _Parsers:
    """The value parsers of one load.

    Speed: each distinct text is parsed once per load, however often it recurs (a
    partner's domain and certificate name inbound and outbound, a shared smart host,
    the tie check reading patterns again). The values are immutable, so one stands
    for every equal text; errors are not remembered, so each bad entry is reported.
    A plain class (start-up: an attrs class costs about 3 M instructions to create
    at import).
    """

    __slots__ = ("address", "certificate_name", "host", "pattern")

    def __init__(self) -> None:
        self.pattern: Callable[[str], DomainPattern] = _remembering(DomainPattern.parse)
        self.address: Callable[[str], IPRange] = _remembering(IPRange.parse)
        self.host: Callable[[str], SmartHost] = _remembering(SmartHost.parse)
        self.certificate_name: Callable[[str], CertificateName] = _remembering(
            CertificateName.parse
        )

    @classmethod
    def for_one_load(cls) -> _Parsers:
        return cls()


def _unknown_key_message(key: object, allowed: Sequence[str] = _TOP_LEVEL_KEYS) -> str:
    return f"unknown key (allowed: {', '.join(allowed)})"


class _Reader:
    """Reads one connector table: strict types, every problem recorded, no coercion."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        connector: str,
        problems: list[Problem],
        allowed: Sequence[str],
        parsers: _Parsers,
    ) -> None:
        self.raw = raw
        self.connector = connector
        self.problems = problems
        self.parsers = parsers
        self._first_problem = len(problems)
        for key, value in raw.items():
            if key not in allowed:
                self.problem(str(key), value, _unknown_key_message(key, allowed))

    @property
    def failed(self) -> bool:
        """Whether this table has any problem (its connector is then not built)."""
        return len(self.problems) > self._first_problem

    def certificate_name(self, field: str) -> tuple[str | None, CertificateName | None]:
        """The raw text of a certificate-name setting and its parsed value (None when
        absent or invalid; an invalid one is recorded as a problem)."""
        text = self.string(field, None)
        if text is None:
            return None, None
        try:
            return text, self.parsers.certificate_name(text)
        except InvalidValue as exc:
            self.problem(field, text, exc.reason)
            return text, None

    def problem(self, field: str, value: object, message: str) -> None:
        self.problems.append(Problem(self.connector, field, value, message))

    def boolean(self, field: str, default: bool) -> bool:
        value = self.raw.get(field, default)
        if not isinstance(value, bool):
            self.problem(field, value, "must be a boolean (true or false)")
            return default
        return value

    def string(self, field: str, default: str | None) -> str | None:
        if field not in self.raw:
            return default
        value = self.raw[field]
        # A key given as None (possible from Python, not from TOML) is not a string:
        # taking it for "absent" would, say, drop a required certificate name.
        if not isinstance(value, str):
            self.problem(field, value, "must be a string")
            return default
        return value

    def choice(self, field: str, kind: type[enum.StrEnum], default: enum.StrEnum) -> Any:
        if field not in self.raw:
            return default  # speed: the common case needs no lookup by value
        value = self.raw[field]
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
        # Built only for a message (speed: not for every connector).
        choices = ", ".join(f'"{m.value}"' for m in kind)
        if not isinstance(value, str):
            self.problem(field, value, f"must be a string, one of {choices}")
        else:
            self.problem(field, value, f"must be one of {choices}")
        return default

    def items(self, field: str, parse: Callable[[str], T], *, required: bool) -> tuple[T, ...]:
        if field not in self.raw:
            if required:
                self.problem(field, MISSING, "is required")
            return ()
        value = self.raw[field]
        if not isinstance(value, list):
            self.problem(field, value, "must be an array of strings")
            return ()
        items: list[T] = []
        for index, item in enumerate(value):
            where = f"{field}[{index}]"
            if not isinstance(item, str):
                self.problem(where, item, "must be a string")
                continue
            try:
                items.append(parse(item))
            except InvalidValue as exc:
                self.problem(where, item, exc.reason)
        return tuple(items)


_NO_ADDRESSES = IPSet(())

_INBOUND_KEYS = (
    "name",
    "enabled",
    "type",
    "comment",
    "sender_domains",
    "sender_ip_addresses",
    "require_tls",
    "tls_sender_certificate_name",
    "restrict_domains_to_certificate",
    "restrict_domains_to_ip_addresses",
)


def _name_problem(raw: Mapping[str, Any]) -> str:
    if "name" not in raw:
        return "is required"
    return "must be a non-empty string of printable characters (at most 256)"


def _valid_name(name: object) -> TypeGuard[str]:
    """A connector name: a non-empty string of printable characters (at most 256)."""
    return isinstance(name, str) and bool(name.strip()) and name.isprintable() and len(name) <= 256


def _connector_name(raw: Mapping[str, Any], direction: str, index: int) -> tuple[str, bool]:
    """The connector's name for messages, and whether it is a valid name."""
    name = raw.get("name")
    if _valid_name(name):
        return name, True
    return f"{direction}[{index}]", False


class _Common:
    """What every connector table has: name, enabled, type, comment (a plain class
    for start-up, as :class:`_Parsers`)."""

    __slots__ = ("comment", "enabled", "name", "type")

    def __init__(self, *, name: str, enabled: bool, type: ConnectorType, comment: str) -> None:
        self.name = name
        self.enabled = enabled
        self.type = type
        self.comment = comment


def _read_table(
    direction: str,
    keys: Sequence[str],
    read_rest: Callable[[_Reader, _Common, _Parsers], C | None],
    raw: object,
    index: int,
    problems: list[Problem],
    parsers: _Parsers,
) -> C | None:
    """Read one ``[[inbound]]``/``[[outbound]]`` table: its shape, unknown keys and the
    keys both directions share here, the direction's own keys by ``read_rest``. None
    when it is not a table at all, or has a problem (recorded in ``problems``)."""
    if not isinstance(raw, Mapping):
        problems.append(Problem(None, f"{direction}[{index}]", raw, "must be a table"))
        return None
    name, name_ok = _connector_name(raw, direction, index)
    r = _Reader(raw, name, problems, keys, parsers)
    if not name_ok:
        r.problem("name", raw.get("name", MISSING), _name_problem(raw))
    common = _Common(
        name=name,
        enabled=r.boolean("enabled", True),
        type=r.choice("type", ConnectorType, ConnectorType.PARTNER),
        comment=r.string("comment", "") or "",
    )
    return read_rest(r, common, parsers)


def _inbound_rest(r: _Reader, common: _Common, parsers: _Parsers) -> InboundConnector | None:
    raw = r.raw
    domains = r.items("sender_domains", parsers.pattern, required=True)
    if raw.get("sender_domains") == []:
        r.problem("sender_domains", [], "must list at least one domain pattern")
    ranges = r.items("sender_ip_addresses", parsers.address, required=False)
    require_tls = r.boolean("require_tls", True)
    _, cert_name = r.certificate_name("tls_sender_certificate_name")
    restrict_cert = r.boolean("restrict_domains_to_certificate", False)
    restrict_ip = r.boolean("restrict_domains_to_ip_addresses", False)
    # Combinations name every key involved, including a missing one (section 8).
    if restrict_cert and "tls_sender_certificate_name" not in raw:
        r.problem(
            "restrict_domains_to_certificate, tls_sender_certificate_name",
            True,
            "restrict_domains_to_certificate = true needs tls_sender_certificate_name, "
            "which is missing",
        )
    raw_ips = raw.get("sender_ip_addresses", [])
    if restrict_ip and isinstance(raw_ips, list) and not raw_ips:
        r.problem(
            "restrict_domains_to_ip_addresses, sender_ip_addresses",
            True,
            "restrict_domains_to_ip_addresses = true needs at least one entry in "
            "sender_ip_addresses, which is empty or missing",
        )
    if r.failed:
        return None
    return InboundConnector(
        name=common.name,
        enabled=common.enabled,
        type=common.type,
        comment=common.comment,
        sender_domains=domains,
        # Speed and memory: one shared empty set for the many connectors without IPs.
        sender_ip_addresses=IPSet(ranges) if ranges else _NO_ADDRESSES,
        require_tls=require_tls,
        tls_sender_certificate_name=cert_name,
        restrict_domains_to_certificate=restrict_cert,
        restrict_domains_to_ip_addresses=restrict_ip,
    )


#: ``_inbound_from_mapping(raw, index, problems, parsers)``: one ``[[inbound]]`` table
#: read, every problem recorded (the reference reader).
_inbound_from_mapping = functools.partial(_read_table, "inbound", _INBOUND_KEYS, _inbound_rest)


def _check_duplicate_names(
    tables: Sequence[object],
    built: Sequence[InboundConnector | OutboundConnector | None],
    direction: str,
    problems: list[Problem],
) -> None:
    """Names identify connectors in decisions: two connectors of one direction may not
    share a name (compared case-insensitively, as EOP identities are).

    ``built[i]`` is the connector read from ``tables[i]``, or None; a built connector's
    name is valid (speed: not read from its table again).
    """
    seen: dict[str, str] = {}
    for index, raw in enumerate(tables):
        connector = built[index]
        if connector is not None:
            name = connector.name
        elif not isinstance(raw, Mapping):
            continue
        else:
            name, valid = _connector_name(raw, direction, index)
            if not valid:
                continue
        key = name.casefold()
        if key in seen:
            problems.append(
                Problem(
                    name,
                    "name",
                    name,
                    f"duplicate {direction} connector name (also used by {seen[key]!r}; "
                    "names are compared case-insensitively)",
                )
            )
        else:
            seen[key] = name


_TLS_MODE_VALUES = frozenset(m.value for m in TLSMode)  # built once, not per connector

_OUTBOUND_KEYS = (
    "name",
    "enabled",
    "type",
    "comment",
    "recipient_domains",
    "use_mx_record",
    "smart_hosts",
    "tls_settings",
    "tls_domain",
    "is_transport_rule_scoped",
    "test_mode",
)


def _outbound_rest(r: _Reader, common: _Common, parsers: _Parsers) -> OutboundConnector | None:
    raw = r.raw
    rule_scoped = r.boolean("is_transport_rule_scoped", False)
    test_mode = r.boolean("test_mode", False)
    # A rule-scoped connector is chosen by name, so it may serve no domain (section 9).
    domains = r.items("recipient_domains", parsers.pattern, required=False)
    if not rule_scoped and raw.get("recipient_domains", []) == []:
        missing = "recipient_domains" not in raw
        r.problem(
            "recipient_domains, is_transport_rule_scoped",
            MISSING if missing else [],
            ("is required" if missing else "must list at least one domain pattern")
            + " (only a connector with is_transport_rule_scoped = true may serve no domain)",
        )
    use_mx = r.boolean("use_mx_record", True)
    hosts = r.items("smart_hosts", parsers.host, required=False)
    if not use_mx and not raw.get("smart_hosts"):
        r.problem(
            "use_mx_record, smart_hosts",
            False,
            "use_mx_record = false needs at least one entry in smart_hosts, which is "
            "empty or missing",
        )
    mode = r.choice("tls_settings", TLSMode, TLSMode.OPPORTUNISTIC)
    raw_domain, tls_domain = r.certificate_name("tls_domain")
    # A tls_settings that did not parse is reported once; no follow-on problems from it.
    raw_mode = raw.get("tls_settings", str(TLSMode.OPPORTUNISTIC))
    mode_ok = isinstance(raw_mode, str) and raw_mode in _TLS_MODE_VALUES
    if mode_ok and mode is TLSMode.DOMAIN_VALIDATION and "tls_domain" not in raw:
        r.problem(
            "tls_settings, tls_domain",
            str(mode),
            'tls_settings = "domain_validation" needs tls_domain, which is missing',
        )
    if mode_ok and raw_domain is not None and mode is not TLSMode.DOMAIN_VALIDATION:
        r.problem(
            "tls_domain, tls_settings",
            raw_domain,
            f'tls_domain is only allowed with tls_settings = "domain_validation", not "{mode}"',
        )
    if r.failed:
        return None
    return OutboundConnector(
        name=common.name,
        recipient_domains=domains,
        enabled=common.enabled,
        type=common.type,
        comment=common.comment,
        use_mx_record=use_mx,
        smart_hosts=hosts,
        tls_settings=mode,
        tls_domain=tls_domain,
        is_transport_rule_scoped=rule_scoped,
        test_mode=test_mode,
    )


#: ``_outbound_from_mapping(raw, index, problems, parsers)``: one ``[[outbound]]`` table
#: read, every problem recorded (the reference reader).
_outbound_from_mapping = functools.partial(_read_table, "outbound", _OUTBOUND_KEYS, _outbound_rest)


# --------------------------------------------------------------------------------------
# Speed: the fast readers. Nearly every table of a real policy is a plain dict whose
# values all have their exact types and are valid. For such a table the fast reader
# builds the connector with a handful of checks and no per-field bookkeeping; for any
# other table (one with a problem, but also, say, a Mapping that is not a dict or a
# subclass of str) it returns None and the general reader above, the reference, reads
# the table and words every problem. A fast reader never records a problem, and builds
# a connector only where the general reader builds an equal one without a problem
# (tests/test_reading.py checks this).

_INBOUND_KEY_SET = frozenset(_INBOUND_KEYS)
_OUTBOUND_KEY_SET = frozenset(_OUTBOUND_KEYS)
_CONNECTOR_TYPES = {m.value: m for m in ConnectorType}
_TLS_MODES = {m.value: m for m in TLSMode}
_NOT_GIVEN: list[Any] = []  # an absent list setting (read only, never changed)
_ABSENT: Any = object()  # an absent string setting (None is a value, and a problem)


_Get = Callable[..., Any]


_FastCommon = tuple[str, ConnectorType, str, bool, _Get]


def _common_fast(raw: object, keys: frozenset[str]) -> _FastCommon | None:
    """A plain table's name, type, comment and enabled flag, and its ``get``; None
    unless the table is a dict of known ``keys`` and all four have their exact types
    and valid values (then the general reader words why)."""
    if type(raw) is not dict or not raw.keys() <= keys:
        return None
    get = raw.get
    name = get("name")
    kind = get("type", "partner")
    comment = get("comment", "")
    enabled = get("enabled", True)
    if (
        type(name) is str
        and _valid_name(name)
        and type(kind) is str
        and kind in _CONNECTOR_TYPES
        and type(comment) is str
        and type(enabled) is bool
    ):
        return name, _CONNECTOR_TYPES[kind], comment, enabled, get
    return None


def _read_fast(
    keys: frozenset[str],
    read_rest: Callable[[_FastCommon, _Parsers], C | None],
    raw: object,
    parsers: _Parsers,
) -> C | None:
    """The general reader's connector for a plain, valid table (its shared keys read by
    :func:`_common_fast`, the direction's own by ``read_rest``); None for any other."""
    common = _common_fast(raw, keys)
    return None if common is None else read_rest(common, parsers)


def _inbound_fast_rest(common: _FastCommon, parsers: _Parsers) -> InboundConnector | None:
    name, kind, comment, enabled, get = common
    require_tls = get("require_tls", True)
    restrict_cert = get("restrict_domains_to_certificate", False)
    restrict_ip = get("restrict_domains_to_ip_addresses", False)
    domain_texts = get("sender_domains")
    address_texts = get("sender_ip_addresses", _NOT_GIVEN)
    cert_text = get("tls_sender_certificate_name", _ABSENT)
    if not (
        type(require_tls) is bool
        and type(restrict_cert) is bool
        and type(restrict_ip) is bool
        and type(domain_texts) is list
        and domain_texts  # section 9: required, non-empty
        and type(address_texts) is list
        and (address_texts or not restrict_ip)
        # restrict_domains_to_certificate needs a certificate name.
        and (type(cert_text) is str or (cert_text is _ABSENT and not restrict_cert))
    ):
        return None
    try:
        # Each parser refuses a non-string with InvalidValue, as it refuses bad text.
        domains = tuple(map(parsers.pattern, domain_texts))
        ranges = tuple(map(parsers.address, address_texts))
        cert_name = None if cert_text is _ABSENT else parsers.certificate_name(cert_text)
    except InvalidValue:
        return None
    return InboundConnector(
        name=name,
        enabled=enabled,
        type=kind,
        comment=comment,
        sender_domains=domains,
        sender_ip_addresses=IPSet(ranges) if ranges else _NO_ADDRESSES,
        require_tls=require_tls,
        tls_sender_certificate_name=cert_name,
        restrict_domains_to_certificate=restrict_cert,
        restrict_domains_to_ip_addresses=restrict_ip,
    )


#: ``_inbound_fast(raw, parsers)``: :func:`_inbound_from_mapping` for a plain, valid
#: table; None for any other.
_inbound_fast = functools.partial(_read_fast, _INBOUND_KEY_SET, _inbound_fast_rest)


def _outbound_fast_rest(common: _FastCommon, parsers: _Parsers) -> OutboundConnector | None:
    name, kind, comment, enabled, get = common
    rule_scoped = get("is_transport_rule_scoped", False)
    test_mode = get("test_mode", False)
    use_mx = get("use_mx_record", True)
    domain_texts = get("recipient_domains", _NOT_GIVEN)
    host_texts = get("smart_hosts", _NOT_GIVEN)
    mode = get("tls_settings", "opportunistic")
    tls_domain_text = get("tls_domain", _ABSENT)
    if not (
        type(rule_scoped) is bool
        and type(test_mode) is bool
        and type(use_mx) is bool
        and type(domain_texts) is list
        and (domain_texts or rule_scoped)  # section 9
        and type(host_texts) is list
        and (host_texts or use_mx)
        and type(mode) is str
        and mode in _TLS_MODES
        # tls_domain (a string) exactly with domain_validation.
        and (
            type(tls_domain_text) is str
            if mode == "domain_validation"
            else tls_domain_text is _ABSENT
        )
    ):
        return None
    try:
        domains = tuple(map(parsers.pattern, domain_texts))
        hosts = tuple(map(parsers.host, host_texts))
        tls_domain = (
            None if tls_domain_text is _ABSENT else parsers.certificate_name(tls_domain_text)
        )
    except InvalidValue:
        return None
    return OutboundConnector(
        name=name,
        recipient_domains=domains,
        enabled=enabled,
        type=kind,
        comment=comment,
        use_mx_record=use_mx,
        smart_hosts=hosts,
        tls_settings=_TLS_MODES[mode],
        tls_domain=tls_domain,
        is_transport_rule_scoped=rule_scoped,
        test_mode=test_mode,
    )


#: ``_outbound_fast(raw, parsers)``: :func:`_outbound_from_mapping` for a plain, valid
#: table; None for any other.
_outbound_fast = functools.partial(_read_fast, _OUTBOUND_KEY_SET, _outbound_fast_rest)


def _table_claim(
    raw: object, index: int, parse_pattern: Callable[[str], DomainPattern]
) -> tuple[str, list[DomainPattern]] | None:
    """The name and valid patterns of an outbound table that would be chosen by domain
    (section 6.2), read from the table itself whatever its other problems; None for a
    table that would not be (or is not a table)."""
    if not isinstance(raw, Mapping):
        return None
    name, _ = _connector_name(raw, "outbound", index)
    # A flag of the wrong type is reported elsewhere and counts as its default.
    flags = (
        raw.get("enabled", True) is not False,
        raw.get("is_transport_rule_scoped", False) is True,
        raw.get("test_mode", False) is True,
    )
    if not flags[0] or flags[1] or flags[2]:
        return None
    patterns: list[DomainPattern] = []
    entries = raw.get("recipient_domains", [])
    for entry in entries if isinstance(entries, list) else []:
        try:
            patterns.append(parse_pattern(entry))
        except InvalidValue:
            continue  # reported by the connector's own checks
    return name, patterns


def _check_outbound_ties(
    tables: Sequence[object],
    built: Sequence[OutboundConnector | None],
    problems: list[Problem],
    parse_pattern: Callable[[str], DomainPattern],
) -> None:
    """Two selectable connectors tying at one specificity for a domain is an error (6.2).

    Two patterns tie for some domain exactly when they are equal (two different
    exact names, or suffixes of different lengths, never tie), so comparing the
    canonical patterns finds every tie. A table whose connector was not built is read
    raw, so a tie is reported even beside other problems of the same connectors
    (section 8); ``built[i]`` is the connector read from ``tables[i]``, or None.
    """
    claims: list[tuple[tuple[str, str], str, Sequence[DomainPattern]]] = []
    for index, raw in enumerate(tables):
        connector = built[index]
        if connector is not None:
            # Speed: a built connector holds what its table says (valid flags, every
            # pattern parsed), so its table is not read again: the claim is the one
            # _table_claim() would read (a property test checks).
            if connector.selectable_by_domain:
                name = connector.name
                claims.append((_name_key(name), name, connector.recipient_domains))
            continue
        claim = _table_claim(raw, index, parse_pattern)
        if claim is not None:
            claims.append((_name_key(claim[0]), *claim))
    # Speed: patterns are keyed by (is a subtree, domain), equal exactly when the
    # patterns are (only "*" has no domain), and cheaper to hash than the pattern.
    owners: dict[tuple[bool, str | None], str] = {}
    for _, name, patterns in sorted(claims, key=lambda claim: claim[0]):
        distinct = {(p.kind is PatternKind.SUBTREE, p.domain): p for p in patterns}
        for key, pattern in distinct.items():
            other = owners.setdefault(key, name)
            if other != name:
                problems.append(
                    Problem(
                        name,
                        "recipient_domains",
                        str(pattern),
                        f"ties with connector {other!r}: both are enabled, not rule-scoped, "
                        "not in test mode and claim this pattern, so neither would be "
                        "more specific; disable one, or mark one is_transport_rule_scoped",
                    )
                )


#: The keys of ``[trust]``; ``ca_file`` and ``crl_files`` name files the loader reads.
_TRUST_KEYS = ("ca_file", "crl_files", "revocation")


def _read_trust(table: object, problems: list[Problem]) -> Revocation:
    """Check ``[trust]``'s shape (every problem) and read ``revocation`` (section 11)."""
    if not isinstance(table, Mapping):
        message = "must be a table"
        if isinstance(table, list):  # [[trust]] written for [trust]
            message += ": write [trust] (one bracket pair), not [[trust]]"
        problems.append(Problem(None, "trust", table, message))
        return Revocation.SOFT
    revocation = Revocation.SOFT
    for key, value in table.items():
        if key not in _TRUST_KEYS:
            message = _unknown_key_message(key, _TRUST_KEYS)
            problems.append(Problem(None, f"trust.{key}", value, message))
        elif key == "ca_file" and not isinstance(value, str):
            problems.append(Problem(None, "trust.ca_file", value, "must be a string"))
        elif key == "crl_files":
            if not isinstance(value, list):
                problems.append(
                    Problem(None, "trust.crl_files", value, "must be an array of file names")
                )
                continue
            for position, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    problems.append(
                        Problem(
                            None,
                            f"trust.crl_files[{position}]",
                            item,
                            "must be a non-empty string (a file name)",
                        )
                    )
        elif key == "revocation":
            if isinstance(value, str) and value in {str(m) for m in Revocation}:
                revocation = Revocation(value)
            else:
                choices = ", ".join(repr(str(m)) for m in Revocation)
                message = f"must be one of {choices}"
                problems.append(Problem(None, "trust.revocation", value, message))
    return revocation


def policy_from_mapping(
    data: Mapping[str, Any],
    *,
    trust: TrustStore | None,
    reuse: Policy | None = None,
    keep_tables: bool = False,
) -> Policy:
    """A :class:`Policy` from the decoded policy file (section 9), or a
    :class:`PolicyError` listing every problem found.

    ``reuse``: a policy loaded earlier with ``keep_tables``; a connector table that
    reads alike (:meth:`_Tables.same`) gives that policy's connector instead of a new,
    equal one (the result and every problem are those of a load without it).
    ``keep_tables``: the policy keeps ``data``'s tables for a later ``reuse``; only for
    a ``data`` no one else holds or changes (the file loader's own decoded file).
    """
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise PolicyError([Problem(None, "(policy)", data, "must be a table")])
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(Problem(None, str(key), data[key], _unknown_key_message(key)))
    revocation = _read_trust(data.get("trust", {}), problems)
    parsers = _Parsers.for_one_load()
    earlier = None if reuse is None else reuse._sources
    raw_inbound, built_inbound = _read_tables(
        data,
        "inbound",
        _inbound_fast,
        _inbound_from_mapping,
        problems,
        parsers,
        None if earlier is None else earlier.inbound,
    )
    raw_outbound, built_outbound = _read_tables(
        data,
        "outbound",
        _outbound_fast,
        _outbound_from_mapping,
        problems,
        parsers,
        None if earlier is None else earlier.outbound,
    )
    _check_outbound_ties(raw_outbound, built_outbound, problems, parsers.pattern)
    if problems:
        raise PolicyError(problems)
    # Without problems every table was built (a table that is not is a problem).
    inbound = tuple(c for c in built_inbound if c is not None)
    outbound = tuple(c for c in built_outbound if c is not None)
    policy = Policy(inbound=inbound, outbound=outbound, trust=trust, revocation=revocation)
    if keep_tables:
        sources = _Sources(
            _Tables(raw_inbound, built_inbound), _Tables(raw_outbound, built_outbound)
        )
        object.__setattr__(policy, "_sources", sources)  # a frozen value's private cache
    return policy


def forget_tables(policy: Policy) -> None:
    """Drop the decoded tables a policy kept for a reuse (``keep_tables``) once no
    later load will reuse them: about as much memory as its connectors. The policy's
    value is unchanged; reusing it afterwards reads every table again."""
    object.__setattr__(policy, "_sources", None)
