"""The package's module graph: layers that only look down, no cycles, no borrowed private names.

Every import inside ``topreward_ros`` is read from the source (top-level and
function-level alike, since a lazy import is still a dependency). The layers,
lowest first, are folders of the package (README's layout section draws them):

0. ``scoring/`` (the core and its backends), ``files/`` (atomic outputs,
   parameters files), ``tools/`` (the tiny test model);
1. ``episode/`` (the core the node and the sources share), ``rendering/``,
   and the file formats: ``bag/`` (rosbag2), ``lerobot/`` (datasets);
2. ``offline/``: the source interface, the runner, outputs, manifest, engine;
3. ``sources/``, ``scale/`` (Ray) and ``evaluation/`` built on them;
4. ``commands/`` (the command line), ``node/`` (the ROS programs), ``demo/``
   and ``examples/``.

Only folders have layers: a new module goes into the folder of its concern.
A module may import its own layer or a lower one, never a higher one; no
set of modules imports itself round; and no module imports another
module's ``_private`` names.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "topreward_ros"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"scoring", "files", "tools"}),
    frozenset({"episode", "rendering", "bag", "lerobot"}),
    frozenset({"offline"}),
    frozenset({"sources", "scale", "evaluation"}),
    frozenset({"commands", "node", "demo", "examples"}),
)
#: The package's own two files at its root: ``import topreward_ros`` (imports
#: nothing of the package) and ``python -m topreward_ros`` (the command line).
ROOT_FILES = {"__init__": 0, "__main__": len(LAYERS) - 1}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The package module ``name`` stands for (a module, or the package holding a name)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int, list[str]]]:
    """(imported module, line, names imported from it) for every package import in ``path``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("topreward_ros"):
                    target = resolve(alias.name, known)
                    if target:
                        found.append((target, node.lineno, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("topreward_ros"):
                continue
            for alias in node.names:
                sub = resolve(f"{source}.{alias.name}", known)
                if sub and sub != resolve(source, known):  # `from pkg import module`
                    found.append((sub, node.lineno, []))
                else:
                    target = resolve(source, known)
                    if target:
                        found.append((target, node.lineno, [alias.name]))
    return [(t, line, names) for t, line, names in found if t != me]


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_FILES["__init__"]
    if len(parts) == 2 and parts[1] in ROOT_FILES:
        return ROOT_FILES[parts[1]]
    top = parts[1]
    folders = sorted(set().union(*LAYERS))
    assert (PACKAGE / top).is_dir(), f"{module}: only folders have layers; move it into one of {folders}"
    for number, members in enumerate(LAYERS):
        if top in members:
            return number
    raise AssertionError(f"{module} is in no layer: add the folder topreward_ros/{top}/ to LAYERS")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {t for t, _, _ in imports(p, known)} for m, p in known.items()}


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_no_module_imports_a_higher_layer():
    known = modules()
    upward = []
    for module, path in known.items():
        for target, line, _ in imports(path, known):
            if layer(target) > layer(module):
                upward.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {module} (layer "
                    f"{layer(module)}) imports {target} (layer {layer(target)})"
                )
    assert not upward, "\n".join(upward)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"modules importing each other: {found}"


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_modules_private_names():
    known = modules()
    borrowed = []
    for module, path in known.items():
        for target, line, names in imports(path, known):
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    borrowed.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} from {target}")
    assert not borrowed, "\n".join(borrowed)


def test_the_graph_holds_the_edges_the_rules_are_checked_on():
    """The rules are not vacuous: lazy and top-level imports are both edges of the graph."""
    edges = graph()
    assert "topreward_ros.offline.runner" in edges["topreward_ros.offline.engine"]
    assert "topreward_ros.sources.bag" in edges["topreward_ros.commands.bag"]
    assert (
        layer("topreward_ros.commands.bag")
        > layer("topreward_ros.sources.bag")
        > layer("topreward_ros.offline.engine")
        > layer("topreward_ros.bag.reader")
    )
