"""The benchmarks measure real work, and the optimisations behind them change nothing.

Correctness only: no timing is asserted here (timing belongs in ``make bench``). The
generated inputs are valid policies and sessions, the indexed policy and the linear
baseline decide alike on them, the do-nothing policy service speaks Postfix's
protocol, and every fast path agrees with the general code it short-cuts.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import itertools
import json
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import (
    FactsError,
    InboundSession,
    OutboundSession,
    Policy,
    PolicyError,
    PresentedChain,
    TrustStore,
    evaluate_inbound,
    evaluate_outbound,
    load_policy,
)
from tlsconnector._addresses import IPRange, _ip_address
from tlsconnector._chains import CHECKED_CERTIFICATES, _cn_text, subject_cns
from tlsconnector._decisions import printable
from tlsconnector._errors import InvalidValue
from tlsconnector._names import _canonical_domain_full, canonical_domain
from tlsconnector._revocation import NO_CRLS
from tlsconnector.adapters.postfix.protocol import RequestParser, decide_request, facts_from_postfix

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.baseline import LinearPolicy
from benchmarks.certs import BenchPKI, connector_for_leaf
from benchmarks.crls import (
    REVOKED_AT,
    crl_policy_toml,
    filler_issuer,
    mint_crls,
    write_crl_files,
)
from benchmarks.generate import (
    NOW,
    inbound_connector,
    inbound_session_facts,
    outbound_connector,
    outbound_session_facts,
    policy_mapping,
    policy_toml,
    spread_inbound_session_facts,
)
from benchmarks.noop_policy_server import DUNNO_REPLY, DoNothing, count_requests
from benchmarks.noop_socketmap_server import FIXED_ANSWER, NetstringError, split_netstrings
from benchmarks.noop_socketmap_server import handle as noop_socketmap
from benchmarks.policy_client import postfix_request, postfix_requests, run_load
from benchmarks.run import (
    Results,
    _revocation_facts,
    chain_facts,
    crl_set_from_der,
    outbound_policy_toml,
    prefill_resolver_cache,
    resolver_config,
    table,
    with_fresh_signatures,
)
from benchmarks.run import main as bench_main
from benchmarks.socketmap_client import UnexpectedAnswer, netstring
from benchmarks.socketmap_client import run_load as run_socketmap_load

# --------------------------------------------------------------------------------------
# The generated inputs


@pytest.fixture(scope="module")
def policy_1000() -> Policy:
    return Policy.from_mapping(policy_mapping(1_000), trust=None)


def test_generated_policies_are_valid_and_nested() -> None:
    """Every size loads, and connector i is the same in every size (so the small
    policy is a subset of the large one and the same sessions fit both)."""
    small = Policy.from_mapping(policy_mapping(10), trust=None)
    large = Policy.from_mapping(policy_mapping(1_000), trust=None)
    assert (10, 10) == (len(small.inbound), len(small.outbound))
    assert (1_000, 1_000) == (len(large.inbound), len(large.outbound))
    by_name = {c.name: c for c in large.inbound}
    assert all(by_name[c.name] == c for c in small.inbound)
    assert inbound_connector(7) == policy_mapping(1_000)["inbound"][7]
    assert outbound_connector(7) == policy_mapping(1_000)["outbound"][7]


def test_the_policy_file_text_is_the_policy_mapping(tmp_path: Path) -> None:
    """The TOML the load benchmark reads decodes to the generated mapping."""
    (tmp_path / "ca.pem").write_text(BenchPKI().trust_pem())
    text = policy_toml(200, ca_file="ca.pem")
    assert policy_mapping(200, ca_file="ca.pem") == tomllib.loads(text)
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert (200, 200) == (len(policy.inbound), len(policy.outbound))


def test_the_mix_exercises_every_kind_of_check(policy_1000: Policy) -> None:
    """The benchmark sessions reach accepts and rejects for TLS, certificate names,
    trust and IP addresses, and senders no connector governs."""
    facts = inbound_session_facts(2_000, connectors=1_000)
    codes = Counter(
        code
        for f in facts
        for code in evaluate_inbound(policy_1000, InboundSession.from_json(f)).codes
    )
    for code in (
        "no-connector",
        "connector-satisfied",
        "tls-required",
        "certificate-missing",
        "certificate-not-trusted",
        "certificate-name-mismatch",
        "ip-not-allowed",
    ):
        assert codes[code] > 0, code
    actions = Counter(
        str(evaluate_outbound(policy_1000, OutboundSession.from_json(f)).action)
        for f in outbound_session_facts(2_000, connectors=1_000)
    )
    assert {"route", "deliver", "defer", "fail"} <= set(actions)


def test_index_and_linear_baseline_agree_on_the_generated_policy(policy_1000: Policy) -> None:
    """Same candidates and same decisions from the index and from the linear scan."""
    linear = LinearPolicy.of(policy_1000)
    inbound = inbound_session_facts(150, connectors=1_000) + spread_inbound_session_facts(
        150, connectors=1_000
    )
    for facts in inbound:
        session = InboundSession.from_json(facts)
        domain = session.sender_domain
        assert linear.inbound_candidates(domain) == policy_1000.inbound_candidates(domain)
        assert evaluate_inbound(linear, session) == evaluate_inbound(policy_1000, session)
    for facts in outbound_session_facts(300, connectors=1_000):
        session = OutboundSession.from_json(facts)
        domain = session.recipient_domain
        assert linear.outbound_candidates(domain) == policy_1000.outbound_candidates(domain)
        assert evaluate_outbound(linear, session) == evaluate_outbound(policy_1000, session)


def test_distinct_chain_sessions_are_accepted_after_validation() -> None:
    """Each chain of the certificate benchmarks is new, validates, and its CN is the
    certificate name its sender's connector expects."""
    pki = BenchPKI()
    policy = Policy.from_mapping(policy_mapping(100), trust=TrustStore.from_pem(pki.trust_pem()))
    facts = chain_facts(pki, 5, connectors=100)
    assert 5 == len({f["tls"]["peer_chain_pem"] for f in facts})
    for f in facts:
        decision = evaluate_inbound(policy, InboundSession.from_json(f))
        assert ("accept", "tlsconnector") == (str(decision.action), decision.chain_verified_by)


# --------------------------------------------------------------------------------------
# The Postfix protocol: the generated requests and the do-nothing service


def test_generated_requests_are_what_the_postfix_adapter_reads(policy_1000: Policy) -> None:
    parser = RequestParser()
    requests = parser.feed(b"".join(postfix_requests(50, connectors=1_000)))
    assert 50 == len(requests)
    for request in requests:
        facts_from_postfix(request, at=NOW)  # well-formed facts, no FactsError
        assert not decide_request(policy_1000, request, at=NOW).reply.startswith("451")


def test_a_verified_cn_is_sent_xtext_encoded_as_postfix_does() -> None:
    facts = {
        "peer_ip": "192.0.2.1",
        "mail_from": "a@b.example",
        "tls": {"peer_cn": ["Fabrikam Bank+1"], "peer_verified": True},
    }
    (request,) = RequestParser().feed(postfix_request(facts, 1))
    assert "Fabrikam+20Bank+2B1" == request["ccert_subject"]
    assert ("Fabrikam Bank+1",) == facts_from_postfix(request, at=NOW).tls.certificate.cns


def test_count_requests_frames_at_the_empty_line() -> None:
    buffer = bytearray(b"request=smtpd_access_policy\n\nrequest=smtpd_access_policy\n\nrequ")
    assert 2 == count_requests(buffer)
    assert bytearray(b"requ") == buffer


def test_the_do_nothing_service_answers_dunno_to_each_request() -> None:
    """Several requests on one connection, some split across writes: one DUNNO each."""

    async def scenario() -> bytes:
        server = await asyncio.get_running_loop().create_server(DoNothing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = postfix_requests(1)[0]
            writer.write(request + request[:10])
            await writer.drain()
            writer.write(request[10:])
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
            await writer.wait_closed()
        return answer

    assert DUNNO_REPLY * 2 == asyncio.run(scenario())


def test_the_load_generator_counts_answers_from_a_real_server() -> None:
    """Bounded: a few hundred requests on loopback, then it stops by itself."""

    async def scenario() -> dict[str, object]:
        server = await asyncio.get_running_loop().create_server(DoNothing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await run_load(
                "127.0.0.1", port, postfix_requests(20), connections=4, count=200, warmup=20
            )

    result = asyncio.run(scenario())
    assert 200 == result["requests"]
    assert result["latency_p50_ms"] <= result["latency_p99_ms"]


def test_the_load_generator_refuses_addresses_off_this_machine() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_load("192.0.2.1", 10040, [b"x"], count=1))


# --------------------------------------------------------------------------------------
# results.json: targets are judged as data


def test_targets_record_pass_fail_and_unmeasured_as_data() -> None:
    results = Results()
    results.target("fast", "a rate", measured=120.0, op=">=", threshold=100, unit="/s")
    results.target("slow", "a ratio", measured=2.0, op="<=", threshold=1.5, unit="x")
    results.target("absent", "n/a", measured=None, op=">=", threshold=1, unit="x", note="why")
    assert ["pass", "fail", "not-measured"] == [t["status"] for t in results.targets]
    assert [True, False, None] == [t["pass"] for t in results.targets]
    json.dumps(results.targets)  # serialisable as written to results.json
    assert "not-measured" in table(results)


# --------------------------------------------------------------------------------------
# The optimisations keep behaviour: each fast path against the general code

_ALPHABET = "aAzZ09_-.*:[]xn\u00fc\u0131 "
_DOMAINISH = st.one_of(
    st.text(alphabet=_ALPHABET, max_size=40),
    st.from_regex(r"(xn--)?[a-zA-Z0-9_-]{0,66}(\.[a-zA-Z0-9_-]{1,64}){0,4}\.?", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){3}|0[xX][0-9a-f]{1,3}|[a-z]+\.0x1f", fullmatch=True),
)


def _outcome(function: object, text: str) -> tuple[str, object]:
    try:
        return ("value", function(text))  # type: ignore[operator]
    except InvalidValue as exc:
        return ("error", exc.reason)


@given(_DOMAINISH)
def test_canonical_domain_fast_path_agrees_with_the_full_path(text: str) -> None:
    assert _outcome(_canonical_domain_full, text) == _outcome(canonical_domain, text)


def test_canonical_domain_fast_path_edges() -> None:
    for text in ("a" * 63 + ".com", ".".join(["a" * 63] * 3) + "." + "b" * 61, "_dmarc.x.org."):
        assert _outcome(_canonical_domain_full, text) == _outcome(canonical_domain, text)
    for text in ("xn--bcher-kva.example", "1.2.3.4", "a.0x7f", "-a.com", "a-.com", "a" * 64):
        assert _outcome(_canonical_domain_full, text) == _outcome(canonical_domain, text)


_ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){2,4}", fullmatch=True),
    st.text(alphabet="0123456789.:abcdefx ", max_size=20),
)


@given(_ADDRESSES)
def test_ip_address_parses_as_ipaddress_does(text: str) -> None:
    try:
        expected: object = ipaddress.ip_address(text)
    except ValueError:
        expected = ValueError
    try:
        actual: object = _ip_address(text)
    except ValueError:
        actual = ValueError
    assert expected == actual


@st.composite
def _blocks(draw: st.DrawFn) -> str:
    """CIDR blocks, with host bits set or not, IPv4-mapped ones included."""
    version = draw(st.sampled_from([4, 6, 6]))
    bits = 32 if version == 4 else 128
    if version == 6 and draw(st.booleans()):
        value = (0xFFFF << 32) | draw(st.integers(0, 2**32 - 1))
        prefix = draw(st.integers(90, 128))
    else:
        value = draw(st.integers(0, 2**bits - 1))
        prefix = draw(st.integers(0, bits))
    if draw(st.booleans()):
        value &= ~((1 << (bits - prefix)) - 1)
    address = ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
    return f"{address}/{prefix}"


@given(_blocks())
def test_cidr_fast_path_agrees_with_ip_network(text: str) -> None:
    """The integer fast path gives the network ip_network() gives (section 4)."""
    network = ipaddress.ip_network(text, strict=False)
    address = ipaddress.ip_address(text.partition("/")[0])
    mapped = isinstance(network, ipaddress.IPv6Network) and network.subnet_of(
        ipaddress.IPv6Network("::ffff:0:0/96")
    )
    if network.network_address != address:
        with pytest.raises(InvalidValue, match="host bits set"):
            IPRange.parse(text)
        return
    parsed = IPRange.parse(text)
    if mapped:
        network = ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
    expected = (network.network_address, network.broadcast_address, str(network))
    assert expected == (parsed.first, parsed.last, parsed.text)


def _printable_reference(text: str, limit: int = 200) -> str:
    head = text[: limit + 1]
    escaped = head.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    truncated = len(text) > limit or len(escaped) > limit
    return escaped[:limit] + "..." if truncated else escaped


@given(st.text(max_size=60), st.integers(1, 50))
def test_printable_fast_path_agrees_with_the_escaping_path(text: str, limit: int) -> None:
    assert _printable_reference(text, limit) == printable(text, limit)


def test_a_checked_intermediate_is_reused_not_checked_again() -> None:
    """Two chains from one CA share the intermediate object; a chain decoded again
    from the same certificates is equal, with the same cache key."""
    pki = BenchPKI()
    first = PresentedChain.from_pem(pki.leaf(0).chain_pem())
    second = PresentedChain.from_pem(pki.leaf(4).chain_pem())
    assert first.certificates[1] is second.certificates[1]
    assert CHECKED_CERTIFICATES.der(first.certificates[1]) is not None
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in first.certificates)
    der = [c.public_bytes(Encoding.DER) for c in first.certificates]
    for again in (PresentedChain.from_pem(pem), PresentedChain.from_der(der)):
        assert first == again
        assert first.key == again.key
        assert first.cns == again.cns


@pytest.mark.parametrize("enabled", [True, False])
def test_load_policy_leaves_the_garbage_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    """Collection is paused during a load, then restored, also when the load fails."""
    good = tmp_path / "good.toml"
    good.write_text(policy_toml(3))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[inbound]]\nname = "x"\n')
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        load_policy(good, use_system_trust=False)
        assert enabled == gc.isenabled()
        with pytest.raises(PolicyError):
            load_policy(bad, use_system_trust=False)
        assert enabled == gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize(
    "address",
    [
        ipaddress.IPv4Address("198.51.100.7"),
        ipaddress.IPv6Address("2001:db8::1"),
        ipaddress.IPv6Address("::ffff:198.51.100.7"),
    ],
)
def test_a_parsed_peer_address_gives_the_session_its_text_would(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """An address object is taken as is (IPv4-mapped still becomes IPv4, section 4)."""
    from_text = InboundSession.create(peer_ip=str(address), mail_from="", tls=None, at=NOW)
    from_object = InboundSession.create(peer_ip=address, mail_from="", tls=None, at=NOW)
    assert from_text == from_object


def test_a_zoned_peer_address_object_is_still_refused() -> None:
    with pytest.raises(FactsError, match="zone"):
        InboundSession.create(
            peer_ip=ipaddress.IPv6Address("fe80::1%eth0"), mail_from="", tls=None, at=NOW
        )


def test_subject_cns_are_every_cn_attribute_in_order() -> None:
    leaf = BenchPKI().intermediate.issue(
        ["b.partner.com", "a.partner.com"],
        extra_subject=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner")],
    )
    attributes = leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert tuple(_cn_text(a) for a in attributes) == subject_cns(leaf.cert)
    assert ("b.partner.com", "a.partner.com") == PresentedChain.from_pem(leaf.chain_pem()).cns


# --------------------------------------------------------------------------------------
# The outbound socketmap benchmark: its do-nothing service, its load generator, its
# policy and the resolver's pre-filled cache


def test_split_netstrings_takes_complete_netstrings_and_keeps_the_rest() -> None:
    buffer = bytearray(b"11:transport a,13:tlspolicy b.c,5:tlsp")
    assert 2 == split_netstrings(buffer)
    assert bytearray(b"5:tlsp") == buffer
    buffer += b"o"
    assert 0 == split_netstrings(buffer)  # the payload is there, its comma is not
    buffer += b",1"
    assert 1 == split_netstrings(buffer)
    assert bytearray(b"1") == buffer  # the next length is still arriving


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"5:hello!", b"99999:", b"12345"])
def test_split_netstrings_refuses_what_is_not_a_bounded_netstring(garbage: bytes) -> None:
    with pytest.raises(NetstringError):
        split_netstrings(bytearray(garbage))


async def _noop_socketmap_port() -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(noop_socketmap, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_the_do_nothing_socketmap_service_answers_each_request_and_closes_on_garbage() -> None:
    """Requests split across writes: one fixed answer each; then garbage closes."""

    async def scenario() -> tuple[bytes, bytes]:
        server, port = await _noop_socketmap_port()
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = netstring(b"tlspolicy [127.0.0.1]:25")
            writer.write(request + request[:7])
            await writer.drain()
            writer.write(request[7:])
            answers = await asyncio.wait_for(reader.readexactly(2 * len(FIXED_ANSWER)), 10)
            writer.write(b"GET / HTTP/1.1\r\n")
            rest = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
            await writer.wait_closed()
        return answers, rest

    answers, rest = asyncio.run(scenario())
    assert FIXED_ANSWER * 2 == answers
    assert b"" == rest
    assert FIXED_ANSWER.startswith(b"136:OK fingerprint match=00:00:")


def test_the_socketmap_load_generator_counts_answers_from_a_real_server() -> None:
    """Bounded: a few hundred lookups on loopback, then it stops by itself."""

    async def scenario() -> dict[str, object]:
        server, port = await _noop_socketmap_port()
        async with server:
            return await run_socketmap_load(
                "127.0.0.1",
                port,
                ["transport a@b.example", "tlspolicy b.example"],
                connections=4,
                count=200,
                warmup=20,
            )

    result = asyncio.run(scenario())
    assert 200 == result["requests"]
    assert {"OK": 200} == result["answers"]
    assert result["latency_p50_ms"] <= result["latency_p99_ms"] <= result["latency_max_ms"]


def test_the_socketmap_load_generator_fails_on_an_answer_it_did_not_expect() -> None:
    """A service answering TEMP (or anything but the expected kind) is not measured."""

    async def scenario() -> None:
        server, port = await _noop_socketmap_port()
        async with server:
            await run_socketmap_load(
                "127.0.0.1", port, ["tlspolicy b.example"], count=5, warmup=0, expect=["TEMP "]
            )

    with pytest.raises(UnexpectedAnswer, match="does not start with b'TEMP '"):
        asyncio.run(scenario())


def test_the_socketmap_load_generator_refuses_addresses_off_this_machine() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_socketmap_load("192.0.2.1", 10041, ["tlspolicy x"], count=1))


def test_the_outbound_benchmark_policy_is_served_and_routes_each_partner(tmp_path: Path) -> None:
    from tlsconnector.adapters.postfix.outbound import AnswerKind, OutboundMaps

    pki = BenchPKI("ec-p256")
    (tmp_path / "ca.pem").write_text(pki.trust_pem())
    path = tmp_path / "policy.toml"
    path.write_text(outbound_policy_toml([40001, 40002, 40003], ca_file="ca.pem", generated=40))
    maps = OutboundMaps.build(load_policy(path))
    for i, port in enumerate([40001, 40002, 40003]):
        routed = maps.transport_answer(f"user{i}@partner{i}.example")
        assert (AnswerKind.OK, f"tlsconnector:[127.0.0.1]:{port}") == (routed.kind, routed.text)
        assert f"bench-pinned-{i}" == routed.connector
        hop = maps.next_hop(f"[127.0.0.1]:{port}")
        assert not isinstance(hop, type(routed))
        assert maps.static_answer(hop) is None  # validating: answered by a pin
        settings = "domain_validation" if i % 2 == 0 else "certificate_validation"
        assert settings == str(hop.connector.tls_settings)


def test_the_pre_filled_resolver_cache_answers_secure_without_a_lookup(tmp_path: Path) -> None:
    """postfix-mta-sts-resolver (the bench extra) configured as the benchmark does
    answers each domain from the pre-filled cache: a lookup would go to DNS, which has
    no such domain, and answer NOTFOUND."""
    pytest.importorskip("aiosqlite")
    responder = pytest.importorskip("postfix_mta_sts_resolver.responder")
    from postfix_mta_sts_resolver import utils
    from postfix_mta_sts_resolver.sqlite_cache import SqliteCache

    cache_path = tmp_path / "cache.db"
    expected = prefill_resolver_cache(
        cache_path, ["partner0.example", "partner1.example"], now=time.time()
    )
    config = tmp_path / "resolver.yml"
    config.write_text(resolver_config(18461, cache_path))
    cfg = utils.load_config(str(config))
    assert (str(cache_path), False) == (
        cfg["cache"]["options"]["filename"],
        cfg["proactive_policy_fetching"]["enabled"],
    )

    async def scenario() -> dict[str, str]:
        cache = SqliteCache(cfg["cache"]["options"]["filename"], threads=1)
        await cache.setup()
        try:
            server = responder.STSSocketmapResponder(cfg, asyncio.get_running_loop(), cache)
            answers = {}
            for request in expected:
                wire = await asyncio.wait_for(server.process_request(request.encode()), 10)
                answers[request] = wire.split(b":", 1)[1][:-1].decode()
            return answers
        finally:
            await cache.teardown()

    assert expected == asyncio.run(scenario())
    assert (
        "OK secure match=mail.partner0.example servername=hostname"
        == expected["postfix partner0.example"]
    )


# --------------------------------------------------------------------------------------
# The revocation benchmark's CRLs (small sizes; the benchmark mints 10,000 of 100)


@pytest.fixture(scope="module")
def crl_pki() -> tuple[BenchPKI, list[x509.Certificate], list[bytes]]:
    """A PKI, three leaves its intermediate issued (the first two revoked), and five
    CRLs of ten serials: the intermediate's, the root's, three fillers'."""
    pki = BenchPKI("ec-p256")
    leaves = [pki.leaf(connector_for_leaf(n, 1_000)).cert for n in range(3)]
    ders = mint_crls(
        5,
        10,
        issuers=[pki.intermediate, pki.root],
        listed={0: [leaves[0].serial_number, leaves[1].serial_number]},
    )
    return pki, leaves, ders


def test_minted_crls_are_complete_current_and_signed_by_their_issuers(
    crl_pki: tuple[BenchPKI, list[x509.Certificate], list[bytes]],
) -> None:
    pki, leaves, ders = crl_pki
    crls = crl_set_from_der(ders)
    assert 5 == len(crls)
    assert [None] * 5 == [item.unusable for item in crls.lists]
    assert [10] * 5 == [len(item.revoked) for item in crls.lists]
    issuers = [item.crl.issuer for item in crls.lists]
    assert [pki.intermediate.subject, pki.root.subject, *map(filler_issuer, range(3))] == issuers
    assert crls.lists[0].signed_by(pki.intermediate.key.public_key())
    assert crls.lists[1].signed_by(pki.root.key.public_key())
    assert not crls.lists[2].signed_by(pki.root.key.public_key())
    for item in crls.lists:
        assert item.this_update <= NOW < item.next_update  # type: ignore[operator]
    listed = crls.lists[0].revoked
    assert listed[leaves[0].serial_number] == listed[leaves[1].serial_number] == REVOKED_AT
    assert leaves[2].serial_number not in listed

    # The same serials on every run (seeded): the benchmark measures the same set.
    def serials(seed: int) -> list[set[int]]:
        minted = mint_crls(5, 10, issuers=[pki.intermediate, pki.root], seed=seed)
        return [set(item.revoked) for item in crl_set_from_der(minted).lists]

    assert serials(16) == serials(16)
    assert serials(16) != serials(17)
    assert all(not a & b for a, b in itertools.combinations(serials(16), 2))


def test_mint_crls_refuses_sizes_out_of_bounds() -> None:
    pki = BenchPKI("ec-p256")
    with pytest.raises(ValueError, match="count=1"):
        mint_crls(1, 10, issuers=[pki.intermediate, pki.root])
    with pytest.raises(ValueError, match="4000000 serials"):
        mint_crls(10_001, 400)
    with pytest.raises(ValueError, match=r"listed\[0\] holds 3 serials"):
        mint_crls(1, 2, issuers=[pki.root], listed={0: [1, 2, 3]})
    with pytest.raises(ValueError, match=r"listed\[1\]"):
        mint_crls(1, 2, issuers=[pki.root], listed={1: [1]})


def test_the_revocation_policy_rejects_the_revoked_leaves_and_accepts_the_others(
    tmp_path: Path, crl_pki: tuple[BenchPKI, list[x509.Certificate], list[bytes]]
) -> None:
    pki, leaves, ders = crl_pki
    (tmp_path / "ca.pem").write_text(pki.trust_pem())
    names = [f"crls/{name}" for name in write_crl_files(tmp_path / "crls", ders)]
    assert 5 == len(list((tmp_path / "crls").iterdir()))
    path = tmp_path / "policy.toml"
    path.write_text(crl_policy_toml(policy_toml(1_000, ca_file="ca.pem"), "ca.pem", names))
    policy = load_policy(path, use_system_trust=False)
    assert policy.trust is not None
    assert crl_set_from_der(ders).key == policy.trust.crls.key
    plain = Policy.from_mapping(policy_mapping(1_000), trust=policy.trust.with_crls(NO_CRLS))
    for n, cert in enumerate(leaves):
        connector = connector_for_leaf(n, 1_000)
        chain = Encoding.PEM
        pem = cert.public_bytes(chain).decode() + pki.intermediate.cert.public_bytes(chain).decode()
        session = InboundSession.from_json(_revocation_facts(connector, pem))
        decision = evaluate_inbound(policy, session)
        assert "accept" == str(evaluate_inbound(plain, session).action)
        if n < 2:
            assert "reject" == str(decision.action)
            assert ["certificate-revoked"] == [str(r.code) for r in decision.reasons]
        else:
            assert "accept" == str(decision.action), decision


def test_fresh_signatures_decode_only_the_named_issuers_again(
    crl_pki: tuple[BenchPKI, list[x509.Certificate], list[bytes]],
) -> None:
    pki, _, ders = crl_pki
    crls = crl_set_from_der(ders)
    assert crls.lists[0].signed_by(pki.intermediate.key.public_key())  # now remembered
    named = {pki.intermediate.subject.public_bytes()}
    fresh = with_fresh_signatures(crls, named)
    assert crls.key == fresh.key
    assert [i.digest for i in crls.lists] == [i.digest for i in fresh.lists]
    assert fresh.lists[0] is not crls.lists[0]
    assert {} == fresh.lists[0]._signers
    assert all(a is b for a, b in zip(fresh.lists[1:], crls.lists[1:], strict=True))


def test_crl_policy_toml_needs_the_ca_file_line() -> None:
    with pytest.raises(ValueError, match="ca_file"):
        crl_policy_toml(policy_toml(2), "ca.pem", ["a.der"])


def test_the_revocation_step_is_a_choice_of_the_runner(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"targets": []}))
    assert 0 == bench_main(["--only", "revocation", "--markdown", str(results)])
    with pytest.raises(SystemExit):
        bench_main(["--only", "revocations", "--markdown", str(results)])
