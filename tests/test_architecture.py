"""The package's shape (ARCHITECTURE.md): layers that only point down, and no import cycles.

Every `import` in src/pruneforget, at module top or inside a function, is an edge; an edge may
stay in its layer or go down, never up, and the module graph has no cycle. A new package or
top-level module must be given a layer here before anything imports it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pruneforget"

# Lowest first. A layer is a list of packages (or top-level modules) under pruneforget.
LAYERS = [
    ["io", "images", "variants"],  # files written atomically, image conversions, world variants (config overlays)
    ["world"],                  # the data: the tiny world, the COCO tables, prompt sets
    ["models"],                 # pipelines, their formats (a pruned expert), encodings, targets
    ["sample"],                 # generating images from a pipeline
    ["metrics"],                # scores of samples and models (CLIP, CSD, FID, NudeNet, judges)
    ["train"],                  # the one training loop, objectives, losses, data streams, fine-tuning
    ["prune"],                  # APTP and the static pruners
    ["unlearn"],                # ESD (its step, x_t, upper-level plug-ins), UCE, ConceptPrune
    ["bilevel"],                # Algorithm 1: fine-tuning and unlearning in one run
    ["report", "standins"],     # tables and figures; local stand-ins of the paper's sources
    ["config"],                 # config validation (knows figures and worlds)
    ["forkserver", "commands", "cli", "__main__"],  # the command line
]


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise KeyError(f"{module}: no layer in tests/test_architecture.py's LAYERS (and ARCHITECTURE.md); give it one")


def module_graph(src: Path = SRC) -> dict[str, set[str]]:
    """pruneforget module -> the pruneforget modules it imports (anywhere in the file)."""
    files = {}
    for path in src.rglob("*.py"):
        name = ".".join(path.relative_to(src.parent).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if a != "pruneforget" and b != "pruneforget" and layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_a_layer_or_stays_in_it():
    assert upward_edges(module_graph()) == []


def test_no_module_imports_itself_back():
    assert cycles(module_graph()) == []


def test_every_package_has_a_layer():
    for path in SRC.iterdir():
        if path.name.startswith("_") and path.name != "__main__.py" or path.suffix not in ("", ".py"):
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        layer_of(f"pruneforget.{path.stem}")


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"pruneforget.metrics.fid": {"pruneforget.train.loop"}, "pruneforget.train.loop": {"pruneforget.metrics.fid"}}
    assert upward_edges(graph) == ["pruneforget.metrics.fid -> pruneforget.train.loop"]
    assert cycles(graph) == [["pruneforget.metrics.fid", "pruneforget.train.loop"]]
