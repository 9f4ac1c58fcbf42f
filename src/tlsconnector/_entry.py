"""The ``tlsconnector`` command's entry point (``python -m tlsconnector`` too).

Speed: the command line's modules are imported with the cyclic garbage collector
paused (:mod:`tlsconnector._gc`); a short command such as ``check`` spends about a
twentieth of its start-up in collections that find nothing otherwise.
"""

from __future__ import annotations

__all__ = ["run"]


def run() -> None:
    """Console-script entry point: :func:`tlsconnector.cli.run`."""
    from tlsconnector._gc import gc_paused

    with gc_paused():
        from tlsconnector.cli import run as run_command_line

    run_command_line()
