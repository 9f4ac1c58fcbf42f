"""tlsconnector: forced-TLS partner connectors for any mail software.

A pure decision core (connector definitions plus session facts in, decisions out)
with a policy file loader and a command line at the edges.

>>> import tlsconnector
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "server1.fabrikam.com")
True
>>> tlsconnector.match_certificate_name("*.fabrikam.com", "a.b.fabrikam.com")
False
"""

# Speed: the names are imported on first use (PEP 562), so that ``import tlsconnector``
# and a command that needs little of the package (``tlsconnector check``) do not pay
# for every module (cryptography's X.509 code, the decision tables, the lint) at
# start-up. Type checkers and IDEs read the imports below; at run time each name comes
# from the module in ``_EXPORTS`` when it is first looked up, and is then kept here.

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing alone would cost more than this module
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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

# Where each public name is defined (the same modules as the imports above;
# tests/test_api.py checks that both agree).
_EXPORTS: dict[str, str] = {
    "DEFAULT_REPLIES": "tlsconnector._decisions",
    "DEFAULT_RETRY_WINDOW": "tlsconnector._outbound",
    "CertificateName": "tlsconnector._names",
    "ChainVerdict": "tlsconnector._validation",
    "ConnectionAttempt": "tlsconnector._facts",
    "ConnectorType": "tlsconnector._model",
    "DomainPattern": "tlsconnector._names",
    "FactsError": "tlsconnector._errors",
    "IPRange": "tlsconnector._addresses",
    "IPSet": "tlsconnector._addresses",
    "InboundAction": "tlsconnector._decisions",
    "InboundConnector": "tlsconnector._model",
    "InboundDecision": "tlsconnector._decisions",
    "InboundSession": "tlsconnector._facts",
    "InvalidValue": "tlsconnector._errors",
    "LintCode": "tlsconnector.policy_file.lint",
    "LintSeverity": "tlsconnector.policy_file.lint",
    "LintWarning": "tlsconnector.policy_file.lint",
    "MtaVerifiedCertificate": "tlsconnector._facts",
    "OutboundAction": "tlsconnector._decisions",
    "OutboundConnector": "tlsconnector._model",
    "OutboundDecision": "tlsconnector._decisions",
    "OutboundSession": "tlsconnector._facts",
    "PatternKind": "tlsconnector._names",
    "Policy": "tlsconnector._model",
    "PolicyError": "tlsconnector._errors",
    "PresentedChain": "tlsconnector._chains",
    "Problem": "tlsconnector._errors",
    "Purpose": "tlsconnector._validation",
    "Reason": "tlsconnector._decisions",
    "ReasonCode": "tlsconnector._decisions",
    "Route": "tlsconnector._decisions",
    "RouteKind": "tlsconnector._decisions",
    "SmartHost": "tlsconnector._model",
    "SmtpReply": "tlsconnector._decisions",
    "TLSConnectorError": "tlsconnector._errors",
    "TLSFacts": "tlsconnector._facts",
    "TLSMode": "tlsconnector._model",
    "TLSPlan": "tlsconnector._decisions",
    "TrustStore": "tlsconnector._chains",
    "UndecodableCertificate": "tlsconnector._facts",
    "canonical_domain": "tlsconnector._names",
    "evaluate_inbound": "tlsconnector._inbound",
    "evaluate_outbound": "tlsconnector._outbound",
    "lint": "tlsconnector.policy_file.lint",
    "load_policy": "tlsconnector.policy_file.loading",
    "match_certificate_name": "tlsconnector._names",
    "parse_peer_ip": "tlsconnector._addresses",
    "plan_routes": "tlsconnector._outbound",
    "validate_chain": "tlsconnector._validation",
}


def _publish_loaded() -> None:
    """Give every public class and function of an already imported module the public
    ``__module__`` ``tlsconnector``, so tracebacks, reprs and ``help()`` show
    ``tlsconnector.FactsError``, not ``tlsconnector._errors.FactsError``.

    Run whenever a public name is first looked up (``import tlsconnector`` itself
    imports none of these modules): every module loaded by then, that name's and its
    imports, is published at once, not only the name asked for. Idempotent and cheap
    (a loop over ``_EXPORTS``). Adapters that import private modules directly call it
    at their import.
    """
    import sys

    for public, module_name in _EXPORTS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        value = getattr(module, public, None)
        if (isinstance(value, type) or callable(value)) and getattr(
            value, "__module__", __name__
        ).startswith(f"{__name__}."):
            try:
                value.__module__ = __name__
            except (AttributeError, TypeError):  # a builtin type: nothing to publish
                continue


if not TYPE_CHECKING:  # type checkers read the imports above and see no __getattr__,
    # so that a misspelt name is still an error for them

    def __getattr__(name: str) -> Any:
        """Import a public name's module on the first use of the name (PEP 562)."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        _publish_loaded()
        globals()[name] = value  # the next lookup is an ordinary attribute
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
