"""The public API: what users import, and what importing costs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tlsconnector

DOCS = Path(__file__).parent.parent / "docs"


def test_all_matches_the_documented_api() -> None:
    text = (DOCS / "api.md").read_text()
    listed = text.split("## Public names", 1)[1]
    documented = set(re.findall(r"^- `([A-Za-z_]+)`$", listed, flags=re.MULTILINE))
    assert documented == set(tlsconnector.__all__)


def test_every_public_name_exists() -> None:
    missing = [name for name in tlsconnector.__all__ if not hasattr(tlsconnector, name)]
    assert [] == missing


def test_import_does_not_pull_in_optional_or_test_dependencies() -> None:
    code = (
        "import sys, tlsconnector; "
        "print(sorted(m for m in ('hypothesis', 'pytest', 'aiosmtpd') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == result.stdout.strip()


def test_the_package_is_typed() -> None:
    assert (Path(tlsconnector.__file__).parent / "py.typed").is_file()
