"""An asyncio loop in a daemon thread serving one listener on 127.0.0.1 (test helper).

The aiosmtpd adapter's and the probe's end-to-end tests run real servers this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

#: Every wait is bounded (seconds).
WAIT = 10.0


class LoopThread:
    """An asyncio loop in a daemon thread serving one listener on 127.0.0.1, port 0."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], asyncio.Protocol]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def listen() -> asyncio.AbstractServer:
            return await self.loop.create_server(lambda: factory(self.loop), "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(WAIT)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), WAIT)

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()
