"""docs/security.md lists every bound with its value: the table agrees with the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "security.md"
ROW = re.compile(r"^\| `(tlsconnector(?:\.\w+)+)\.([A-Z_]+)` \| ([0-9.]+) \|", re.MULTILINE)


def rows() -> list[tuple[str, str, str]]:
    found = ROW.findall(PAGE.read_text(encoding="utf-8"))
    assert len(found) >= 40  # the table was read, not skipped
    return found


@pytest.mark.parametrize(("module", "name", "value"), rows())
def test_each_documented_bound_is_the_code_s_value(module: str, name: str, value: str) -> None:
    actual = getattr(importlib.import_module(module), name)
    assert float(value) == actual
