"""tlsconnector: forced-TLS partner connectors for any mail software.

A pure decision core (connector definitions plus session facts in, decisions out)
with a policy file loader and a command line at the edges.

>>> import tlsconnector
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "server1.fabrikam.com")
True
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "a.b.fabrikam.com")
False
"""

from ._addresses import IPRange, IPSet, parse_peer_ip
from ._certs import ChainVerdict, PresentedChain, Purpose, TrustStore, validate_chain
from ._decisions import (
    DEFAULT_REPLIES,
    InboundAction,
    InboundDecision,
    Reason,
    ReasonCode,
    SmtpReply,
)
from ._errors import FactsError, InvalidValue, PolicyError, Problem, TLSConnectorError
from ._facts import InboundSession, MtaVerifiedCertificate, TLSFacts
from ._inbound import evaluate_inbound
from ._model import ConnectorType, InboundConnector, Policy
from ._names import (
    CertificateName,
    DomainPattern,
    PatternKind,
    canonical_domain,
    match_certificate_name,
)
from ._policy_file import load_policy

__all__ = [
    "DEFAULT_REPLIES",
    "CertificateName",
    "ChainVerdict",
    "ConnectorType",
    "DomainPattern",
    "FactsError",
    "IPRange",
    "IPSet",
    "InboundAction",
    "InboundConnector",
    "InboundDecision",
    "InboundSession",
    "InvalidValue",
    "MtaVerifiedCertificate",
    "PatternKind",
    "Policy",
    "PolicyError",
    "PresentedChain",
    "Problem",
    "Purpose",
    "Reason",
    "ReasonCode",
    "SmtpReply",
    "TLSConnectorError",
    "TLSFacts",
    "TrustStore",
    "canonical_domain",
    "evaluate_inbound",
    "load_policy",
    "match_certificate_name",
    "parse_peer_ip",
    "validate_chain",
]
