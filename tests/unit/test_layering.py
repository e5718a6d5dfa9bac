"""The packages depend on each other in one direction only, and nothing imports in a circle.

    matchers  <-  reglink.stores  <-  reglink.core  <-  shells  <-  reglink.cli, reglink.devstack

The shells are the faust worker (``streams``), the connectors, replay, rebuild, purge, the
person look-up, the console and their Kafka/logging support. ``reglink.cli`` is the only
composition root: it and the dev stack (which runs a demo of every shell) may import anything
below them. The test reads every import statement (module level and inside functions) with
``ast``, so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("matchers", "reglink", "streams", "connectors")

# unit (longest dotted prefix wins) -> layer; an import may only go to the same or a lower layer
LAYERS: dict[str, int] = {
    "reglink": 0,  # the package root: only __version__ and the layout map in its docstring
    "matchers": 0,
    "reglink.stores": 1,
    "reglink.core": 2,
    "streams": 3,
    "connectors": 3,
    "reglink.replay": 3,
    "reglink.rebuild": 3,
    "reglink.purge": 3,
    "reglink.person": 3,
    "reglink.deadletter": 3,
    "reglink.quality": 3,
    "reglink.console": 3,
    "reglink.evaluate": 3,
    "reglink.tail": 3,
    "reglink.stats": 3,
    "reglink.kafka_auth": 3,
    "reglink.logs": 3,
    "reglink.runtime": 3,
    "reglink.sim": 3,
    "reglink.devstack": 4,
    "reglink.cli": 4,
}
# the pure core: no broker, no database, no web framework inside
IO_LIBRARIES = ("kafka", "aiokafka", "faust", "redis", "fastapi", "uvicorn", "starlette")
PURE = ("matchers", "reglink.core")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import sub`: the submodule is what is used
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _unit(name: str) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return prefix
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            module = _module_name(path)
            graph[module] = _imports(path, module)
    return graph


GRAPH = _graph()


def test_every_module_has_a_layer() -> None:
    assert GRAPH, "no modules found"
    assert [m for m in GRAPH if _unit(m) is None] == []


def test_no_upward_import() -> None:
    bad = []
    for module, targets in GRAPH.items():
        src = _unit(module)
        assert src is not None
        for t in targets:
            dst = _unit(t)
            if dst is not None and dst != src and LAYERS[dst] > LAYERS[src]:
                bad.append(f"{module} (layer {LAYERS[src]}) imports {t} (layer {LAYERS[dst]})")
    assert bad == []


def test_no_cycle_between_units() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        src = _unit(module)
        for t in targets:
            dst = _unit(t)
            if src and dst and dst != src and dst != "reglink":
                edges[src].add(dst)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [node, nxt] if nxt in path
                              else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for unit in sorted(LAYERS):
        if unit not in state:
            visit(unit, [])
    assert cycles == []


@pytest.mark.parametrize("pure", PURE)
def test_pure_core_imports_no_io_library(pure: str) -> None:
    bad = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                 if _unit(m) == pure or m.startswith(pure + ".")
                 for t in targets if t.split(".")[0] in IO_LIBRARIES)
    assert bad == []


def test_faust_app_is_imported_only_by_the_cli() -> None:
    users = sorted(m for m, targets in GRAPH.items() if not m.startswith("streams")
                   and any(t == "streams" or t.startswith("streams.") for t in targets))
    assert users == ["reglink.cli"]


def test_the_checker_sees_a_planted_upward_import(tmp_path: Path) -> None:
    """The graph reader catches a lazy (function-level) relative import going up a layer."""
    pkg = tmp_path / "reglink" / "core"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from ..devstack import stack\n    return stack\n")
    found = _imports(pkg / "x.py", "reglink.core.x")
    assert "reglink.devstack.stack" in found
    assert LAYERS[_unit("reglink.devstack.stack") or ""] > LAYERS["reglink.core"]
