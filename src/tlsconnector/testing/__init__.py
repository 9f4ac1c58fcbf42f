"""Property-test your connector policies: Hypothesis strategies and ready-made checks.

``tlsconnector.testing`` is for *your* test suite (it needs the ``testing`` extra:
``pip install 'tlsconnector[testing]'``, which brings Hypothesis). Importing
``tlsconnector`` itself never imports Hypothesis.

Three layers:

* **Strategies** for every input tlsconnector takes: domains (ASCII, IDN, mixed case,
  trailing dot), scope patterns, certificate names, IP addresses and
  ``sender_ip_addresses`` entries, real X.509 chains from a test CA, connectors (as
  mappings and as built objects), whole policies, and inbound/outbound sessions
  *aimed at* a policy (domains it governs and ones one label off, addresses at the
  edges of its ranges, CNs that match its certificate names and ones one label off).
* **Checks** that run a Hypothesis search over those sessions and raise
  :class:`AssertionError` with the smallest counterexample explained:
  :func:`assert_forced_tls`, :func:`assert_only_from_addresses`,
  :func:`assert_never_delivered_without_validation`.
* **Helpers**: :func:`decision_from_json` (the inverse of ``to_json()``),
  :func:`describe_session`, and the test PKI (:class:`CertificateAuthority`).

See docs/testing.md for a walk-through.
"""

from ._checks import (
    assert_forced_tls,
    assert_never_delivered_without_validation,
    assert_only_from_addresses,
    describe_session,
)
from ._json import decision_from_json, inbound_decision_from_json, outbound_decision_from_json
from ._pki import (
    DEFAULT_TIME,
    EKU_CLIENT_AUTH,
    EKU_EMAIL_ONLY,
    EKU_SERVER_AUTH,
    EKU_TLS_BOTH,
    CertificateAuthority,
    Issuer,
    MintedChain,
    default_authority,
)
from ._strategies import (
    addresses_near,
    certificate_names,
    certificates,
    cns_near,
    connector_names,
    domain_patterns,
    domains,
    domains_near,
    ekus,
    inbound_connector_mappings,
    inbound_connectors,
    inbound_sessions,
    ip_addresses,
    ip_entries,
    outbound_connector_mappings,
    outbound_connectors,
    outbound_sessions,
    policies,
    policy_mappings,
    spellings,
    tls_facts,
    validity_periods,
)

__all__ = [
    "DEFAULT_TIME",
    "EKU_CLIENT_AUTH",
    "EKU_EMAIL_ONLY",
    "EKU_SERVER_AUTH",
    "EKU_TLS_BOTH",
    "CertificateAuthority",
    "Issuer",
    "MintedChain",
    "addresses_near",
    "assert_forced_tls",
    "assert_never_delivered_without_validation",
    "assert_only_from_addresses",
    "certificate_names",
    "certificates",
    "cns_near",
    "connector_names",
    "decision_from_json",
    "default_authority",
    "describe_session",
    "domain_patterns",
    "domains",
    "domains_near",
    "ekus",
    "inbound_connector_mappings",
    "inbound_connectors",
    "inbound_decision_from_json",
    "inbound_sessions",
    "ip_addresses",
    "ip_entries",
    "outbound_connector_mappings",
    "outbound_connectors",
    "outbound_decision_from_json",
    "outbound_sessions",
    "policies",
    "policy_mappings",
    "spellings",
    "tls_facts",
    "validity_periods",
]
