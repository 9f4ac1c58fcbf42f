"""A do-nothing socketmap service: the reference ``serve postfix-outbound`` is measured against.

It speaks Postfix's socketmap protocol (socketmap_table(5): each request the netstring
``NAME KEY``, each answer a netstring) on the same transport as ``tlsconnector serve
postfix-outbound``: an asyncio stream server over TCP, reading up to 4,096 bytes at a
time, framing the netstrings, writing one answer per request and waiting for the
writer to drain, many requests per connection. Every request is answered with the
fixed :data:`FIXED_ANSWER` (an ``OK fingerprint match=...`` of the size the real
service answers) without reading its name or key: what is left is the cost of the
event loop, the sockets and the framing. A request longer than
:data:`MAX_REQUEST_BYTES`, or bytes that are not netstrings, close the connection, so
a client cannot make it buffer without end.

Run ``python -m benchmarks.noop_socketmap_server --listen 127.0.0.1:0``: it prints one
JSON line ``{"event": "listening", "address": "127.0.0.1:PORT"}`` on standard error
when ready and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

__all__ = [
    "FIXED_ANSWER",
    "MAX_REQUEST_BYTES",
    "READ_BYTES",
    "NetstringError",
    "handle",
    "serve",
    "split_netstrings",
]

#: The answer to every request: the shape of a pinned ``tlspolicy`` answer (one
#: SHA-256 fingerprint), as a netstring.
_PAYLOAD = b"OK fingerprint match=" + b":".join([b"00"] * 32) + b" servername=hostname"
FIXED_ANSWER = b"%d:%s," % (len(_PAYLOAD), _PAYLOAD)
#: The longest request accepted, as the real service (``NAME KEY``, bytes).
MAX_REQUEST_BYTES = 4096
#: Bytes read at a time, as the real service.
READ_BYTES = 4096
_LENGTH_DIGITS = len(str(MAX_REQUEST_BYTES))


class NetstringError(ValueError):
    """The bytes are not a netstring of at most :data:`MAX_REQUEST_BYTES` bytes."""


def split_netstrings(buffer: bytearray) -> int:
    """Remove every complete netstring from the front of ``buffer``; how many there
    were. Raises :class:`NetstringError` on bytes that cannot start or end one."""
    count = 0
    start = 0
    size = len(buffer)
    while start < size:
        colon = buffer.find(b":", start, start + _LENGTH_DIGITS + 1)
        if colon < 0:
            if size - start > _LENGTH_DIGITS or not bytes(buffer[start:]).isdigit():
                raise NetstringError(f"not a netstring: {bytes(buffer[start : start + 20])!r}")
            break  # the length is still arriving
        digits = bytes(buffer[start:colon])
        if not digits.isdigit() or int(digits) > MAX_REQUEST_BYTES:
            raise NetstringError(f"not a netstring of at most {MAX_REQUEST_BYTES} bytes")
        end = colon + 1 + int(digits)
        if end >= size:
            break  # the payload or its comma is still arriving
        if buffer[end] != ord(","):
            raise NetstringError("not a netstring: the payload is not followed by ','")
        count += 1
        start = end + 1
    del buffer[:start]
    return count


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on one connection with :data:`FIXED_ANSWER` until the peer
    closes (or sends what is not a netstring)."""
    buffer = bytearray()
    try:
        while data := await reader.read(READ_BYTES):
            buffer += data
            try:
                count = split_netstrings(buffer)
            except NetstringError:
                return
            for _ in range(count):
                writer.write(FIXED_ANSWER)
                await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    """Listen on ``host:port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(handle, host, port, backlog=128)
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host.strip("[]"), int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
