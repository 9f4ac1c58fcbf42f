"""A load generator for Postfix policy services (``make bench``), loopback only.

It plays Postfix: ``connections`` concurrent connections, each sending one request
and waiting for its answer before the next (as smtpd does), with requests built
like Postfix's RCPT-state requests (about 30 attributes). Bounded: it stops after
``count`` answered requests or ``seconds``, whichever comes first, after an uncounted
warm-up. Run it in its own process so that its work does not share the server's
core: ``python -m benchmarks.policy_client --connect 127.0.0.1:PORT --count N
--seconds S``; it prints one JSON object (requests, seconds, rate, latencies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.generate import SessionFacts, inbound_session_facts

__all__ = ["LOOPBACK", "postfix_request", "postfix_requests", "run_load"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: The longest a single answer may take before the run is declared failed.
ANSWER_TIMEOUT = 10.0


def _xtext(text: str) -> str:
    """RFC 3461 xtext, as Postfix writes ``ccert_subject``."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if 0x21 <= byte <= 0x7E and char not in "+=" else f"+{byte:02X}")
    return "".join(out)


def postfix_request(facts: SessionFacts, number: int) -> bytes:
    """The RCPT-state policy request Postfix would send for a generated session."""
    sender = facts["mail_from"]
    recipients = facts.get("rcpt_to") or ["user@contoso.com"]
    tls = facts.get("tls")
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": facts["peer_ip"],
        "client_name": "unknown",
        "client_port": str(40000 + number % 20000),
        "reverse_client_name": "unknown",
        "server_address": "127.0.0.1",
        "server_port": "25",
        "helo_name": "mail.example.net",
        "sender": sender,
        "recipient": recipients[0],
        "recipient_count": "0",
        "queue_id": f"{number:010X}",
        "instance": f"{number:x}.6566b7a1.1",
        "size": "0",
        "etrn_domain": "",
        "stress": "",
        "sasl_method": "",
        "sasl_username": "",
        "sasl_sender": "",
        "ccert_subject": "",
        "ccert_issuer": "",
        "ccert_fingerprint": "",
        "ccert_pubkey_fingerprint": "",
        "encryption_protocol": "",
        "encryption_cipher": "",
        "encryption_keysize": "0",
        "policy_context": "",
        "compatibility_level": "3.6",
        "mail_version": "3.7.11",
    }
    if tls is not None:
        attributes["encryption_protocol"] = "TLSv1.3"
        attributes["encryption_cipher"] = "TLS_AES_256_GCM_SHA384"
        attributes["encryption_keysize"] = "256"
        if "peer_cn" in tls:
            fingerprint = ":".join(f"{(number + i) % 256:02X}" for i in range(32))
            attributes["ccert_fingerprint"] = fingerprint
            attributes["ccert_pubkey_fingerprint"] = fingerprint
            if tls["peer_verified"]:
                # Postfix sends the CN only for a chain it verified (postfix-notes.md).
                attributes["ccert_subject"] = _xtext(tls["peer_cn"][0])
                attributes["ccert_issuer"] = "Bench+20Issuing+20CA"
    lines = "".join(f"{name}={value}\n" for name, value in attributes.items())
    return (lines + "\n").encode("utf-8")


def postfix_requests(count: int, *, connectors: int = 1000, seed: int = 7) -> list[bytes]:
    """``count`` requests from the generated sessions (partners of ``connectors``)."""
    sessions = inbound_session_facts(count, connectors=connectors, seed=seed)
    return [postfix_request(facts, n) for n, facts in enumerate(sessions)]


async def _connection(
    host: str,
    port: int,
    requests: Sequence[bytes],
    state: dict[str, Any],
    latencies: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["sent"] < state["limit"] and time.perf_counter() < state["deadline"]:
            number = state["sent"]
            state["sent"] += 1
            request = requests[number % len(requests)]
            started = time.perf_counter()
            writer.write(request)
            answer = await asyncio.wait_for(reader.readuntil(b"\n\n"), ANSWER_TIMEOUT)
            latency = time.perf_counter() - started
            if not answer.startswith(b"action="):
                raise RuntimeError(f"not a policy answer: {answer[:80]!r}")
            if number >= state["warmup"]:
                latencies.append(latency)
    finally:
        writer.close()
        await writer.wait_closed()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int = 32,
    count: int = 20_000,
    seconds: float = 10.0,
    warmup: int = 1_000,
) -> dict[str, Any]:
    """Drive ``connections`` concurrent conversations; return rate and latencies.

    The rate counts the answers after the warm-up, over the time they took.
    """
    if host not in LOOPBACK:
        raise ValueError("the load generator only talks to the loopback interface")
    latencies: list[float] = []
    state: dict[str, Any] = {
        "sent": 0,
        "limit": warmup + count,
        "warmup": warmup,
        "deadline": time.perf_counter() + seconds,
    }
    # Warm-up first (connections opened, code paths warm), then the measured part.
    warm_state = dict(state, limit=warmup, warmup=warmup)
    await asyncio.gather(
        *(_connection(host, port, requests, warm_state, []) for _ in range(connections))
    )
    state["sent"] = warmup
    started = time.perf_counter()
    state["deadline"] = started + seconds
    await asyncio.gather(
        *(_connection(host, port, requests, state, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    answered = len(latencies)
    return {
        "connections": connections,
        "requests": answered,
        "seconds": elapsed,
        "rate": answered / elapsed if elapsed > 0 else 0.0,
        "latency_p50_ms": _percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
        "latency_mean_ms": (statistics.fmean(latencies) * 1000) if latencies else 0.0,
    }


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive a Postfix policy service on loopback.")
    parser.add_argument("--connect", required=True, metavar="HOST:PORT")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--distinct", type=int, default=5_000, help="distinct requests")
    parser.add_argument("--connectors", type=int, default=1_000)
    args = parser.parse_args(argv)
    host, _, port = args.connect.rpartition(":")
    requests = postfix_requests(args.distinct, connectors=args.connectors)
    result = asyncio.run(
        run_load(
            host.strip("[]"),
            int(port),
            requests,
            connections=args.connections,
            count=args.count,
            seconds=args.seconds,
            warmup=args.warmup,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
