"""Generate the API reference from ``tlsconnector.__all__``, at build time.

docs/api-reference.md holds the prose and the examples (doctests, run by pytest) and
one marker line; when Sphinx reads that page, the marker is replaced by autodoc
directives for **exactly** the names in ``tlsconnector.__all__``, grouped by task, then
the documented submodules (``tlsconnector.testing`` and the adapters).

Every public name lands in the reference whatever happens: a name this module does
not group yet goes to "Other public names". A grouped name that is no longer public
is a build warning (an error under ``-W``), and after reading, every public name must
have been documented as ``tlsconnector.NAME`` (a warning otherwise).
"""

from __future__ import annotations

import enum
import importlib
import inspect
from typing import Any

from sphinx.util import logging

MARKER = "<!-- api-reference: generated from tlsconnector.__all__ -->"
DOCNAME = "api-reference"
PACKAGE = "tlsconnector"

# The reader's path through the API: load, build facts, decide, read the decision.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Loading and checking a policy",
        ("load_policy", "Policy", "lint", "LintWarning", "LintCode", "LintSeverity"),
    ),
    (
        "Connectors",
        ("InboundConnector", "OutboundConnector", "ConnectorType", "TLSMode", "SmartHost"),
    ),
    (
        "Session facts",
        (
            "InboundSession",
            "OutboundSession",
            "ConnectionAttempt",
            "TLSFacts",
            "MtaVerifiedCertificate",
            "UndecodableCertificate",
        ),
    ),
    (
        "Deciding",
        (
            "evaluate_inbound",
            "evaluate_outbound",
            "plan_routes",
            "DEFAULT_REPLIES",
            "DEFAULT_RETRY_WINDOW",
        ),
    ),
    (
        "Decisions",
        (
            "InboundDecision",
            "InboundAction",
            "OutboundDecision",
            "OutboundAction",
            "Reason",
            "ReasonCode",
            "SmtpReply",
            "Route",
            "RouteKind",
            "TLSPlan",
        ),
    ),
    (
        "Domains, certificate names and addresses",
        (
            "match_certificate_name",
            "canonical_domain",
            "DomainPattern",
            "PatternKind",
            "CertificateName",
            "parse_peer_ip",
            "IPSet",
            "IPRange",
        ),
    ),
    (
        "Certificate chains",
        ("PresentedChain", "TrustStore", "validate_chain", "ChainVerdict", "Purpose"),
    ),
    (
        "Errors",
        ("TLSConnectorError", "PolicyError", "Problem", "FactsError", "InvalidValue"),
    ),
)

# Constants have no docstring of their own (a value cannot carry one): type, text.
DATA_DOCS = {
    "DEFAULT_REPLIES": (
        "~collections.abc.Mapping[ReasonCode, SmtpReply]",
        "The SMTP reply for each inbound reason code (a mapping from :class:`ReasonCode` "
        "to :class:`SmtpReply`), as listed in the inbound rules; "
        "``evaluate_inbound(..., replies=...)`` takes a mapping of the same shape."
    ),
    "DEFAULT_RETRY_WINDOW": (
        "~datetime.timedelta",
        "24 hours (a :class:`datetime.timedelta`): how long a message may stay queued "
        "before a failing delivery attempt becomes ``fail`` (a bounce) instead of "
        "``defer``; ``evaluate_outbound(..., retry_window=...)`` changes it."
    ),
}

# Classes whose members partly live on a private base class (shown as their own).
INHERITED_MEMBERS = frozenset({"InboundDecision", "OutboundDecision"})

# Documented as whole modules (each with its own __all__), when importable.
SUBMODULES: tuple[tuple[str, str], ...] = (
    ("tlsconnector.testing", "Property tests for your policies (extra `testing`)"),
    ("tlsconnector.adapters.postfix", "The Postfix policy protocol"),
    ("tlsconnector.adapters.aiosmtpd", "The aiosmtpd adapter (extra `aiosmtpd`)"),
    ("tlsconnector.adapters.smtp", "Delivering from Python with outbound connectors enforced"),
)

logger = logging.getLogger(__name__)


def _directive(name: str, value: object) -> list[str]:
    target = f"{PACKAGE}.{name}"
    if isinstance(value, type) and issubclass(value, BaseException):
        return [f".. autoexception:: {target}", "   :members:", "   :show-inheritance:"]
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return [f".. autoclass:: {target}", "   :members:", "   :undoc-members:"]
    if isinstance(value, type) and name in INHERITED_MEMBERS:
        return [f".. autoclass:: {target}", "   :members:", "   :inherited-members:"]
    if isinstance(value, type):
        return [f".. autoclass:: {target}", "   :members:"]
    if inspect.isroutine(value):
        return [f".. autofunction:: {target}"]
    # A value carries its type's docstring (dict's, timedelta's): describe it here.
    if name not in DATA_DOCS:
        logger.warning("api-reference: no description for the constant %s", target)
        return [f".. py:data:: {name}"]
    type_text, doc = DATA_DOCS[name]
    return [f".. py:data:: {name}", f"   :type: {type_text}", "", f"   {doc}"]


def _rst_block(lines: list[str]) -> list[str]:
    return ["```{eval-rst}", f".. currentmodule:: {PACKAGE}", "", *lines, "```", ""]


def grouped_names(public: list[str]) -> list[tuple[str, list[str]]]:
    """The groups to document: every public name exactly once, in reading order."""
    seen: set[str] = set()
    groups = []
    for title, names in GROUPS:
        present = []
        for name in names:
            if name not in public:
                logger.warning("api-reference: %s.%s is grouped but not public", PACKAGE, name)
            elif name not in seen:
                present.append(name)
                seen.add(name)
        if present:
            groups.append((title, present))
    rest = [name for name in public if name not in seen]
    if rest:
        groups.append(("Other public names", rest))
    return groups


def render() -> str:
    """The reference as MyST Markdown with autodoc directives in eval-rst blocks."""
    package = importlib.import_module(PACKAGE)
    public = list(package.__all__)
    lines: list[str] = []
    for title, names in grouped_names(public):
        body: list[str] = []
        for name in names:
            body += [*_directive(name, getattr(package, name)), ""]
        lines += [f"## {title}", "", *_rst_block(body)]
    for module_name, title in SUBMODULES:
        lines += [f"## {title}: `{module_name}`", ""]
        try:
            importlib.import_module(module_name)
        except ImportError as error:  # an extra that is not installed where docs are built
            logger.info("api-reference: %s not importable (%s)", module_name, error)
            lines += [f"*Not importable where these pages were built ({error}).*", ""]
            continue
        lines += _rst_block([f".. automodule:: {module_name}", "   :members:", ""])
    return "\n".join(lines)


def _on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname != DOCNAME:
        return
    if MARKER not in source[0]:
        logger.warning("api-reference: %s.md lacks the marker line %s", docname, MARKER)
        return
    source[0] = source[0].replace(MARKER, render())


def _check_every_public_name(app: Any, env: Any) -> None:
    """After reading: each name of ``__all__`` is documented as ``tlsconnector.NAME``."""
    documented = env.get_domain("py").objects
    package = importlib.import_module(PACKAGE)
    missing = [name for name in package.__all__ if f"{PACKAGE}.{name}" not in documented]
    if missing:
        logger.warning("api-reference: public names not documented: %s", ", ".join(missing))


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _on_source_read)
    app.connect("env-check-consistency", _check_every_public_name)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
