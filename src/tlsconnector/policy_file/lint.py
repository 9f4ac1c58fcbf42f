"""Policy lint: a valid policy that probably does not do what its author meant.

Pure: a :class:`~tlsconnector.Policy` in, a list of :class:`LintWarning` out. A
warning never makes a policy invalid; ``tlsconnector check`` prints the warnings and
fails only with ``--strict``. Every warning names the connector and says what to
change. The rules and the exact meaning of each code are in ``docs/lint.md``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence

import attrs

from tlsconnector._errors import MESSAGE_LIMIT, printable, show
from tlsconnector._model import (
    ConnectorType,
    Direction,
    InboundConnector,
    OutboundConnector,
    Policy,
    TLSMode,
    is_ip_address,
)
from tlsconnector._names import CertificateName, DomainPattern, PatternKind, is_public_suffix
from tlsconnector._revocation_settings import Revocation

__all__ = ["LintCode", "LintSeverity", "LintWarning", "lint"]


class LintCode(enum.StrEnum):
    """Every lint code. Values are stable strings (kebab-case)."""

    #: Every domain the connector names is claimed more specifically by another one.
    CONNECTOR_SHADOWED = "connector-shadowed"
    #: An inbound connector that restricts neither by certificate name nor by IP ties
    #: with a restricting one, so it never takes part there (section 5.3).
    ALLOW_ONLY_OVERRIDDEN = "allow-only-overridden"
    #: Two restricting inbound connectors tie on a sender pattern: either one satisfied
    #: is enough (section 5.3), so the weaker one's missing checks are never required.
    RESTRICTING_OVERLAP = "restricting-overlap"
    CONNECTOR_DISABLED = "connector-disabled"
    CONNECTOR_TEST_MODE = "connector-test-mode"
    CERTIFICATE_NAME_OUTSIDE_DOMAINS = "certificate-name-outside-domains"
    TLS_DOMAIN_OUTSIDE_DOMAINS = "tls-domain-outside-domains"
    BROAD_WILDCARD = "broad-wildcard"
    SMART_HOST_TLS_DOMAIN_MISMATCH = "smart-host-tls-domain-mismatch"
    #: A certificate name longer than any usable CN (section 3 rule 2: 64 characters).
    CERTIFICATE_NAME_TOO_LONG = "certificate-name-too-long"
    #: ``[trust] revocation = "off"``: revoked certificates are accepted (section 11).
    REVOCATION_OFF = "revocation-off"
    #: A CRL of ``[trust] crl_files`` whose nextUpdate has passed: it answers nothing.
    CRL_STALE = "crl-stale"
    #: A CRL that can never be used (delta, indirect, no nextUpdate...).
    CRL_UNUSABLE = "crl-unusable"
    #: No connector at all (an empty file, say): the policy enforces nothing.
    EMPTY_POLICY = "empty-policy"
    #: A certificate of ``[trust] ca_file`` no chain can validate through (no keyUsage
    #: with keyCertSign, or not a CA): the validator refuses every path to it.
    TRUST_ANCHOR_UNUSABLE = "trust-anchor-unusable"


class LintSeverity(enum.StrEnum):
    #: Probably a mistake.
    WARNING = "warning"
    #: A deliberate state worth knowing about (a disabled or test-mode connector).
    INFO = "info"


@attrs.frozen
class LintWarning:
    """One finding about one connector."""

    #: The connector's name; ``""`` for a finding about ``[trust]`` or the whole policy
    #: (direction None).
    connector: str
    direction: Direction | None
    code: LintCode
    #: What is wrong and what to change.
    message: str
    severity: LintSeverity = LintSeverity.WARNING

    def __str__(self) -> str:
        """``warning[code]: inbound connector 'Name': message`` (printable ASCII)."""
        message = printable(self.message, MESSAGE_LIMIT)
        if self.direction is None:
            scope = "policy" if self.code is LintCode.EMPTY_POLICY else "[trust]"
            return f"{self.severity}[{self.code}]: {scope}: {message}"
        name = printable(self.connector)
        return f"{self.severity}[{self.code}]: {self.direction} connector {name!r}: {message}"


Connector = InboundConnector | OutboundConnector


def lint(policy: Policy, *, at: dt.datetime | None = None) -> list[LintWarning]:
    """Every lint warning for ``policy``: ``[trust]`` first, then inbound connectors, then outbound,
    each direction in the policy's order (by name), each connector's warnings in the
    order of the rules in ``docs/lint.md``.

    A valid policy whose certificate name is not under the connector's own domains:

    >>> from tlsconnector import Policy, lint
    >>> policy = Policy.from_mapping(
    ...     {"inbound": [{"name": "Fabrikam", "sender_domains": ["fabrikam.com"],
    ...                   "tls_sender_certificate_name": "*.contoso.com"}]},
    ...     trust=None,
    ... )
    >>> [(w.connector, w.code.value, w.severity.value) for w in lint(policy)]
    [('Fabrikam', 'certificate-name-outside-domains', 'warning')]
    """
    # Near-linear (issue item 7): the rules that compare a connector with the others
    # never scan every connector. "Claimed more specifically" asks the policy's own
    # index (the candidates of the decisions, section 2); "shares a pattern" looks the
    # pattern up in a table built once. The quadratic reference these must equal is
    # kept in tests/policy_file/test_lint.py.
    found: list[LintWarning] = _lint_trust(policy, at)
    if not policy.inbound and not policy.outbound:
        found.append(
            LintWarning(
                "",
                None,
                LintCode.EMPTY_POLICY,
                "no [[inbound]] or [[outbound]] connector, so the policy enforces nothing: "
                "every inbound session gets no-connector (the MTA's normal rules apply) and "
                "every recipient domain opportunistic TLS over its MX; add a connector for "
                "each partner (docs/policy-file.md)",
            )
        )
    sharing = _RestrictingByPattern(c for c in policy.inbound if _takes_part_inbound(c))
    for connector in policy.inbound:
        found += _lint_inbound(connector, policy, sharing)
    for out in policy.outbound:
        found += _lint_outbound(out, policy)
    return found


def _lint_trust(policy: Policy, at: dt.datetime | None) -> list[LintWarning]:
    """``[trust]``'s findings (section 11). ``at``: the time CRLs are judged at (by
    default when the loader read them; none recorded and none given: not judged)."""
    found: list[LintWarning] = _lint_anchors(policy)
    if policy.revocation is Revocation.OFF:
        found.append(
            LintWarning(
                "",
                None,
                LintCode.REVOCATION_OFF,
                'revocation = "off": certificates their CA has revoked are accepted; '
                'remove the key (default "soft") or set "hard"',
            )
        )
    crls = policy.trust.crls if policy.trust is not None else None
    if crls is None or policy.revocation is Revocation.OFF:
        return found
    when = at if at is not None else crls.loaded_at
    for item in crls.lists:
        if item.unusable is not None:
            found.append(
                LintWarning(
                    "",
                    None,
                    LintCode.CRL_UNUSABLE,
                    f"{item.describe()} is never used: {item.unusable}",
                )
            )
        elif when is not None and item.next_update is not None and item.next_update <= when:
            found.append(
                LintWarning(
                    "",
                    None,
                    LintCode.CRL_STALE,
                    f"{item.describe()}: nextUpdate has passed (at {when.isoformat()}), so it "
                    "answers for no certificate; fetch a current one",
                )
            )
    return found


def _lint_anchors(policy: Policy) -> list[LintWarning]:
    """The certificates of ``[trust] ca_file`` that no chain can validate through. Only
    a store read from the policy's own file: a system bundle is the host's to keep."""
    trust = policy.trust
    if trust is None or trust.ca_file is None:
        return []
    from tlsconnector._chains import anchor_problem, describe  # cryptography: loaded

    found = []
    for cert in trust.certificates:
        problem = anchor_problem(cert)
        if problem is not None:
            found.append(
                LintWarning(
                    "",
                    None,
                    LintCode.TRUST_ANCHOR_UNUSABLE,
                    f"ca_file {show(trust.ca_file)}: certificate {describe(cert)}: {problem}, "
                    "so every chain through it is refused (certificate-not-trusted)",
                )
            )
    return found


def _takes_part_inbound(connector: InboundConnector) -> bool:
    # Section 5.2 and 5.6: only enabled partner connectors are candidates.
    return connector.enabled and connector.type is ConnectorType.PARTNER


def _warning(
    connector: Connector,
    code: LintCode,
    message: str,
    severity: LintSeverity = LintSeverity.WARNING,
) -> LintWarning:
    direction = Direction.INBOUND if isinstance(connector, InboundConnector) else Direction.OUTBOUND
    return LintWarning(connector.name, direction, code, message, severity)


def _disabled(connector: Connector, consequence: str) -> LintWarning:
    """``connector-disabled`` (info); ``consequence`` adds what else being disabled means."""
    return _warning(
        connector,
        LintCode.CONNECTOR_DISABLED,
        f"enabled = false: it takes no part in any decision{consequence}; remove it, or set "
        "enabled = true to put it in service",
        LintSeverity.INFO,
    )


def _lint_inbound(
    connector: InboundConnector, policy: Policy, sharing: _RestrictingByPattern
) -> list[LintWarning]:
    found: list[LintWarning] = []
    if not connector.enabled:
        found.append(_disabled(connector, ""))
    elif _takes_part_inbound(connector):
        shadowed = _shadowed(
            connector, connector.sender_domains, policy.inbound_candidates, "sender_domains"
        )
        if shadowed is not None:
            found.append(shadowed)
        if not connector.restricts:
            found += _allow_only_overridden(connector, sharing)
        else:
            found += _restricting_overlaps(connector, sharing)
    found += _broad_wildcards(connector, connector.sender_domains, "sender_domains")
    name = connector.tls_sender_certificate_name
    if name is not None:
        outside = _name_outside(
            connector,
            name,
            connector.sender_domains,
            "tls_sender_certificate_name",
            "sender_domains",
            LintCode.CERTIFICATE_NAME_OUTSIDE_DOMAINS,
        )
        if outside is not None:
            found.append(outside)
        found += _too_long(connector, name, "tls_sender_certificate_name")
    return found


def _lint_outbound(connector: OutboundConnector, policy: Policy) -> list[LintWarning]:
    found: list[LintWarning] = []
    if not connector.enabled:
        found.append(
            _disabled(connector, ", and a transport rule naming it gets connector-unavailable")
        )
    elif connector.test_mode:
        found.append(
            _warning(
                connector,
                LintCode.CONNECTOR_TEST_MODE,
                "test_mode = true: it is never chosen by recipient domain, only when a "
                "caller (a transport rule) names it; set test_mode = false to put it in "
                "service",
                LintSeverity.INFO,
            )
        )
    elif connector.selectable_by_domain:
        # Section 6.2: ties between selectable connectors are load errors already, so
        # only a strictly more specific pattern can take a domain away.
        shadowed = _shadowed(
            connector, connector.recipient_domains, policy.outbound_candidates, "recipient_domains"
        )
        if shadowed is not None:
            found.append(shadowed)
    found += _broad_wildcards(connector, connector.recipient_domains, "recipient_domains")
    if connector.tls_domain is not None and connector.recipient_domains:
        outside = _name_outside(
            connector,
            connector.tls_domain,
            connector.recipient_domains,
            "tls_domain",
            "recipient_domains",
            LintCode.TLS_DOMAIN_OUTSIDE_DOMAINS,
        )
        if outside is not None:
            found.append(outside)
    if connector.tls_domain is not None:
        found += _too_long(connector, connector.tls_domain, "tls_domain")
    found += _smart_hosts(connector)
    return found


# --- certificate-name-too-long -----------------------------------------------------------

#: Section 3 rule 2: a presented CN of more than 64 characters matches nothing.
_MAX_CN = 64


def _too_long(connector: Connector, name: CertificateName, field: str) -> list[LintWarning]:
    """A name no usable CN can match: a wildcard setting longer than 64 characters can
    never match; a plain name that long only through a wildcard certificate."""
    if len(name.text) <= _MAX_CN:
        return []
    suffix = name.text.partition(".")[2]
    wildcard_cn = f"*.{suffix}"
    # The only CN that could still match a long plain name is the wildcard one label
    # above it, and only if that CN is itself usable (64 characters, no public
    # suffix) and may stand for the first label (not an xn-- label, section 3).
    if name.is_wildcard or not name.matches_cn(wildcard_cn):
        message = (
            f"{field} = {name.text!r} is longer than {_MAX_CN} characters, the upper bound "
            "of a certificate CN: no certificate can ever match it; use the partner's "
            "real, shorter certificate name"
        )
    else:
        message = (
            f"{field} = {name.text!r} is longer than {_MAX_CN} characters, the upper bound "
            f"of a certificate CN: only a wildcard certificate ('*.{suffix}') can match it; "
            "use the partner's real certificate name"
        )
    return [_warning(connector, LintCode.CERTIFICATE_NAME_TOO_LONG, message)]


# --- connector-shadowed ----------------------------------------------------------------


def _shadowed(
    connector: Connector,
    patterns: Sequence[DomainPattern],
    candidates: Callable[[str], Sequence[Connector]],
    field: str,
) -> LintWarning | None:
    """``connector-shadowed``: every domain the connector *names* is claimed, at a
    strictly higher specificity (section 2), by another connector that takes part.

    ``candidates`` is the policy's index (``Policy.inbound_candidates`` or
    ``outbound_candidates``): for a domain, the connectors that take part and match it
    at the most specific level. Only those can be named as claiming the domain, and
    they claim it exactly when that level is above the connector's own.

    What each pattern names, and when that name is taken away:

    * ``*`` names no domain: it stands for every domain nobody lists (and, inbound,
      the null sender), so a connector with ``*`` is never shadowed;
    * ``fabrikam.com`` (exact) names fabrikam.com; exact is the highest level, and an
      identical exact pattern elsewhere ties rather than shadows, so an exact pattern
      is never shadowed;
    * ``*.fabrikam.com`` names its apex fabrikam.com; it is shadowed there when
      another connector lists ``fabrikam.com`` exactly. It still governs the
      subdomains nobody lists, which no finite list can cover, so "shadowed" means
      "shadowed on every domain it names", not "never decides anything".
    """
    claims: list[str] = []
    for pattern in dict.fromkeys(patterns):
        if pattern.kind is PatternKind.ANY or pattern.domain is None:
            return None
        domain = pattern.domain
        # The connector's own best level at the name (a pattern always matches its own
        # name: an exact one equals it, "*.suffix" includes its apex, section 2).
        own = connector.specificity_for(domain) or pattern.specificity
        # Only a strictly higher level takes the name away; equal levels tie (section 2).
        # The connectors at the most specific level share one level; the connector
        # itself is never among them when that level is above its own.
        best = candidates(domain)
        level = best[0].specificity_for(domain) if best else None
        if level is None or level <= own:
            return None
        winners = ", ".join(repr(printable(other.name)) for other in best)
        claims.append(f"{domain} by {winners}")
    if not claims:
        return None
    return _warning(
        connector,
        LintCode.CONNECTOR_SHADOWED,
        f"every domain in its {field} is claimed by a more specific pattern of another "
        f"connector ({'; '.join(claims)}), so it only governs subdomains that no "
        f"connector lists; if it is a leftover, remove or disable it; if it is meant for "
        f"those subdomains, name them in {field} (for example '*.eu.{_first_domain(patterns)}')",
    )


def _first_domain(patterns: Sequence[DomainPattern]) -> str:
    return next((p.domain for p in patterns if p.domain is not None), "partner.example")


# --- allow-only-overridden -------------------------------------------------------------


class _RestrictingByPattern:
    """The restricting connectors that take part, by sender pattern (built once).

    Two patterns reach the same specificity for a domain only when they are identical
    (section 2), so "ties with a restricting connector" is one lookup per pattern.
    """

    __slots__ = ("_by_pattern", "_position")

    def __init__(self, competing: Iterable[InboundConnector]) -> None:
        by_pattern: dict[DomainPattern, list[tuple[int, InboundConnector]]] = {}
        position_of: dict[int, int] = {}
        for position, connector in enumerate(competing):
            if connector.restricts:
                position_of[id(connector)] = position
                for pattern in dict.fromkeys(connector.sender_domains):
                    by_pattern.setdefault(pattern, []).append((position, connector))
        self._by_pattern = by_pattern
        self._position = position_of

    def comes_first(self, connector: InboundConnector, other: InboundConnector) -> bool:
        """Whether restricting ``connector`` comes before ``other`` in the policy's order."""
        return self._position[id(connector)] < self._position[id(other)]

    def sharing(self, connector: InboundConnector) -> list[InboundConnector]:
        """The restricting connectors (other than ``connector``) sharing one of its
        patterns, in the policy's order (by name), each once."""
        found: dict[int, InboundConnector] = {}
        for pattern in dict.fromkeys(connector.sender_domains):
            for position, other in self._by_pattern.get(pattern, ()):
                if other is not connector:
                    found[position] = other
        return [found[position] for position in sorted(found)]


def _allow_only_overridden(
    connector: InboundConnector, sharing: _RestrictingByPattern
) -> list[LintWarning]:
    """``allow-only-overridden``: a connector that does not restrict (no certificate
    name, no IP restriction; ``require_tls`` alone does not restrict, section 5.3)
    shares a pattern with a restricting connector.

    Two patterns reach the same level for a domain only when they are identical, and a
    shared pattern is always the most specific match for some of its domains (the
    exact name; the subdomains nobody else lists; every unlisted domain for ``*``).
    There both connectors are candidates and restrict beats allow (section 5.3), so
    the non-restricting connector, its TLS requirement included, never takes part for
    those domains.
    """
    found: list[LintWarning] = []
    mine = dict.fromkeys(connector.sender_domains)
    for other in sharing.sharing(connector):
        shared = [p for p in dict.fromkeys(other.sender_domains) if p in mine]
        found.append(
            _warning(
                connector,
                LintCode.ALLOW_ONLY_OVERRIDDEN,
                _allow_only_message(connector, other, shared),
            )
        )
    return found


def _allow_only_message(
    connector: InboundConnector, other: InboundConnector, shared: Sequence[DomainPattern]
) -> str:
    listed = ", ".join(repr(str(p)) for p in shared)
    if connector.require_tls:
        what = "it requires TLS but restricts neither by certificate name nor by IP"
        dropped = "never takes part (its TLS requirement included)"
    else:
        what = (
            "it imposes no check (require_tls = false, no tls_sender_certificate_name, "
            "no IP restriction)"
        )
        dropped = "never takes part"
    return (
        f"{what}, and shares sender_domains {listed} with {printable(other.name)!r}, which "
        f"restricts {_restricts_by(other)}; restrict beats allow, so for those senders this "
        f"connector {dropped}: only the restricting connectors decide; remove {listed} from "
        f"its sender_domains, or give it a certificate name or an IP restriction if it is "
        f"meant to decide for them"
    )


def _restricts_by(connector: InboundConnector) -> str:
    if connector.tls_sender_certificate_name is None:
        return "by IP"
    if connector.restrict_domains_to_ip_addresses:
        return "by certificate name and by IP"
    return "by certificate name"


# --- restricting-overlap ---------------------------------------------------------------


class _Check(enum.Enum):
    """The kinds of check a restricting connector can configure (section 5.4)."""

    TLS = "the TLS requirement", "require_tls = true"
    CERTIFICATE = "the certificate name check", "a tls_sender_certificate_name"
    IP = (
        "the IP restriction",
        "restrict_domains_to_ip_addresses = true (with sender_ip_addresses)",
    )

    def __init__(self, description: str, setting: str) -> None:
        self.description = description
        self.setting = setting


def _checks(connector: InboundConnector) -> frozenset[_Check]:
    checks: set[_Check] = set()
    if connector.requires_tls:  # also implied by a certificate name (section 5.4)
        checks.add(_Check.TLS)
    if connector.tls_sender_certificate_name is not None:
        checks.add(_Check.CERTIFICATE)
    if connector.restrict_domains_to_ip_addresses:
        checks.add(_Check.IP)
    return frozenset(checks)


def _describe_checks(connector: InboundConnector) -> str:
    checks = _checks(connector)
    parts = []
    if _Check.TLS in checks:
        parts.append("TLS")
    name = connector.tls_sender_certificate_name
    if name is not None:
        parts.append(f"certificate name {str(name)!r}")
    if _Check.IP in checks:
        parts.append("the peer IP (sender_ip_addresses)")
    return _and(parts)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _restricting_overlaps(
    connector: InboundConnector, sharing: _RestrictingByPattern
) -> list[LintWarning]:
    """``restricting-overlap``: a restricting connector shares a pattern with another
    restricting connector, so for the senders where that pattern is the most specific
    match both are candidates and one satisfied candidate is enough (section 5.3).

    One warning per pair, on the weaker connector: the one whose kinds of check (TLS,
    certificate name, IP restriction) are a strict subset of the other's; the other's
    extra checks are never required of a session that satisfies it. When neither is
    weaker (different kinds, or the same kinds with their own values), the warning is
    on the first of the two by name and names both: either suffices.
    """
    found: list[LintWarning] = []
    mine = _checks(connector)
    patterns = dict.fromkeys(connector.sender_domains)
    for other in sharing.sharing(connector):
        theirs = _checks(other)
        weaker = mine < theirs
        if not weaker and (theirs < mine or not sharing.comes_first(connector, other)):
            continue  # the warning is the other connector's
        in_other = dict.fromkeys(other.sender_domains)
        shared = [p for p in patterns if p in in_other]
        missing = [check for check in _Check if check in theirs - mine] if weaker else None
        message = _overlap_message(connector, other, shared, missing)
        found.append(_warning(connector, LintCode.RESTRICTING_OVERLAP, message))
    return found


def _overlap_message(
    connector: InboundConnector,
    other: InboundConnector,
    shared: Sequence[DomainPattern],
    missing: Sequence[_Check] | None,
) -> str:
    """The ``restricting-overlap`` text; ``missing``: the checks the weaker
    ``connector`` lacks, or None when neither connector is weaker."""
    listed = ", ".join(repr(str(p)) for p in shared)
    other_name = repr(printable(other.name))
    head = (
        f"it shares sender_domains {listed} with {other_name}, and both restrict; between "
        f"restricting connectors one satisfied is enough (their checks do not add up, "
        f"section 5.3), "
    )
    if missing is not None:
        return (
            f"{head}so this connector is the weaker one: it lacks "
            f"{_and([c.description for c in missing])} that {other_name} applies, and for "
            f"those senders a session passing only its own checks "
            f"({_describe_checks(connector)}) is accepted; if the checks of {other_name} are "
            f"meant to hold for them, give this connector {_and([c.setting for c in missing])} "
            f"too, or remove {listed} from its sender_domains"
        )
    return (
        f"{head}and neither is weaker: this connector checks {_describe_checks(connector)}; "
        f"{other_name} checks {_describe_checks(other)}; so for those senders either one "
        f"suffices; if every one of these checks must hold, put them in one connector; if "
        f"either is meant to suffice (for example two sites, each with its own "
        f"certificate), this is as intended"
    )


# --- certificate name outside the connector's domains ----------------------------------


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _name_inside(name: CertificateName, patterns: Iterable[DomainPattern]) -> bool:
    """Whether every name ``name`` can match lies at or under some pattern's domain.

    Exact and subtree patterns count alike here: a partner listed as exactly
    ``fabrikam.com`` still runs servers named ``server1.fabrikam.com``. A wildcard
    ``*.b`` matches one label under ``b``, so it is inside when ``b`` is.
    """
    base = name.text[2:] if name.is_wildcard else name.text
    for pattern in patterns:
        if pattern.kind is PatternKind.ANY:
            return True
        if pattern.domain is not None and _under(base, pattern.domain):
            return True
    return False


def _name_outside(
    connector: Connector,
    name: CertificateName,
    patterns: Sequence[DomainPattern],
    name_field: str,
    domains_field: str,
    code: LintCode,
) -> LintWarning | None:
    if _name_inside(name, patterns):
        return None
    domains = ", ".join(str(p) for p in patterns)
    return _warning(
        connector,
        code,
        f"{name_field} {str(name)!r} is not under any of its {domains_field} ({domains}); "
        f"a partner's servers usually have certificates under the partner's own domain: "
        f"set {name_field} to the partner's certificate name (for example "
        f"'*.{_first_domain(patterns)}'), or correct {domains_field}",
    )


# --- broad wildcards -------------------------------------------------------------------


def _broad_wildcards(
    connector: Connector, patterns: Sequence[DomainPattern], field: str
) -> list[LintWarning]:
    """``broad-wildcard``: ``*`` on a partner connector, or ``*.<public suffix>``
    (``*.com``, ``*.co.uk``, ``*.github.io``) on any connector (section 2: valid, but
    the lint warns)."""
    found: list[LintWarning] = []
    for pattern in dict.fromkeys(patterns):
        if pattern.kind is PatternKind.ANY and connector.type is ConnectorType.PARTNER:
            whom = (
                "every sender domain and the null sender"
                if field == "sender_domains"
                else ("every recipient domain")
            )
            found.append(
                _warning(
                    connector,
                    LintCode.BROAD_WILDCARD,
                    f"{field} '*' makes this partner connector govern {whom}, not one "
                    f"partner; list the partner's domains instead (for example "
                    f"'fabrikam.com' or '*.fabrikam.com')",
                )
            )
        elif (
            pattern.kind is PatternKind.SUBTREE
            and pattern.domain is not None
            and is_public_suffix(pattern.domain)
        ):
            found.append(
                _warning(
                    connector,
                    LintCode.BROAD_WILDCARD,
                    f"{field} {str(pattern)!r} covers every domain under the public suffix "
                    f"{pattern.domain!r}, not one partner; list the partner's domains "
                    f"instead (for example 'fabrikam.{pattern.domain}' or "
                    f"'*.fabrikam.{pattern.domain}')",
                )
            )
    return found


# --- smart hosts a domain_validation name can never match ------------------------------


def _smart_hosts(connector: OutboundConnector) -> list[LintWarning]:
    """``smart-host-tls-domain-mismatch``: with smart hosts and ``domain_validation``,
    a smart host that ``tls_domain`` could not match as a CN.

    The CN is checked against ``tls_domain``, never against the host (section 6), so
    this is a hint, not an error: the server at that host most likely presents a
    certificate for its own name, and then every delivery defers with
    ``certificate-host-mismatch``.
    """
    expected = connector.tls_domain
    if (
        connector.use_mx_record
        or connector.tls_settings is not TLSMode.DOMAIN_VALIDATION
        or expected is None
    ):
        return []
    found: list[LintWarning] = []
    for host in dict.fromkeys(h.host for h in connector.smart_hosts):
        if is_ip_address(host):
            why = (
                f"smart host {host} is an IP address, which tls_domain {str(expected)!r} "
                "can never match (an IP address is never a certificate name)"
            )
            change = (
                f"name the smart host by a host name tls_domain matches, or make sure the "
                f"server at {host} presents a certificate whose CN matches tls_domain"
            )
        elif not expected.matches_cn(host):
            why = f"tls_domain {str(expected)!r} does not match the smart host {host!r}"
            change = (
                "name a smart host that tls_domain matches, or set tls_domain to the name "
                "on that server's certificate"
            )
        else:
            continue
        found.append(
            _warning(
                connector,
                LintCode.SMART_HOST_TLS_DOMAIN_MISMATCH,
                f"{why}; the certificate's CN is checked against tls_domain, not the host, "
                f"so if the server there presents a certificate for its own name every "
                f"delivery defers with certificate-host-mismatch; {change}",
            )
        )
    return found
