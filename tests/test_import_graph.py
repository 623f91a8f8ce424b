"""spikeport's import graph, built from the sources with ast (no module is imported): the stages
import each other in one direction only.

- hwprofiles/ (the chips) imports nothing from train/, runtime/ or export/, not even inside a
  function: a report joins the stages in spikeport/reporting.py, and the profiles stand alone.
- No import cycle between modules, counting the imports a module runs when it is imported
  (module level; `if TYPE_CHECKING:` blocks do not run).
- Imports inside functions run later, when the function is called, and most are there to keep
  torch out of a command until it needs it. Counted with them, the graph has one cycle, in
  train/: neuron.py picks its LIF engine by importing its kernels' modules (lif_triton.py, ...)
  when the first tensor arrives, and they import neuron.py's constants (SURROGATE_WIDTH). Python
  resolves it (neuron.py is complete by then), and it is the only kind allowed: any other cycle
  through a function-level import fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"spikeport": "spikeport", "spikeport.export": "export", "spikeport.hwprofiles": "hwprofiles", "spikeport.runtime": "runtime",
            "spikeport.train": "train"}  # pyproject.toml's package-dir


def engine_selection(cycle: set[str]) -> bool:
    """neuron.py and the LIF engines it imports when it picks one (module docstring)."""
    return "spikeport.train.neuron" in cycle and all(m == "spikeport.train.neuron" or m.startswith("spikeport.train.lif_") for m in cycle)


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The spikeport modules `name` imports when it is imported, and those its functions import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    at_import, in_functions = set(), set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target if target and target != name else None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in child.names]
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
                continue
            for target in filter(None, map(resolve, targets)):
                (in_functions if in_function else at_import).add(target)

    visit(ast.parse(path.read_text()), False)
    return at_import, in_functions


def graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    known = modules()
    at_import, everything = {}, {}
    for name, path in known.items():
        top, inner = imports(name, path, known)
        at_import[name], everything[name] = top, top | inner
    return at_import, everything


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_graph_is_read_from_the_sources():
    """The walk sees real imports (so the assertions below can fail): module-level, relative,
    function-level, and none from TYPE_CHECKING."""
    at_import, everything = graphs()
    assert len(at_import) > 60
    assert "spikeport.deployment" in at_import["spikeport.runtime.simulate"]
    assert "spikeport.runtime.measure" in everything["spikeport.runtime.simulate"] - at_import["spikeport.runtime.simulate"]
    assert "spikeport.deployment" not in everything["spikeport.runtime.onnx"]  # a type only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_hwprofiles_imports_no_later_stage():
    _, everything = graphs()
    later = ("spikeport.train", "spikeport.runtime", "spikeport.export")
    imported = {name: sorted(t for t in targets if t.startswith(later)) for name, targets in everything.items() if name.startswith("spikeport.hwprofiles")}
    assert imported and all(not targets for targets in imported.values()), {k: v for k, v in imported.items() if v}


def test_no_module_imports_itself_back():
    at_import, everything = graphs()
    assert cycles(at_import) == []
    assert [c for c in cycles(everything) if not engine_selection(c)] == []
