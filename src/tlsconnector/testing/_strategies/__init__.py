"""Hypothesis strategies for every input tlsconnector takes, one module per kind.

:mod:`.domains` (domains, scope patterns, certificate names, CNs near a name),
:mod:`.addresses` (IP addresses and ``sender_ip_addresses`` entries),
:mod:`.certificates` (validity periods, EKUs, real chains, TLS facts),
:mod:`.connectors` (connectors and whole policies) and :mod:`.sessions` (inbound and
outbound sessions aimed at a policy). Every public name is re-exported by
:mod:`tlsconnector.testing`.
"""

from __future__ import annotations

from tlsconnector.testing._strategies.addresses import (
    addresses_near,
    ip_addresses,
    ip_entries,
)
from tlsconnector.testing._strategies.certificates import (
    certificates,
    ekus,
    tls_facts,
    validity_periods,
)
from tlsconnector.testing._strategies.connectors import (
    connector_names,
    inbound_connector_mappings,
    inbound_connectors,
    outbound_connector_mappings,
    outbound_connectors,
    policies,
    policy_mappings,
)
from tlsconnector.testing._strategies.domains import (
    certificate_names,
    cns_near,
    domain_patterns,
    domains,
    spellings,
)
from tlsconnector.testing._strategies.sessions import (
    domains_near,
    inbound_sessions,
    outbound_sessions,
)

__all__ = [
    "addresses_near",
    "certificate_names",
    "certificates",
    "cns_near",
    "connector_names",
    "domain_patterns",
    "domains",
    "domains_near",
    "ekus",
    "inbound_connector_mappings",
    "inbound_connectors",
    "inbound_sessions",
    "ip_addresses",
    "ip_entries",
    "outbound_connector_mappings",
    "outbound_connectors",
    "outbound_sessions",
    "policies",
    "policy_mappings",
    "spellings",
    "tls_facts",
    "validity_periods",
]
