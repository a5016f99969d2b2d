"""The import graph of bevanet_core has no cycle: every `import` and `from ... import` of every
module (at module level or inside functions), resolved to the module it names."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bevanet_core"


def module_files(root: Path = REPO / PACKAGE) -> dict[str, Path]:
    """{dotted module name: file} of every module of the package (packages as their __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: modules of the package it imports}."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from pkg import sub` names the submodule when there is one
                subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else subs + [origin]
            for target in targets:
                while target and target not in modules:  # import a.b.c of a function/class
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_every_import_form(tmp_path):
    pkg = tmp_path / "bevanet_core"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "sub" / "b.py").write_text("import bevanet_core.c\nthing = 1\n")
    (pkg / "c.py").write_text("from bevanet_core import a\nfrom .sub.b import thing\n")
    graph = import_graph(module_files(pkg))
    assert graph["bevanet_core.a"] == {"bevanet_core.sub.b"}
    assert graph["bevanet_core.sub"] == {"bevanet_core.sub.b"}
    assert graph["bevanet_core.sub.b"] == {"bevanet_core.c"}
    assert graph["bevanet_core.c"] == {"bevanet_core.a", "bevanet_core.sub.b"}
    assert cycles(graph) == [{"bevanet_core.a", "bevanet_core.sub.b", "bevanet_core.c"}]


def test_bevanet_core_has_no_import_cycle():
    modules = module_files()
    assert "bevanet_core.runtime.segmenter" in modules
    found = cycles(import_graph(modules))
    assert not found, "import cycles in bevanet_core:\n" + "\n".join(" <-> ".join(sorted(c)) for c in found)
