"""The package layering of docs/architecture.md holds: every import points down, and no module
imports itself back through others (no circles), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "alphagraph"
# Bottom to top: a package may import its own modules and the packages below it, never above.
LAYERS = ("runtime", "data", "features", "graph", "evaluation", "train", "models", "rl", "reporting", "experiments")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("alphagraph", *parts))
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (a package import counts as its __init__)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in mods and t != name}
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else None


MODS = _modules()
GRAPH = {name: _imports(name, path, MODS) for name, path in MODS.items()}


def test_every_module_is_in_a_layer() -> None:
    """The top level holds packages only (and the package's own __init__)."""
    stray = [m for m in MODS if m != "alphagraph" and _layer(m) is None and m.split(".")[1] not in LAYERS]
    assert not stray, f"modules outside the layer packages {LAYERS}: {stray}"


def test_imports_point_down() -> None:
    upward = [
        f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    # a package's __init__ re-exporting its own modules is not a circle of ideas
    cycles = [c for c in cycles if not _only_package_init(c)]
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def _only_package_init(cycle: str) -> bool:
    names = cycle.split(" -> ")
    return any(MODS[n].name == "__init__.py" and all(x.startswith(n) for x in names) for n in names)


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_exists(layer: str) -> None:
    assert (SRC / layer / "__init__.py").exists()
