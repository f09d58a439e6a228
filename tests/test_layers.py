"""Layers: the library never imports orchestration, and no module-level import cycle exists.

The library is what a user's own training code needs: data, scenarios, models, importance,
penalties, strategies, train, eval (and the small shared modules errors, _io, _version). Orchestration
(run folders, sweeps, tuning, recipes, reports, the CLI, and the top-level package, which re-exports
both) may import the library; the library may not import it, not even inside a function. The
checker reads the source with ``ast``; the last tests show it catches both kinds of fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
LIBRARY = ("data", "scenarios", "models", "importance", "penalties", "strategies", "train", "eval", "integrations",
           "errors", "_io", "_version")
ORCHESTRATION = ("experiments", "report", "cli", "__main__")


def modules(src: Path, root: str = "lifelong") -> dict[str, Path]:
    out = {}
    for f in (src / root).rglob("*.py"):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path], module_level: bool) -> set[str]:
    """The modules of the package that ``name`` imports (only at module level if ``module_level``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = []

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and (top or not module_level):
                nodes.append(child)
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, inner)

    visit(tree, True)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found |= {t for t in targets if t in known}
    return found


def layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "orchestration"  # the top-level package re-exports both
    return "library" if parts[1] in LIBRARY else "orchestration" if parts[1] in ORCHESTRATION else "unknown"


def violations(src: Path) -> list[str]:
    known = modules(src)
    bad = []
    for name, path in known.items():
        if layer(name) != "library":
            continue
        for target in sorted(imports(name, path, known, module_level=False)):
            if layer(target) == "orchestration":
                bad.append(f"{name} imports {target}")
    return bad


def cycles(src: Path) -> list[list[str]]:
    """Strongly connected components of more than one module in the module-level import graph (Tarjan)."""
    known = modules(src)
    graph = {n: imports(n, p, known, module_level=True) for n, p in known.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_every_module_is_in_a_layer():
    assert [n for n in modules(SRC) if layer(n) == "unknown"] == []


def test_the_library_never_imports_orchestration():
    assert violations(SRC) == []


def test_there_is_no_import_cycle():
    assert cycles(SRC) == []


def test_the_checkers_catch_a_forbidden_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "lifelong"
    for d in ("train", "experiments"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "loop.py").write_text("def f():\n    from ..experiments import config\n")
    (pkg / "experiments" / "config.py").write_text("from . import runs\n")
    (pkg / "experiments" / "runs.py").write_text("from .config import X\n")
    assert violations(tmp_path) == ["lifelong.train.loop imports lifelong.experiments.config"]
    assert cycles(tmp_path) == [["lifelong.experiments.config", "lifelong.experiments.runs"]]
