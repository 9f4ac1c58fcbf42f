"""The outputs users see are byte-identical across refactorings: ``demo``,
``demo --json`` and the commands of ``make example`` print exactly what
tests/golden/ holds (recorded before the source tree was rearranged into floors).

A deliberate change of output updates the golden file in the same commit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLE = "examples/fabrikam"


def run(*argv: str) -> bytes:
    result = subprocess.run(
        [sys.executable, "-m", "tlsconnector", *argv],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("golden", "argv"),
    [("demo.txt", ["demo"]), ("demo.jsonl", ["demo", "--json"])],
)
def test_the_demo_prints_exactly_the_recorded_output(golden: str, argv: list[str]) -> None:
    assert (GOLDEN / golden).read_bytes() == run(*argv)


def test_make_example_prints_exactly_the_recorded_output() -> None:
    policy = f"{EXAMPLE}/policy.toml"
    printed = (
        run("check", policy)
        + run("inbound", "--policy", policy, "--sessions", f"{EXAMPLE}/sessions.jsonl")
        + run("routes", "--policy", policy, "fabrikam.com", "eu.fabrikam.com", "example.org")
        + run("outbound", "--policy", policy, "--sessions", f"{EXAMPLE}/outbound.jsonl")
    )
    assert (GOLDEN / "example.txt").read_bytes() == printed
