"""Every module the installed package imports comes with its declared dependencies.

The development environment holds much more than a deployment does (test tools, the peers of the
benchmarks), so an import of something only they bring in works here and fails in a container built from
`pip install .`: the gateway once imported httpx without declaring it. Here each third-party import of
`atelier`, `services` and `gateway` must come from a distribution that `[project.dependencies]` (or an
extra that the importing code needs, such as `ml` for PyTorch) brings, directly or through what those
require.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("atelier", "services", "gateway")
# Extras whose distributions the package may import (lazily, where they are used).
RUNTIME_EXTRAS = ("ml",)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    for extra in RUNTIME_EXTRAS:
        requirements += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return requirements


def _closure() -> set[str]:
    """The distributions the declared requirements install, with what they require in turn."""
    found: set[str] = set()
    pending = [(requirement, frozenset(requirement.extras)) for requirement in _declared()]
    while pending:
        requirement, extras = pending.pop()
        name = _normal(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            inner = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if inner.marker is None or any(inner.marker.evaluate(env) for env in environments):
                pending.append((inner, frozenset(inner.extras)))
    return found


@cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _imports() -> Iterator[tuple[str, str]]:
    """`(top-level module, file)` of every absolute import in the package's own code."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    yield name.partition(".")[0], str(path.relative_to(ROOT))


def test_every_third_party_import_is_a_declared_dependency() -> None:
    closure = _closure()
    undeclared: dict[str, str] = {}
    for module, where in _imports():
        if module in PACKAGES or module in sys.stdlib_module_names or module == "__future__":
            continue
        providers = {_normal(dist) for dist in _distributions().get(module, [])}
        if not providers & closure:
            undeclared.setdefault(module, where)
    assert not undeclared, "imported but not brought by pyproject.toml's dependencies: " + ", ".join(
        f"{module} (in {where})" for module, where in sorted(undeclared.items())
    )


def test_the_check_sees_a_missing_dependency() -> None:
    """The closure is not everything installed: a development-only tool is outside it."""
    closure = _closure()
    assert "grpcio" in closure  # declared
    assert "uvloop" in closure  # brought by uvicorn[standard]
    assert "pytest" not in closure
    assert "mypy" not in closure
