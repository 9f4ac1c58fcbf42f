"""Strategies for inbound and outbound sessions aimed at a policy (sections 5, 6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tlsconnector._facts import (
    ConnectionAttempt,
    InboundSession,
    OutboundSession,
    TLSFacts,
)
from tlsconnector._model import Policy
from tlsconnector._names import (
    CertificateName,
    DomainPattern,
    PatternKind,
    canonical_domain,
)
from tlsconnector.testing._pki import (
    CertificateAuthority,
    _session_time,
)
from tlsconnector.testing._strategies._draw import _BOOLEANS, _draw_case, _pick
from tlsconnector.testing._strategies.addresses import _around, ip_addresses
from tlsconnector.testing._strategies.certificates import _draw_tls
from tlsconnector.testing._strategies.domains import (
    _ASCII_LABEL,
    _domains_cached,
    _draw_spelling,
    _is_certificate_name,
    _is_domain,
)

# --------------------------------------------------------------------------------------
# Sessions aimed at a policy (sections 5 and 6)

_ANY_DOMAIN = _domains_cached(True, True, True, 4)


def _draw_near(draw: st.DrawFn, pattern: DomainPattern) -> str:
    """A canonical domain inside the pattern's scope (two times in three) or just
    outside it."""
    if pattern.kind is PatternKind.ANY or pattern.domain is None:
        return canonical_domain(draw(_ANY_DOMAIN))
    domain = pattern.domain
    first, _, parent = domain.partition(".")
    label = draw(_ASCII_LABEL)
    under = [f"{label}.{domain}", f"{label}.{label}.{domain}"]
    # Section 2: "*.d" is d and everything under it; "d" is d alone.
    inside = [domain, *under] if pattern.kind is PatternKind.SUBTREE else [domain]
    outside = [] if pattern.kind is PatternKind.SUBTREE else under
    outside.append(f"{label}{domain}")  # the suffix without its dot: evilfabrikam.com
    if parent:
        outside.append(parent)  # one label less
        if label != first:
            outside.append(f"{label}.{parent}")  # a sibling
    candidates = inside if _pick(draw, (True, True, False)) else outside
    candidate = _pick(draw, candidates)
    return canonical_domain(candidate) if _is_domain(candidate) else domain


@st.composite
def _domains_near(draw: st.DrawFn, patterns: tuple[DomainPattern, ...]) -> str:
    return _draw_spelling(draw, _draw_near(draw, _pick(draw, patterns)))


def domains_near(patterns: Iterable[str | DomainPattern]) -> SearchStrategy[str]:
    """Domains aimed at scope patterns, spelled as a session might: mostly inside the
    scopes (each exact domain, each ``*.suffix``'s suffix and names one and two labels
    under it), else just outside (parents, siblings, and the suffix without its dot,
    ``evilfabrikam.com``); random domains for ``*``. Falls back to :func:`domains`
    when there are no patterns."""
    parsed = [p if isinstance(p, DomainPattern) else DomainPattern.parse(p) for p in patterns]
    if not parsed:
        return _ANY_DOMAIN
    return _domains_near(tuple(dict.fromkeys(parsed)))


_LOCAL_PARTS = ("a", "payments", "Postmaster", "first.last+tag")


def _names_in(
    configured: Iterable[CertificateName | None], scopes: Iterable[str], extra: Sequence[str]
) -> tuple[str, ...]:
    names = {str(name) for name in configured if name is not None}
    names |= {CertificateName.parse(name).text for name in extra}
    if names:
        return tuple(sorted(names))
    fallback = sorted(s for s in set(scopes) if _is_certificate_name(s))
    return tuple(fallback) or ("mail.example.com",)


@st.composite
def _inbound_session(
    draw: st.DrawFn,
    policy: Policy,
    authority: CertificateAuthority | None,
    at: dt.datetime,
    senders: SearchStrategy[str] | None,
    peer_ips: SearchStrategy[str] | None,
    tls: SearchStrategy[TLSFacts | None] | None,
    names: tuple[str, ...],
    patterns: tuple[DomainPattern, ...],
    near: tuple[str, ...],
) -> InboundSession:
    # The TLS facts first: Hypothesis varies early choices most evenly, and what the
    # peer presented matters most.
    if tls is not None:
        facts = draw(tls)
    elif _pick(draw, (True, False, False, False)):
        facts = None
    else:
        facts = _draw_tls(draw, names, authority, at, False)
    if peer_ips is not None:
        peer = draw(peer_ips)
    elif bool(near) and _pick(draw, (True, True, True, False)):
        peer = _pick(draw, near)
    else:
        peer = draw(_PEER_ANY)
    if senders is not None:
        sender = draw(senders)
    elif not patterns or _pick(draw, (False,) * 9 + (True,)):
        sender = _pick(draw, ("", "<>")) if draw(_BOOLEANS) else f"a@{draw(_ANY_DOMAIN)}"
    else:
        domain = _draw_spelling(draw, _draw_near(draw, _pick(draw, patterns)))
        sender = f"{_pick(draw, _LOCAL_PARTS)}@{domain}"
    return InboundSession.create(
        peer_ip=peer, mail_from=sender, tls=facts, at=at, rcpt_to=["postmaster@contoso.example"]
    )


_PEER_ANY = ip_addresses()


def inbound_sessions(
    policy: Policy,
    *,
    authority: CertificateAuthority | None = None,
    at: dt.datetime | None = None,
    senders: SearchStrategy[str] | None = None,
    peer_ips: SearchStrategy[str] | None = None,
    tls: SearchStrategy[TLSFacts | None] | None = None,
    certificate_names: Sequence[str] = (),
) -> SearchStrategy[InboundSession]:
    """Inbound sessions aimed at ``policy``, at time ``at``.

    Defaults: senders at :func:`domains_near` the inbound connectors' patterns (now and
    then the null sender or a random domain); peer addresses :func:`addresses_near`
    their IP entries (now and then a random one); no STARTTLS, or :func:`tls_facts`
    aimed at their certificate names and at ``certificate_names``, with chains from
    ``authority`` (default: :func:`default_authority`). ``at`` defaults to
    ``authority.valid_at`` (a time the authority's chains can be valid; DEFAULT_TIME
    without ``authority``). Any part can be replaced by a strategy of your own.
    """
    connectors = policy.inbound
    patterns = tuple(dict.fromkeys(p for c in connectors for p in c.sender_domains))
    entries = [r for c in connectors for r in c.sender_ip_addresses.ranges]
    near = tuple(dict.fromkeys(text for entry in entries for text in _around(entry)))
    names = _names_in(
        (c.tls_sender_certificate_name for c in connectors),
        (p.domain for p in patterns if p.domain is not None),
        certificate_names,
    )
    when = _session_time(authority, at)
    return _inbound_session(policy, authority, when, senders, peer_ips, tls, names, patterns, near)


_QUEUED_FOR = (None, 0.0, 1.0, 23.99, 24.0, 25.0, 72.0)
_PEER_HOSTS = (None, "mx1.partner.example")


@st.composite
def _outbound_session(
    draw: st.DrawFn,
    authority: CertificateAuthority | None,
    at: dt.datetime,
    recipients: SearchStrategy[str] | None,
    attempts: SearchStrategy[ConnectionAttempt | None] | None,
    plans: bool,
    known: tuple[str, ...],
    names: tuple[str, ...],
    patterns: tuple[DomainPattern, ...],
) -> OutboundSession:
    # The connection attempt first: Hypothesis varies early choices most evenly.
    attempt: ConnectionAttempt | None
    if attempts is not None:
        attempt = draw(attempts)
    else:
        kind = _pick(draw, ("plan", "no-tls", "tls", "tls") if plans else ("no-tls", "tls", "tls"))
        if kind == "plan":
            attempt = None
        elif kind == "no-tls":
            attempt = ConnectionAttempt(None)
        else:
            attempt = ConnectionAttempt(_draw_tls(draw, names, authority, at, True))
    if recipients is not None:
        recipient = draw(recipients)
    else:
        pattern = _pick(draw, patterns) if patterns else DomainPattern.parse("*")
        domain = _draw_spelling(draw, _draw_near(draw, pattern))
        recipient = f"{_pick(draw, _LOCAL_PARTS)}@{domain}"
    connector: str | None = None
    if bool(known) and _pick(draw, (False,) * 5 + (True,)):
        options = (*known, "No such connector")
        connector = _draw_case(draw, _pick(draw, options))
    hours = _pick(draw, _QUEUED_FOR)
    return OutboundSession.create(
        recipient=recipient,
        at=at,
        connector=connector,
        peer_host=_pick(draw, _PEER_HOSTS),
        attempt=attempt,
        queued_since=None if hours is None else at - dt.timedelta(hours=hours),
    )


def outbound_sessions(
    policy: Policy,
    *,
    authority: CertificateAuthority | None = None,
    at: dt.datetime | None = None,
    recipients: SearchStrategy[str] | None = None,
    plans: bool = True,
    named_connectors: bool = True,
    attempts: SearchStrategy[ConnectionAttempt | None] | None = None,
    certificate_names: Sequence[str] = (),
) -> SearchStrategy[OutboundSession]:
    """Outbound sessions (one message to one recipient) aimed at ``policy``, at ``at``.

    Defaults: recipients at :func:`domains_near` the outbound connectors' patterns;
    now and then (with ``named_connectors``) a connector named as a transport rule
    would, an existing name in another case or an unknown one; a plan only (with
    ``plans``), a connection without STARTTLS, or :func:`tls_facts` aimed at the
    ``tls_domain`` names and ``certificate_names`` (undecodable certificates
    included); queue times around the 24-hour retry window. ``at`` defaults to
    ``authority.valid_at`` (DEFAULT_TIME without ``authority``).
    """
    connectors = policy.outbound
    patterns = tuple(dict.fromkeys(p for c in connectors for p in c.recipient_domains))
    known = tuple(c.name for c in connectors) if named_connectors else ()
    if named_connectors and not known:
        known = ("No such connector",)
    names = _names_in(
        (c.tls_domain for c in connectors),
        (p.domain for p in patterns if p.domain is not None),
        certificate_names,
    )
    when = _session_time(authority, at)
    return _outbound_session(authority, when, recipients, attempts, plans, known, names, patterns)
