"""tlsconnector: forced-TLS partner connectors for any mail software.

A pure decision core (connector definitions plus session facts in, decisions out)
with a policy file loader and a command line at the edges.

>>> import tlsconnector
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "server1.fabrikam.com")
True
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "a.b.fabrikam.com")
False
"""

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._model import (
    ConnectorType,
    InboundConnector,
    OutboundConnector,
    Policy,
    SmartHost,
    TLSMode,
)
from tlsconnector._validation import ChainVerdict, Purpose, validate_chain
from tlsconnector.policy_file.lint import LintCode, LintSeverity, LintWarning, lint
from tlsconnector.policy_file.loading import load_policy

from ._addresses import IPRange, IPSet, parse_peer_ip
from ._decisions import (
    DEFAULT_REPLIES,
    InboundAction,
    InboundDecision,
    OutboundAction,
    OutboundDecision,
    Reason,
    ReasonCode,
    Route,
    RouteKind,
    SmtpReply,
    TLSPlan,
)
from ._errors import FactsError, InvalidValue, PolicyError, Problem, TLSConnectorError
from ._facts import (
    ConnectionAttempt,
    InboundSession,
    MtaVerifiedCertificate,
    OutboundSession,
    TLSFacts,
    UndecodableCertificate,
)
from ._inbound import evaluate_inbound
from ._names import (
    CertificateName,
    DomainPattern,
    PatternKind,
    canonical_domain,
    match_certificate_name,
)
from ._outbound import DEFAULT_RETRY_WINDOW, evaluate_outbound, plan_routes

__all__ = [
    "DEFAULT_REPLIES",
    "DEFAULT_RETRY_WINDOW",
    "CertificateName",
    "ChainVerdict",
    "ConnectionAttempt",
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
    "LintCode",
    "LintSeverity",
    "LintWarning",
    "MtaVerifiedCertificate",
    "OutboundAction",
    "OutboundConnector",
    "OutboundDecision",
    "OutboundSession",
    "PatternKind",
    "Policy",
    "PolicyError",
    "PresentedChain",
    "Problem",
    "Purpose",
    "Reason",
    "ReasonCode",
    "Route",
    "RouteKind",
    "SmartHost",
    "SmtpReply",
    "TLSConnectorError",
    "TLSFacts",
    "TLSMode",
    "TLSPlan",
    "TrustStore",
    "UndecodableCertificate",
    "canonical_domain",
    "evaluate_inbound",
    "evaluate_outbound",
    "lint",
    "load_policy",
    "match_certificate_name",
    "parse_peer_ip",
    "plan_routes",
    "validate_chain",
]
