"""The project's modules import each other one way, in the order the README states ("Imports flow one way:"):
a module imports only modules of earlier layers, so the import graph has no circle. Every import counts, also
the ones inside functions (they are circles too, only deferred)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))


def project_imports(module: str) -> set[str]:
    """The root modules that `module` imports anywhere in its source (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return (found & set(MODULES)) - {module}   # a doctest's `import module` of itself is no edge


def readme_layers() -> list[list[str]]:
    """`a, b → c → d, e` after "Imports flow one way:" in README.md -> [["a", "b"], ["c"], ["d", "e"]]."""
    match = re.search(r"Imports flow one way[^`]*`([^`]+)`", (ROOT / "README.md").read_text())
    assert match, "README.md has no line 'Imports flow one way: `... → ...`'"
    return [[name.strip() for name in layer.split(",")] for layer in match.group(1).split("→")]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a circle, or None (depth-first search).

    >>> find_cycle({"a": {"b"}, "b": {"a"}}), find_cycle({"a": {"b"}, "b": set()})
    (['a', 'b', 'a'], None)
    """
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt):
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((c for node in sorted(graph) if (c := visit(node))), None)


def test_the_import_graph_has_no_circle():
    graph = {m: project_imports(m) for m in MODULES}
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_imports_flow_in_the_readmes_order():
    layers = readme_layers()
    layer_of = {name: k for k, layer in enumerate(layers) for name in layer}
    assert sorted(layer_of) == MODULES, f"the README's line names {sorted(layer_of)}, the root has {MODULES}"
    wrong = [f"{m} imports {dep}" for m in MODULES for dep in sorted(project_imports(m))
             if layer_of[dep] >= layer_of[m]]
    assert not wrong, "imports against the README's order: " + "; ".join(wrong)


def test_the_evaluator_of_one_model_imports_no_agent_code():
    assert project_imports("evaluate").isdisjoint({"idea3", "irt", "grpo", "ilr"})
