"""``tlsconnector serve postfix-outbound``: the socketmap maps, the pins, the service.

Pure parts (netstrings, map answers, the pin cache with a fake clock) are tested
directly; probes go to real aiosmtpd partners on 127.0.0.1 presenting certificates
minted for the test; the service also runs as a subprocess on port 0 (and on a Unix
socket) and tells its address on the ``listening`` log line. No DNS: MX lookups and
host addresses are injected. Every wait is bounded; no test asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiosmtpd.smtp import SMTP
from cryptography.hazmat.primitives import serialization

from tlsconnector import Policy, TrustStore, load_policy
from tlsconnector.adapters.postfix.outbound import (
    MAX_REQUEST_BYTES,
    AnswerKind,
    HopLookup,
    MapAnswer,
    MapsError,
    NetstringDecoder,
    NextHop,
    OutboundMaps,
    Pin,
    PinCache,
    Probe,
    encode_netstring,
    parse_request,
)
from tlsconnector.adapters.postfix.server import JsonLog
from tlsconnector.adapters.postfix.socketmap import OutboundService, Prober

from certmint import CA, Leaf
from loopthread import LoopThread

WAIT = 15.0  # the bound on every wait
DER = serialization.Encoding.DER
REAL_NOW = dt.datetime.now(dt.UTC)
#: Certificates valid around the real clock: the subprocess reads it.
NOT_BEFORE = REAL_NOW - dt.timedelta(days=1)
NOT_AFTER = REAL_NOW + dt.timedelta(days=60)

ROOT = CA("Outbound Pinning Test Root")
ISSUING = ROOT.intermediate("Outbound Pinning Issuing CA")


def leaf(cn: str, **options: Any) -> Leaf:
    options.setdefault("not_before", NOT_BEFORE)
    options.setdefault("not_after", NOT_AFTER)
    return ISSUING.issue(cn, **options)


#: CN under *.fabrikam.com, SAN naming another host: Postfix's own name check would
#: read the SAN; section 3 reads the CN only, so this leaf is deliverable.
GOOD = leaf("server1.fabrikam.com", san=["mail.example.org"])
GOOD_NEXT = leaf("server2.fabrikam.com")
#: SAN matches, CN does not: refused (Postfix's match= would have accepted it).
SAN_ONLY = leaf("mail.example.org", san=["server1.fabrikam.com"])
UNTRUSTED = CA("Somebody Else").issue(
    "server1.fabrikam.com", not_before=NOT_BEFORE, not_after=NOT_AFTER
)


def sha256(item: Leaf) -> str:
    digest = hashlib.sha256(item.der()).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


# -- partners -------------------------------------------------------------------------


class _Handler:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "250 OK"


class Partner:
    """An aiosmtpd server on 127.0.0.1 offering STARTTLS with a leaf (swappable)."""

    def __init__(self, tmp_path: Path, item: Leaf | None, host: str = "127.0.0.1") -> None:
        self.tmp_path = tmp_path
        self.server_names: list[str | None] = []
        self.context: ssl.SSLContext | None = None
        if item is not None:
            self.present(item)

        def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
            return SMTP(_Handler(), hostname="mx.test", tls_context=self.context, loop=loop)

        self.thread = LoopThread(factory)
        self.port = self.thread.port

    def present(self, item: Leaf) -> None:
        """Present ``item`` from the next connection on (a certificate rotation)."""
        chain = self.tmp_path / f"chain-{id(item)}.pem"
        key = self.tmp_path / f"key-{id(item)}.pem"
        chain.write_text(item.chain_pem())
        key.write_text(item.key_pem())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)

        def record(sock: Any, name: str | None, ctx: ssl.SSLContext) -> None:
            self.server_names.append(name)

        context.sni_callback = record
        if self.context is None:
            self.context = context
        else:  # swap the certificate in the context the server already holds
            self.context.load_cert_chain(chain, key)

    def stop(self) -> None:
        self.thread.stop()


@contextlib.contextmanager
def partner(tmp_path: Path, item: Leaf | None) -> Iterator[Partner]:
    running = Partner(tmp_path, item)
    try:
        yield running
    finally:
        running.stop()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


# -- policies -------------------------------------------------------------------------


def connector(
    name: str, *hosts: str, mode: str = "domain_validation", **more: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "recipient_domains": more.pop("domains", ["fabrikam.com"]),
        "use_mx_record": not hosts,
        "smart_hosts": list(hosts),
        "tls_settings": mode,
        **more,
    }
    if mode == "domain_validation":
        data.setdefault("tls_domain", "*.fabrikam.com")
    return data


def policy(*connectors: dict[str, Any]) -> Policy:
    return Policy.from_mapping(
        {"outbound": list(connectors)}, trust=TrustStore.from_pem(ROOT.cert_pem())
    )


def maps_of(*connectors: dict[str, Any]) -> OutboundMaps:
    return OutboundMaps.build(policy(*connectors))


# -- netstrings -----------------------------------------------------------------------


def test_netstrings_split_across_reads_and_several_in_one_read() -> None:
    decoder = NetstringDecoder()
    data = encode_netstring(b"transport a@fabrikam.com") + encode_netstring(b"tlspolicy x")
    found = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert [b"transport a@fabrikam.com", b"tlspolicy x"] == [p for part in found for p in part]
    assert decoder.error is None
    assert not decoder.pending
    assert [b"", b"ab"] == NetstringDecoder().feed(b"0:,2:ab,")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"GET / HTTP/1.0\r\n", "not a netstring"),
        (b"12a:", "not a netstring"),
        (b"12345:" + b"x" * 20, "at most"),
        (b"4097:", "at most"),  # over MAX_REQUEST_BYTES before any payload
        (b"03:abc,", "leading zero"),
        (b"3:abcd", "not followed by ','"),
        (b":abc,", "not a number"),
        (b"99999", "at most"),  # a length longer than any allowed one
    ],
)
def test_garbage_and_oversize_netstrings_end_decoding(data: bytes, fragment: str) -> None:
    decoder = NetstringDecoder()
    assert [] == decoder.feed(data)
    assert decoder.error is not None
    assert fragment in decoder.error
    assert [] == decoder.feed(b"3:abc,")  # nothing after garbage is framed


def test_the_request_bound_is_exact() -> None:
    payload = b"t " + b"k" * (MAX_REQUEST_BYTES - 2)
    assert [payload] == NetstringDecoder().feed(encode_netstring(payload))
    decoder = NetstringDecoder()
    assert [] == decoder.feed(encode_netstring(payload + b"k"))
    assert decoder.error is not None


def test_requests_are_name_space_key() -> None:
    assert ("transport", "a b@fabrikam.com") == parse_request(b"transport a b@fabrikam.com")
    for bad in (b"transport", b" key", b"transport ", b"tlspolicy \xff\xfe"):
        with pytest.raises(ValueError, match="request"):
            parse_request(bad)


def test_answers_on_the_wire() -> None:
    assert b"9:NOTFOUND ," == MapAnswer(AnswerKind.NOTFOUND).wire()
    assert b"4:OK x," == MapAnswer(AnswerKind.OK, "x").wire()
    # Attacker text in a reason cannot break the framing or the line.
    wire = MapAnswer.temp("bad \x00\n\u202e key", code="bad-key").wire()
    text = wire.split(b":", 1)[1][:-1]
    assert text.startswith(b"TEMP bad ")
    assert all(32 <= b < 127 for b in text)


# -- the transport map ----------------------------------------------------------------


def test_transport_answers_route_governed_recipients_through_the_dedicated_transport() -> None:
    maps = maps_of(
        connector("A smart", "mx.fabrikam.com", domains=["fabrikam.com"]),
        connector(
            "B two hosts",
            "a.woodgrove.com",
            "[2001:db8::1]:2525",
            domains=["woodgrove.com"],
            mode="encryption_only",
        ),
        connector("C mx", domains=["*.tailspin.com"], mode="certificate_validation"),
    )
    answer = maps.transport_answer("finance@fabrikam.com")
    assert (AnswerKind.OK, "tlsconnector:[mx.fabrikam.com]:25") == (answer.kind, answer.text)
    assert "A smart" == answer.connector
    two = maps.transport_answer("x@woodgrove.com")
    assert "tlsconnector:[a.woodgrove.com]:25, [2001:db8::1]:2525" == two.text
    assert "tlsconnector:eu.tailspin.com" == maps.transport_answer("x@EU.Tailspin.com").text
    # The domain key (asked after the address) gets the same answer.
    assert "tlsconnector:[mx.fabrikam.com]:25" == maps.transport_answer("fabrikam.com").text


@pytest.mark.parametrize(
    "key",
    [
        "x@contoso.com",
        "contoso.com",
        ".fabrikam.com",
        "*",
        "x@sub.fabrikam.com",
        "x@[192.0.2.1]",
        "postmaster",
    ],
)
def test_transport_answers_notfound_for_what_no_connector_governs(key: str) -> None:
    maps = maps_of(connector("A", "mx.fabrikam.com"))
    assert AnswerKind.NOTFOUND == maps.transport_answer(key).kind


def test_a_recipient_whose_domain_cannot_be_read_is_deferred_never_notfound() -> None:
    maps = maps_of(connector("A", "mx.fabrikam.com"))
    answer = maps.transport_answer("x@fabri..kam.com")
    assert AnswerKind.TEMP == answer.kind
    assert "fabri..kam.com" in answer.text
    # An unreadable local part: deferred at a governed domain, NOTFOUND elsewhere.
    overlong = "y" * 2000
    assert AnswerKind.TEMP == maps.transport_answer(f"{overlong}@fabrikam.com").kind
    assert AnswerKind.NOTFOUND == maps.transport_answer(f"{overlong}@contoso.com").kind


def test_the_transport_name_is_configurable() -> None:
    maps = OutboundMaps.build(policy(connector("A", "mx.fabrikam.com")), transport="tlsc2")
    assert "tlsc2:[mx.fabrikam.com]:25" == maps.transport_answer("a@fabrikam.com").text


# -- the TLS policy map: static answers, keys ----------------------------------------


def _answer(service: OutboundService, name: str, key: str) -> MapAnswer:
    return asyncio.run(service.lookup(name, key))


def _service(pol: Policy, **options: Any) -> tuple[OutboundService, io.StringIO]:
    stream = io.StringIO()
    service = OutboundService(pol, policy_path=Path("policy.toml"), log=JsonLog(stream), **options)
    return service, stream


def test_levels_without_a_probe_and_sni() -> None:
    service, _ = _service(
        policy(
            connector("A", "mx.fabrikam.com", mode="opportunistic"),
            connector(
                "B", "mx.woodgrove.com:2525", mode="encryption_only", domains=["woodgrove.com"]
            ),
        )
    )
    assert "may servername=hostname" == _answer(service, "tlspolicy", "[mx.fabrikam.com]:25").text
    assert "may servername=hostname" == _answer(service, "tlspolicy", "[mx.fabrikam.com]").text
    encrypt = _answer(service, "tlspolicy", "[MX.woodgrove.com]:2525")
    assert (AnswerKind.OK, "encrypt servername=hostname") == (encrypt.kind, encrypt.text)


def test_parent_domains_are_notfound_and_unknown_next_hops_are_deferred() -> None:
    service, _ = _service(policy(connector("A", "mx.fabrikam.com", mode="opportunistic")))
    assert AnswerKind.NOTFOUND == _answer(service, "tlspolicy", ".fabrikam.com").kind
    for key in ("[mx.contoso.com]:25", "contoso.com", "[mx.fabrikam.com]:2525", "[bad..host]"):
        answer = _answer(service, "tlspolicy", key)
        assert AnswerKind.TEMP == answer.kind, key
    assert AnswerKind.PERM == _answer(service, "virtual", "x").kind


def test_no_answer_carries_postfix_3_10_tlsrpt_attributes() -> None:
    service, _ = _service(policy(connector("A", "mx.fabrikam.com", mode="encryption_only")))
    text = _answer(service, "tlspolicy", "[mx.fabrikam.com]:25").text
    assert "policy_type" not in text
    assert "policy_domain" not in text


def test_next_hop_keys_parse_in_every_form_postfix_uses() -> None:
    assert "[mx.example.com]:25" == str(NextHop.parse("[MX.example.com]"))
    assert "[2001:db8::1]:25" == str(NextHop.parse("[ipv6:2001:db8::1]:25"))
    assert "example.com" == str(NextHop.parse("Example.COM"))
    with pytest.raises(ValueError, match="PORT"):
        NextHop.parse("[mx.example.com]:x")


# -- policies that cannot be served ---------------------------------------------------


def test_a_smart_host_shared_with_different_tls_settings_is_refused_naming_both() -> None:
    with pytest.raises(MapsError) as caught:
        maps_of(
            connector("Fabrikam", "relay.example.net", mode="domain_validation"),
            connector(
                "Woodgrove",
                "relay.example.net:25",
                mode="encryption_only",
                domains=["woodgrove.com"],
            ),
        )
    [problem] = caught.value.problems
    assert "'Fabrikam'" in problem
    assert "'Woodgrove'" in problem
    assert "[relay.example.net]:25" in problem
    assert "encryption_only" in problem


def test_a_smart_host_shared_with_the_same_tls_settings_is_served() -> None:
    maps = maps_of(
        connector("Fabrikam", "relay.example.net"),
        connector("Woodgrove", "relay.example.net", domains=["woodgrove.com"]),
    )
    assert AnswerKind.OK == maps.transport_answer("a@woodgrove.com").kind
    # A different port is another next hop: no conflict.
    maps_of(
        connector("Fabrikam", "relay.example.net"),
        connector("W", "relay.example.net:2525", mode="opportunistic", domains=["woodgrove.com"]),
    )


def test_a_policy_serving_no_outbound_mail_is_refused() -> None:
    with pytest.raises(MapsError, match="governs no outbound mail"):
        OutboundMaps.build(Policy.from_mapping({}, trust=None))
    with pytest.raises(MapsError, match="governs no outbound mail"):
        maps_of(connector("Rule only", "mx.fabrikam.com", is_transport_rule_scoped=True))


# -- the pin cache (fake clock) -------------------------------------------------------

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _cache_connector() -> Any:
    return policy(connector("A", "mx.fabrikam.com")).outbound[0]


def _pin(not_after: dt.datetime = T0 + dt.timedelta(days=30)) -> Pin:
    return Pin("AA:BB", not_after, "mx.fabrikam.com:25", "127.0.0.1")


HOP = NextHop.parse("[mx.fabrikam.com]:25")


def test_a_pin_expires_with_the_lifetime() -> None:
    cache, owner = PinCache(lifetime=3600), _cache_connector()
    cache.store(HOP, owner, None, [_pin()], T0)
    assert cache.get(HOP, owner, T0 + dt.timedelta(seconds=3599)) is not None
    assert cache.get(HOP, owner, T0 + dt.timedelta(seconds=3600)) is None


def test_a_pin_never_outlives_its_leaf() -> None:
    cache, owner = PinCache(lifetime=3600), _cache_connector()
    entry = cache.store(HOP, owner, None, [_pin(T0 + dt.timedelta(minutes=10)), _pin()], T0)
    assert T0 + dt.timedelta(minutes=10) == entry.expires_at
    assert cache.get(HOP, owner, T0 + dt.timedelta(minutes=10)) is None


def test_a_pin_judged_for_another_connector_or_before_the_clock_went_back_is_not_used() -> None:
    cache, owner = PinCache(lifetime=3600), _cache_connector()
    cache.store(HOP, owner, None, [_pin()], T0)
    other = attrs.evolve(
        owner, tls_domain=None, tls_settings=owner.tls_settings.CERTIFICATE_VALIDATION
    )
    assert cache.get(HOP, other, T0) is None
    cache.store(HOP, owner, None, [_pin()], T0)
    assert cache.get(HOP, owner, T0 - dt.timedelta(seconds=1)) is None


def test_active_next_hops_are_due_for_refresh_before_they_expire() -> None:
    cache, owner = PinCache(lifetime=3600), _cache_connector()  # refresh 300 s before
    cache.store(HOP, owner, None, [_pin()], T0)
    assert [] == cache.due(T0 + dt.timedelta(seconds=3000))
    assert [(HOP, owner)] == cache.due(T0 + dt.timedelta(seconds=3301))
    cache.refresh_failed(HOP, T0 + dt.timedelta(seconds=3301))  # retried 30 s later
    assert [] == cache.due(T0 + dt.timedelta(seconds=3310))
    assert [(HOP, owner)] == cache.due(T0 + dt.timedelta(seconds=3332))
    # A next hop nobody asked for during a whole lifetime is left to expire.
    idle = NextHop.parse("[idle.fabrikam.com]:25")
    cache.store(idle, owner, None, [_pin()], T0, used=False)
    cache._entries[idle].last_used = T0 - dt.timedelta(hours=2)
    assert idle not in [hop for hop, _ in cache.due(T0 + dt.timedelta(seconds=3400))]


def test_a_failed_probe_is_repeated_for_a_while_only() -> None:
    cache = PinCache(lifetime=3600, failure_seconds=30)
    failed = MapAnswer.temp("down", code="probe-failed")
    cache.store_failure(HOP, failed, T0)
    assert failed == cache.failure(HOP, T0 + dt.timedelta(seconds=29))
    assert cache.failure(HOP, T0 + dt.timedelta(seconds=30)) is None


def test_the_cache_is_bounded() -> None:
    cache, owner = PinCache(lifetime=3600, max_entries=3), _cache_connector()
    hops = [NextHop.parse(f"[mx{i}.fabrikam.com]:25") for i in range(5)]
    for hop in hops:
        cache.store(hop, owner, None, [_pin()], T0)
    assert 3 == len(cache)
    assert cache.get(hops[0], owner, T0) is None
    assert cache.get(hops[4], owner, T0) is not None


# -- probing real partners ------------------------------------------------------------


def test_pins_are_exactly_the_leaves_judged_deliver_and_come_from_the_cache_next(
    tmp_path: Path,
) -> None:
    with partner(tmp_path, GOOD) as good:
        service, stream = _service(policy(connector("A", f"127.0.0.1:{good.port}")))
        key = f"[127.0.0.1]:{good.port}"
        first = _answer(service, "tlspolicy", key)
        again = _answer(service, "tlspolicy", key)
    assert (AnswerKind.OK, f"fingerprint match={sha256(GOOD)} servername=hostname") == (
        first.kind,
        first.text,
    )
    assert ("probe", "cache") == (first.source, again.source)
    assert first.text == again.text
    probes = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert 1 == sum(p["event"] == "probe" for p in probes)


@pytest.mark.parametrize(
    ("item", "code"),
    [(SAN_ONLY, "certificate-host-mismatch"), (UNTRUSTED, "certificate-not-trusted")],
)
def test_a_refused_certificate_is_deferred_with_the_reason(
    tmp_path: Path, item: Leaf, code: str
) -> None:
    with partner(tmp_path, item) as bad:
        service, _ = _service(policy(connector("A", f"127.0.0.1:{bad.port}")))
        answer = _answer(service, "tlspolicy", f"[127.0.0.1]:{bad.port}")
    assert AnswerKind.TEMP == answer.kind
    assert code in answer.text
    assert "probe-failed" in answer.codes
    assert code in answer.codes


def test_certificate_validation_pins_a_trusted_leaf_whatever_its_name(tmp_path: Path) -> None:
    with partner(tmp_path, SAN_ONLY) as host:
        service, _ = _service(
            policy(connector("A", f"127.0.0.1:{host.port}", mode="certificate_validation"))
        )
        answer = _answer(service, "tlspolicy", f"[127.0.0.1]:{host.port}")
    assert f"fingerprint match={sha256(SAN_ONLY)} servername=hostname" == answer.text


def test_an_unreachable_next_hop_is_deferred_and_not_probed_again_at_once() -> None:
    port = closed_port()
    calls: list[NextHop] = []
    real = Prober(deadline=10)

    class Counting(Prober):
        def probe(self, *args: Any, **kwargs: Any) -> Probe:
            calls.append(args[2])
            return real.probe(*args, **kwargs)

    service, _ = _service(policy(connector("A", f"127.0.0.1:{port}")), prober=Counting())
    first = _answer(service, "tlspolicy", f"[127.0.0.1]:{port}")
    second = _answer(service, "tlspolicy", f"[127.0.0.1]:{port}")
    assert AnswerKind.TEMP == first.kind
    assert "connection-failed" in first.text
    assert (first.text, "cache") == (second.text, second.source)
    assert 1 == len(calls)


def test_every_mx_host_and_address_is_probed_with_sni(tmp_path: Path) -> None:
    """mx1 presents a good leaf at 127.0.0.1; mx2's address 127.0.0.2 refuses; mx3
    presents a refused leaf: exactly mx1's leaf is pinned."""
    with partner(tmp_path, GOOD) as good:
        addresses = {"mx1.fabrikam.com": ["127.0.0.1"], "mx2.fabrikam.com": ["127.0.0.2"]}

        def mx(domain: str, seconds: float) -> list[tuple[int, str]]:
            assert "fabrikam.com" == domain
            return [(20, "mx2.fabrikam.com."), (10, "MX1.fabrikam.com.")]

        prober = Prober(
            deadline=20, port=good.port, mx_lookup=mx, address_lookup=lambda h, t: addresses[h]
        )
        service, stream = _service(policy(connector("A", domains=["fabrikam.com"])), prober=prober)
        transport = _answer(service, "transport", "finance@fabrikam.com")
        answer = _answer(service, "tlspolicy", "fabrikam.com")
        server_names = list(good.server_names)
    assert "tlsconnector:fabrikam.com" == transport.text
    assert f"fingerprint match={sha256(GOOD)} servername=hostname" == answer.text
    assert ["mx1.fabrikam.com"] == server_names
    [probe] = [e for e in map(json.loads, stream.getvalue().splitlines()) if e["event"] == "probe"]
    assert ["127.0.0.1"] == [p["address"] for p in probe["pins"]]
    assert any("127.0.0.2" in f and "connection-failed" in f for f in probe["failures"])


def test_an_mx_lookup_failure_is_deferred() -> None:
    def broken(domain: str, seconds: float) -> list[tuple[int, str]]:
        raise RuntimeError("SERVFAIL")

    service, _ = _service(
        policy(connector("A", domains=["fabrikam.com"])), prober=Prober(mx_lookup=broken)
    )
    answer = _answer(service, "tlspolicy", "fabrikam.com")
    assert AnswerKind.TEMP == answer.kind
    assert "MX lookup" in answer.text


def test_an_internal_error_is_always_temp() -> None:
    class Broken(Prober):
        def probe(self, *args: Any, **kwargs: Any) -> Probe:
            raise RuntimeError("boom")

    service, _ = _service(policy(connector("A", "mx.fabrikam.com")), prober=Broken())
    answer = _answer(service, "tlspolicy", "[mx.fabrikam.com]:25")
    assert (AnswerKind.TEMP, ("internal-error",)) == (answer.kind, answer.codes)
    assert "boom" in answer.text

    def explode(key: str) -> MapAnswer:
        raise KeyError(key)

    service.maps.transport_answer = explode  # type: ignore[method-assign]
    assert AnswerKind.TEMP == _answer(service, "transport", "a@fabrikam.com").kind


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_rotation_a_new_certificate_is_deferred_until_the_next_probe_then_delivered(
    tmp_path: Path,
) -> None:
    clock = Clock(REAL_NOW)
    with partner(tmp_path, GOOD) as host:
        service, _ = _service(
            policy(connector("A", f"127.0.0.1:{host.port}")), clock=clock, pin_lifetime=600
        )
        key = f"[127.0.0.1]:{host.port}"
        before = _answer(service, "tlspolicy", key)
        host.present(GOOD_NEXT)
        clock.now += dt.timedelta(seconds=599)
        still = _answer(service, "tlspolicy", key)  # Postfix defers the new leaf meanwhile
        clock.now += dt.timedelta(seconds=1)
        after = _answer(service, "tlspolicy", key)
    assert sha256(GOOD) in before.text
    assert before.text == still.text
    assert f"fingerprint match={sha256(GOOD_NEXT)} servername=hostname" == after.text
    assert "probe" == after.source


def test_active_pins_are_refreshed_in_the_background(tmp_path: Path) -> None:
    clock = Clock(REAL_NOW)
    with partner(tmp_path, GOOD) as host:
        service, _ = _service(
            policy(connector("A", f"127.0.0.1:{host.port}")), clock=clock, pin_lifetime=600
        )
        key = f"[127.0.0.1]:{host.port}"

        async def scenario() -> tuple[MapAnswer, int, MapAnswer]:
            await service.lookup("tlspolicy", key)
            host.present(GOOD_NEXT)
            clock.now += dt.timedelta(seconds=500)  # 150 s before expiry (600 / 4)
            started = service.refresh_due()
            await asyncio.wait_for(asyncio.gather(*service._background), WAIT)
            clock.now += dt.timedelta(seconds=200)  # past the first pin's lifetime
            return await service.lookup("tlspolicy", key), started, MapAnswer(AnswerKind.OK)

        answer, started, _ = asyncio.run(scenario())
    assert 1 == started
    assert ("cache", sha256(GOOD_NEXT)) == (answer.source, answer.text.split("=")[1].split()[0])


# -- the service as a subprocess -------------------------------------------------------

POLICY = """
[trust]
ca_file = "root.pem"

[[outbound]]
name = "Fabrikam Bank outbound"
recipient_domains = ["fabrikam.com"]
use_mx_record = false
smart_hosts = ["127.0.0.1:{port}"]
tls_settings = "domain_validation"
tls_domain = "{tls_domain}"
"""


def write_policy(directory: Path, port: int, tls_domain: str = "*.fabrikam.com") -> Path:
    (directory / "root.pem").write_text(ROOT.cert_pem())
    path = directory / "policy.toml"
    path.write_text(POLICY.format(port=port, tls_domain=tls_domain))
    return path


class Service:
    """A ``serve postfix-outbound`` subprocess and its JSON log lines."""

    def __init__(self, policy_path: Path, *extra: str, listen: str = "127.0.0.1:0") -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tlsconnector",
                "serve",
                "postfix-outbound",
                "--policy",
                str(policy_path),
                "--listen",
                listen,
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = ""

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:  # plain text: a start-up error (never a log line)
                self._lines.put({"event": "(text)", "text": raw.decode().rstrip("\n")})
        self._lines.put(None)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(f"the service exited; last events: {self.events[-5:]}")
            self.events.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no such event within {WAIT} s; last: {self.events[-5:]}")

    def start(self) -> Service:
        self.address = self.wait_for(lambda e: e["event"] == "listening")["address"]
        return self

    def connect(self) -> socket.socket:
        if self.address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(WAIT)
            sock.connect(self.address[5:])
            return sock
        host, port = self.address.rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=WAIT)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT)
            raise AssertionError("the service did not stop on SIGTERM") from None
        finally:
            self._reader.join(timeout=WAIT)
            while True:
                try:
                    event = self._lines.get_nowait()
                except queue.Empty:
                    break
                if event is not None:
                    self.events.append(event)


def exit_status(service: Service) -> int:
    """The status of a service expected to exit by itself (stopped if it does not)."""
    try:
        service.process.wait(timeout=WAIT)
    finally:
        status = service.stop()
    return status


def ask(sock: socket.socket, request: str) -> str:
    sock.sendall(encode_netstring(request.encode()))
    return read_netstring(sock)


def read_netstring(sock: socket.socket) -> str:
    length = b""
    while not length.endswith(b":"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"connection closed after {length!r}")
        length += chunk
    size = int(length[:-1]) + 1
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError("connection closed in an answer")
        data += chunk
    assert data.endswith(b",")
    return data[:-1].decode("ascii")


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_the_service_answers_both_maps_and_logs_one_line_per_answer(tmp_path: Path) -> None:
    with partner(tmp_path, GOOD) as host:
        service = Service(write_policy(tmp_path, host.port)).start()
        try:
            with service.connect() as sock:
                transport = ask(sock, "transport finance@fabrikam.com")
                other = ask(sock, "transport someone@contoso.com")
                tls = ask(sock, f"tlspolicy [127.0.0.1]:{host.port}")
                parent = ask(sock, "tlspolicy .fabrikam.com")
        finally:
            status = service.stop()
    assert f"OK tlsconnector:[127.0.0.1]:{host.port}" == transport
    assert "NOTFOUND " == other
    assert f"OK fingerprint match={sha256(GOOD)} servername=hostname" == tls
    assert "NOTFOUND " == parent
    assert 0 == status
    answers = [e for e in service.events if e["event"] == "answer"]
    assert ["OK", "NOTFOUND", "OK", "NOTFOUND"] == [a["answer"] for a in answers]
    assert "Fabrikam Bank outbound" == answers[2]["connector"]
    assert {"probe", "stopped"} <= {e["event"] for e in service.events}


@pytest.mark.parametrize(
    ("garbage", "answered"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", b""),
        (b"99999999:", b""),
        (b"5000:" + b"x" * 5000 + b",", b""),
        (b"5:hello!", b""),
        # A netstring that is not NAME KEY: a TEMP answer, then the close.
        (b"7:nospace,", b"TEMP malformed request"),
    ],
)
def test_garbage_closes_the_connection(tmp_path: Path, garbage: bytes, answered: bytes) -> None:
    service = Service(write_policy(tmp_path, closed_port())).start()
    try:
        with service.connect() as sock:
            assert "NOTFOUND " == ask(sock, "transport a@contoso.com")
            sock.sendall(garbage)
            rest = read_until_closed(sock)
        with service.connect() as sock:  # the service itself goes on
            assert "NOTFOUND " == ask(sock, "transport a@contoso.com")
    finally:
        service.stop()
    assert rest.partition(b":")[2].startswith(answered)
    assert (rest == b"") == (answered == b"")
    assert any(e["event"] == "protocol-error" for e in service.events)


def test_a_unix_socket_and_sighup_reload_forget_the_pins_of_a_changed_connector(
    tmp_path: Path,
) -> None:
    with partner(tmp_path, GOOD) as host:
        path = write_policy(tmp_path, host.port)
        socket_path = tmp_path / "outbound.sock"
        service = Service(path, listen=f"unix:{socket_path}").start()
        try:
            key = f"tlspolicy [127.0.0.1]:{host.port}"
            with service.connect() as sock:
                pinned = ask(sock, key)
            # The connector now wants another name: the old pin must not be reused.
            path.write_text(POLICY.format(port=host.port, tls_domain="*.woodgrove.com"))
            service.process.send_signal(signal.SIGHUP)
            reload = service.wait_for(lambda e: e["event"] == "reload")
            with service.connect() as sock:
                refused = ask(sock, key)
            # An invalid file is refused and the policy in force kept.
            path.write_text("[[outbound]]\nname = 1\n")
            service.process.send_signal(signal.SIGHUP)
            service.wait_for(lambda e: e["event"] == "reload-failed")
            with service.connect() as sock:
                kept = ask(sock, "transport a@fabrikam.com")
        finally:
            status = service.stop()
    assert "unix:" + str(socket_path) == service.address
    assert pinned.startswith("OK fingerprint match=")
    assert [f"[127.0.0.1]:{host.port}"] == reload["pins_forgotten"]
    assert refused.startswith("TEMP ")
    assert "certificate-host-mismatch" in refused
    assert kept.startswith("OK tlsconnector:")
    assert 0 == status
    assert not socket_path.exists()


def test_a_shared_smart_host_with_different_tls_settings_is_refused_at_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        POLICY.format(port=2525, tls_domain="*.fabrikam.com")
        + '\n[[outbound]]\nname = "Woodgrove outbound"\nrecipient_domains = ["woodgrove.com"]\n'
        'use_mx_record = false\nsmart_hosts = ["127.0.0.1:2525"]\ntls_settings = "encryption_only"\n'
    )
    (tmp_path / "root.pem").write_text(ROOT.cert_pem())
    service = Service(path)
    assert 2 == exit_status(service)
    assert {"(text)"} == {e["event"] for e in service.events}  # plain text, no JSON
    message, problem = [e["text"] for e in service.events]
    assert "not starting" in message
    assert "cannot be served to Postfix" in message
    assert "Fabrikam Bank outbound" in problem
    assert "Woodgrove outbound" in problem
    assert not any(e["event"] == "listening" for e in service.events)


def test_a_policy_without_outbound_connectors_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[inbound]]\nname = "In"\nsender_domains = ["fabrikam.com"]\n')
    service = Service(path)
    assert 2 == exit_status(service)
    assert {"(text)"} == {e["event"] for e in service.events}
    assert "governs no outbound mail" in service.events[1]["text"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--pin-lifetime", "0"],
        ["--pin-lifetime", "nan"],
        ["--probe-deadline", "100"],
        ["--transport", "bad name"],
        ["--listen", "unix:"],
        ["--max-connections", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, extra: list[str]) -> None:
    from tlsconnector.cli import main

    path = write_policy(tmp_path, 2525)
    assert 2 == main(["serve", "postfix-outbound", "--policy", str(path), *extra])


def test_the_loaded_policy_file_is_what_the_service_serves(tmp_path: Path) -> None:
    """The file format the subprocess tests use loads into the maps they expect."""
    maps = OutboundMaps.build(load_policy(write_policy(tmp_path, 2525)))
    lookup = maps.next_hop("[127.0.0.1]:2525")
    assert isinstance(lookup, HopLookup)
    assert "Fabrikam Bank outbound" == lookup.connector.name


def test_a_reload_forgets_pins_of_changed_connectors_and_of_another_trust_store() -> None:
    """Pins judged under the old trust store or for a connector that changed are
    dropped; a pin whose connector and trust store are unchanged is kept."""
    old = policy(
        connector("A", "mx.fabrikam.com"),
        connector("B", "mx.woodgrove.com", domains=["woodgrove.com"]),
    )
    trust_key = old.trust.key if old.trust is not None else None
    a_hop, b_hop = NextHop.parse("[mx.fabrikam.com]:25"), NextHop.parse("[mx.woodgrove.com]:25")
    cache = PinCache(lifetime=3600)
    cache.store(a_hop, old.outbound[0], trust_key, [_pin()], T0)
    cache.store(b_hop, old.outbound[1], trust_key, [_pin()], T0)
    changed = OutboundMaps.build(
        policy(
            connector("A", "mx.fabrikam.com"),
            connector(
                "B", "mx.woodgrove.com", domains=["woodgrove.com"], tls_domain="*.woodgrove.com"
            ),
        )
    )
    assert ["[mx.woodgrove.com]:25"] == cache.forget_changed(changed)
    assert cache.get(a_hop, old.outbound[0], T0) is not None
    other_root = Policy.from_mapping(
        {"outbound": [connector("A", "mx.fabrikam.com")]},
        trust=TrustStore.from_pem(CA("Another Root").cert_pem()),
    )
    assert ["[mx.fabrikam.com]:25"] == cache.forget_changed(OutboundMaps.build(other_root))
    assert 0 == len(cache)


@pytest.mark.postfix
def test_postfixs_own_socketmap_client_reads_every_kind_of_answer(tmp_path: Path) -> None:
    """``postmap -q`` (Postfix's socketmap client, the one trivial-rewrite and smtp use)
    gets OK values, NOTFOUND (exit 1) and TEMP (its 'temporary error' with our text)."""
    import os
    import shutil

    postmap = shutil.which(
        "postmap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    )
    if postmap is None:
        if os.environ.get("CI") == "true":
            pytest.fail("postmap not found, but CI=true requires the Postfix tests")
        pytest.skip("Postfix is not installed (postmap not found)")
    config = tmp_path / "postfix"
    config.mkdir()
    (config / "main.cf").write_text("compatibility_level = 3.6\n")
    with partner(tmp_path, GOOD) as host:
        service = Service(write_policy(tmp_path, host.port)).start()

        def query(key: str, table: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    postmap,
                    "-c",
                    str(config),
                    "-q",
                    key,
                    f"socketmap:inet:{service.address}:{table}",
                ],
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )

        try:
            transport = query("finance@fabrikam.com", "transport")
            notfound = query("someone@contoso.com", "transport")
            pinned = query(f"[127.0.0.1]:{host.port}", "tlspolicy")
            temp = query("[mx.contoso.com]:25", "tlspolicy")
        finally:
            service.stop()
    assert (0, f"tlsconnector:[127.0.0.1]:{host.port}\n") == (
        transport.returncode,
        transport.stdout,
    )
    assert (1, "") == (notfound.returncode, notfound.stdout)
    assert (0, f"fingerprint match={sha256(GOOD)} servername=hostname\n") == (
        pinned.returncode,
        pinned.stdout,
    )
    assert temp.returncode != 0
    assert "temporary error: no outbound connector routes to next hop" in temp.stderr


def test_connections_beyond_the_limit_are_closed_and_idle_ones_time_out(tmp_path: Path) -> None:
    service = Service(
        write_policy(tmp_path, closed_port()), "--max-connections", "1", "--idle-timeout", "0.5"
    ).start()
    try:
        with service.connect() as first:
            assert "NOTFOUND " == ask(first, "transport a@contoso.com")
            with service.connect() as second:
                assert b"" == read_until_closed(second)  # refused: the limit is 1
            service.wait_for(lambda e: e["event"] == "too-many-connections")
            assert b"" == read_until_closed(first)  # then the idle timeout closes it
        service.wait_for(lambda e: e["event"] == "idle-timeout")
        with service.connect() as third:  # a slot is free again
            assert "NOTFOUND " == ask(third, "transport a@contoso.com")
    finally:
        assert 0 == service.stop()


def test_hostile_keys_are_escaped_and_bounded_in_the_log(tmp_path: Path) -> None:
    service = Service(write_policy(tmp_path, closed_port())).start()
    hostile = 'x"\u202e\\n{"event":"forged"}' + "y" * 2000 + "@fabrikam.com"
    try:
        with service.connect() as sock:
            answer = ask(sock, f"transport {hostile}")
    finally:
        service.stop()
    # Longer than an address may be, at a governed domain: never NOTFOUND.
    assert answer.startswith("TEMP ")
    [line] = [e for e in service.events if e["event"] == "answer"]
    assert line["key"].isascii()
    assert len(line["key"]) <= 310
    assert not any(e["event"] == "forged" for e in service.events)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", 'crl_files = ["issuing.crl"]'),  # CRLs added
        ('crl_files = ["issuing.crl"]', 'crl_files = ["revoking.crl"]'),  # other CRLs
        ('crl_files = ["issuing.crl"]', 'crl_files = ["issuing.crl"]\nrevocation = "hard"'),
    ],
    ids=["crls-added", "crls-replaced", "revocation-changed"],
)
def test_a_reload_with_other_crls_or_revocation_forgets_every_pin(
    tmp_path: Path, before: str, after: str
) -> None:
    """Pins were judged against the CRLs in force: the same anchors with other CRLs (one
    may revoke a pinned leaf) or another revocation setting must probe again."""
    (tmp_path / "issuing.crl").write_bytes(ISSUING.crl().public_bytes(DER))
    (tmp_path / "revoking.crl").write_bytes(
        ISSUING.crl([(GOOD.cert, REAL_NOW - dt.timedelta(hours=1))]).public_bytes(DER)
    )
    path = write_policy(tmp_path, 2525)
    text = path.read_text()

    def write(extra: str) -> None:
        path.write_text(text.replace('ca_file = "root.pem"', f'ca_file = "root.pem"\n{extra}'))

    write(before)
    stream = io.StringIO()
    service = OutboundService(load_policy(path), policy_path=path, log=JsonLog(stream))
    lookup = service.maps.next_hop("[127.0.0.1]:2525")
    assert isinstance(lookup, HopLookup)
    trust = service.maps.policy.trust
    assert trust is not None
    service.cache.store(lookup.hop, lookup.connector, trust.key, [_pin()], T0)
    service.reload()  # the same file: the pin stays
    assert 1 == len(service.cache)
    write(after)
    service.reload()
    reload = [json.loads(line) for line in stream.getvalue().splitlines()][-1]
    assert ("reload", ["[127.0.0.1]:2525"]) == (reload["event"], reload["pins_forgotten"])
    assert 0 == len(service.cache)


@pytest.mark.parametrize("announced", ["next-update", "revocation-date"])
def test_a_pin_lives_no_longer_than_the_verdict_behind_it(tmp_path: Path, announced: str) -> None:
    """Section 11 with pins: a pin is a cached ``deliver``. When the CRL it was judged
    with stops being current in 20 minutes, or already announces the leaf's
    revocation for 40 minutes from now, the pin ends then (not with the leaf in 60
    days, nor with the pin lifetime of an hour)."""
    from tlsconnector._revocation import CrlSet, RevocationList

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if announced == "next-update":
        crl = ISSUING.crl(
            this_update=now - dt.timedelta(hours=1), next_update=now + dt.timedelta(minutes=20)
        )
        ends = now + dt.timedelta(minutes=20)
    else:
        crl = ISSUING.crl(
            [(GOOD.cert, now + dt.timedelta(minutes=40))],
            this_update=now - dt.timedelta(hours=1),
            next_update=now + dt.timedelta(hours=6),
        )
        ends = now + dt.timedelta(minutes=40)
    crls = CrlSet([RevocationList.from_crl(crl, "test CRL")], loaded_at=now)
    with partner(tmp_path, GOOD) as good:
        pol = Policy.from_mapping(
            {"outbound": [connector("A", f"127.0.0.1:{good.port}")]},
            trust=TrustStore.from_pem(ROOT.cert_pem(), crls=crls),
        )
        service, stream = _service(pol)
        answer = _answer(service, "tlspolicy", f"[127.0.0.1]:{good.port}")
    assert AnswerKind.OK == answer.kind  # delivered now: the revocation is still to come
    (probe,) = [json.loads(line) for line in stream.getvalue().splitlines() if '"probe"' in line]
    (pin,) = probe["pins"]
    not_after = dt.datetime.fromisoformat(pin["not_after"])
    assert now < not_after <= ends
