"""No cycles between ccreid's packages (issue 22 item 5): the imports of src/ccreid, read with ``ast``
(module level and inside functions, relative ones resolved; ``if TYPE_CHECKING:`` blocks left out),
folded to one node per package (``engine``, ``data``, ...) or top-level module (``config``, ``cli``, ...)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import ccreid

PACKAGE = Path(ccreid.__file__).parent


Edges = Dict[Tuple[str, str], Set[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def node_of(module: str) -> str:
    """The package (or top-level module) of a dotted ``ccreid...`` name; ``ccreid`` itself for its __init__."""
    parts = module.split(".")
    if len(parts) == 1:
        return "ccreid"
    first = PACKAGE / parts[1]
    return parts[1] if first.is_dir() or first.with_suffix(".py").is_file() else "ccreid"


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.AST, module: str, is_package: bool) -> List[str]:
    """Every ccreid module (or name in one) that ``tree`` imports, outside ``if TYPE_CHECKING:``."""
    found: List[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.extend(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [name for name in found if name == "ccreid" or name.startswith("ccreid.")]


def package_edges() -> Edges:
    """(from node, to node) -> the module-level imports that make the edge."""
    edges: Edges = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for target in imported(tree, module, path.name == "__init__.py"):
            source, dest = node_of(module), node_of(target)
            if source != dest:
                edges[(source, dest)].add(f"{module} -> {target}")
    return edges


def find_cycle(edges: Edges) -> Optional[List[str]]:
    """One cycle of nodes (first node repeated at the end), or None."""
    graph: Dict[str, List[str]] = defaultdict(list)
    for source, dest in sorted(edges):
        graph[source].append(dest)
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    edges = package_edges()
    assert ("cli", "engine") in edges  # imports inside functions
    assert ("viz", "ccreid") in edges  # from ccreid import __version__
    tree = ast.parse("from . import a\nfrom ..errors import E\nif TYPE_CHECKING:\n    from ccreid.engine import x\n")
    assert imported(tree, "ccreid.viz.page", False) == ["ccreid.viz.a", "ccreid.errors.E"]
    assert find_cycle({("a", "b"): set(), ("b", "c"): set(), ("c", "a"): set()}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"): set(), ("a", "c"): set(), ("b", "c"): set()}) is None


def test_no_cycle_between_packages():
    edges = package_edges()
    cycle = find_cycle(edges)
    assert cycle is None, "packages import each other in a circle: " + " -> ".join(cycle) + "\n" + "\n".join(
        f"{a} -> {b}: {', '.join(sorted(edges[(a, b)])[:3])}" for a, b in zip(cycle, cycle[1:]))
