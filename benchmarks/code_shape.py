"""The shape counts of the trial-lifecycle layer: modules over 400 lines, functions over 60 lines
(in `train/`, `tune/`, `tracking/` and `cli.py`), references to documents outside the repository,
and import cycles (tests/test_import_graph.py's graph, lazy imports included).

    python benchmarks/code_shape.py [ROOT]     # ROOT: a checkout (default: this one)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

LAYER = ("dear_ray/train/", "dear_ray/tune/", "dear_ray/tracking/", "dear_ray/cli.py",
         "dear_ray/commands/")
OUTSIDE = re.compile(r"\bSPEC\b(?!_)|PLATFORM|\bissue \d|\.\./shared")


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def main(root: Path) -> None:
    files = sorted((root / "dear_ray").rglob("*.py"))
    rel = {p: p.relative_to(root).as_posix() for p in files}
    big = [(rel[p], n) for p in files if (n := len(p.read_text().splitlines())) > 400]
    long_fns = [(rel[p], name, n) for p in files if rel[p].startswith(LAYER)
                for name, n in functions(ast.parse(p.read_text())) if n > 60]
    refs = [(rel[p], i) for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if OUTSIDE.search(line)]
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_import_graph as graph

    graph.ROOT = root / "dear_ray"
    g = graph.import_graph()
    cycles = graph.import_cycles(g)
    print(f"modules over 400 lines: {len(big)}")
    for path, n in sorted(big, key=lambda x: -x[1]):
        print(f"  {path} {n}")
    print(f"functions over 60 lines in {', '.join(LAYER)}: {len(long_fns)}")
    for path, name, n in sorted(long_fns, key=lambda x: -x[2]):
        print(f"  {path}:{name} {n}")
    print(f"references to SPEC / PLATFORM / issue N / ../shared: {len(refs)} in "
          f"{len({p for p, _ in refs})} modules "
          f"({len([1 for p, _ in refs if not p.startswith('dear_ray/tune/')])} outside tune/)")
    print(f"import cycles: {len(cycles)}")
    for members in cycles:
        print("  " + " <-> ".join(members))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
