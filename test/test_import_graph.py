"""The import graph of bevanet_core and bevanet_ros: every `import` and `from ... import` of every
module (at module level or inside functions), resolved to the module it names. No module-level
cycle, and at package level the layers of docs/development.md, each importing only from the
layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bevanet_core"

# Bottom first; the layers of docs/development.md. A package imports only from layers below its
# own (never from its own layer's other packages, never upward). `bevanet_core` is the package
# root (its __init__); the other names are bevanet_core's subpackages and top-level modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bevanet_core", "options", "paths", "hardware", "timing"),
    ("imaging", "models"),
    ("data", "deploy"),
    ("checkpoint",),
    ("evaluation",),
    ("training", "export"),
    ("runtime",),
    ("serving",),
    ("bags",),
    ("cli",),
    ("bevanet_ros",),
)


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


def all_modules() -> dict[str, Path]:
    """The modules of both packages of the repository."""
    return {**module_files(REPO / PACKAGE), **module_files(REPO / "bevanet_ros")}


def unit(module: str, modules: dict[str, Path]) -> str:
    """The package-level unit a module belongs to: `bevanet_ros`, the root `bevanet_core`, or
    the bevanet_core subpackage or top-level module it lies in."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return parts[0]
    return parts[1] if len(parts) > 1 else PACKAGE


def package_graph(graph: dict[str, set[str]], modules: dict[str, Path]) -> dict[tuple[str, str], list[str]]:
    """{(unit, unit it imports): the module-level edges behind it}, between different units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = unit(source, modules), unit(target, modules)
            if a != b:
                edges.setdefault((a, b), []).append(f"{source} -> {target}")
    return edges


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
    modules = all_modules()
    assert "bevanet_core.runtime.segmenter" in modules and "bevanet_ros.pipeline" in modules
    found = cycles(import_graph(modules))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in found)


def test_every_package_level_import_looks_down_the_layers():
    modules = all_modules()
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    units = {unit(m, modules) for m in modules}
    assert units - set(level) == set(), "place these in LAYERS and in docs/development.md's diagram"
    edges = package_graph(import_graph(modules), modules)
    wrong = [
        f"{a} (layer {level[a]}) imports {b} (layer {level[b]}): " + ", ".join(sorted(why))
        for (a, b), why in sorted(edges.items())
        if level[b] >= level[a]
    ]
    assert not wrong, "imports that do not look down:\n" + "\n".join(wrong)
    assert edges, "no package-level edge found: the graph is not being read"


def test_no_package_level_cycle():
    modules = all_modules()
    edges = package_graph(import_graph(modules), modules)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    assert cycles(graph) == []
    assert ("runtime", "export") in edges and ("bevanet_ros", "serving") in edges


def test_the_layer_check_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "bevanet_core"
    (pkg / "data").mkdir(parents=True)
    (pkg / "serving").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "datasets.py").write_text("from ..serving.policy import read\n")
    (pkg / "serving" / "__init__.py").write_text("")
    (pkg / "serving" / "policy.py").write_text("from ..data import datasets\n")
    modules = module_files(pkg)
    edges = package_graph(import_graph(modules), modules)
    assert edges == {
        ("data", "serving"): ["bevanet_core.data.datasets -> bevanet_core.serving.policy"],
        ("serving", "data"): ["bevanet_core.serving.policy -> bevanet_core.data.datasets"],
    }


def test_the_runtime_asks_the_export_layer_through_one_function():
    """The runtime reads artifact metadata (export.metadata) and checks engines against the GPU
    (export.tensorrt); it builds nothing itself: export.artifacts is reached from
    runtime.loading alone, and the ONNX exporter and the precision converters not at all."""
    graph = import_graph(all_modules())
    into_export = sorted(
        (source, target)
        for source, targets in graph.items()
        if source.startswith("bevanet_core.runtime")
        for target in targets
        if target.startswith("bevanet_core.export")
    )
    assert ("bevanet_core.runtime.loading", "bevanet_core.export.artifacts") in into_export
    others = {target for source, target in into_export if source != "bevanet_core.runtime.loading"}
    assert others <= {"bevanet_core.export.metadata", "bevanet_core.export.tensorrt"}, into_export
    loading = {target for source, target in into_export if source == "bevanet_core.runtime.loading"}
    assert loading == {"bevanet_core.export.artifacts", "bevanet_core.export.metadata"}


def test_docs_draw_the_layers_the_test_checks():
    text = (REPO / "docs" / "development.md").read_text()
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    drawn = [
        tuple(name.strip() for name in line.split("  ")[0].split("|"))
        for line in block.splitlines()
        if line and not line[0].isspace()
    ]
    assert drawn == list(reversed(LAYERS))
