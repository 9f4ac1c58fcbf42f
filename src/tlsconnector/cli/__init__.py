"""The command line (section 9): ``tlsconnector COMMAND ...``.

Written as a testable ``main(argv) -> int``; each command family's module has its own
``main(argv)``, the command line restricted to that family (for example
``tlsconnector.cli.decide.main(["inbound", "--policy", ...])``). The parser is in one
place, :mod:`tlsconnector.cli.parser`; a command's module is imported only when it
runs. Exit statuses:

* 0: the policy is valid (``check``); every session or domain was decided,
  whatever the actions;
* 1: the policy is invalid, or ``check --strict`` found lint warnings; some session
  or domain could not be decided;
* 2: usage error, unreadable input, or an invalid policy for the other commands.
* 130: interrupted (Ctrl-C), without a traceback.

``probe`` and ``serve`` document their own statuses (docs/probe.md, docs/postfix.md).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable, Collection, Sequence

from tlsconnector._gc import gc_paused
from tlsconnector.cli._common import EXIT_INTERRUPTED, EXIT_UNDECIDED, EXIT_USAGE, _err
from tlsconnector.cli.parser import build_parser

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None, *, commands: Collection[str] = ()) -> int:
    """Run the command line with ``argv`` (without the program name).

    ``commands``, when given, are the only commands this call may run (a command
    family's own ``main``).
    """
    words = sys.argv[1:] if argv is None else list(argv)
    # Speed: the parser and the command's module are built and imported with the
    # collector paused (tlsconnector._gc); the command itself runs with it as it was.
    with gc_paused():
        # Speed: only the named command's parser is built (build_parser's docstring).
        parser = build_parser(words[0] if words else None)
        try:
            args = parser.parse_args(words)
        except SystemExit as exc:  # argparse exits on --help and on usage errors
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        if commands and args.command not in commands:
            listed = ", ".join(sorted(commands))
            _err(f"tlsconnector: {args.command!r} is not one of this module's commands ({listed})")
            return EXIT_USAGE
        module_name, _, function = args.handler.partition(":")
        handler: Callable[..., int] = getattr(importlib.import_module(module_name), function)
    return handler(args)


def family(*commands: str) -> Callable[[Sequence[str] | None], int]:
    """The ``main(argv) -> int`` of a module serving ``commands``."""

    def family_main(argv: Sequence[str] | None = None) -> int:
        return main(argv, commands=commands)

    family_main.__doc__ = (
        f"The command line restricted to {', '.join(commands)}: ``argv`` starts with "
        "the command's name."
    )
    return family_main


def run() -> None:
    """Console-script entry point."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not our error. Point stdout at devnull so
        # the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = EXIT_UNDECIDED
    except KeyboardInterrupt:
        # Ctrl-C: stop quietly, as shells expect (128 + SIGINT), without a traceback.
        sys.stderr.write("tlsconnector: interrupted\n")
        status = EXIT_INTERRUPTED
    # Speed: the process ends here. The interpreter's finalization collects every
    # generation, walking each object once more only to free what the exit frees
    # anyway (about a twentieth of a short command such as check). Frozen objects are
    # not walked; everything else of the exit (atexit handlers, flushing, closing,
    # freeing by reference counts) is as before.
    gc.disable()
    gc.freeze()
    sys.exit(status)
