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


import pytest  # noqa: E402  (after the path set-up above, like certmint)

from tlsconnector import TrustStore  # noqa: E402

from certmint import CA  # noqa: E402


# The CA of the chain and validation tests (tests/test_chains.py, tests/test_validation.py).
@pytest.fixture(scope="module")
def root() -> CA:
    return CA()


@pytest.fixture(scope="module")
def inter(root: CA) -> CA:
    return root.intermediate()


@pytest.fixture(scope="module")
def trust(root: CA) -> TrustStore:
    return TrustStore.from_pem(root.cert_pem())
