"""``python -m tlsconnector``: the command line."""

from ._cli import run

run()
