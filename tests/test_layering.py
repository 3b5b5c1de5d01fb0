"""Dependencies point one way: weights_tools builds on jaxstyle, and no jaxstyle module
imports one that imports it, not even lazily (inside a function)."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` → the modules it imports, at any depth of its code."""
    graph = {}
    for path in (ROOT / package).glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    found |= {f"{package}.{node.module.split('.')[0]}"} if node.module else {f"{package}.{a.name}" for a in node.names}
                elif node.module:
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[f"{package}.{path.stem}"] = found
    return graph


def test_jaxstyle_never_imports_weights_tools():
    for module, imported in _imports("jaxstyle").items():
        assert not [name for name in imported if name.split(".")[0] == "weights_tools"], module


def test_no_import_cycles():
    graph = {**_imports("jaxstyle"), **_imports("weights_tools")}
    graph = {m: {d if d in graph else d.rsplit(".", 1)[0] for d in deps} & set(graph) - {m} for m, deps in graph.items()}
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", " → ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "jaxstyle.fetch" in graph and "jaxstyle.weights" in graph["jaxstyle.cli"] | {"jaxstyle.weights"}
