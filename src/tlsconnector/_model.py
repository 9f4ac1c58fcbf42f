"""The model: immutable connectors and the policy that holds them (values only).

Values are built by :mod:`tlsconnector._reading` (:meth:`Policy.from_mapping`), which
checks every key and collects every problem first; a :class:`Policy` indexes its
connectors once, by domain. Pure: the trust store arrives already parsed.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import attrs

from tlsconnector._revocation_settings import Revocation

from ._addresses import IPSet
from ._errors import InvalidValue
from ._index import DomainIndex
from ._names import CertificateName, DomainPattern, canonical_domain

if TYPE_CHECKING:  # speed: a policy without trust anchors never imports cryptography
    from tlsconnector._chains import TrustStore
    from tlsconnector._reading import _Sources

__all__ = [
    "ConnectorType",
    "Direction",
    "InboundConnector",
    "OutboundConnector",
    "Policy",
    "Revocation",
    "SmartHost",
    "TLSMode",
]


class Direction(enum.StrEnum):
    """Which way mail goes: received from a partner (inbound connectors) or sent."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class ConnectorType(enum.StrEnum):
    """EOP's ``ConnectorType``: partner connectors are the ones evaluated here."""

    PARTNER = "partner"
    #: Loaded and validated, but takes no part in partner evaluation (section 5.6).
    ON_PREMISES = "on_premises"


def _name_key(name: str) -> tuple[str, str]:
    """Order connectors by name so no answer depends on file order (section 5.5)."""
    return (name.casefold(), name)


def _sort_key(connector: InboundConnector | OutboundConnector) -> tuple[str, str]:
    """``connector.sort_key`` (speed: one call per connector instead of three)."""
    name = connector.name
    return (name.casefold(), name)


@attrs.frozen
class InboundConnector:
    """An inbound connector: rules for mail received from a partner (section 5)."""

    name: str
    sender_domains: tuple[DomainPattern, ...]
    enabled: bool = True
    type: ConnectorType = ConnectorType.PARTNER
    comment: str = ""
    sender_ip_addresses: IPSet = attrs.field(factory=lambda: IPSet(()))
    require_tls: bool = True
    tls_sender_certificate_name: CertificateName | None = None
    restrict_domains_to_certificate: bool = False
    restrict_domains_to_ip_addresses: bool = False

    @property
    def requires_tls(self) -> bool:
        """TLS is required when asked for, or implied by a certificate name (section 5.4)."""
        return self.require_tls or self.tls_sender_certificate_name is not None

    @property
    def restricts(self) -> bool:
        """True when the connector restricts by certificate name or by IP (section 5.3).

        Restricting candidates beat the others. ``require_tls`` alone does not make a
        connector restricting: a TLS-only connector added for a partner's domain (a
        "DR site") must never switch off another connector's certificate or IP check.
        """
        return self.tls_sender_certificate_name is not None or self.restrict_domains_to_ip_addresses

    @property
    def sort_key(self) -> tuple[str, str]:
        return _name_key(self.name)

    def specificity_for(self, domain: str | None) -> tuple[int, int] | None:
        """The most specific of this connector's sender patterns matching ``domain``."""
        return _best(self.sender_domains, domain)


class TLSMode(enum.StrEnum):
    """Outbound ``tls_settings`` (section 6)."""

    #: STARTTLS when offered; plaintext allowed; nothing validated.
    OPPORTUNISTIC = "opportunistic"
    #: STARTTLS required; any certificate, self-signed included ("self-signed certificate").
    ENCRYPTION_ONLY = "encryption_only"
    #: STARTTLS required; chain validated ("trusted certification authority").
    CERTIFICATE_VALIDATION = "certificate_validation"
    #: STARTTLS required; chain validated and CN checked against ``tls_domain``
    #: ("recipient certificate matches domain").
    DOMAIN_VALIDATION = "domain_validation"

    @property
    def requires_tls(self) -> bool:
        return self is not TLSMode.OPPORTUNISTIC

    @property
    def validates_chain(self) -> bool:
        return self in (TLSMode.CERTIFICATE_VALIDATION, TLSMode.DOMAIN_VALIDATION)

    @property
    def strictness(self) -> int:
        """0 (opportunistic) to 3 (domain validation): each level adds checks."""
        return list(TLSMode).index(self)


@attrs.frozen
class SmartHost:
    """A smart host: a host name, an IPv4 or an IPv6 literal, with an optional port."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SmartHost:
        """``mail.example.com``, ``192.0.2.1:587``, ``2001:db8::1``, ``[2001:db8::1]:25``.

        CIDR blocks and ranges are not routes; IPv6 with a port needs brackets.
        """
        if not isinstance(text, str) or not text or len(text) > 300:
            raise InvalidValue(text, "must be a host name, IPv4 or IPv6 address")
        host, port = text, None
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                raise InvalidValue(text, "unclosed '[' in an IPv6 literal")
            host, rest = text[1:close], text[close + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise InvalidValue(text, "expected ':port' after ']'")
                port = _port(text, rest[1:])
            return cls(_ip_host(text, host, version=6), port)
        if "/" in text or ("-" in text and _looks_like_range(text)):
            raise InvalidValue(text, "a CIDR block or range is not a route; name one host")
        if text.count(":") == 1:
            host, raw_port = text.split(":")
            port = _port(text, raw_port)
        elif text.count(":") > 1:
            return cls(_ip_host(text, text, version=6), None)
        # Only a dotted decimal can be an IPv4 address (ipaddress accepts no other
        # spelling); a host name skips the failed parse, which costs an exception.
        if _DOTTED_DECIMAL.fullmatch(host):
            try:
                return cls(_ip_host(text, host, version=4), port)
            except InvalidValue:
                pass
        try:
            return cls(canonical_domain(host), port)
        except InvalidValue as exc:
            raise InvalidValue(text, f"not a host name or IP address: {exc.reason}") from None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port is not None else self.host
        return host if self.port is None else f"{host}:{self.port}"


_DOTTED_DECIMAL = re.compile(r"[0-9.]+")
_IP_CHARACTERS = re.compile(r"[0-9A-Fa-f:.]+")


def _looks_like_range(text: str) -> bool:
    first, _, last = text.partition("-")
    # Host names with a hyphen are common; only address characters can be a range.
    if not (_IP_CHARACTERS.fullmatch(first) and _IP_CHARACTERS.fullmatch(last)):
        return False
    return is_ip_address(first) and is_ip_address(last)


def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address as :mod:`ipaddress` reads one: a
    smart host's ``host`` is either one (in its canonical text) or a host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _port(text: str, raw: str) -> int:
    if not raw.isdigit() or not raw.isascii() or not 1 <= int(raw) <= 65535:
        raise InvalidValue(text, f"port {raw!r} is not a number from 1 to 65535")
    return int(raw)


def _ip_host(text: str, host: str, *, version: int) -> str:
    if "%" in host:
        # A zone identifier names an interface of one machine: not a route (section 4).
        raise InvalidValue(text, "an IPv6 zone identifier (%...) is not allowed in a route")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidValue(text, f"not an IPv{version} address") from None
    if address.version != version:
        raise InvalidValue(text, f"not an IPv{version} address")
    return str(address)


@attrs.frozen
class OutboundConnector:
    """An outbound connector: how mail to a partner's domains is routed and secured."""

    name: str
    recipient_domains: tuple[DomainPattern, ...]
    enabled: bool = True
    type: ConnectorType = ConnectorType.PARTNER
    comment: str = ""
    use_mx_record: bool = True
    smart_hosts: tuple[SmartHost, ...] = ()
    tls_settings: TLSMode = TLSMode.OPPORTUNISTIC
    tls_domain: CertificateName | None = None
    is_transport_rule_scoped: bool = False
    test_mode: bool = False

    @property
    def selectable_by_domain(self) -> bool:
        """Chosen by recipient domain only when enabled, not rule-scoped, not in test mode."""
        return self.enabled and not self.is_transport_rule_scoped and not self.test_mode

    @property
    def sort_key(self) -> tuple[str, str]:
        return _name_key(self.name)

    def specificity_for(self, domain: str | None) -> tuple[int, int] | None:
        """The most specific of this connector's recipient patterns matching ``domain``."""
        return _best(self.recipient_domains, domain)


def _best(patterns: Sequence[DomainPattern], domain: str | None) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    for pattern in patterns:
        if pattern.matches(domain) and (best is None or pattern.specificity > best):
            best = pattern.specificity
    return best


@attrs.frozen
class Policy:
    """A validated policy: connectors (each direction sorted by name) and trust anchors."""

    inbound: tuple[InboundConnector, ...] = ()
    outbound: tuple[OutboundConnector, ...] = ()
    #: Trust anchors for chain validation; None or empty means no chain is trusted.
    #: The trust store also carries the CRLs (``[trust] crl_files``, section 11).
    trust: TrustStore | None = None
    #: ``[trust] revocation``: what a certificate without a usable answer gets.
    revocation: Revocation = attrs.field(default=Revocation.SOFT, converter=Revocation)
    # Indexes built once from the fields above (not part of the value).
    _inbound_index: DomainIndex[InboundConnector] = attrs.field(init=False, eq=False, repr=False)
    _outbound_index: DomainIndex[OutboundConnector] = attrs.field(init=False, eq=False, repr=False)
    _outbound_by_name: dict[str, OutboundConnector] = attrs.field(init=False, eq=False, repr=False)
    #: The decoded tables the connectors were read from, kept only when the loader is
    #: asked to (``load_policy(..., keep_tables=True)``) so that a later load can reuse
    #: the connectors of tables that read alike (not part of the value).
    _sources: _Sources | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        inbound = tuple(sorted(self.inbound, key=_sort_key))
        outbound = tuple(sorted(self.outbound, key=_sort_key))
        object.__setattr__(self, "inbound", inbound)
        object.__setattr__(self, "outbound", outbound)
        # Disabled and on-premises connectors are dropped before specificity is
        # compared (sections 2 and 5.6); outbound, only selectable ones (6.2).
        partners = (c for c in inbound if c.enabled and c.type is ConnectorType.PARTNER)
        object.__setattr__(
            self, "_inbound_index", DomainIndex(partners, attrgetter("sender_domains"))
        )
        selectable = (c for c in outbound if c.selectable_by_domain)
        object.__setattr__(
            self, "_outbound_index", DomainIndex(selectable, attrgetter("recipient_domains"))
        )
        by_name: dict[str, OutboundConnector] = {}
        for connector in outbound:
            by_name.setdefault(connector.name.casefold(), connector)
        object.__setattr__(self, "_outbound_by_name", by_name)

    def inbound_candidates(self, domain: str | None) -> tuple[InboundConnector, ...]:
        """Enabled partner connectors matching a canonical sender ``domain`` at the most
        specific level (section 5.2), sorted by name; None is the null sender."""
        return self._inbound_index.best(domain)

    def outbound_candidates(self, domain: str) -> tuple[OutboundConnector, ...]:
        """Selectable outbound connectors matching a canonical recipient ``domain`` at the
        most specific level (section 6.2), sorted by name."""
        return self._outbound_index.best(domain)

    def outbound_named(self, name: str) -> OutboundConnector | None:
        """The outbound connector called ``name`` (case-insensitively), or None."""
        return self._outbound_by_name.get(name.casefold())

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, trust: TrustStore | None, reuse: Policy | None = None
    ) -> Policy:
        """Build a policy from the decoded policy file (section 9).

        Raises :class:`PolicyError` listing every problem found. ``[trust]`` is read
        by the file loader (it names a file); here only its shape is checked. The
        reading itself is :func:`tlsconnector._reading.policy_from_mapping`.
        ``reuse``: a policy loaded with ``keep_tables=True``, whose connectors stand in
        for the tables of ``data`` that read alike (the result is equal either way).
        """
        # The reader sits on the model's floor and builds these values; imported here,
        # not at the top, because it imports this module.
        from ._reading import policy_from_mapping

        return policy_from_mapping(data, trust=trust, reuse=reuse)
