"""What a user installs and reads: the package that is imported, the extras the
installation page promises, and the policy reference generated from the schema.

`make test` runs this module twice: in the source tree (editable install) and against
the built wheel (`make wheel-test`), where tools/check_dist.py also checks the wheel's
files and metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

import tlsconnector

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project: dict[str, object] = tomllib.load(handle)["project"]
    return project


def _name(requirement: str) -> str:
    """A requirement's project name, normalised (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_the_imported_package_is_the_installed_distribution() -> None:
    """`import tlsconnector` finds the files pip installed: the wheel's copy in
    site-packages, or for an editable install the source tree it points at. A stray
    copy earlier on sys.path would make the tests test something else."""
    distribution = importlib.metadata.distribution("tlsconnector")
    direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        tree = Path(urllib.request.url2pathname(urllib.parse.urlparse(direct_url["url"]).path))
        expected = tree / "src" / "tlsconnector" / "__init__.py"
    else:
        expected = Path(str(distribution.locate_file("tlsconnector/__init__.py")))
    assert expected.resolve() == Path(tlsconnector.__file__).resolve()


def _documented_extras() -> dict[str, set[str]]:
    """The extras table of docs/installation.md: extra -> the packages it installs."""
    text = (ROOT / "docs" / "installation.md").read_text(encoding="utf-8")
    table = text.split("| extra | installs | for |", 1)[1].split("\n\n", 1)[0]
    extras = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        extras[cells[0].strip("`")] = {_name(p) for p in re.findall(r"`([^`]+)`", cells[1])}
    return extras


def test_the_installation_page_lists_every_extra_with_what_it_installs() -> None:
    """docs/installation.md names each extra of pyproject.toml and its packages (for the
    `test` extra, the main ones)."""
    declared = {
        extra: {_name(requirement) for requirement in requirements}
        for extra, requirements in _project()["optional-dependencies"].items()  # type: ignore[attr-defined]
    }
    documented = _documented_extras()
    assert sorted(declared) == sorted(documented)
    for extra, packages in documented.items():
        if extra == "test":
            assert packages <= declared[extra]
        else:
            assert declared[extra] == packages, extra


def _schema_reference() -> ModuleType:
    path = ROOT / "docs" / "_ext" / "schema_reference.py"
    spec = importlib.util.spec_from_file_location("schema_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_policy_reference_has_an_entry_for_every_key_of_the_shipped_schema() -> None:
    """docs/policy-reference.md is generated from the schema the package ships: every key
    of every table gets its own entry with its default."""
    reference = _schema_reference()
    schema = json.loads(
        (Path(tlsconnector.__file__).parent / "policy_file" / "policy.schema.json").read_text(encoding="utf-8")
    )
    text = reference.render(schema)
    tables = {"trust": schema["properties"]["trust"]}
    tables |= {name: schema["$defs"][name] for name in ("inbound", "outbound")}
    for table, definition in tables.items():
        section = text.split(f"(policy-{table})=", 1)[1].split("\n## ", 2)[1]
        for key in definition["properties"]:
            assert f"### `{key}`" in section, (table, key)
    assert "- **Default**: `\"opportunistic\"`" in text
    assert "- When `tls_settings = \"domain_validation\"`: `tls_domain` is required." in text


def test_the_policy_reference_refuses_a_schema_rule_it_cannot_render() -> None:
    """A new kind of rule in the schema fails the docs build instead of silently
    missing from the reference."""
    reference = _schema_reference()
    schema = json.loads(
        (Path(tlsconnector.__file__).parent / "policy_file" / "policy.schema.json").read_text(encoding="utf-8")
    )
    schema["$defs"]["inbound"]["properties"]["require_tls"]["deprecated"] = True
    with pytest.raises(reference.SchemaReferenceError, match="deprecated"):
        reference.render(schema)
