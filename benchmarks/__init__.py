"""Benchmarks for tlsconnector (``make bench``); not part of the installed package."""
