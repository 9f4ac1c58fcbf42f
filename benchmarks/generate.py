"""Deterministic benchmark inputs: policies of any size, sessions, certificates.

Every generator is a pure function of its arguments (no randomness that is not
seeded), so two runs measure the same work and the tests can check the inputs.

A generated policy of size ``n`` has ``n`` inbound **and** ``n`` outbound connectors
(each direction's evaluator sees ``n`` connectors). Connector ``i`` is the same in
every policy size, so the policy of 10 is a subset of the policy of 100,000 and the
same sessions can be decided under both. The mix, by ``i % 4``:

* inbound 0: exact domain ``partner{i}.com``, TLS and certificate name
  ``mail.partner{i}.com``;
* inbound 1: wildcard ``*.partner{i}.net``, certificate name ``*.partner{i}.net``;
* inbound 2: exact ``partner{i}.com`` and wildcard ``*.partner{i}.org``, restricted to
  IP ranges (an IPv4 CIDR block, an IPv4 range, an IPv6 block, a single address);
* inbound 3: exact ``partner{i}.com`` and wildcard ``*.partner{i}.net``, allow-only
  (no TLS, no check): loses to a restricting connector for the same domain;
* every tenth connector (``i % 10 == 9``) is disabled.

Outbound, by ``i % 4``: MX with opportunistic TLS; ``*.partner{i}.net`` with
domain validation; smart hosts with certificate validation; encryption only, with
every twentieth connector rule-scoped. Each connector claims its own domains, so no
two selectable connectors tie (a tie is a load error, section 6.2).

:func:`lint_policy_mapping` is the same policy with connectors that compete, for the
lint benchmark: in every block of twenty, an allow-only connector also lists a
certificate-name connector's domain (``allow-only-overridden``), an IP-restricted one
too (``restricting-overlap``), and a connector lists exactly the apex of a wildcard
connector, in both directions (``connector-shadowed``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from typing import Any

__all__ = [
    "NOW",
    "SessionFacts",
    "inbound_connector",
    "inbound_policy_mapping",
    "inbound_session_facts",
    "lint_policy_mapping",
    "lint_policy_toml",
    "outbound_connector",
    "outbound_session_facts",
    "policy_mapping",
    "policy_toml",
    "session_lines",
    "spread_inbound_session_facts",
]

#: The session time of every generated session (inside the minted certificates' validity).
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
NOW_TEXT = "2026-11-26T12:00:00Z"

SessionFacts = dict[str, Any]


def _ipv4(i: int) -> str:
    """A distinct /28 block per connector inside 10.0.0.0/8 (configuration only)."""
    value = 0x0A000000 + i * 16
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def peer_ip_for(i: int) -> str:
    """An address inside connector ``i``'s CIDR block."""
    base = _ipv4(i).rsplit(".", 1)
    return f"{base[0]}.{int(base[1]) + 5}"


def inbound_connector(i: int) -> dict[str, Any]:
    """Inbound connector ``i`` as a policy-file table (see the module docstring)."""
    kind = i % 4
    table: dict[str, Any] = {"name": f"in-{i:06d}"}
    if i % 10 == 9:
        table["enabled"] = False
    if kind == 0:
        table["sender_domains"] = [f"partner{i}.com"]
        table["tls_sender_certificate_name"] = f"mail.partner{i}.com"
        table["restrict_domains_to_certificate"] = True
    elif kind == 1:
        table["sender_domains"] = [f"*.partner{i}.net"]
        table["tls_sender_certificate_name"] = f"*.partner{i}.net"
    elif kind == 2:
        block = _ipv4(i)
        last = block.rsplit(".", 1)[0]
        table["sender_domains"] = [f"partner{i}.com", f"*.partner{i}.org"]
        table["sender_ip_addresses"] = [
            f"{block}/28",
            f"{last}.200-{last}.210",
            f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64",
            f"192.0.2.{i % 250 + 1}",
        ]
        table["restrict_domains_to_ip_addresses"] = True
    else:
        table["sender_domains"] = [f"partner{i}.com", f"*.partner{i}.net"]
        table["require_tls"] = False
    return table


def outbound_connector(i: int) -> dict[str, Any]:
    """Outbound connector ``i`` as a policy-file table (see the module docstring)."""
    kind = i % 4
    table: dict[str, Any] = {"name": f"out-{i:06d}"}
    if i % 10 == 9:
        table["enabled"] = False
    if kind == 0:
        table["recipient_domains"] = [f"partner{i}.com"]
    elif kind == 1:
        table["recipient_domains"] = [f"*.partner{i}.net"]
        table["tls_settings"] = "domain_validation"
        table["tls_domain"] = f"*.partner{i}.net"
    elif kind == 2:
        table["recipient_domains"] = [f"partner{i}.com", f"*.partner{i}.org"]
        table["use_mx_record"] = False
        table["smart_hosts"] = [f"smtp{i}.partner{i}.com", f"192.0.2.{i % 250 + 1}:587"]
        table["tls_settings"] = "certificate_validation"
    else:
        table["recipient_domains"] = [f"partner{i}.com", f"*.partner{i}.biz"]
        table["tls_settings"] = "encryption_only"
        if i % 20 == 19:
            table["is_transport_rule_scoped"] = True
    return table


def policy_mapping(n: int, *, ca_file: str | None = None) -> dict[str, Any]:
    """The decoded policy file with ``n`` inbound and ``n`` outbound connectors."""
    mapping: dict[str, Any] = {
        "inbound": [inbound_connector(i) for i in range(n)],
        "outbound": [outbound_connector(i) for i in range(n)],
    }
    if ca_file is not None:
        mapping["trust"] = {"ca_file": ca_file}
    return mapping


def inbound_policy_mapping(n: int) -> dict[str, Any]:
    """A policy of the ``n`` inbound connectors of :func:`policy_mapping` and no
    outbound one (what deciding inbound sessions reads; at 100,000 connectors its file
    stays under the loader's 16 MiB bound, which both directions would pass)."""
    return {"inbound": [inbound_connector(i) for i in range(n)], "outbound": []}


def lint_policy_mapping(n: int, *, ca_file: str | None = None) -> dict[str, Any]:
    """:func:`policy_mapping` with competing connectors (see the module docstring).

    In each block of twenty (``i % 20``): inbound 3 (allow-only) also lists the domain of
    inbound ``i - 3`` (a certificate name), inbound 6 (IP-restricted) that of ``i - 6``
    (a certificate name), inbound and outbound 8 list exactly the apex of connector
    ``i - 3``'s only pattern ``*.partner{i-3}.net``. None of them is disabled and no
    two selectable outbound connectors tie.
    """
    mapping = policy_mapping(n, ca_file=ca_file)
    for i in range(n):
        block = i % 20
        inbound, outbound = mapping["inbound"][i], mapping["outbound"][i]
        if block in (3, 6):
            inbound["sender_domains"] = [*inbound["sender_domains"], f"partner{i - block}.com"]
        elif block == 8:
            inbound["sender_domains"] = [*inbound["sender_domains"], f"partner{i - 3}.net"]
            outbound["recipient_domains"] = [
                *outbound["recipient_domains"],
                f"partner{i - 3}.net",
            ]
    return mapping


def lint_policy_toml(n: int, *, ca_file: str | None = None) -> str:
    """:func:`lint_policy_mapping` as TOML text."""
    return _mapping_toml(lint_policy_mapping(n, ca_file=ca_file), ca_file)


def _toml_value(value: object) -> str:
    # Generated values are ASCII names, domains, addresses and booleans: JSON strings
    # and arrays of them are valid TOML basic strings and arrays.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list):
        return json.dumps(value)
    raise TypeError(f"unexpected value {value!r}")


def policy_toml(n: int, *, ca_file: str | None = None) -> str:
    """:func:`policy_mapping` as TOML text (what ``load_policy`` reads)."""
    return _mapping_toml(policy_mapping(n, ca_file=ca_file), ca_file)


def _mapping_toml(data: dict[str, Any], ca_file: str | None) -> str:
    out: list[str] = []
    if ca_file is not None:
        out += ["[trust]", f"ca_file = {json.dumps(ca_file)}", ""]
    for direction in ("inbound", "outbound"):
        for table in data[direction]:
            out.append(f"[[{direction}]]")
            out += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
            out.append("")
    return "\n".join(out)


def _sender_for(i: int, rng: random.Random) -> str:
    """A sender domain that connector ``i`` (inbound) governs."""
    kind = i % 4
    if kind == 1:
        return rng.choice([f"partner{i}.net", f"mx.partner{i}.net", f"a.b.partner{i}.net"])
    if kind == 2:
        return rng.choice([f"partner{i}.com", f"eu.partner{i}.org"])
    return f"partner{i}.com"


def _inbound_facts(i: int, rng: random.Random) -> SessionFacts:
    """A session from connector ``i``'s partner: sometimes compliant, sometimes not."""
    kind = i % 4
    facts: SessionFacts = {
        "peer_ip": peer_ip_for(i) if rng.random() < 0.7 else "198.51.100.7",
        "mail_from": f"sender@{_sender_for(i, rng)}",
        "rcpt_to": ["user@contoso.com"],
        "at": NOW_TEXT,
    }
    roll = rng.random()
    if roll < 0.15:
        facts["tls"] = None
    elif roll < 0.3:
        facts["tls"] = {}
    else:
        # What Postfix hands a policy service: the CN it verified (section 7).
        if kind == 1:
            cn = f"mx.partner{i}.net" if rng.random() < 0.8 else f"a.b.partner{i}.net"
        else:
            cn = f"mail.partner{i}.com" if rng.random() < 0.8 else "mail.example.org"
        facts["tls"] = {"peer_cn": [cn], "peer_verified": rng.random() < 0.9}
    return facts


def inbound_session_facts(count: int, *, connectors: int = 10, seed: int = 1) -> list[SessionFacts]:
    """``count`` inbound sessions from the partners of connectors ``0..connectors-1``,
    plus senders no connector governs and the null sender (about one in eight)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, not secrets
    sessions: list[SessionFacts] = []
    for k in range(count):
        roll = rng.random()
        if roll < 0.1:
            sessions.append(
                {
                    "peer_ip": "203.0.113.9",
                    "mail_from": f"x@unknown{k % 97}.example.org",
                    "rcpt_to": ["user@contoso.com"],
                    "tls": {},
                    "at": NOW_TEXT,
                }
            )
        elif roll < 0.12:
            sessions.append({"peer_ip": "203.0.113.9", "mail_from": "", "at": NOW_TEXT})
        else:
            sessions.append(_inbound_facts(rng.randrange(connectors), rng))
    return sessions


def spread_inbound_session_facts(
    count: int, *, connectors: int, seed: int = 2
) -> list[SessionFacts]:
    """Sessions spread over every connector of a large policy (no hot subset)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, not secrets
    return [_inbound_facts(rng.randrange(connectors), rng) for _ in range(count)]


def outbound_session_facts(
    count: int, *, connectors: int = 10, seed: int = 3
) -> list[SessionFacts]:
    """``count`` outbound messages to the partners of connectors ``0..connectors-1``
    and to domains no connector serves: plans, and attempts with MTA-verified CNs."""
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, not secrets
    sessions: list[SessionFacts] = []
    for _ in range(count):
        i = rng.randrange(connectors)
        kind = i % 4
        if rng.random() < 0.1:
            domain = f"unknown{i}.example.org"
        elif kind == 1:
            domain = rng.choice([f"partner{i}.net", f"mx.partner{i}.net"])
        elif kind == 2:
            domain = rng.choice([f"partner{i}.com", f"eu.partner{i}.org"])
        elif kind == 3:
            domain = rng.choice([f"partner{i}.com", f"x.partner{i}.biz"])
        else:
            domain = f"partner{i}.com"
        facts: SessionFacts = {"recipient": f"user@{domain}", "at": NOW_TEXT}
        roll = rng.random()
        if roll < 0.3:
            pass  # plan only
        elif roll < 0.4:
            facts["tls"] = None
            facts["queued_since"] = "2026-11-25T06:00:00Z"
        else:
            cn = f"mx.partner{i}.net" if rng.random() < 0.8 else "mail.example.org"
            facts["tls"] = {"peer_cn": [cn], "peer_verified": rng.random() < 0.9}
            facts["peer_host"] = f"mx.{domain}"
        sessions.append(facts)
    return sessions


def session_lines(sessions: list[SessionFacts]) -> Iterator[str]:
    """JSON Lines text, one compact object per line."""
    for facts in sessions:
        yield json.dumps(facts, separators=(",", ":")) + "\n"
