"""The layers of ../DESIGN.md "Layers" show in the imports: each package imports only the packages
its layer may know, and the package graph has no cycle.

Imports are read with `ast` from every source file, including imports inside functions (the lazy
ones a module-level scan misses), so a violation names the file, line and import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each first-party package: its folder, and the first-party packages it may import (itself aside).
# A new package gets a row here; one without a row fails test_every_package_has_a_layer.
LAYERS: dict[str, tuple[str, frozenset[str]]] = {
    # Leaves: facts and formats every side shares, importable without Pulumi or the pack.
    "cdao_catalog": ("cdao_catalog", frozenset()),
    "cdao_resources": ("cdao_resources", frozenset()),
    "cdao_cost": ("cdao_cost", frozenset({"cdao_catalog", "cdao_resources"})),
    # The stack registry (names, order, policy profile) and the node-pool facts: one owner each.
    "cdao_stacks": ("cdao_stacks", frozenset()),
    "cdao_pools": ("plugins/cdao_pools", frozenset()),
    # How the connectors name and tag what they create, which infra's IAM policy scopes to.
    "cdao_connector_resources": ("plugins/cdao_connector_resources", frozenset()),
    # The host[:port] grammar the SDK and the CLI both read endpoints with.
    "cdao_authority": ("plugins/cdao_authority", frozenset()),
    # The Pulumi program knows its config and components, and the shared facts.
    "infra": ("infra", frozenset({"cdao_catalog", "cdao_stacks", "cdao_pools", "cdao_connector_resources"})),
    # The pack knows the resource format and the cost package, never the program or the CLI.
    "policies": ("policies", frozenset({"cdao_catalog", "cdao_cost", "cdao_resources", "cdao_stacks", "cdao_pools"})),
    # The CLI drives the program under mocks and calls the pack and the cost package.
    "cdao_cli": (
        "cdao_cli",
        frozenset(
            {
                "infra",
                "policies",
                "cdao_cost",
                "cdao_resources",
                "cdao_catalog",
                "cdao_stacks",
                "cdao_pools",
                "cdao_authority",
            }
        ),
    ),
    # The SDK ships to notebooks without Pulumi, the pack or the CLI; it builds the connectors' task configs.
    "cdao_sdk": ("plugins/cdao_sdk", frozenset({"cdao_connectors", "cdao_pools", "cdao_authority"})),
    "cdao_connectors": ("plugins/cdao_connectors", frozenset({"cdao_connector_resources"})),
    # Pipelines know the SDK only.
    "workflows": ("workflows", frozenset({"cdao_sdk"})),
}


def _imported_packages(path: Path) -> list[tuple[int, str, str]]:
    """(line, first-party package, the import as written) of every absolute import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):  # walks function bodies too: lazy imports count
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports stay inside their own package
        for name in names:
            top = name.split(".", 1)[0]
            if top in LAYERS:
                found.append((node.lineno, top, ast.unparse(node)))
    return found


def import_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """package -> imported first-party package -> ["file:line: import ..."] for every LAYERS package."""
    graph: dict[str, dict[str, list[str]]] = {}
    for package, (folder, _) in LAYERS.items():
        edges: dict[str, list[str]] = {}
        for path in sorted((root / folder).rglob("*.py")):
            for line, target, text in _imported_packages(path):
                if target != package:
                    edges.setdefault(target, []).append(f"{path.relative_to(root)}:{line}: {text}")
        graph[package] = edges
    return graph


def layer_violations(root: Path) -> list[str]:
    return [
        f"{package} must not import {target}: {where}"
        for package, edges in import_graph(root).items()
        for target, places in sorted(edges.items())
        if target not in LAYERS[package][1]
        for where in places
    ]


def cycles(root: Path) -> list[list[str]]:
    """Every cycle of the package graph, each as the path that closes it."""
    graph = {p: sorted(e) for p, e in import_graph(root).items()}
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, []):
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                if min(cycle[:-1]) == cycle[0] and cycle not in found:  # each cycle once, from its smallest name
                    found.append(cycle)
            else:
                visit(nxt, [*path, nxt])

    for start in graph:
        visit(start, [start])
    return found


def test_imports_follow_the_layers() -> None:
    violations = layer_violations(ROOT)
    assert not violations, "imports against DESIGN.md's layers:\n" + "\n".join(violations)


def test_the_package_graph_has_no_cycle() -> None:
    found = cycles(ROOT)
    assert not found, "import cycles between packages:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_package_has_a_layer() -> None:
    """A new first-party package must say which layer it is in, or the rules above would skip it."""
    folders = {folder for folder, _ in LAYERS.values()}
    packages = [
        str(init.parent.relative_to(ROOT))
        for base in (ROOT, ROOT / "plugins")
        for init in base.glob("*/__init__.py")
        if init.parent.name not in {"tests", "benchmarks"}
    ]
    missing = sorted(p for p in packages if p not in folders)
    assert not missing, f"packages without a row in tests/test_layers.py LAYERS: {missing}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # A lazy import inside a function counts like a module-level one.
        (
            "def f():\n    from infra.config import ConfigError\n",
            "policies must not import infra: policies/rule.py:2: from infra.config import ConfigError",
        ),
        (
            "import infra.program as p\n",
            "policies must not import infra: policies/rule.py:1: import infra.program as p",
        ),
    ],
)
def test_a_forbidden_import_is_named_with_its_file_and_line(tmp_path: Path, source: str, expected: str) -> None:
    for folder, _ in LAYERS.values():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "policies" / "rule.py").write_text(source)
    assert layer_violations(tmp_path) == [expected]


def test_a_cycle_is_found(tmp_path: Path) -> None:
    for folder, _ in LAYERS.values():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "policies" / "a.py").write_text("import cdao_cost\n")
    (tmp_path / "cdao_cost" / "b.py").write_text("def f():\n    import policies.rules\n")
    assert cycles(tmp_path) == [["cdao_cost", "policies", "cdao_cost"]]


def test_rule_families_share_helpers_through_common_only() -> None:
    """A family (policies/rules/<family>.py) imports shared helpers from _common.py, never from another
    family, so one family's rules can change without moving another's."""
    rules = ROOT / "policies" / "rules"
    families = {p.stem for p in rules.glob("*.py")} - {"__init__", "_common"}
    crossings = [
        f"policies/rules/{path.name}:{node.lineno}: {ast.unparse(node)}"
        for path in sorted(rules.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("policies.rules.")
        and node.module.removeprefix("policies.rules.") in families - {path.stem}
    ]
    assert not crossings, "rule families importing each other:\n" + "\n".join(crossings)
