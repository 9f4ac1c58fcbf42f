"""``python -m tlsconnector``: the command line."""

from tlsconnector.cli import run

run()
