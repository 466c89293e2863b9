"""The import graph of dfkd/ and experiments/: no cycles, and no import from a lower layer into a higher one.

The layer order is the one docs/architecture.md documents; a test checks the two agree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Bottom to top; a module belongs to the layer of its longest matching prefix. An import may only go downward
#: or stay in its layer.
LAYERS = [
    ("core", ["dfkd.core", "dfkd.errors", "dfkd.imports", "dfkd.records"]),
    ("data", ["dfkd.data"]),
    ("models", ["dfkd.models"]),
    ("methods", ["dfkd.methods"]),
    ("engine", ["dfkd.engine"]),
    ("cell", ["dfkd.settings", "dfkd.store", "dfkd.cell"]),
    ("report", ["dfkd.report", "experiments"]),
    ("entry", ["dfkd", "dfkd.cli", "dfkd.distill", "dfkd.teachers", "dfkd.study", "dfkd.status", "dfkd.bench",
               "dfkd.data.__main__", "dfkd.report.__main__"]),
]


def module_files() -> dict[str, Path]:
    """Every module of the suite, by dotted name."""
    out = {}
    for top in ("dfkd", "experiments"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"module {module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The suite's modules that ``module`` imports anywhere in its file (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {m: imports_of(m, p, known) for m, p in files.items()}


def test_no_import_goes_up_a_layer():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
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
                cycles.append(sorted(component))
    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_a_planted_upward_import_and_cycle_are_caught(tmp_path, monkeypatch):
    """The checks themselves: an engine module importing the cell, and two modules importing each other."""
    known = {"dfkd.engine.x", "dfkd.cell", "dfkd.data.a", "dfkd.data.b"}
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from dfkd.cell import run_cell\n")
    targets = imports_of("dfkd.engine.x", src, known)
    assert targets == {"dfkd.cell"} and layer_of("dfkd.cell") > layer_of("dfkd.engine.x")
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from . import b\n")
    b.write_text("from dfkd.data.a import thing\n")
    assert imports_of("dfkd.data.a", a, known) == {"dfkd.data.b"}
    assert imports_of("dfkd.data.b", b, known) == {"dfkd.data.a"}


def test_docs_list_the_same_layers_in_the_same_order():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\|\s*\d+\s*\|\s*`?(\w+)`?\s*\|", text, flags=re.M)
    assert rows == [name for name, _ in LAYERS], "docs/architecture.md's layer table differs from tests/test_layers.py"


@pytest.mark.parametrize("name,prefixes", LAYERS, ids=[n for n, _ in LAYERS])
def test_every_layer_prefix_exists(name, prefixes):
    files = module_files()
    for prefix in prefixes:
        assert any(m == prefix or m.startswith(prefix + ".") for m in files), f"layer {name}: no module {prefix}"
