"""A do-nothing Postfix policy service: the reference the real one is measured against.

It speaks the same protocol on the same transport as ``tlsconnector serve postfix``
(an asyncio protocol over TCP, as the real service uses: ``name=value`` lines ended
by an empty line, many requests per connection) and answers every request
``action=DUNNO`` without looking at it: what is left is the cost of the event loop
and the sockets. Requests are told apart at the empty line, with a bound on a
pending request so a client cannot make it buffer without end.

Run ``python -m benchmarks.noop_policy_server --listen 127.0.0.1:0``: it prints one
JSON line ``{"event": "listening", "address": "127.0.0.1:PORT"}`` on standard error
when ready and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

__all__ = ["DUNNO_REPLY", "MAX_PENDING_BYTES", "DoNothing", "count_requests", "serve"]

DUNNO_REPLY = b"action=DUNNO\n\n"
#: A request still incomplete after this many bytes closes the connection.
MAX_PENDING_BYTES = 64 * 1024


def count_requests(buffer: bytearray) -> int:
    """Remove every complete request (ended by an empty line) from ``buffer`` and
    return how many there were. A request is its lines, then ``\\n\\n``."""
    count = 0
    start = 0
    while True:
        end = buffer.find(b"\n\n", start)
        if end < 0:
            break
        count += 1
        start = end + 2
    del buffer[:start]
    return count


class DoNothing(asyncio.Protocol):
    """Answer every request on one connection with DUNNO until the peer closes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        count = count_requests(self.buffer)
        if count:
            self.transport.write(DUNNO_REPLY * count)
        if len(self.buffer) > MAX_PENDING_BYTES:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    """Listen on ``host:port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(DoNothing, host, port, backlog=128)
    address = server.sockets[0].getsockname()
    record = {"event": "listening", "address": f"{address[0]}:{address[1]}"}
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        parser.error("the benchmark server listens on the loopback interface only")
    asyncio.run(serve(host.strip("[]"), int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
