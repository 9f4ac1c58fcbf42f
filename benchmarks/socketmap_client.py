"""A load generator for socketmap services (``make bench``), loopback only.

It plays Postfix's socketmap client (socketmap_table(5)): ``connections`` concurrent
connections, each sending one request (the netstring ``NAME KEY``) and waiting for its
answer (a netstring) before the next: a closed loop, as Postfix's processes use their
socketmap connections. The requests are cycled through in order, shared by all
connections. Every answer must start with one of the expected prefixes (``OK `` by
default): a service that answers ``TEMP`` or ``NOTFOUND`` where an ``OK`` was wanted
fails the run instead of being measured. Bounded: it stops after ``count`` answered
requests or ``seconds``, whichever comes first, after an uncounted warm-up; each
answer may take at most :data:`ANSWER_TIMEOUT` seconds.

Run it in its own process so that its work does not share the server's core::

    python -m benchmarks.socketmap_client --connect 127.0.0.1:PORT \\
        --requests FILE --count N --seconds S

``FILE`` holds one request (``NAME KEY``) per line. It prints one JSON object:
requests, seconds, rate, latency percentiles (p50, p90, p99, max) and how many
answers of each kind (the answer's first word) were seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ANSWER_TIMEOUT",
    "LOOPBACK",
    "MAX_ANSWER_BYTES",
    "UnexpectedAnswer",
    "netstring",
    "percentile",
    "read_netstring",
    "run_load",
]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: The longest a single answer may take before the run is declared failed.
ANSWER_TIMEOUT = 10.0
#: The longest answer read (Postfix's socketmap client accepts 100000 bytes).
MAX_ANSWER_BYTES = 100_000
_LENGTH_DIGITS = len(str(MAX_ANSWER_BYTES))


class UnexpectedAnswer(RuntimeError):
    """An answer that is not a netstring, or not one of the expected kind."""


def netstring(payload: bytes) -> bytes:
    """``payload`` as a netstring: ``LENGTH:PAYLOAD,``."""
    return b"%d:%s," % (len(payload), payload)


async def read_netstring(reader: asyncio.StreamReader) -> bytes:
    """One netstring's payload from ``reader`` (at most :data:`MAX_ANSWER_BYTES`)."""
    head = await reader.readuntil(b":")
    digits = head[:-1]
    if not digits.isdigit() or len(digits) > _LENGTH_DIGITS or int(digits) > MAX_ANSWER_BYTES:
        raise UnexpectedAnswer(f"not a netstring answer: {head[:40]!r}")
    data = await reader.readexactly(int(digits) + 1)
    if not data.endswith(b","):
        raise UnexpectedAnswer(f"not a netstring answer: {data[-20:]!r} does not end with ','")
    return data[:-1]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted ``ordered`` (nearest rank); 0 when empty."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


async def _connection(
    host: str,
    port: int,
    requests: Sequence[bytes],
    state: dict[str, Any],
    latencies: list[float],
    kinds: Counter[str],
    expect: tuple[bytes, ...],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["sent"] < state["limit"] and time.perf_counter() < state["deadline"]:
            number = state["sent"]
            state["sent"] += 1
            request = requests[number % len(requests)]
            started = time.perf_counter()
            writer.write(request)
            answer = await asyncio.wait_for(read_netstring(reader), ANSWER_TIMEOUT)
            latency = time.perf_counter() - started
            if not answer.startswith(expect):
                raise UnexpectedAnswer(
                    f"answer {answer[:200]!r} to {request[:120]!r} does not start with "
                    f"{' or '.join(repr(e) for e in expect)}"
                )
            if number >= state["warmup"]:
                latencies.append(latency)
                kinds[answer.split(b" ", 1)[0].decode("ascii", "replace")] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[str],
    *,
    connections: int = 32,
    count: int = 20_000,
    seconds: float = 10.0,
    warmup: int = 1_000,
    expect: Sequence[str] = ("OK ",),
) -> dict[str, Any]:
    """Drive ``connections`` concurrent conversations with ``requests`` (each ``NAME
    KEY``); return the rate, the latencies and the kinds of answers.

    The rate counts the answers after the warm-up, over the time they took.
    """
    if host not in LOOPBACK:
        raise ValueError("the load generator only talks to the loopback interface")
    if not requests:
        raise ValueError("no requests to send")
    if connections < 1 or count < 1 or seconds <= 0 or warmup < 0:
        raise ValueError("connections and count must be positive, seconds > 0, warmup >= 0")
    framed = [netstring(r.encode("utf-8")) for r in requests]
    wanted = tuple(e.encode("ascii") for e in expect)
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    state: dict[str, Any] = {
        "sent": 0,
        "limit": warmup + count,
        "warmup": warmup,
        "deadline": time.perf_counter() + seconds,
    }
    # Warm-up first (connections opened, code paths warm), then the measured part.
    if warmup:
        warm_state = dict(state, limit=warmup)
        await asyncio.gather(
            *(
                _connection(host, port, framed, warm_state, [], Counter(), wanted)
                for _ in range(connections)
            )
        )
    state["sent"] = warmup
    started = time.perf_counter()
    state["deadline"] = started + seconds
    await asyncio.gather(
        *(
            _connection(host, port, framed, state, latencies, kinds, wanted)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    answered = len(latencies)
    return {
        "connections": connections,
        "requests": answered,
        "seconds": elapsed,
        "rate": answered / elapsed if elapsed > 0 else 0.0,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p90_ms": percentile(latencies, 0.90) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_max_ms": (latencies[-1] * 1000) if latencies else 0.0,
        "latency_mean_ms": (statistics.fmean(latencies) * 1000) if latencies else 0.0,
        "answers": dict(sorted(kinds.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive a socketmap service on loopback.")
    parser.add_argument("--connect", required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--requests", required=True, type=Path, help="a file of requests, 'NAME KEY' a line"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument(
        "--expect",
        action="append",
        metavar="PREFIX",
        help="an answer prefix every answer must have (repeatable; default 'OK ')",
    )
    args = parser.parse_args(argv)
    host, _, port = args.connect.rpartition(":")
    requests = [
        line for line in args.requests.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    try:
        result = asyncio.run(
            run_load(
                host.strip("[]"),
                int(port),
                requests,
                connections=args.connections,
                count=args.count,
                seconds=args.seconds,
                warmup=args.warmup,
                expect=args.expect or ("OK ",),
            )
        )
    except (
        UnexpectedAnswer,
        ValueError,
        OSError,
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ) as exc:
        sys.stderr.write(f"socketmap_client: {type(exc).__name__}: {exc}\n")
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
