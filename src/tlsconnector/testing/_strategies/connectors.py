"""Strategies for connectors (as mappings and built) and whole policies (sections 5, 6, 9)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._model import InboundConnector, OutboundConnector, Policy
from tlsconnector._names import (
    DomainPattern,
    canonical_domain,
)
from tlsconnector.testing._pki import (
    CertificateAuthority,
    default_authority,
)
from tlsconnector.testing._strategies._draw import _BOOLEANS, _pick
from tlsconnector.testing._strategies.addresses import _V4, _V6, ip_entries
from tlsconnector.testing._strategies.domains import (
    _ASCII_LABEL,
    _domains_cached,
    _draw_spelling,
    _is_certificate_name,
    _is_domain,
    certificate_names,
    domain_patterns,
)

# --------------------------------------------------------------------------------------
# Connectors and policies (sections 5, 6, 9)

_READABLE_NAMES = (
    "Fabrikam Bank inbound",
    "Fabrikam Bank outbound",
    "Partner",
    "partner",
    "Contoso relay",
    "Zürich Partner",
)
_NAME_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("C", "Zl", "Zp")), min_size=1, max_size=40
)
_CONNECTOR_NAMES = st.one_of(st.sampled_from(_READABLE_NAMES), _NAME_TEXT).filter(
    lambda name: bool(name.strip()) and name.isprintable()
)


def connector_names() -> SearchStrategy[str]:
    """Valid connector names: printable, not blank, at most 256 characters."""
    return _CONNECTOR_NAMES


def _draw_inbound(
    draw: st.DrawFn,
    name: str,
    pattern: Any,
    cert_name: Any,
    entry: Any,
) -> dict[str, Any]:
    """One valid ``[[inbound]]`` table; ``pattern``, ``cert_name`` and ``entry`` are
    callables drawing one value each."""
    raw: dict[str, Any] = {
        "name": name,
        "sender_domains": [pattern() for _ in range(draw(st.integers(1, 3)))],
    }
    if draw(_BOOLEANS):
        raw["enabled"] = _pick(draw, (True, True, False))
    if draw(_BOOLEANS):
        raw["type"] = _pick(draw, ("partner", "partner", "on_premises"))
    if draw(_BOOLEANS):
        raw["comment"] = _pick(draw, ("", "forced TLS", "Zürich \u00e9 \U0001f512"))
    if draw(_BOOLEANS):
        raw["require_tls"] = draw(_BOOLEANS)
    if draw(_BOOLEANS):
        raw["tls_sender_certificate_name"] = cert_name()
        if draw(_BOOLEANS):
            raw["restrict_domains_to_certificate"] = draw(_BOOLEANS)
    ip_mode = _pick(draw, ("none", "listed", "restricted", "empty"))
    if ip_mode == "empty":
        raw["sender_ip_addresses"] = []
    elif ip_mode != "none":
        raw["sender_ip_addresses"] = [entry() for _ in range(draw(st.integers(1, 3)))]
        raw["restrict_domains_to_ip_addresses"] = ip_mode == "restricted"
    return raw


_DrawTable = Callable[[st.DrawFn, str, Any, Any, Any], dict[str, Any]]


@st.composite
def _mapping(
    draw: st.DrawFn,
    draw_table: _DrawTable,
    names: SearchStrategy[str],
    patterns: SearchStrategy[str],
    cert_names: SearchStrategy[str],
    others: SearchStrategy[str],
) -> dict[str, Any]:
    """One table from ``draw_table`` (:func:`_draw_inbound` or :func:`_draw_outbound`),
    with the name drawn from ``names`` and callables drawing a pattern, a certificate
    name and the direction's other entry (an IP entry, a smart host)."""
    return draw_table(
        draw, draw(names), lambda: draw(patterns), lambda: draw(cert_names), lambda: draw(others)
    )


def _default_certificate_names() -> SearchStrategy[str]:
    return certificate_names()


def inbound_connector_mappings(
    *,
    names: SearchStrategy[str] | None = None,
    patterns: SearchStrategy[str] | None = None,
    certificate_names: SearchStrategy[str] | None = None,
    ip_entries: SearchStrategy[str] | None = None,
) -> SearchStrategy[dict[str, Any]]:
    """``[[inbound]]`` tables as the TOML loader hands them to
    :meth:`~tlsconnector.Policy.from_mapping`: every one valid, optional keys
    sometimes left out so that the defaults take part."""
    return _mapping(
        _draw_inbound,
        names if names is not None else _CONNECTOR_NAMES,
        patterns if patterns is not None else domain_patterns(),
        certificate_names if certificate_names is not None else _default_certificate_names(),
        ip_entries if ip_entries is not None else _IP_ENTRIES,
    )


def _draw_smart_host(draw: st.DrawFn, host: Any) -> str:
    kind = _pick(draw, ("name", "ipv4", "ipv6"))
    port = _pick(draw, (None, None, 25, 587))
    if kind == "name":
        text = str(host())
    elif kind == "ipv4":
        text = str(draw(_V4))
    else:
        text = str(draw(_V6))
        return text if port is None else f"[{text}]:{port}"
    return text if port is None else f"{text}:{port}"


_MODES = ("domain_validation", "certificate_validation", "encryption_only", "opportunistic")


def _draw_outbound(
    draw: st.DrawFn, name: str, pattern: Any, cert_name: Any, host: Any
) -> dict[str, Any]:
    """One valid ``[[outbound]]`` table (callables draw one pattern, name, host)."""
    rule_scoped = _pick(draw, (False, False, False, True))
    raw: dict[str, Any] = {"name": name}
    count = draw(st.integers(0 if rule_scoped else 1, 3))
    patterns = [pattern() for _ in range(count)]
    if bool(patterns) or draw(_BOOLEANS):
        raw["recipient_domains"] = patterns
    if rule_scoped:
        raw["is_transport_rule_scoped"] = True
    if draw(_BOOLEANS):
        raw["enabled"] = _pick(draw, (True, True, False))
    if draw(_BOOLEANS):
        raw["type"] = _pick(draw, ("partner", "partner", "on_premises"))
    if draw(_BOOLEANS):
        raw["comment"] = _pick(draw, ("", "forced TLS"))
    if draw(_BOOLEANS):
        raw["test_mode"] = _pick(draw, (False, False, True))
    use_mx = draw(_BOOLEANS)
    hosts = [_draw_smart_host(draw, host) for _ in range(draw(st.integers(0 if use_mx else 1, 2)))]
    if not use_mx or draw(_BOOLEANS):
        raw["use_mx_record"] = use_mx
    if bool(hosts) or draw(_BOOLEANS):
        raw["smart_hosts"] = hosts
    mode = _pick(draw, _MODES)
    if mode != "opportunistic" or draw(_BOOLEANS):
        raw["tls_settings"] = mode
    if mode == "domain_validation":
        raw["tls_domain"] = cert_name()
    return raw


def outbound_connector_mappings(
    *,
    names: SearchStrategy[str] | None = None,
    patterns: SearchStrategy[str] | None = None,
    certificate_names: SearchStrategy[str] | None = None,
    smart_hosts: SearchStrategy[str] | None = None,
) -> SearchStrategy[dict[str, Any]]:
    """``[[outbound]]`` tables for :meth:`~tlsconnector.Policy.from_mapping`, every one
    valid: ``tls_domain`` exactly with ``domain_validation``, smart hosts whenever
    ``use_mx_record = false``, no recipient domains only when rule-scoped.

    ``smart_hosts`` draws host names; IPv4 and IPv6 literals and ports are added here.
    """
    return _mapping(
        _draw_outbound,
        names if names is not None else _CONNECTOR_NAMES,
        patterns if patterns is not None else domain_patterns(),
        certificate_names if certificate_names is not None else _default_certificate_names(),
        smart_hosts if smart_hosts is not None else _domains_cached(False, False, False, 4),
    )


def _single(direction: str, raw: dict[str, Any]) -> Any:
    policy = Policy.from_mapping({direction: [raw]}, trust=None)
    return getattr(policy, direction)[0]


def inbound_connectors(**kwargs: Any) -> SearchStrategy[InboundConnector]:
    """Built :class:`~tlsconnector.InboundConnector` values; keyword arguments as for
    :func:`inbound_connector_mappings`."""
    return inbound_connector_mappings(**kwargs).map(lambda raw: _single("inbound", raw))


def outbound_connectors(**kwargs: Any) -> SearchStrategy[OutboundConnector]:
    """Built :class:`~tlsconnector.OutboundConnector` values; keyword arguments as for
    :func:`outbound_connector_mappings`."""
    return outbound_connector_mappings(**kwargs).map(lambda raw: _single("outbound", raw))


_IP_ENTRIES = ip_entries()


def _draw_related_domain(draw: st.DrawFn, base: Sequence[str]) -> str:
    """A domain of the pool, or one label under it."""
    domain = _pick(draw, base)
    if draw(_BOOLEANS):
        child = f"{draw(_ASCII_LABEL)}.{domain}"
        if _is_domain(child):
            return child
    return domain


def _draw_related_pattern(draw: st.DrawFn, base: Sequence[str]) -> str:
    kind = _pick(draw, ("exact", "subtree", "any"))
    if kind == "any":
        return "*"
    text = _draw_spelling(draw, _draw_related_domain(draw, base))
    return text if kind == "exact" else f"*.{text}"


def _draw_related_name(draw: st.DrawFn, base: Sequence[str]) -> str:
    domain = _draw_related_domain(draw, base)
    name = f"*.{domain}" if draw(_BOOLEANS) else domain
    return name if _is_certificate_name(name) else domain


def _untie(outbound: list[dict[str, Any]]) -> None:
    """Section 6.2: two selectable connectors may not claim one pattern. Patterns
    already claimed are dropped; a connector left with none is disabled instead."""
    claimed: set[DomainPattern] = set()
    for raw in sorted(outbound, key=lambda r: (r["name"].casefold(), r["name"])):
        selectable = (
            raw.get("enabled", True)
            and not raw.get("is_transport_rule_scoped", False)
            and not raw.get("test_mode", False)
        )
        if not selectable:
            continue
        patterns = raw.get("recipient_domains", [])
        free = [p for p in patterns if DomainPattern.parse(p) not in claimed]
        if not free:
            raw["enabled"] = False
            continue
        raw["recipient_domains"] = free
        claimed.update(DomainPattern.parse(p) for p in free)


def _draw_names(draw: st.DrawFn, low: int, high: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(low, high))):
        name = draw(_CONNECTOR_NAMES)
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    if len(names) < low:
        reject()
    return names


@st.composite
def _policy_mapping(
    draw: st.DrawFn,
    domains_: SearchStrategy[str],
    inbound: tuple[int, int],
    outbound: tuple[int, int],
) -> dict[str, Any]:
    base = list(
        dict.fromkeys(canonical_domain(draw(domains_)) for _ in range(draw(st.integers(1, 3))))
    )
    entries = [draw(_IP_ENTRIES) for _ in range(draw(st.integers(1, 3)))]

    def pattern() -> str:
        return _draw_related_pattern(draw, base)

    def cert_name() -> str:
        return _draw_related_name(draw, base)

    def entry() -> str:
        return _pick(draw, entries)

    def host() -> str:
        return _pick(draw, base)

    inbound_tables = [
        _draw_inbound(draw, name, pattern, cert_name, entry) for name in _draw_names(draw, *inbound)
    ]
    outbound_tables = [
        _draw_outbound(draw, name, pattern, cert_name, host)
        for name in _draw_names(draw, *outbound)
    ]
    _untie(outbound_tables)
    return {"inbound": inbound_tables, "outbound": outbound_tables}


def policy_mappings(
    *,
    domains: SearchStrategy[str] | None = None,
    min_inbound: int = 0,
    max_inbound: int = 4,
    min_outbound: int = 0,
    max_outbound: int = 4,
) -> SearchStrategy[dict[str, Any]]:
    """Whole policies as the mapping :meth:`~tlsconnector.Policy.from_mapping` takes
    (``{"inbound": [...], "outbound": [...]}``; no ``[trust]`` table).

    Connectors draw their patterns, certificate names and IP entries from small pools
    (one to three base domains, one to three IP entries) so that they overlap, spell
    one domain in different ways and compete for the same sessions. Names are unique
    per direction; no two selectable outbound connectors tie (section 6.2)."""
    if not 0 <= min_inbound <= max_inbound or not 0 <= min_outbound <= max_outbound:
        raise ValueError("policy_mappings: need 0 <= min <= max for each direction")
    return _policy_mapping(
        domains if domains is not None else _domains_cached(True, True, True, 4),
        (min_inbound, max_inbound),
        (min_outbound, max_outbound),
    )


def policies(
    *,
    authority: CertificateAuthority | None = None,
    domains: SearchStrategy[str] | None = None,
    min_inbound: int = 0,
    max_inbound: int = 4,
    min_outbound: int = 0,
    max_outbound: int = 4,
) -> SearchStrategy[Policy]:
    """Built :class:`~tlsconnector.Policy` values from :func:`policy_mappings`,
    trusting ``authority`` (default: :func:`default_authority`), so that chains from
    :func:`certificates` and the session strategies can validate."""
    mappings = policy_mappings(
        domains=domains,
        min_inbound=min_inbound,
        max_inbound=max_inbound,
        min_outbound=min_outbound,
        max_outbound=max_outbound,
    )

    def build(raw: Mapping[str, Any]) -> Policy:
        pki = authority if authority is not None else default_authority()
        return Policy.from_mapping(raw, trust=pki.trust_store)

    return mappings.map(build)
