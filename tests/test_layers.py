"""Layers: the library never imports orchestration, reports never import experiments, no import cycle
exists, and the library speaks Python.

The library is what a user's own training code needs: data, scenarios, models, importance,
penalties, strategies, train, eval, integrations, the top-level package (``import lifelong``) and the
small shared modules (errors, settings, seeds, _io, _version). Orchestration (run folders, sweeps,
tuning, recipes, reports, the CLI) may import the library; the library may not import it, not even
inside a function; ``report`` (pure functions of results) imports neither ``experiments`` nor ``cli``.
Cycles are looked for twice: between modules at module level (an import error), and between packages
counting imports inside functions too (a lazy import hides a cycle from the first, not from a reader).
The checkers read the source with ``ast``; the last tests show each catches its fault.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

SRC = ROOT / "src"
LIBRARY = ("data", "scenarios", "models", "importance", "penalties", "strategies", "train", "eval", "integrations",
           "errors", "settings", "seeds", "_io", "_version")
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
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for the type checker only: never executed
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
        return "library"  # `import lifelong` loads the library only
    return "library" if parts[1] in LIBRARY else "orchestration" if parts[1] in ORCHESTRATION else "unknown"


def package(name: str) -> str:
    """``lifelong.train.loop`` -> ``train``; the top-level package is ``lifelong``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def violations(src: Path) -> list[str]:
    """Imports (anywhere in a module) that cross a layer the wrong way."""
    known = modules(src)
    bad = []
    for name, path in known.items():
        for target in sorted(imports(name, path, known, module_level=False)):
            if layer(name) == "library" and layer(target) == "orchestration":
                bad.append(f"{name} imports {target}")
            elif package(name) == "report" and package(target) in ("experiments", "cli"):
                bad.append(f"{name} imports {target}")
    return bad


def package_cycles(src: Path) -> list[list[str]]:
    """Cycles between packages (``train``, ``strategies``, ...), counting imports inside functions."""
    known = modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        if len(name.split(".")) == 1:
            continue  # the top-level package re-exports; it is imported by nothing inside
        edges = graph.setdefault(package(name), set())
        edges |= {package(t) for t in imports(name, path, known, module_level=False)
                  if len(t.split(".")) > 1 and package(t) != package(name)}
    return _strong_components(graph)


def cycles(src: Path) -> list[list[str]]:
    """Strongly connected components of more than one module in the module-level import graph."""
    known = modules(src)
    return _strong_components({n: imports(n, p, known, module_level=True) for n, p in known.items()})


def _strong_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan: the components of more than one node (or a node importing itself)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            if len(comp) > 1 or v in graph.get(v, ()):
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


def test_there_is_no_cycle_between_packages_even_through_imports_inside_functions():
    assert package_cycles(SRC) == []


def fake_package(root: Path, files: dict[str, str]) -> Path:
    """A package ``lifelong`` under ``root`` with ``files`` (path -> source), every folder a package."""
    for name, text in {"__init__.py": "", **files}.items():
        path = root / "lifelong" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in (path.parent, *path.parent.parents):
            if folder == root:
                break
            (folder / "__init__.py").touch()
        path.write_text(text)
    return root


def test_the_checkers_catch_a_forbidden_import_and_a_cycle(tmp_path):
    fake_package(tmp_path, {"train/loop.py": "def f():\n    from ..experiments import config\n",
                            "experiments/config.py": "from . import runs\n",
                            "experiments/runs.py": "from .config import X\n"})
    assert violations(tmp_path) == ["lifelong.train.loop imports lifelong.experiments.config"]
    assert cycles(tmp_path) == [["lifelong.experiments.config", "lifelong.experiments.runs"]]


def test_the_checkers_catch_a_report_importing_experiments_and_a_cycle_through_a_lazy_import(tmp_path):
    fake_package(tmp_path, {"report/compare.py": "def f():\n    from ..experiments import config\n",
                            "experiments/config.py": "from ..report import compare\n"})
    assert violations(tmp_path) == ["lifelong.report.compare imports lifelong.experiments.config"]
    assert cycles(tmp_path) == []  # the cycle is through a function: invisible at module level
    assert package_cycles(tmp_path) == [["experiments", "report"]]


# ---- the library speaks Python ----------------------------------------------------------------

#: Other programs' flags a message may quote (a command the user runs there, not an option of ours).
FOREIGN = ("ray start --head", "torchrun --nproc-per-node")


def flags_in_messages(src: Path) -> list[str]:
    """String literals of library and orchestration modules (not the CLI) that name a ``--flag``:
    docstrings and ``help=`` texts aside, every literal can end up in a message a Python user reads."""
    bad = []
    for name, path in modules(src).items():
        if package(name) == "cli":
            continue
        tree = ast.parse(path.read_text())
        skip = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
            if isinstance(node, ast.keyword) and node.arg == "help":
                skip |= {id(n) for n in ast.walk(node.value)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                for ok in FOREIGN:
                    text = text.replace(ok, "")
                if re.search(r"(?<![\w-])--[a-z]", text):
                    bad.append(f"{name}:{node.lineno}: {node.value[:80]!r}")
    return bad


def test_no_library_message_names_a_command_line_flag():
    """A message says ``lam must be >= 0`` (the parameter); the CLI rewrites it as ``--lambda``."""
    assert flags_in_messages(SRC) == []


def test_the_flag_checker_catches_a_flag_in_a_message_but_not_in_a_docstring(tmp_path):
    fake_package(tmp_path, {"train/__init__.py": '"""Run it with ``lifelong run --strategy ewc``."""\n'
                                                 'def f(x):\n    raise ValueError(f"lower --lr, got {x}")\n'})
    assert len(flags_in_messages(tmp_path)) == 1
