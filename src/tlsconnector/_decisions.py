"""Decisions are values: an action, the connector that decided, every reason, a reply.

Reason codes are a stable contract (section 5 and 6 of the specification); the
human ``detail`` may change between releases.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "DEFAULT_REPLIES",
    "InboundAction",
    "InboundDecision",
    "Reason",
    "ReasonCode",
    "SmtpReply",
]


class ReasonCode(enum.StrEnum):
    """Every reason code tlsconnector can give. Values are the stable strings."""

    # Inbound (section 5).
    NO_CONNECTOR = "no-connector"
    CONNECTOR_SATISFIED = "connector-satisfied"
    TLS_REQUIRED = "tls-required"
    CERTIFICATE_MISSING = "certificate-missing"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NAME_MISMATCH = "certificate-name-mismatch"
    IP_NOT_ALLOWED = "ip-not-allowed"
    INTERNAL_ERROR = "internal-error"


class InboundAction(enum.StrEnum):
    """What the host MTA should do with an inbound SMTP transaction."""

    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"


@attrs.frozen
class Reason:
    """One reason that contributed to a decision."""

    code: ReasonCode
    detail: str
    #: The connector whose check produced this reason, or None.
    connector: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``{"code", "detail", "connector"}``."""
        return {"code": str(self.code), "detail": self.detail, "connector": self.connector}


@attrs.frozen
class SmtpReply:
    """An SMTP reply: basic code, enhanced status code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``{"code", "enhanced", "text"}``."""
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


#: Default reply templates per reason code. ``{connector}`` and ``{detail}`` are
#: replaced by the connector name and the reason's detail, both already escaped to
#: printable ASCII (section 5: never echo attacker-controlled bytes unescaped).
DEFAULT_REPLIES: Mapping[ReasonCode, SmtpReply] = {
    # RFC 3207 section 4 wording for a server that requires STARTTLS.
    ReasonCode.TLS_REQUIRED: SmtpReply(530, "5.7.0", "Must issue a STARTTLS command first"),
    ReasonCode.CERTIFICATE_MISSING: SmtpReply(
        550, "5.7.1", "Connector {connector}: a client certificate is required"
    ),
    ReasonCode.CERTIFICATE_NOT_TRUSTED: SmtpReply(
        550, "5.7.1", "Connector {connector}: client certificate not trusted"
    ),
    ReasonCode.CERTIFICATE_EXPIRED: SmtpReply(
        550, "5.7.1", "Connector {connector}: client certificate expired"
    ),
    ReasonCode.CERTIFICATE_NAME_MISMATCH: SmtpReply(
        550, "5.7.1", "Connector {connector}: client certificate name does not match"
    ),
    ReasonCode.IP_NOT_ALLOWED: SmtpReply(
        550, "5.7.1", "Connector {connector}: sending IP address not allowed"
    ),
    # Never a permanent reject because of an error (section 5).
    ReasonCode.INTERNAL_ERROR: SmtpReply(451, "4.3.0", "Temporary failure, try again later"),
}


def render_reply(
    code: ReasonCode, connector: str | None, detail: str, replies: Mapping[ReasonCode, SmtpReply]
) -> SmtpReply:
    """Fill in a reply template for ``code``; fall back to the default template.

    The basic code of an override must keep the class of the default one (a 5xx
    stays 5xx, a 4xx stays 4xx), so a profile can change wording but can never
    turn a temporary failure into a permanent one or a refusal into a success.
    """
    default = DEFAULT_REPLIES[code]
    template = replies.get(code, default)
    if template.code // 100 != default.code // 100:
        template = default
    name = printable(connector) if connector is not None else "(none)"
    text = template.text.replace("{connector}", f'"{name}"').replace("{detail}", printable(detail))
    return SmtpReply(template.code, template.enhanced, text)


def printable(text: str, limit: int = 200) -> str:
    """Printable ASCII only: everything else becomes a backslash escape; bounded length."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


@attrs.frozen
class InboundDecision:
    """The answer for one inbound SMTP transaction (section 5)."""

    action: InboundAction
    #: The connector that decided, or None when no connector governs the session.
    connector: str | None
    #: Every reason that contributed, in a deterministic order.
    reasons: tuple[Reason, ...]
    #: The reply the MTA should send; None for ``accept`` (the MTA goes on as usual).
    smtp: SmtpReply | None
    #: Who verified the client certificate chain: ``"tlsconnector"``, ``"mta"``
    #: (facts already verified by the MTA), or None when no chain was looked at.
    chain_verified_by: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes alone, in order."""
        return tuple(str(r.code) for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of section 9 (one line of ``tlsconnector inbound --json``)."""
        return {
            "action": str(self.action),
            "connector": self.connector,
            "reasons": [r.to_json() for r in self.reasons],
            "smtp": self.smtp.to_json() if self.smtp is not None else None,
            "chain_verified_by": self.chain_verified_by,
        }

    @classmethod
    def tempfail(cls, detail: str) -> InboundDecision:
        """The decision an adapter gives when deciding failed: 451 4.3.0, never accept."""
        return cls(
            action=InboundAction.TEMPFAIL,
            connector=None,
            reasons=(Reason(ReasonCode.INTERNAL_ERROR, printable(detail)),),
            smtp=DEFAULT_REPLIES[ReasonCode.INTERNAL_ERROR],
        )
