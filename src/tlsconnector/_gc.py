"""Pausing CPython's cyclic garbage collector while many long-lived objects are built.

Speed: importing the command line and its libraries, and loading a large policy,
allocate tens of thousands to millions of objects that all stay alive (classes and
functions, the decoded TOML, the connectors). The collector would walk them again and
again while they are being built. Nothing built then holds reference cycles worth
collecting early, so automatic collection is paused meanwhile and resumed after,
exactly as it was. A depth count under a lock keeps nested and concurrent pauses from
leaving it paused.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Automatic collection off inside the block (nestable, thread-safe)."""
    global _depth, _resume  # process-wide, like the collector it pauses
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
