"""The package has no import circle: the graph of `safety_tradeoff` modules, with every import counted (also those
inside functions, which only defer a circle to the first call), has no cycle. Imports under `if TYPE_CHECKING:` are
not executed and do not count; `from . import sibling` depends on the sibling module, not on the package's
`__init__`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "safety_tradeoff"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imported(module: str, path: Path, node: ast.AST, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        if node.level:
            parts = base.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            target = base + ("." + node.module if node.module else "")
        else:
            target = node.module or ""
        # `from pkg import sub` needs the module `sub` (the package is already being imported); `from pkg import
        # name` needs what `pkg/__init__.py` defines
        subs = [f"{target}.{a.name}" for a in node.names]
        targets = [t for t in subs if t in known]
        if len(targets) < len(subs):
            targets.append(target)
    return {t for t in targets if t in known and t != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in type_only:
                graph[module] |= _imported(module, path, node, set(modules))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert "safety_tradeoff.trainer.base" in graph["safety_tradeoff.trainer"]
    assert "safety_tradeoff.evaluation" in graph["safety_tradeoff.trainer.lm_eval_callback"]  # a function-level one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " → ".join(cycle)
