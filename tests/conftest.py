"""Test-suite setup: make ``import certmint`` (and the shared helpers of the test
folders, such as ``test_postfix_server``'s PolicyService) importable in either pytest
import mode, and register Hypothesis profiles."""

import os
import pathlib
import sys

from hypothesis import settings

_HERE = pathlib.Path(__file__).parent
for _folder in (_HERE, *sorted(p for p in _HERE.iterdir() if p.is_dir() and p.name.isidentifier())):
    sys.path.insert(0, str(_folder))

settings.register_profile("ci", max_examples=50, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
