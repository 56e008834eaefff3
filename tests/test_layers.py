"""The package in layers: no import cycle inside genrm (imports inside functions count),
and no module imports a layer above its own; the stages of layer 2 do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "genrm"

# The layer of every module (a package's modules inherit its layer).
LAYERS = {
    "genrm": 0, "genrm.__main__": 4,
    "genrm.protocol": 0, "genrm.io": 0, "genrm.paths": 0, "genrm.published": 0,
    "genrm.config": 1,
    "genrm.data": 2, "genrm.contamination": 2, "genrm.train": 2, "genrm.judge": 2, "genrm.evaluate": 2,
    "genrm.report": 3,
    "genrm.workflow": 4, "genrm.cli": 4,
}
STAGES = ("genrm.data", "genrm.contamination", "genrm.train", "genrm.judge", "genrm.evaluate")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every genrm module that ``path`` imports, anywhere in the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from genrm.x import y` imports genrm.x.y when y is a module, else genrm.x
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rsplit(".", 1)[0]
    return LAYERS[module]


def stage(module: str) -> str | None:
    return next((s for s in STAGES if module == s or module.startswith(s + ".")), None)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checker_finds_cycles_and_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from genrm.a import b\n    import genrm.c\n")
    assert imports_of(source, {"genrm.a", "genrm.a.b", "genrm.c"}) == {"genrm.a.b", "genrm.c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_genrm():
    assert find_cycle(graph()) is None


def test_every_module_has_a_layer():
    assert all(layer(m) is not None for m in modules())


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert upward == []


def test_stages_do_not_import_each_other():
    crossing = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
                if stage(m) and stage(d) and stage(m) != stage(d)]
    assert crossing == []
