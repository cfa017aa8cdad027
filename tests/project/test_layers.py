"""The layers hold: imports flow one way, no import cycles, no private names across layers.

The layers, bottom first (``docs/architecture.md`` draws them)::

    errors  <  core  <  runtime  <  api  <  backends  <  notebook  <  compat  <  sage_nb/__init__

A module may import its own layer and the layers below it, at any place (a function-level
import counts too: a lazy upward import is still an upward import). The package ``__init__``
is the façade: it may import anything. Imports that run at import time form no cycle; with
``TYPE_CHECKING`` imports counted too, a cycle stays inside one package directory (two classes
of one package may name each other's types: a job and its tasks), so packages never go round
in a circle as ``runtime/proxy.py`` → ``service/service_manager.py`` → ``service/context.py``
→ ``service/base_service_task.py`` → ``runtime/proxy.py`` did. A private name (``_x``) defined
in one layer is not imported, nor read as an attribute of another object
(``env._dispatcher``), from another layer; ``self._x`` and ``cls._x`` are the object's own
business. Private API of other libraries (a ``_x`` that sage_nb does not define) is used only
in the compatibility modules named in ``THIRD_PARTY_PRIVATE``.

The checks are functions of a source tree, so the tests below also run them on small made-up
trees to show that each one fails when it should.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sage_nb"

#: Layer of each top-level part of the package, bottom first.
LAYERS = {
    "errors": 0,
    "core": 1,
    "runtime": 2,
    "api": 3,
    "backends": 4,
    "notebook": 5,
    "compat": 6,
}
#: The package's own __init__ (the façade) sits above every layer.
TOP = max(LAYERS.values()) + 1

#: Modules allowed to use another library's private API (and nothing else is).
THIRD_PARTY_PRIVATE = {
    # Ray's ObjectRef._on_completed, with a fallback to public API.
    "sage_nb.backends.ray.ray_compat",
    # concurrent.futures.Future's own state (_state, _condition, ...), which AwaitableFuture
    # and its subclasses extend.
    "sage_nb.runtime.service.futures",
}
#: Private names of other libraries that are protocols, not internals: IPython's display and
#: traceback hooks, asyncio's Future protocol marker.
PROTOCOL_NAMES = {"_repr_mimebundle_", "_render_traceback_", "_ipython_display_"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted: sage_nb.runtime.proxy
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def layer(self) -> int:
        parts = self.name.split(".")
        if len(parts) == 1:
            return TOP
        return LAYERS[parts[1]]

    @property
    def unit(self) -> str:
        """What a private name may not leave: the layer's name."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class Import:
    source: Module
    target: str  # dotted name of the sage_nb module imported
    names: tuple[str, ...]  # names imported from it (from-imports)
    line: int
    when: str  # "import" (runs at import time), "type" (in `if TYPE_CHECKING:`), "lazy"


def load(root: Path, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``package`` under ``root``, parsed."""
    modules = {}
    base = root / package
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.name.split(".")
    if not module.is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: -(node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _walk(tree: ast.AST, when: str = "import") -> Iterator[tuple[ast.AST, str]]:
    """Every node with when it runs: "import" (at import time), "type" (inside
    ``if TYPE_CHECKING:``) or "lazy" (inside a function)."""
    for child in ast.iter_child_nodes(tree):
        yield child, when
        inner = when
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = "lazy"
        elif (
            isinstance(child, ast.If)
            and when == "import"
            and "TYPE_CHECKING" in ast.unparse(child.test)
        ):
            inner = "type"
        yield from _walk(child, inner)


def imports(modules: dict[str, Module]) -> list[Import]:
    """Every import of one sage_nb module by another (``from pkg import submodule`` counts as
    an import of the submodule)."""
    found = []
    for module in modules.values():
        for node, when in _walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Import(module, alias.name, (), node.lineno, when))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                if target.split(".")[0] != PACKAGE:
                    continue
                plain = []
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        found.append(Import(module, sub, (), node.lineno, when))
                    else:
                        plain.append(alias.name)
                if plain:
                    found.append(Import(module, target, tuple(plain), node.lineno, when))
    return found


def _layer_of(name: str) -> int:
    parts = name.split(".")
    return TOP if len(parts) == 1 else LAYERS[parts[1]]


def upward_imports(modules: dict[str, Module]) -> list[str]:
    return [
        f"{i.source.name}:{i.line} imports {i.target} (a higher layer)"
        for i in imports(modules)
        if _layer_of(i.target) > i.source.layer
    ]


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Cycles of imports that run at import time, and cycles of those and ``TYPE_CHECKING``
    imports that span more than one package directory."""
    found = _cycles(modules, ("import",))
    for group in _cycles(modules, ("import", "type")):
        packages = {modules[name].path.parent for name in group}
        if len(packages) > 1 and group not in found:
            found.append(group)
    return found


def _cycles(modules: dict[str, Module], kinds: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected groups of modules in the graph of imports of ``kinds``."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for i in imports(modules):
        if i.when in kinds and i.target in graph and i.target != i.source.name:
            graph[i.source.name].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PROTOCOL_NAMES


def private_definitions(modules: dict[str, Module]) -> dict[str, set[str]]:
    """For each private name defined in the package, the layers (units) that define it: as a
    function, class or module-level name, a class attribute, ``self._x = ...`` or a slot."""
    defined: dict[str, set[str]] = {}

    def add(name: str, module: Module) -> None:
        if _is_private(name):
            defined.setdefault(name, set()).add(module.unit)

    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(node.name, module)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Name):
                            add(leaf.id, module)
                        elif isinstance(leaf, ast.Attribute):
                            add(leaf.attr, module)
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
                ):
                    for leaf in ast.walk(node.value):
                        if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                            add(leaf.value, module)
    return defined


def private_crossings(modules: dict[str, Module]) -> list[str]:
    defined = private_definitions(modules)
    problems = []
    for i in imports(modules):
        target_unit = i.target.split(".")[1] if "." in i.target else ""
        for name in i.names:
            if _is_private(name) and target_unit != i.source.unit:
                problems.append(f"{i.source.name}:{i.line} imports {name} from {i.target}")
    for module in modules.values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            ):
                continue
            units = defined.get(node.attr)
            where = f"{module.name}:{node.lineno} reads .{node.attr}"
            if units is None:
                if module.name not in THIRD_PARTY_PRIVATE:
                    problems.append(f"{where}, another library's private API")
            elif module.unit not in units:
                problems.append(f"{where}, private to {', '.join(sorted(units))}")
    return sorted(problems, key=lambda p: (p.split(":")[0], int(p.split(":")[1].split()[0])))


# -- the package ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package() -> dict[str, Module]:
    return load(ROOT)


def test_every_module_belongs_to_a_layer(package: dict[str, Module]) -> None:
    parts = {name.split(".")[1] for name in package if "." in name}
    assert parts <= set(LAYERS), f"parts outside the layers: {sorted(parts - set(LAYERS))}"


def test_imports_flow_downwards(package: dict[str, Module]) -> None:
    assert upward_imports(package) == []


def test_no_import_cycles(package: dict[str, Module]) -> None:
    assert import_cycles(package) == []


def test_no_private_names_across_layers(package: dict[str, Module]) -> None:
    assert private_crossings(package) == []


def test_backends_reach_the_runtime_through_its_public_names(
    package: dict[str, Module],
) -> None:
    """Backends import the backend interface and other public names; the runtime and the API
    never name a backend."""
    found = imports(package)
    assert any(i.source.unit == "backends" and i.target == "sage_nb.runtime.backend" for i in found)
    naming = [
        f"{i.source.name} imports {i.target}"
        for i in found
        if i.source.unit in ("core", "runtime", "api") and i.target.startswith("sage_nb.backends")
    ]
    assert naming == []


# -- the checks fail when they should ------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in {"errors.py": "", **files}.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path / PACKAGE).parents:
            init = tmp_path / PACKAGE / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(text)
    return load(tmp_path)


def test_a_lazy_upward_import_is_found(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "runtime/job.py": "def graph():\n    from ..notebook.views import GraphView\n",
            "notebook/views.py": "class GraphView:\n    pass\n",
        },
    )
    assert upward_imports(modules) == [
        "sage_nb.runtime.job:2 imports sage_nb.notebook.views (a higher layer)"
    ]


def test_import_cycles_are_found(tmp_path: Path) -> None:
    type_check = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    "
    modules = _tree(
        tmp_path,
        {
            # at import time: a cycle
            "runtime/graph.py": "from .tasks import Task\n",
            "runtime/tasks.py": "from .graph import Graph\n",
            # through a type, across packages: a cycle
            "runtime/proxy.py": "from .service.manager import Manager\n",
            "runtime/service/manager.py": type_check + "from ..proxy import Proxy\n",
            # types within one package, or a lazy import: no cycle
            "runtime/job.py": type_check + "from .task import Task\n",
            "runtime/task.py": type_check + "from .job import Job\n",
            "runtime/a.py": "def f():\n    from . import b\n",
            "runtime/b.py": "from . import a\n",
        },
    )
    assert import_cycles(modules) == [
        ["sage_nb.runtime.graph", "sage_nb.runtime.tasks"],
        ["sage_nb.runtime.proxy", "sage_nb.runtime.service.manager"],
    ]


def test_private_attributes_and_names_across_layers_are_found(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "api/environment.py": (
                "class Env:\n    def __init__(self):\n        self._dispatcher = None\n"
                "def _helper():\n    pass\n"
            ),
            "api/other.py": "def f(env):\n    return env._dispatcher\n",
            "notebook/magics.py": (
                "from ..api.environment import _helper\n"
                "def f(env, ref):\n    ref._on_completed(print)\n    return env._dispatcher\n"
            ),
        },
    )
    assert private_crossings(modules) == [
        "sage_nb.notebook.magics:1 imports _helper from sage_nb.api.environment",
        "sage_nb.notebook.magics:3 reads ._on_completed, another library's private API",
        "sage_nb.notebook.magics:4 reads ._dispatcher, private to api",
    ]


def test_no_module_is_a_warehouse(package: dict[str, Module]) -> None:
    """One concept per module: none grows past 500 lines (split it by concern instead)."""
    long = {
        m.name: n for m in package.values() if (n := len(m.path.read_text().splitlines())) > 500
    }
    assert long == {}
