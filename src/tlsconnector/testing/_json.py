"""The inverse of ``InboundDecision.to_dict`` / ``OutboundDecision.to_dict``.

For tests that read decisions back (from ``tlsconnector inbound --json`` output, or
in a round-trip property). Strict: every key the JSON form has is required, unknown
keys and wrong types are refused with :class:`~tlsconnector.InvalidValue` naming the
field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tlsconnector._model import TLSMode

from .._decisions import (
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
from .._errors import InvalidValue

__all__ = ["decision_from_json", "inbound_decision_from_json", "outbound_decision_from_json"]

_INBOUND_KEYS = frozenset({"action", "connector", "reasons", "smtp", "chain_verified_by"})
_OUTBOUND_KEYS = frozenset(
    {"action", "connector", "reasons", "route", "tls", "smtp", "peer_host", "chain_verified_by"}
)


def _object(
    value: object, field: str, keys: frozenset[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValue(value, f"{field}: must be a JSON object")
    unknown = sorted(str(k) for k in value if k not in keys | optional)
    if unknown:
        raise InvalidValue(unknown, f"{field}: unknown keys {', '.join(unknown)}")
    missing = sorted(keys - set(value))
    if missing:
        raise InvalidValue(None, f"{field}: missing keys {', '.join(missing)}")
    return value


def _string(value: object, field: str, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidValue(value, f"{field}: must be a string{' or null' if nullable else ''}")
    return value


def _choice(value: object, field: str, kind: type[Any]) -> Any:
    try:
        return kind(_string(value, field))
    except ValueError:
        choices = ", ".join(str(member) for member in kind)
        raise InvalidValue(value, f"{field}: must be one of {choices}") from None


def _reasons(value: object) -> tuple[Reason, ...]:
    if not isinstance(value, list):
        raise InvalidValue(value, "reasons: must be an array")
    reasons = []
    for index, item in enumerate(value):
        field = f"reasons[{index}]"
        obj = _object(
            item, field, frozenset({"code", "detail", "connector"}), frozenset({"enhanced"})
        )
        reasons.append(
            Reason(
                code=_choice(obj["code"], f"{field}.code", ReasonCode),
                detail=_string(obj["detail"], f"{field}.detail"),
                connector=_string(obj["connector"], f"{field}.connector", nullable=True),
                enhanced=_string(obj.get("enhanced"), f"{field}.enhanced", nullable=True),
            )
        )
    return tuple(reasons)


def _smtp(value: object) -> SmtpReply | None:
    if value is None:
        return None
    obj = _object(value, "smtp", frozenset({"code", "enhanced", "text"}))
    code = obj["code"]
    if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
        raise InvalidValue(code, "smtp.code: must be a reply code from 200 to 599")
    return SmtpReply(
        code, _string(obj["enhanced"], "smtp.enhanced"), _string(obj["text"], "smtp.text")
    )


def _route(value: object) -> Route | None:
    if value is None:
        return None
    obj = _object(value, "route", frozenset({"kind", "hosts"}))
    hosts = obj["hosts"]
    if not isinstance(hosts, list):
        raise InvalidValue(hosts, "route.hosts: must be an array of strings")
    return Route(
        _choice(obj["kind"], "route.kind", RouteKind),
        tuple(_string(h, f"route.hosts[{i}]") for i, h in enumerate(hosts)),
    )


def _tls(value: object) -> TLSPlan | None:
    if value is None:
        return None
    obj = _object(value, "tls", frozenset({"mode", "domain"}))
    return TLSPlan(
        _choice(obj["mode"], "tls.mode", TLSMode),
        _string(obj["domain"], "tls.domain", nullable=True),
    )


def inbound_decision_from_json(obj: object) -> InboundDecision:
    """Rebuild an :class:`~tlsconnector.InboundDecision` from its ``to_dict()`` object."""
    data = _object(obj, "(decision)", _INBOUND_KEYS)
    return InboundDecision(
        action=_choice(data["action"], "action", InboundAction),
        connector=_string(data["connector"], "connector", nullable=True),
        reasons=_reasons(data["reasons"]),
        smtp=_smtp(data["smtp"]),
        chain_verified_by=_string(data["chain_verified_by"], "chain_verified_by", nullable=True),
    )


def outbound_decision_from_json(obj: object) -> OutboundDecision:
    """Rebuild an :class:`~tlsconnector.OutboundDecision` from its ``to_dict()`` object."""
    data = _object(obj, "(decision)", _OUTBOUND_KEYS)
    return OutboundDecision(
        action=_choice(data["action"], "action", OutboundAction),
        connector=_string(data["connector"], "connector", nullable=True),
        reasons=_reasons(data["reasons"]),
        route=_route(data["route"]),
        tls=_tls(data["tls"]),
        smtp=_smtp(data["smtp"]),
        peer_host=_string(data["peer_host"], "peer_host", nullable=True),
        chain_verified_by=_string(data["chain_verified_by"], "chain_verified_by", nullable=True),
    )


def decision_from_json(obj: object) -> InboundDecision | OutboundDecision:
    """Rebuild either kind of decision; the ``action`` says which (inbound actions are
    ``accept``/``reject``/``tempfail``, outbound ones ``route``/``deliver``/``defer``/
    ``fail``).

    >>> decision_from_json({"action": "accept", "connector": None, "reasons": [],
    ...                     "smtp": None, "chain_verified_by": None}).action
    <InboundAction.ACCEPT: 'accept'>
    """
    if not isinstance(obj, Mapping):
        raise InvalidValue(obj, "(decision): must be a JSON object")
    action = obj.get("action")
    if action in {str(a) for a in InboundAction}:
        return inbound_decision_from_json(obj)
    if action in {str(a) for a in OutboundAction}:
        return outbound_decision_from_json(obj)
    choices = ", ".join(str(a) for a in (*InboundAction, *OutboundAction))
    raise InvalidValue(action, f"action: must be one of {choices}")
