"""The wheel ships every part of the package: pyproject's package discovery finds all the code.

`make wheel-check` builds and installs the real wheel (slower, and run by CI); this is the quick
check that a new subpackage is not left out of it, as batchbanana/simulator once was.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, find_packages

ROOT = Path(__file__).resolve().parent.parent


def _packages_setuptools_finds() -> set[str]:
    """What `[tool.setuptools.packages.find]` gives the build, found as setuptools finds it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]
    if isinstance(packages, list):  # `packages = [...]`: exactly those, no subpackage added
        return set(packages)
    config = packages["find"]
    # In pyproject.toml, `namespaces` defaults to true: folders without __init__.py count too.
    find = find_namespace_packages if config.get("namespaces", True) else find_packages
    where = ROOT / config.get("where", ["."])[0]
    return set(find(str(where), include=config["include"], exclude=config.get("exclude", ())))


def _packages_on_disk() -> set[str]:
    """Every folder of batchbanana/ that holds Python code, as a dotted package name."""
    return {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "batchbanana", *(ROOT / "batchbanana").rglob("*")]
        if folder.is_dir() and any(folder.glob("*.py"))
    }


def test_every_folder_of_code_is_a_package_the_wheel_gets() -> None:
    """Each folder of batchbanana/ with Python code in it is among the packages the build finds."""
    on_disk = _packages_on_disk()
    assert {"batchbanana", "batchbanana.simulator"} <= on_disk
    assert on_disk - _packages_setuptools_finds() == set()


def test_the_wheel_gets_nothing_but_batchbanana() -> None:
    """The tests, the benchmarks and the jobs stay out of the wheel."""
    found = _packages_setuptools_finds()
    assert {name.split(".")[0] for name in found} == {"batchbanana"}
