"""The one SMTP reply line an adapter sends for a refusal: checked, never trusted."""

from __future__ import annotations

import re

from .._decisions import DEFAULT_REPLIES, InboundAction, InboundDecision, ReasonCode, printable

__all__ = ["MAX_REPLY_TEXT", "refusal_line"]

#: Reply text longer than this is cut (RFC 5321 4.5.3.1.5: 512 octets per reply line).
MAX_REPLY_TEXT = 400
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


def refusal_line(decision: InboundDecision) -> str:
    """``CODE X.Y.Z text`` for a refusing decision.

    A reject must carry a 4xx or 5xx code, a tempfail a 4xx, with a well-formed
    enhanced status code of the same class and printable text; anything else, an
    accept included, becomes ``451 4.3.0`` (section 5: never a permanent refusal, and
    never a success, because of an error).
    """
    smtp = decision.smtp
    fallback = DEFAULT_REPLIES[ReasonCode.INTERNAL_ERROR]
    allowed = (4,) if decision.action is InboundAction.TEMPFAIL else (4, 5)
    if (
        smtp is None
        or decision.action is InboundAction.ACCEPT
        or not 400 <= smtp.code <= 599
        or smtp.code // 100 not in allowed
        or not _ENHANCED.fullmatch(smtp.enhanced)
        or int(smtp.enhanced[0]) != smtp.code // 100
    ):
        smtp = fallback
    text = printable(smtp.text, limit=MAX_REPLY_TEXT).strip() or fallback.text
    return f"{smtp.code} {smtp.enhanced} {text}"
