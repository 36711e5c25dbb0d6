"""The folders are the architecture: which part of the package may import which, read from source.

rules/ is pure and imports nothing of the package outside rules/ but the exception tree; the
simulator shares nothing with the client but the wire format; nothing imports the CLI; no import
circles between modules, at any depth; one exception tree, in errors.py.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "batchbanana"

# Which subpackages each part may import from (itself always allowed). errors.py is the one shared
# leaf: the exception tree and the secret scrubber, importing nothing of the package.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "rules": {"errors"},
    "plan": {"errors", "rules"},
    "ledger": {"errors", "rules", "plan"},
    "run": {"errors", "rules", "plan", "ledger", "simulator", "__init__"},  # endpoint: simulate
    "report": {"errors", "rules", "plan", "ledger"},
    "simulator": {"rules"},
    "cli": {"errors", "rules", "plan", "ledger", "run", "report", "simulator", "__init__"},
    "__main__": {"cli"},
    "__init__": set(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The package modules one file imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "batchbanana"}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from batchbanana.x import y` names a module when y is one, else the module x itself.
        graph[name] = {target for target in _imports(path) if target in modules} - {name}
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_keeps_to_the_parts_it_may_import() -> None:
    """Each part of the package imports only the parts below it in the pipeline."""
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        for target in targets:
            other = _part(target)
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_nothing_imports_the_cli() -> None:
    """The CLI is the top: no module of the package imports it (but `python -m batchbanana`)."""
    importers = sorted(
        module
        for module, targets in _graph().items()
        if "batchbanana.cli" in targets and module != "batchbanana.__main__"
    )
    assert importers == []


def test_no_module_imports_itself_back_through_a_circle() -> None:
    """No import circle between modules, at any depth (function-level imports included)."""
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state[target] == 1:
                circles.append([*path[path.index(target) :], target])
            elif state[target] == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module)
    assert circles == []


@pytest.mark.parametrize(
    "part", sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
)
def test_every_subpackage_is_a_known_part_with_a_docstring(part: str) -> None:
    """A new subpackage must be given its place in ALLOWED, and says what it is for."""
    assert part in ALLOWED
    assert ast.get_docstring(ast.parse((PACKAGE / part / "__init__.py").read_text()))


def test_every_exception_class_is_in_the_one_tree() -> None:
    """Every exception class of the package is defined in errors.py, under BatchBananaError, with
    a one-line docstring (the simulator, the other side of the wire, keeps its own)."""
    from batchbanana.errors import BatchBananaError

    found = []
    for name in _graph():
        if _part(name) == "simulator":
            continue
        module = importlib.import_module(name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseException)
            and value.__module__ == name
        ]
    assert {error.__module__ for error in found} == {"batchbanana.errors"}
    assert [error.__name__ for error in found if not issubclass(error, BatchBananaError)] == []
    assert [
        error.__name__ for error in found if len((error.__doc__ or "").strip().splitlines()) != 1
    ] == []


def test_no_module_is_over_300_lines() -> None:
    """Modules stay small enough to read in one sitting."""
    long = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if len(path.read_text(encoding="utf-8").splitlines()) > 300
    }
    assert long == set()
