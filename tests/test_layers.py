"""The package layering: no import cycles between edgepress's parts, function-level imports
included (a lazy import is still a dependency; only string-named plugin modules, imported on
first use by a registry, are not).
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edgepress"


def _part(module: str) -> str:
    """``edgepress.quantize.ptq`` → ``quantize``; ``edgepress.checkpoint`` → ``checkpoint``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, set[str]]:
    """Part → the parts it imports (the package's ``__init__``, which re-exports lazily, and
    the ``__main__`` / ``cli`` entry points are left out: they sit on top of everything).
    """
    edges: dict[str, set[str]] = {}
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        if module == "edgepress" or _part(module) in ("__main__", "cli"):
            continue
        package = parts if f.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    targets.append(".".join(base + ([node.module] if node.module else [])))
                elif node.module:
                    targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            for t in targets:
                if t.startswith("edgepress.") and _part(t) != _part(module):
                    edges.setdefault(_part(module), set()).add(_part(t))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_parts():
    edges = import_graph()
    assert {"prune", "quantize", "steps", "measurement", "export"} <= set(edges)
    assert cycles(edges) == []


def test_the_layers_point_down():
    """The step layer never imports a family; export never imports measurement or quantize."""
    edges = import_graph()
    assert not edges["steps"] & {"prune", "quantize", "distill", "structure"}
    assert not edges["export"] & {"measurement", "quantize"}
    assert "structure" not in edges["checkpoint"]
