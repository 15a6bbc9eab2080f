"""No import cycle between dear_ray's modules.

The graph is read with `ast`, without importing anything: an edge A -> B for every `import` /
`from ... import` in A that names B (`from pkg import mod` is an edge to `pkg.mod`, `from pkg
import name` one to `pkg`). A lazy import inside a function is an edge too: two modules that call
into each other are one unit however the imports are placed. Imports under `if TYPE_CHECKING:`
never run and are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dear_ray

ROOT = Path(dear_ray.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Every import statement of a module, at module level or inside a function, except those
    under `if TYPE_CHECKING:` (they never run)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the dear_ray modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _describe(cycles: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for members in cycles:
        edges = [f"{a} -> {b}" for a in members for b in sorted(graph[a]) if b in members]
        lines.append("import cycle between " + ", ".join(members) + ": " + "; ".join(edges))
    return "\n".join(lines)


def _in_tune(members: list[str]) -> bool:
    return all(m.startswith("dear_ray.tune.") for m in members)


def test_the_graph_has_module_level_and_lazy_imports():
    graph = import_graph()
    assert "dear_ray.data.transforms" in graph["dear_ray.data.presets"]
    assert "dear_ray.data.synth.files" in graph["dear_ray.data.synth.build"]
    assert "dear_ray.train.driver" in graph["dear_ray.commands.run"]  # inside `_cmd_train`
    assert "dear_ray.scores" in graph["dear_ray.metrics.posthoc"]  # `from dear_ray.scores import x`


def test_a_cycle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycles = import_cycles(graph)
    assert cycles == [["a", "b", "c"]]
    assert "a -> b" in _describe(cycles, graph) and "c -> a" in _describe(cycles, graph)


def test_no_import_cycle_outside_tune():
    graph = import_graph()
    cycles = [c for c in import_cycles(graph) if not _in_tune(c)]
    assert not cycles, _describe(cycles, graph)


def test_no_import_cycle_in_tune():
    graph = import_graph()
    cycles = [c for c in import_cycles(graph) if _in_tune(c)]
    assert not cycles, _describe(cycles, graph)
