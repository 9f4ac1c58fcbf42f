"""Check what `python -m build` produced, and which tlsconnector an interpreter imports.

    python tools/check_dist.py dist/        # the wheel and the sdist in dist/
    python tools/check_dist.py --installed  # `import tlsconnector` is an installed copy

Run by `make test` (target `wheel-test`). Exits 1 with every missing or unexpected
file listed; prints one line per artifact when all is well.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable
from email.parser import HeaderParser
from pathlib import Path

# Files a user of the wheel relies on: the package's data files and its licence.
WHEEL_REQUIRED = (
    "tlsconnector/__init__.py",
    "tlsconnector/policy_file/policy.schema.json",
    "tlsconnector/py.typed",
    "tlsconnector/adapters/postfix/__init__.py",
    "tlsconnector/adapters/postfix/server.py",
    "tlsconnector/cli/__init__.py",
    "tlsconnector/adapters/aiosmtpd.py",
    "tlsconnector/testing/__init__.py",
)
WHEEL_DIST_INFO_REQUIRED = ("METADATA", "entry_points.txt", "licenses/LICENSE")
# A downstream packager runs the suite and builds the docs from the sdist alone.
SDIST_REQUIRED = (
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "Makefile",
    "src/tlsconnector/policy_file/policy.schema.json",
    "src/tlsconnector/py.typed",
    "tests/conftest.py",
    "docs/index.md",
    "docs/conf.py",
    "docs/_ext/schema_reference.py",
    "docs/_ext/api_reference.py",
    "examples/fabrikam/policy.toml",
    "examples/fabrikam/partners-ca.pem",
)
SDIST_REQUIRED_DIRS = ("tests/", "docs/", "examples/", "benchmarks/")
# Build output and environments never belong in an artifact.
FORBIDDEN_PARTS = frozenset({"_build", ".venv", ".venv-wheel", "__pycache__", ".pytest_cache"})


def _missing(names: set[str], required: Iterable[str]) -> list[str]:
    return [name for name in required if name not in names]


def _forbidden(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if FORBIDDEN_PARTS & set(name.split("/")))


PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[-_.]+", "-", name.group(0) if name else requirement).lower()


def check_metadata(metadata_text: str, entry_points: str, label: str) -> list[str]:
    """The wheel's core metadata says what pyproject.toml says."""
    with PYPROJECT.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    metadata = HeaderParser().parsestr(metadata_text)
    problems = []
    expected = {
        "Name": project["name"],
        "Version": project["version"],
        "Requires-Python": project["requires-python"],
        "License-Expression": project["license"],
        "Description-Content-Type": "text/markdown",
    }
    for field, value in expected.items():
        if metadata.get(field) != value:
            problems.append(f"{label}: {field} is {metadata.get(field)!r}, expected {value!r}")
    extras = sorted(project.get("optional-dependencies", {}))
    provided = sorted(metadata.get_all("Provides-Extra") or [])
    if provided != extras:
        problems.append(f"{label}: extras {provided}, expected {extras}")
    required = {
        _requirement_name(r) for r in metadata.get_all("Requires-Dist") or [] if ";" not in r
    }
    for dependency in project["dependencies"]:
        if _requirement_name(dependency) not in required:
            problems.append(f"{label}: dependency {dependency!r} not in Requires-Dist")
    for name, target in project.get("scripts", {}).items():
        if f"{name} = {target}" not in entry_points:
            problems.append(f"{label}: console script {name} = {target} missing")
    return problems


def check_wheel(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        dist_info = next(
            (name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")),
            "",
        )
        metadata = wheel.read(f"{dist_info}/METADATA").decode() if dist_info else ""
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode() if dist_info else ""
    problems = [f"{path.name}: missing {name}" for name in _missing(names, WHEEL_REQUIRED)]
    problems += [
        f"{path.name}: missing {dist_info}/{name}"
        for name in WHEEL_DIST_INFO_REQUIRED
        if f"{dist_info}/{name}" not in names
    ]
    problems += [
        f"{path.name}: unexpected {name}"
        for name in sorted(names)
        if not name.startswith(("tlsconnector/", dist_info + "/"))
    ]
    problems += [f"{path.name}: unexpected {name}" for name in _forbidden(names)]
    return problems + check_metadata(metadata, entry_points, path.name)


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        members = sdist.getnames()
    # Every member sits under one top directory, tlsconnector-VERSION/.
    names = {name.split("/", 1)[1] for name in members if "/" in name}
    problems = [f"{path.name}: missing {name}" for name in _missing(names, SDIST_REQUIRED)]
    problems += [
        f"{path.name}: nothing under {folder}"
        for folder in SDIST_REQUIRED_DIRS
        if not any(name.startswith(folder) for name in names)
    ]
    problems += [f"{path.name}: unexpected {name}" for name in _forbidden(names)]
    return problems


def check_dist(folder: Path) -> list[str]:
    wheels = sorted(folder.glob("tlsconnector-*.whl"))
    sdists = sorted(folder.glob("tlsconnector-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        found = ", ".join(p.name for p in [*wheels, *sdists]) or "nothing"
        return [f"{folder}: expected one wheel and one sdist, found {found}"]
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    if not problems:
        print(f"check_dist: {wheels[0].name}: package data, licence and metadata as declared")
        print(f"check_dist: {sdists[0].name}: tests, docs, examples and benchmarks present")
    return problems


def check_installed() -> list[str]:
    """`import tlsconnector` must find the installed package, not a source tree."""
    package = importlib.import_module("tlsconnector")
    location = Path(package.__file__ or "").resolve()
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    if not location.is_relative_to(site_packages) or "src" in location.parts:
        return [f"tlsconnector imported from {location}, not from {site_packages}"]
    print(f"check_dist: tlsconnector imported from {location.parent}")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("dist", nargs="?", type=Path, help="the folder python -m build wrote")
    group.add_argument("--installed", action="store_true", help="check the import location")
    args = parser.parse_args(argv)
    problems = check_installed() if args.installed else check_dist(args.dist)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
