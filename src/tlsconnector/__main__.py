"""``python -m tlsconnector``: the command line."""

from tlsconnector._entry import run

run()
