"""The command ``requirements``: what mail from a sender domain must show (section 12),
the inbound counterpart of ``routes``."""

from __future__ import annotations

import argparse

from tlsconnector._decisions import printable
from tlsconnector._errors import show
from tlsconnector._inbound import ConnectorRequirement, InboundRequirements, inbound_requirements
from tlsconnector.cli import family
from tlsconnector.cli._common import (
    EXIT_OK,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    _print_json,
    per_domain,
    policy_or_none,
)

__all__ = ["describe", "main", "requirements"]


def requirements(args: argparse.Namespace) -> int:
    """``tlsconnector requirements``."""
    policy = policy_or_none(args.policy)
    if policy is None:
        return EXIT_USAGE
    # Which store the anchors are (load_policy reads the system bundle when the policy
    # names no ca_file).
    trust = policy.trust
    store = (
        f"ca_file {show(trust.ca_file)}"
        if trust is not None and trust.ca_file is not None
        else "the system CA bundle"
    )
    status = EXIT_OK
    for _, found in per_domain(
        args.domains, lambda d: inbound_requirements(policy, d), as_json=args.json
    ):
        if found is None:
            status = EXIT_UNDECIDED
            continue
        if args.json:
            _print_json(found.to_dict())
        else:
            print(describe(found, store=store))
    return status


def describe(found: InboundRequirements, *, store: str = "the policy's trust store") -> str:
    """The requirements of one sender domain, for people; ``store`` names the trust
    anchors (``ca_file 'partners-ca.pem'``, ``the system CA bundle``)."""
    domain = printable(found.domain) if found.domain is not None else "the null sender"
    if not found.governed:
        return (
            f"{domain}: no enabled partner connector governs it; accepted as far as the "
            "connectors go (no-connector), the MTA applies its normal rules"
        )
    names = " or ".join(repr(printable(c.connector)) for c in found.connectors)
    lines = [f"{domain}: decided by {names}"]
    if found.either_suffices:
        lines[0] += ": satisfying either one suffices"
    for requirement in found.connectors:
        prefix = f"  {printable(requirement.connector)!r}: " if found.either_suffices else "  "
        lines += [prefix + part for part in _shows(requirement, store)]
    if found.dropped:
        dropped = ", ".join(repr(printable(name)) for name in found.dropped)
        lines.append(f"  not deciding (restrict beats allow): {dropped}")
    return "\n".join(lines)


def _shows(requirement: ConnectorRequirement, store: str) -> list[str]:
    tls = "TLS: required (STARTTLS)" if requirement.tls else "TLS: not required"
    if requirement.certificate_name is None:
        certificate = "certificate: none asked for"
    else:
        anchors = requirement.trust_anchors or 0
        store = (
            f"chaining to {store} ({anchors} anchor{'s' if anchors != 1 else ''})"
            if anchors
            else "but no trust anchors are configured, so no chain is trusted"
        )
        certificate = (
            f"certificate: a client certificate whose subject CN matches "
            f"{printable(requirement.certificate_name)}, {store}"
        )
    if requirement.ip_addresses is None:
        addresses = "IP addresses: any"
    else:
        addresses = "IP addresses: " + ", ".join(requirement.ip_addresses)
    return [tls, certificate, addresses]


#: The command line restricted to this module's commands (requirements).
main = family("requirements")
