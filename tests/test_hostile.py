"""Hostile input (specification section 8): no input crashes the library or makes it
accept.

Every test feeds one kind of attacker-shaped input (malformed, truncated, oversized,
deeply nested, odd Unicode) through the public parsers, the decisions and the command
line, and asserts a clear error naming the field, or a refusal (reject, defer, a line
error), never an accept and never an unexpected exception. Memory is bounded loosely
(``tracemalloc`` peaks, or a child process's peak RSS, under generous limits); time is
never asserted, only guarded against hangs.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tlsconnector import (
    FactsError,
    InboundAction,
    InboundSession,
    InvalidValue,
    IPSet,
    MtaVerifiedCertificate,
    OutboundAction,
    OutboundSession,
    Policy,
    PolicyError,
    PresentedChain,
    TLSFacts,
    evaluate_inbound,
    evaluate_outbound,
    load_policy,
)
from tlsconnector.cli import main
from tlsconnector.testing import DEFAULT_TIME, CertificateAuthority

AUTHORITY = CertificateAuthority("Hostile Input Test Root")
AT = DEFAULT_TIME
LEAF = AUTHORITY.issue("server1.fabrikam.com")
LEAF_DER = LEAF.presented.leaf.public_bytes(Encoding.DER)
INTERMEDIATE_DER = LEAF.presented.certificates[1].public_bytes(Encoding.DER)
POLICY = Policy.from_mapping(
    {
        "inbound": [
            {
                "name": "Fabrikam Bank inbound",
                "sender_domains": ["fabrikam.com"],
                "tls_sender_certificate_name": "*.fabrikam.com",
            }
        ],
        "outbound": [
            {
                "name": "Fabrikam Bank outbound",
                "recipient_domains": ["fabrikam.com"],
                "tls_settings": "domain_validation",
                "tls_domain": "*.fabrikam.com",
            }
        ],
    },
    trust=AUTHORITY.trust_store,
)
POLICY_TOML = """
[trust]
ca_file = "ca.pem"

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
tls_sender_certificate_name = "*.fabrikam.com"

[[outbound]]
name = "Fabrikam Bank outbound"
recipient_domains = ["fabrikam.com"]
tls_settings = "domain_validation"
tls_domain = "*.fabrikam.com"
"""
MB = 1024 * 1024


def peak_memory(run: Callable[[], object]) -> int:
    """The peak of Python allocations while ``run`` runs, in bytes."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def raises(kind: type[BaseException], run: Callable[[], object]) -> BaseException:
    with pytest.raises(kind) as caught:
        run()
    return caught.value


def inbound_json(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "peer_ip": "198.51.100.7",
        "mail_from": "payments@fabrikam.com",
        "tls": {"peer_chain_pem": LEAF.pem},
        "at": "2026-11-26T12:00:00Z",
    }
    obj.update(overrides)
    return obj


def outbound_json(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "recipient": "b@fabrikam.com",
        "tls": {"peer_chain_pem": LEAF.pem},
        "at": "2026-11-26T12:00:00Z",
    }
    obj.update(overrides)
    return obj


def outbound_decision(pem: str) -> Any:
    return evaluate_outbound(
        POLICY, OutboundSession.from_json(outbound_json(tls={"peer_chain_pem": pem}))
    )


def printable(text: str) -> bool:
    return all(" " <= char <= "~" for char in text)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text(AUTHORITY.root_pem)
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str], str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


# ======================================================================================
# Malformed and truncated DER and PEM


def test_every_truncation_of_a_der_certificate_is_refused_naming_the_certificate() -> None:
    """Cut a real certificate at every length: each prefix is refused as the leaf's
    undecodable (or empty) DER, never decoded into something else."""
    for length in range(len(LEAF_DER)):
        prefix = LEAF_DER[:length]
        error = raises(InvalidValue, lambda prefix=prefix: PresentedChain.from_der(prefix))
        assert isinstance(error, InvalidValue)
        assert error.reason.startswith(
            ("leaf certificate: empty", "leaf certificate: undecodable DER")
        )


def test_a_der_certificate_with_trailing_or_flipped_bytes_is_never_accepted() -> None:
    """Appended garbage is refused; a certificate with any one byte changed is refused,
    or decodes but never validates (its signature no longer matches), so a session
    presenting it is never accepted."""
    raises(InvalidValue, lambda: PresentedChain.from_der(LEAF_DER + b"\x00"))
    for position in range(len(LEAF_DER)):
        corrupted = bytearray(LEAF_DER)
        corrupted[position] ^= 0x41
        try:
            chain = PresentedChain.from_der([bytes(corrupted), INTERMEDIATE_DER])
        except InvalidValue:
            continue
        session = InboundSession.create(
            peer_ip="198.51.100.7", mail_from="a@fabrikam.com", tls=TLSFacts(chain), at=AT
        )
        assert InboundAction.REJECT == evaluate_inbound(POLICY, session).action


_BODY = LEAF.pem.split("-----BEGIN CERTIFICATE-----\n", 1)[1].split("-----END CERTIFICATE-----", 1)[
    0
]
MALFORMED_PEM = {
    "empty": "",
    "whitespace": " \n\t\n",
    "header only": "-----BEGIN CERTIFICATE-----\n",
    "no end line": "-----BEGIN CERTIFICATE-----\n" + _BODY,
    "truncated base64": "-----BEGIN CERTIFICATE-----\n"
    + _BODY[: len(_BODY) // 2]
    + "\n-----END CERTIFICATE-----\n",
    "not base64": "-----BEGIN CERTIFICATE-----\n!!!! not base64 ****\n-----END CERTIFICATE-----\n",
    "base64 of garbage": "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    "a private key": "-----BEGIN PRIVATE KEY-----\n" + _BODY + "-----END PRIVATE KEY-----\n",
    "text": "hello, I am a certificate",
    "NUL bytes": "\x00" * 100,
    "mismatched labels": "-----BEGIN CERTIFICATE-----\n" + _BODY + "-----END X509 CRL-----\n",
}


@pytest.mark.parametrize("text", MALFORMED_PEM.values(), ids=MALFORMED_PEM.keys())
def test_malformed_pem_is_refused_everywhere_it_can_arrive(text: str) -> None:
    """A chain that cannot be decoded: InvalidValue from the parser, a FactsError naming
    tls.peer_chain_pem inbound (the session cannot be decided), and a defer with
    validation-failure outbound (never a delivery)."""
    error = raises(InvalidValue, lambda: PresentedChain.from_pem(text))
    assert isinstance(error, InvalidValue)
    assert error.reason.startswith("presented chain:")
    facts_error = raises(
        FactsError, lambda: InboundSession.from_json(inbound_json(tls={"peer_chain_pem": text}))
    )
    assert isinstance(facts_error, FactsError)
    assert "tls.peer_chain_pem" == facts_error.field
    decision = outbound_decision(text)
    assert OutboundAction.DEFER == decision.action
    assert "validation-failure" == decision.codes[0]


# ======================================================================================
# Oversized certificates and chains


def test_a_certificate_with_1000_cn_attributes_is_refused_in_bounded_memory() -> None:
    """Spec section 7 bounds the CN attributes a subject may carry."""
    many = AUTHORITY._intermediate.issue([f"n{i}.fabrikam.com" for i in range(1000)])
    pem = many.chain_pem()
    error = raises(InvalidValue, lambda: PresentedChain.from_pem(pem))
    assert isinstance(error, InvalidValue)
    assert "leaf certificate: more than 16 CN attributes in the subject" == error.reason
    assert peak_memory(lambda: raises(InvalidValue, lambda: PresentedChain.from_pem(pem))) < 16 * MB
    raises(InvalidValue, lambda: PresentedChain.from_der(many.der()))
    raises(FactsError, lambda: InboundSession.from_json(inbound_json(tls={"peer_chain_pem": pem})))
    assert OutboundAction.DEFER == outbound_decision(pem).action


def test_a_10_mb_pem_is_refused_before_any_decoding() -> None:
    """A 10 MB chain is refused on its size alone: little memory beyond the input."""
    huge = "-----BEGIN CERTIFICATE-----\n" + "A" * (10 * MB) + "\n-----END CERTIFICATE-----\n"
    error = raises(InvalidValue, lambda: PresentedChain.from_pem(huge))
    assert isinstance(error, InvalidValue)
    assert "presented chain: larger than 1048576 bytes" == error.reason
    assert peak_memory(lambda: raises(InvalidValue, lambda: PresentedChain.from_pem(huge))) < 1 * MB
    huge_bytes = huge.encode()
    assert (
        peak_memory(lambda: raises(InvalidValue, lambda: PresentedChain.from_pem(huge_bytes))) < MB
    )
    facts_error = raises(
        FactsError, lambda: InboundSession.from_json(inbound_json(tls={"peer_chain_pem": huge}))
    )
    assert "larger than" in str(facts_error)
    assert OutboundAction.DEFER == outbound_decision(huge).action


def test_a_chain_of_100_certificates_is_refused() -> None:
    """At most 10 certificates are presented (spec section 7 bounds on attacker input)."""
    ca = AUTHORITY._intermediate
    leaves = [ca.issue(f"n{i}.fabrikam.com") for i in range(100)]
    pem = "".join(leaf.chain_pem(intermediates=False) for leaf in leaves)
    error = raises(InvalidValue, lambda: PresentedChain.from_pem(pem))
    assert "more than 10 certificates presented" in str(error)
    error = raises(InvalidValue, lambda: PresentedChain.from_der([leaf.der() for leaf in leaves]))
    assert "more than 10 certificates presented" in str(error)
    raises(FactsError, lambda: InboundSession.from_json(inbound_json(tls={"peer_chain_pem": pem})))
    assert OutboundAction.DEFER == outbound_decision(pem).action


# ======================================================================================
# Certificate names with NUL, control and bidi characters

HOSTILE_CNS = [
    "server1.fabrikam.com\x00.evil.example",
    "\u202eserver1.fabrikam.com",  # RIGHT-TO-LEFT OVERRIDE
    "server1.fabrikam.com\u202c",
    "server1.fabrikam.com\n550 5.7.1 forged",
    "ser\x07ver1.fabrikam.com",
    "\ufeffserver1.fabrikam.com",  # BOM
    "server1.fabrikam.com\u200b",  # ZERO WIDTH SPACE
    "server1.fabrikam\u2024com",  # ONE DOT LEADER
    "server1.fabrikam.com ",
    "\x1b[31mserver1.fabrikam.com",  # a terminal escape
]


@pytest.mark.parametrize("cn", HOSTILE_CNS, ids=[ascii(cn) for cn in HOSTILE_CNS])
def test_a_cn_with_nul_control_or_bidi_characters_never_matches_and_is_never_echoed_raw(
    cn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """A real, trusted chain whose CN hides a control, bidi or NUL character: the name
    never matches (section 3 rule 1), and neither the decision's details, its SMTP
    reply, nor the command line's output carry the raw character."""
    chain = AUTHORITY.issue(cn)
    assert (cn,) == chain.presented.cns
    session = InboundSession.create(
        peer_ip="198.51.100.7", mail_from="a@fabrikam.com", tls=chain.tls_facts(), at=AT
    )
    decision = evaluate_inbound(POLICY, session)
    assert InboundAction.REJECT == decision.action
    assert ("certificate-name-mismatch",) == decision.codes
    assert decision.smtp is not None
    assert printable(str(decision.smtp))
    assert all(printable(reason.detail) for reason in decision.reasons)
    mta = InboundSession.create(
        peer_ip="198.51.100.7",
        mail_from="a@fabrikam.com",
        tls=TLSFacts(MtaVerifiedCertificate((cn,), verified=True)),
        at=AT,
    )
    assert InboundAction.REJECT == evaluate_inbound(POLICY, mta).action
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text(json.dumps(inbound_json(tls={"peer_chain_pem": chain.pem})) + "\n")
    for extra in ([], ["--json"]):
        status, out, err = run_cli(
            capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(sessions), *extra]
        )
        assert 0 == status
        assert all(printable(line) for line in out)
        assert all(printable(line) for line in err.splitlines())
    assert "reject" == json.loads(out[0])["action"]


# ======================================================================================
# JSON Lines: invalid UTF-8, 1 MB lines, deep nesting (the command line and from_json)


def test_jsonl_with_invalid_utf8_and_1_mb_lines_gives_aligned_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """One bad line never stops the run or shifts the output: each gets an error object
    in its place, the good lines are decided, and the exit status says some were not."""
    good = json.dumps(inbound_json()).encode()
    lines = [
        good,
        b'{"peer_ip": "198.51.100.7", "mail_from": "\xff\xfe@fabrikam.com"}',
        json.dumps(inbound_json(mail_from="a" * MB + "@fabrikam.com")).encode(),
        b"x" * MB,
        json.dumps(inbound_json(helo="h" * MB)).encode(),
        b" " * MB + good,
        good,
    ]
    path = tmp_path / "sessions.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    status, out, err = run_cli(
        capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert 1 == status
    objects = [json.loads(line) for line in out]
    assert 7 == len(objects)
    assert ["accept", None, None, None, None, "accept", "accept"] == [
        o.get("action") for o in objects
    ]
    errors = {o["error"]["line"]: o["error"] for o in objects if "error" in o}
    bad_byte = lines[1].index(b"\xff")
    assert f"not UTF-8 (byte {bad_byte})" == errors[2]["message"]
    assert ("mail_from", "longer than 1024 characters") == (
        errors[3]["field"],
        errors[3]["message"],
    )
    assert errors[4]["message"].startswith("not valid JSON")
    assert "helo" == errors[5]["field"]
    assert all(len(line) < 2000 for line in out)
    assert len(err) < 20_000


def test_outbound_jsonl_with_hostile_lines_never_delivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    lines = [
        b"\xc3\x28",
        json.dumps(outbound_json(recipient="b@" + "a" * MB)).encode(),
        json.dumps(outbound_json(tls={"peer_chain_pem": "\x00" * MB})).encode(),
        json.dumps(outbound_json(tls={"peer_cn": ["x"] * 100_000, "peer_verified": True})).encode(),
        b"[" * 100_000,
    ]
    path = tmp_path / "outbound.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    status, out, _ = run_cli(
        capsys, ["outbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert 1 == status
    actions = [json.loads(line).get("action") for line in out]
    assert [None, None, "defer", None, None] == actions


def nested(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_json_is_a_line_error_or_a_facts_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """JSON nested 100,000 deep cannot be parsed (a line error, not a crash); values
    nested hundreds deep parse and are refused by field."""
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n" + b'{"a":' * 50_000 + b"\n")
    status, out, _ = run_cli(
        capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert 1 == status
    assert [o["error"]["line"] for o in map(json.loads, out)] == [1, 2]
    for field, obj in [
        ("tls.peer_cn", inbound_json(tls={"peer_cn": nested(500), "peer_verified": True})),
        ("rcpt_to", inbound_json(rcpt_to=nested(500))),
        ("deep", inbound_json(deep=nested(500))),
        ("tls", inbound_json(tls=nested(500))),
    ]:
        error = raises(FactsError, lambda obj=obj: InboundSession.from_json(obj))
        assert isinstance(error, FactsError)
        assert error.field.startswith(field)
        assert len(str(error)) < 400
    error = raises(
        FactsError, lambda: OutboundSession.from_json(outbound_json(connector=nested(500)))
    )
    assert "connector" == getattr(error, "field", None)


def test_oversized_fields_in_session_objects_are_facts_errors_naming_the_field() -> None:
    """1 MB strings and 100,000-element lists in session objects: a FactsError naming
    the field, its value shown bounded."""
    big = "a" * MB
    cases = [
        ("mail_from", InboundSession.from_json, inbound_json(mail_from=big)),
        ("rcpt_to", InboundSession.from_json, inbound_json(rcpt_to=["a@b.example"] * 100_000)),
        ("peer_ip", InboundSession.from_json, inbound_json(peer_ip=big)),
        ("at", InboundSession.from_json, inbound_json(at=big)),
        (
            "tls.peer_cn",
            InboundSession.from_json,
            inbound_json(tls={"peer_cn": [big] * 100_000, "peer_verified": True}),
        ),
        ("recipient", OutboundSession.from_json, outbound_json(recipient=big)),
        ("peer_host", OutboundSession.from_json, outbound_json(peer_host=big)),
    ]
    for field, parse, obj in cases:
        error = raises(FactsError, lambda parse=parse, obj=obj: parse(obj))
        assert isinstance(error, FactsError)
        assert field == error.field
        assert len(str(error)) < 400


# ======================================================================================
# IPv6 zone identifiers (section 4)


def test_ipv6_zone_identifiers_are_invalid_facts_and_invalid_configuration(
    capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """fe80::1%eth0 means something on one host only: refused as a peer address (text
    or address object), refused in sender_ip_addresses and as a smart host, never a
    member of a list."""
    for peer in ("fe80::1%eth0", "fe80::1%1", "::ffff:198.51.100.7%eth0", "198.51.100.7%eth0"):
        error = raises(
            FactsError, lambda peer=peer: InboundSession.from_json(inbound_json(peer_ip=peer))
        )
        assert isinstance(error, FactsError)
        assert "peer_ip" == error.field
        assert "zone identifiers" in error.message
    scoped = ipaddress.IPv6Address("fe80::1%eth0")
    raises(
        FactsError,
        lambda: InboundSession.create(peer_ip=scoped, mail_from="a@fabrikam.com", tls=None, at=AT),
    )
    assert scoped not in IPSet.parse(["fe80::/10"])
    entries = ["fe80::1%eth0", "fe80::%eth0/64", "fe80::1%eth0-fe80::2"]
    policy_error = raises(
        PolicyError,
        lambda: Policy.from_mapping(
            {
                "inbound": [
                    {"name": "X", "sender_domains": ["a.example"], "sender_ip_addresses": entries}
                ]
            },
            trust=None,
        ),
    )
    assert isinstance(policy_error, PolicyError)
    assert [f"sender_ip_addresses[{i}]" for i in range(3)] == [
        p.field for p in policy_error.problems
    ]
    assert all("zone identifiers" in p.message for p in policy_error.problems)
    routes = ["fe80::1%eth0", "[fe80::1%eth0]:25"]
    route_error = raises(
        PolicyError,
        lambda: Policy.from_mapping(
            {
                "outbound": [
                    {
                        "name": "X",
                        "recipient_domains": ["a.example"],
                        "use_mx_record": False,
                        "smart_hosts": routes,
                    }
                ]
            },
            trust=None,
        ),
    )
    assert isinstance(route_error, PolicyError)
    assert ["smart_hosts[0]", "smart_hosts[1]"] == [p.field for p in route_error.problems]
    assert all("zone identifier" in p.message for p in route_error.problems)
    status, _, err = run_cli(
        capsys,
        [
            "inbound",
            "--policy",
            str(policy_file),
            "--peer-ip",
            "fe80::1%eth0",
            "--mail-from",
            "a@fabrikam.com",
            "--at",
            "2026-11-26T12:00:00Z",
        ],
    )
    assert 1 == status
    assert "peer_ip" in err


# ======================================================================================
# Policies with huge lists

_HUGE_POLICY_CHILD = textwrap.dedent(
    """
    import datetime as dt, ipaddress, json, resource, sys
    from tlsconnector import InboundSession, PolicyError, evaluate_inbound, load_policy

    path = sys.argv[1]
    policy = load_policy(path, use_system_trust=False)
    at = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)

    def decide(peer, sender):
        session = InboundSession.create(peer_ip=peer, mail_from=sender, tls=None, at=at)
        return evaluate_inbound(policy, session).action.value

    result = {
        "connectors": len(policy.inbound),
        "entries": len(policy.inbound[0].sender_ip_addresses),
        "domains": len(policy.inbound[0].sender_domains),
        "first": decide("10.0.0.0", "a@d0.example"),
        "last": decide("10.6.26.125", "a@d49999.example"),
        "gap": decide("10.0.0.2", "a@d7.example"),
        "outside": decide("10.0.0.1", "a@d50000.example"),
    }
    try:
        load_policy(sys.argv[2], use_system_trust=False)
    except PolicyError as exc:
        result["problems"] = len(exc.problems)
        result["message_bytes"] = len(str(exc))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result))
    """
)


def test_a_policy_with_100000_addresses_and_50000_domains_loads_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """Huge but valid lists load and decide correctly; a huge invalid list is refused
    with every problem listed. Run in a child process so its peak memory is its own."""
    ranges = [f"{ipaddress.IPv4Address(0x0A000000 + 4 * i)}/31" for i in range(100_000)]
    domains = [f"d{i}.example" for i in range(50_000)]
    big = tmp_path / "big.toml"
    big.write_text(
        '[[inbound]]\nname = "Big"\nrequire_tls = false\nrestrict_domains_to_ip_addresses = true\n'
        f"sender_domains = {json.dumps(domains)}\nsender_ip_addresses = {json.dumps(ranges)}\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[inbound]]\nname = "Bad"\nsender_domains = ["a.example"]\n'
        f"sender_ip_addresses = {json.dumps(['10.0.0.1/8'] * 100_000)}\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", _HUGE_POLICY_CHILD, str(big), str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(child.stdout)
    assert 100_000 == result["entries"]
    assert 50_000 == result["domains"]
    assert ["accept", "accept", "reject", "accept"] == [
        result[k] for k in ("first", "last", "gap", "outside")
    ]
    assert 100_000 == result["problems"]
    assert result["message_bytes"] < 200 * 100_000
    assert result["max_rss_mb"] < 1024


# ======================================================================================
# Policy files with deeply nested TOML


def deep_toml(kind: str, depth: int) -> str:
    if kind == "arrays":
        return f"comment = {'[' * depth}{']' * depth}\n"
    if kind == "inline tables":
        return f"x = {'{a = ' * depth}1{'}' * depth}\n"
    return "[" + ".".join(["a"] * depth) + "]\n"  # dotted tables


@pytest.mark.parametrize("depth", [100, 900, 5000, 100_000])
@pytest.mark.parametrize("kind", ["arrays", "inline tables"])
def test_toml_nested_at_any_depth_is_a_policy_error(kind: str, depth: int, tmp_path: Path) -> None:
    """Nesting the TOML parser can follow is an unknown key; deeper nesting is a file
    problem ("nested too deeply"); never a RecursionError."""
    path = tmp_path / "nested.toml"
    path.write_text(deep_toml(kind, depth))
    error = raises(PolicyError, lambda: load_policy(path, use_system_trust=False))
    assert isinstance(error, PolicyError)
    assert 1 == len(error.problems)
    assert len(str(error)) < 1000


def test_dotted_toml_tables_nested_500_deep_are_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "nested.toml"
    path.write_text(deep_toml("dotted tables", 500))
    error = raises(PolicyError, lambda: load_policy(path, use_system_trust=False))
    assert "unknown key" in str(error)


def test_dotted_toml_tables_nested_5000_deep_are_a_policy_error(tmp_path: Path) -> None:
    """The TOML parser builds dotted tables without recursing, so a value nested 5000
    deep reaches the model: the error renders it bounded, not by recursing into it
    (a regression test: this raised RecursionError from the error message)."""
    path = tmp_path / "nested.toml"
    path.write_text(deep_toml("dotted tables", 5000))
    error = raises(PolicyError, lambda: load_policy(path, use_system_trust=False))
    assert len(str(error)) < 1000


@pytest.mark.parametrize(
    "parse",
    [
        lambda deep: Policy.from_mapping({"x": deep}, trust=None),
        lambda deep: Policy.from_mapping(
            {"inbound": [{"name": "n", "sender_domains": deep}]}, trust=None
        ),
        lambda deep: InboundSession.from_json(inbound_json(x=deep)),
        lambda deep: OutboundSession.from_json(outbound_json(connector=deep)),
    ],
    ids=["policy key", "connector field", "inbound session", "outbound session"],
)
def test_values_nested_5000_deep_built_by_a_program_give_a_clear_error(
    parse: Callable[[Any], object],
) -> None:
    """A program (not a JSON or TOML parser) can hand over any nesting depth: the
    error names the field and shows the value bounded (a regression test: rendering
    the value raised RecursionError)."""
    error = raises((PolicyError, FactsError), lambda: parse(nested(5000)))  # type: ignore[arg-type]
    assert len(str(error)) < 1000


# ======================================================================================
# Fuzzing: the seeds and every recorded crash replay cleanly


def load_fuzz_targets() -> ModuleType:
    path = Path(__file__).parent.parent / "fuzz" / "targets.py"
    spec = importlib.util.spec_from_file_location("tlsconnector_fuzz_targets", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fuzz_inputs() -> Iterator[tuple[str, str, bytes]]:
    targets = load_fuzz_targets()
    for target in targets.TARGETS:
        for number, seed in enumerate(targets.seeds(target)):
            yield target, f"seed-{number}", seed
        regressions = Path(__file__).parent.parent / "fuzz" / "regressions" / target
        for path in sorted(regressions.glob("*")) if regressions.is_dir() else ():
            yield target, path.name, path.read_bytes()


def test_fuzz_seeds_and_recorded_crashes_replay_without_a_crash() -> None:
    """Every seed, and every input fuzz/run.py ever crashed on (kept in
    fuzz/regressions/TARGET/), runs through its target: documented errors only, and
    the safety invariant holds."""
    targets = load_fuzz_targets()
    replayed = 0
    for target, _name, data in fuzz_inputs():
        targets.TARGETS[target](data)
        replayed += 1
    assert replayed >= 12


# ======================================================================================
# Echoed names: no attacker key can forge an output line (every echo is escaped)

FORGED = "evil\nline 2: ACCEPT by connector 'Fabrikam Bank inbound'"


def _no_forged_line(*texts: str) -> None:
    for text in texts:
        for line in text.splitlines():
            assert not line.startswith("line 2: ACCEPT"), line
            assert not line.startswith("warning: inbound connector ok"), line


@pytest.mark.parametrize("where", ["connector", "trust", "top"])
def test_toml_keys_are_echoed_escaped(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = json.dumps(FORGED)  # a TOML basic string key holds the newline
    body = {
        "connector": f'[[inbound]]\nname = "x"\nsender_domains = ["fabrikam.com"]\n{key} = 1\n',
        "trust": f"[trust]\n{key} = 1\n",
        "top": f"{key} = 1\n",
    }[where]
    path = tmp_path / "policy.toml"
    path.write_text(body)
    status, out, err = run_cli(capsys, ["check", str(path)])
    assert 0 != status
    assert "evil\\x0aline 2" in err
    _no_forged_line(err, "\n".join(out))


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("nested", [False, True])
def test_json_keys_of_session_lines_are_echoed_escaped(
    as_json: bool, nested: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    policy_file: Path,
) -> None:
    obj = inbound_json()
    if nested:
        obj["tls"] = {FORGED: 1}
    else:
        obj[FORGED] = 1
    path = tmp_path / "sessions.jsonl"
    path.write_text(json.dumps(obj) + "\n")
    argv = ["inbound", "--policy", str(policy_file), "--sessions", str(path)]
    status, out, err = run_cli(capsys, argv + (["--json"] if as_json else []))
    assert 1 == status
    assert "evil\\x0aline 2" in err
    _no_forged_line(err, "\n".join(out))
    if as_json:
        assert 1 == len(out)  # JSON escapes the newline: still one line per session
        assert json.loads(out[0])["error"]["field"].endswith(FORGED)


def test_eop_field_names_are_echoed_escaped_on_stderr_and_in_the_written_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "inbound.json"
    field = "evil\nwarning: inbound connector ok = 1 (unknown field)"
    export.write_text(
        json.dumps([{"Name": "Fab", "SenderDomains": ["fabrikam.com"], "RequireTls": True, field: 1}])
    )
    written = tmp_path / "policy.toml"
    status, out, err = run_cli(capsys, ["import-eop", "--inbound", str(export), "-o", str(written)])
    assert 0 == status
    assert "evil\\x0awarning" in err
    _no_forged_line(err, "\n".join(out), written.read_text())
    assert "evil\\x0awarning" in written.read_text()


def test_problem_and_facts_error_messages_escape_field_names() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(
            {"inbound": [{"name": "x", "sender_domains": ["a.com"], FORGED: 1}]}, trust=None
        )
    assert "\n  - " in str(caught.value)  # our own layout stays
    assert "line 2: ACCEPT" not in str(caught.value).replace("\\x0aline 2: ACCEPT", "")
    with pytest.raises(FactsError) as facts:
        TLSFacts.from_json({FORGED: 1})
    assert "\n" not in str(facts.value)


# ======================================================================================
# Session files: a byte order mark, keys given twice


def test_a_utf8_bom_at_the_start_of_a_session_file_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    path = tmp_path / "sessions.jsonl"
    line = json.dumps(inbound_json())
    path.write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\n" + line.encode() + b"\n")
    status, out, err = run_cli(
        capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert (0, "") == (status, err)
    assert ["accept", "accept"] == [json.loads(o)["action"] for o in out]


def test_a_bom_inside_a_session_file_is_still_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    path = tmp_path / "sessions.jsonl"
    line = json.dumps(inbound_json()).encode()
    path.write_bytes(line + b"\n\xef\xbb\xbf" + line + b"\n")
    status, out, _ = run_cli(
        capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert 1 == status
    assert 2 == json.loads(out[1])["error"]["line"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"peer_ip": "198.51.100.7", "mail_from": "a@example.org", "mail_from": "b@fabrikam.com"}', "mail_from"),
        ('{"peer_ip": "198.51.100.7", "mail_from": "a@fabrikam.com", "tls": {"peer_cn": ["x"], "peer_cn": ["y"], "peer_verified": true}}', "peer_cn"),
    ],
)
def test_a_key_given_twice_in_a_session_line_is_an_error_naming_the_key(
    text: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """Not "the last one wins": a reviewer reading the first value would be misled."""
    path = tmp_path / "sessions.jsonl"
    path.write_text(text + "\n")
    status, out, err = run_cli(
        capsys, ["inbound", "--policy", str(policy_file), "--sessions", str(path), "--json"]
    )
    assert 1 == status
    error = json.loads(out[0])["error"]
    assert (key, "is given twice in one session line") == (error["field"], error["message"])
    assert key in err


@pytest.mark.parametrize("window", ["1e-12", "1e-9", "0.0001", "nan", "inf", "-1", "0"])
def test_a_retry_window_that_rounds_to_nothing_is_a_usage_error(
    window: str, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """Validated after conversion: 1e-12 hours passes a range check, then rounds to a
    zero timedelta, which ended in a traceback (every batch line an internal error)."""
    argv = ["outbound", "--policy", str(policy_file), "--recipient", "b@fabrikam.com"]
    status, out, err = run_cli(capsys, [*argv, "--retry-window", window])
    assert (2, []) == (status, out)
    assert "--retry-window" in err
    assert "Traceback" not in err
