"""The floors of the house hold (docs/architecture.md): every module's imports, read
with ``ast``, run only to its own floor or a lower one, and the core never imports an
edge, the package's face or an optional dependency."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tlsconnector

#: The package under test: the source tree, or the installed wheel (make wheel-test).
PACKAGE = Path(tlsconnector.__file__).parent

#: The floors, from the ground up (conventions.md, "Package shape").
FLOORS: dict[str, int] = {
    # 1. primitives: names, addresses, chains, validation, facts
    "tlsconnector._errors": 1,
    "tlsconnector._memory": 1,
    "tlsconnector._names": 1,
    "tlsconnector._addresses": 1,
    "tlsconnector._revocation_settings": 1,
    "tlsconnector._revocation": 1,
    "tlsconnector._chains": 1,
    "tlsconnector._validation": 1,
    "tlsconnector._facts": 1,
    # 2. the model: values, the reader that builds them, their index
    "tlsconnector._index": 2,
    "tlsconnector._model": 2,
    "tlsconnector._reading": 2,
    # 3. decisions
    "tlsconnector._assessment": 3,
    "tlsconnector._decisions": 3,
    "tlsconnector._inbound": 3,
    "tlsconnector._outbound": 3,
    # 4. edges at the top of the package: the command's entry point, and pausing the
    # garbage collector (process state: the command line and the loader use it)
    "tlsconnector._entry": 4,
    "tlsconnector._gc": 4,
}
EDGE = 4
CORE = {name for name, floor in FLOORS.items() if floor < EDGE}
#: Third-party packages the core may import (the dependencies of pyproject.toml).
CORE_DEPENDENCIES = {"attrs", "cryptography", "idna", "publicsuffixlist", "__future__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> int:
    """A module's floor: the core's are listed; everything else is an edge."""
    for name in (module, *(module.rsplit(".", n)[0] for n in range(1, module.count(".")))):
        if name in FLOORS:
            return FLOORS[name]
    return EDGE


def imports(path: Path, *, as_module: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, at any depth (function-level
    imports count too), relative imports resolved; ``as_module`` reads the file as if
    it were that module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = as_module or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # ``from tlsconnector import _x`` imports the module _x, not the face.
            modules = [
                f"{target}.{alias.name}"
                for alias in node.names
                if f"{target}.{alias.name}" in FLOORS
            ]
            found += [(node.lineno, module) for module in modules or [target]]
    return found


def wrong_imports(path: Path, *, as_module: str | None = None) -> list[str]:
    """Every import of the file that breaks the floors, as a message."""
    me = as_module or module_name(path)
    mine = floor_of(me)
    wrong = []
    for line, target in imports(path, as_module=me):
        if not target.startswith("tlsconnector"):
            top = target.split(".")[0]
            if me in CORE and top not in CORE_DEPENDENCIES | sys.stdlib_module_names:
                wrong.append(f"line {line}: the core imports {target}")
            continue
        if target == "tlsconnector" and me in CORE:
            wrong.append(f"line {line}: the core imports the package's face")
            continue
        theirs = floor_of(target)
        if theirs > mine:
            wrong.append(f"line {line}: floor {mine} imports {target} on floor {theirs}")
    return wrong


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_core_module_is_on_a_floor() -> None:
    """A new private module at the top of the package must be given a floor here."""
    top = {module_name(p) for p in PACKAGE.glob("_*.py") if not p.name.startswith("__")}
    assert set() == top - set(FLOORS)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_run_only_to_the_same_floor_or_down(path: Path) -> None:
    assert [] == wrong_imports(path)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .cli import main\n", "floor 1 imports tlsconnector.cli on floor 4"),
        (
            "def f():\n    from . import _reading\n",
            "floor 1 imports tlsconnector._reading on floor 2",
        ),
        ("import hypothesis\n", "the core imports hypothesis"),
        ("from tlsconnector import InboundSession\n", "the core imports the package's face"),
    ],
)
def test_the_check_sees_every_kind_of_wrong_import(
    source: str, expected: str, tmp_path: Path
) -> None:
    """Relative and function-level imports cannot hide an upward one."""
    path = tmp_path / "_names.py"
    path.write_text(source, encoding="utf-8")
    assert [expected] == [
        m.split(": ", 1)[1] for m in wrong_imports(path, as_module="tlsconnector._names")
    ]
