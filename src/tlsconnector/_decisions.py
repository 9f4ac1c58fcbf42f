"""Decisions are values: an action, the connector that decided, every reason, a reply.

Reason codes are a stable contract (section 5 and 6 of the specification); the
human ``detail`` may change between releases.
"""

from __future__ import annotations

import enum
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from tlsconnector._model import TLSMode

from ._errors import printable as printable  # re-exported: the one escaping helper

__all__ = [
    "DEFAULT_REPLIES",
    "InboundAction",
    "InboundDecision",
    "OutboundAction",
    "OutboundDecision",
    "Reason",
    "ReasonCode",
    "Route",
    "RouteKind",
    "SmtpReply",
    "TLSPlan",
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
    #: Both directions (section 11): a certificate of the validated path is revoked.
    CERTIFICATE_REVOKED = "certificate-revoked"
    #: Both directions (section 11): no usable CRL or OCSP answer. Soft: a note beside
    #: the deciding reasons; hard: a temporary failure.
    REVOCATION_UNKNOWN = "revocation-unknown"
    IP_NOT_ALLOWED = "ip-not-allowed"
    INTERNAL_ERROR = "internal-error"
    #: An adapter could not build session facts from what the MTA sent (section 8).
    MALFORMED_FACTS = "malformed-facts"

    # Outbound (section 6): selection.
    CONNECTOR_SELECTED = "connector-selected"
    CONNECTOR_NAMED = "connector-named"
    CONNECTOR_UNAVAILABLE = "connector-unavailable"
    # Outbound: delivery failures, named after the TLSRPT (RFC 8460) result types.
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    VALIDATION_FAILURE = "validation-failure"
    MESSAGE_EXPIRED = "message-expired"


class _DictForm:
    """A value with a JSON form: :meth:`to_dict`, and ``to_json`` as its deprecated alias.

    ``to_json()`` returned a dict all along, not JSON text; it was renamed ``to_dict()``
    and ``to_json()`` stays for one release. It warns (``DeprecationWarning``) only when
    called from outside the tlsconnector package, so the package's own remaining
    callers never make a user's warnings filter fire.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """Deprecated alias of :meth:`to_dict` (removed in the next release)."""
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not (caller == "tlsconnector" or caller.startswith("tlsconnector.")):
            warnings.warn(
                f"{type(self).__name__}.to_json() is deprecated: use to_dict() "
                "(the same dict; to_json() goes in the next release)",
                DeprecationWarning,
                stacklevel=2,
            )
        return self.to_dict()


class InboundAction(enum.StrEnum):
    """What the host MTA should do with an inbound SMTP transaction."""

    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"


@attrs.frozen
class Reason(_DictForm):
    """One reason that contributed to a decision."""

    code: ReasonCode
    detail: str
    #: The connector whose check produced this reason, or None.
    connector: str | None = None
    #: Outbound: the enhanced status code (RFC 3463) of this reason, or None.
    enhanced: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"code", "detail", "connector"}`` (plus ``"enhanced"``)."""
        obj: dict[str, Any] = {
            "code": str(self.code),
            "detail": self.detail,
            "connector": self.connector,
        }
        if self.enhanced is not None:
            obj["enhanced"] = self.enhanced
        return obj


@attrs.frozen
class SmtpReply(_DictForm):
    """An SMTP reply: basic code, enhanced status code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"code", "enhanced", "text"}``."""
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


#: Default reply templates per reason code. ``{connector}`` and ``{detail}`` are
#: replaced by the connector name and the reason's detail, both already escaped to
#: printable ASCII (section 5: never echo attacker-controlled bytes unescaped).
class _Replies(Mapping[ReasonCode, SmtpReply]):
    """A read-only mapping of reply templates whose repr is short: ``help()`` and
    the API reference show ``DEFAULT_REPLIES``, not every template."""

    __slots__ = ("_name", "_replies")

    def __init__(self, name: str, replies: Mapping[ReasonCode, SmtpReply]) -> None:
        self._name = name
        self._replies = dict(replies)

    def __getitem__(self, code: ReasonCode) -> SmtpReply:
        return self._replies[code]

    def __iter__(self) -> Iterator[ReasonCode]:
        return iter(self._replies)

    def __len__(self) -> int:
        return len(self._replies)

    def __repr__(self) -> str:
        return self._name


DEFAULT_REPLIES: Mapping[ReasonCode, SmtpReply] = _Replies("DEFAULT_REPLIES", {
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
    ReasonCode.CERTIFICATE_REVOKED: SmtpReply(
        550, "5.7.1", "Connector {connector}: client certificate revoked"
    ),
    # Section 11, revocation = "hard": temporary, a current CRL may answer later.
    ReasonCode.REVOCATION_UNKNOWN: SmtpReply(
        451, "4.7.5", "Connector {connector}: client certificate revocation status unknown"
    ),
    # Never a permanent reject because of an error (section 5), nor because of
    # malformed facts at the SMTP edge (section 8).
    ReasonCode.INTERNAL_ERROR: SmtpReply(451, "4.3.0", "Temporary failure, try again later"),
    ReasonCode.MALFORMED_FACTS: SmtpReply(451, "4.3.0", "Temporary failure, try again later"),
})


def render_reply(
    code: ReasonCode, connector: str | None, detail: str, replies: Mapping[ReasonCode, SmtpReply]
) -> SmtpReply:
    """Fill in a reply template for ``code``; fall back to the default template.

    The basic and enhanced codes of an override must keep the class of the default
    ones (a 5xx / 5.x.x stays 5xx / 5.x.x, a 4xx stays 4xx), so a profile can change
    wording but never turn a temporary failure into a permanent one or a refusal
    into a success; an override that would is ignored.
    """
    default = DEFAULT_REPLIES[code]
    template = replies.get(code, default)
    same_class = template.code // 100 == default.code // 100 and template.enhanced[
        :1
    ] == default.enhanced[:1]
    if not same_class:
        template = default
    name = printable(connector) if connector is not None else "(none)"
    text = template.text.replace("{connector}", f'"{name}"').replace("{detail}", printable(detail))
    return SmtpReply(template.code, template.enhanced, text)




class _Decision(_DictForm):
    """What the decisions of both directions share: an action, the connector that
    decided and the reasons, with their reason codes and how their JSON begins."""

    __slots__ = ()

    action: enum.StrEnum
    connector: str | None
    reasons: tuple[Reason, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes alone, in order."""
        return tuple(str(r.code) for r in self.reasons)

    def _json_start(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "connector": self.connector,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@attrs.frozen
class InboundDecision(_Decision):
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

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of section 9 (one line of ``tlsconnector inbound --json``)."""
        return {
            **self._json_start(),
            "smtp": self.smtp.to_dict() if self.smtp is not None else None,
            "chain_verified_by": self.chain_verified_by,
        }

    @classmethod
    def tempfail(
        cls, detail: str, *, code: ReasonCode = ReasonCode.INTERNAL_ERROR
    ) -> InboundDecision:
        """The decision an adapter gives when deciding failed: 451 4.3.0, never accept.

        ``code`` is ``internal-error`` (the default) or ``malformed-facts`` when what
        the MTA sent could not be turned into session facts.
        """
        if code not in (ReasonCode.INTERNAL_ERROR, ReasonCode.MALFORMED_FACTS):
            code = ReasonCode.INTERNAL_ERROR
        return cls(
            action=InboundAction.TEMPFAIL,
            connector=None,
            reasons=(Reason(code, printable(detail)),),
            smtp=DEFAULT_REPLIES[code],
        )


class OutboundAction(enum.StrEnum):
    """What the sending MTA should do (section 6)."""

    #: A plan only: where to connect and what TLS to demand.
    ROUTE = "route"
    DELIVER = "deliver"
    DEFER = "defer"
    #: Bounce: the retry window has run out.
    FAIL = "fail"


class RouteKind(enum.StrEnum):
    MX = "mx"
    SMART_HOST = "smart_host"


@attrs.frozen
class Route(_DictForm):
    """Where to connect: the recipient domain's MX (the caller resolves it) or smart hosts."""

    kind: RouteKind
    hosts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (section 9)."""
        return {"kind": str(self.kind), "hosts": list(self.hosts)}


@attrs.frozen
class TLSPlan(_DictForm):
    """The TLS the connection must have: the mode, and the CN to check (canonical) or None."""

    mode: TLSMode = attrs.field(converter=TLSMode)
    domain: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (section 9)."""
        return {"mode": str(self.mode), "domain": self.domain}


@attrs.frozen
class OutboundDecision(_Decision):
    """The answer for one outbound message to one recipient (section 6)."""

    action: OutboundAction
    connector: str | None
    reasons: tuple[Reason, ...]
    #: None only when a named connector is unavailable (nothing to route by).
    route: Route | None
    tls: TLSPlan | None
    #: For ``defer`` and ``fail``: the status to report (RFC 3463 enhanced code).
    smtp: SmtpReply | None = None
    #: The host connected to, recorded as given; it takes no part in the name check.
    peer_host: str | None = None
    chain_verified_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of section 9 (one line of ``tlsconnector outbound --json``)."""
        return {
            **self._json_start(),
            "route": self.route.to_dict() if self.route is not None else None,
            "tls": self.tls.to_dict() if self.tls is not None else None,
            "smtp": self.smtp.to_dict() if self.smtp is not None else None,
            "peer_host": self.peer_host,
            "chain_verified_by": self.chain_verified_by,
        }
