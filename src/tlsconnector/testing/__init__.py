"""Property-test your connector policies: Hypothesis strategies and ready-made checks.

``tlsconnector.testing`` is for *your* test suite (it needs the ``testing`` extra:
``pip install 'tlsconnector[testing]'``, which brings Hypothesis). Importing
``tlsconnector`` itself never imports Hypothesis, nor do the test PKI
(:class:`CertificateAuthority`, ``tlsconnector.testing._pki``) and the JSON helpers.

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
* **Helpers**: :func:`decision_from_json` (the inverse of ``to_dict()``),
  :func:`describe_session`, the test PKI (:class:`CertificateAuthority`, also made
  from your own CA with :meth:`~CertificateAuthority.from_pem` and
  :meth:`~CertificateAuthority.from_files`) and :func:`trusting`, which points a
  policy at a test authority.

See docs/testing.md for a walk-through.
"""

import importlib
from typing import TYPE_CHECKING

from tlsconnector.testing._json import (
    decision_from_json,
    inbound_decision_from_json,
    outbound_decision_from_json,
)
from tlsconnector.testing._pki import (
    DEFAULT_TIME,
    EKU_CLIENT_AUTH,
    EKU_EMAIL_ONLY,
    EKU_SERVER_AUTH,
    EKU_TLS_BOTH,
    CertificateAuthority,
    Issuer,
    MintedChain,
    default_authority,
    trusting,
)

if TYPE_CHECKING:  # the real types for type checkers; imported lazily at run time
    from tlsconnector.testing._checks import (
        assert_forced_tls,
        assert_never_delivered_without_validation,
        assert_only_from_addresses,
        describe_session,
    )
    from tlsconnector.testing._strategies import (
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
    "trusting",
    "validity_periods",
]

#: Names that need Hypothesis, imported on first use: the test PKI and the JSON
#: helpers import without it (the demo mints its certificates with the PKI).
_LAZY = {
    "addresses_near": "tlsconnector.testing._strategies",
    "assert_forced_tls": "tlsconnector.testing._checks",
    "assert_never_delivered_without_validation": "tlsconnector.testing._checks",
    "assert_only_from_addresses": "tlsconnector.testing._checks",
    "certificate_names": "tlsconnector.testing._strategies",
    "certificates": "tlsconnector.testing._strategies",
    "cns_near": "tlsconnector.testing._strategies",
    "connector_names": "tlsconnector.testing._strategies",
    "describe_session": "tlsconnector.testing._checks",
    "domain_patterns": "tlsconnector.testing._strategies",
    "domains": "tlsconnector.testing._strategies",
    "domains_near": "tlsconnector.testing._strategies",
    "ekus": "tlsconnector.testing._strategies",
    "inbound_connector_mappings": "tlsconnector.testing._strategies",
    "inbound_connectors": "tlsconnector.testing._strategies",
    "inbound_sessions": "tlsconnector.testing._strategies",
    "ip_addresses": "tlsconnector.testing._strategies",
    "ip_entries": "tlsconnector.testing._strategies",
    "outbound_connector_mappings": "tlsconnector.testing._strategies",
    "outbound_connectors": "tlsconnector.testing._strategies",
    "outbound_sessions": "tlsconnector.testing._strategies",
    "policies": "tlsconnector.testing._strategies",
    "policy_mappings": "tlsconnector.testing._strategies",
    "spellings": "tlsconnector.testing._strategies",
    "tls_facts": "tlsconnector.testing._strategies",
    "validity_periods": "tlsconnector.testing._strategies",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
