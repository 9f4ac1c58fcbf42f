"""The policy file's JSON Schema (draft 2020-12), as shipped in the package.

``tlsconnector schema`` prints it, for editors (Taplo / Even Better TOML); the tests
validate every example policy against it, and docs/policy-reference.md is generated
from it.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SCHEMA_RESOURCE", "schema_text"]

#: The schema's file, beside this module.
SCHEMA_RESOURCE = "policy.schema.json"


def schema_text() -> str:
    """The policy file's JSON Schema, as shipped in the package."""
    return resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text("utf-8")
