"""Imports point one way: the package's import graph, read with ``ast`` from the source, has no cycle, no edge
from an earlier layer to a later one, and no ``_private`` name imported from another module.

What counts as an import (strict on purpose: a cycle that only bites at run time is still a cycle):

- every ``import``/``from ... import`` anywhere in a module: top level, inside functions (lazy imports) and inside
  ``if TYPE_CHECKING:`` blocks. A TYPE_CHECKING-only import is still a dependency of the module's meaning (its
  annotations name the other module's types), and a backwards one is how a real cycle starts, so it counts;
- a string naming a handler to import lazily, ``"tradebot.module:function"`` (the CLI's ``_lazy``).

A package's ``__init__`` may import its own submodules lazily, inside a function: that is a plugin registry
(``execution/brokers``' ``open_live_broker`` loads only the chosen vendor's adapter, which imports the interface
from the package), so such an edge is not counted for cycles; an import of a submodule at the package's top level is.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "tradebot"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # settings, contracts, calendar, prices, shared vocabulary; the package root (__version__) too
    ("state",),  # the SQLite store
    ("feeds",),  # market data in: vendors, files, validation
    ("orderflow",),  # footprint, profile, microstructure, pattern detectors
    ("regime",),  # indicators, regime detector, filters, router: decisions
    ("execution",),  # risk gate, orders, ledger, paper and live brokers
    ("ops",),  # notifications, digest, scheduler, control socket, watchdog
    ("analyze", "trading"),  # the offline analysis command; the trading core (events in, trades out)
    ("backtest", "publish", "web"),  # backtests over the trading core; the live stream; the dashboard
    ("daemon",),  # the trading daemon: feed + trading core + ops
    ("replay",),  # `tradebot replay`: the daemon over recorded files
    ("cli",),
    ("__main__",),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
LAZY_TARGET = re.compile(rf"^{PACKAGE}(\.\w+)+:\w+$")


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool = False
    """Inside ``if TYPE_CHECKING:``."""
    lazy: bool = False
    """Inside a function body."""

    @property
    def plugin_load(self) -> bool:
        """A package's ``__init__`` loading one of its own submodules lazily (see the module docstring)."""
        return self.lazy and MODULES[self.source].name == "__init__.py" and self.target.startswith(self.source + ".")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def owner(name: str) -> str:
    """The module a dotted name lives in: itself, or its longest prefix that is a module."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "core"  # the package root holds only __version__


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path) -> tuple[list[Edge], list[str]]:
    """(edges to other package modules, private-name violations) of one module, from anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    edges: list[Edge] = []
    private: list[str] = []
    bound: dict[str, str] = {}  # local name -> package module it names (``import a.b as m``, ``from a import b``)
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    lazy = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for stmt in fn.body for n in ast.walk(stmt)}

    def edge(target: str, node: ast.stmt) -> Edge:
        return Edge(module, target, node.lineno, id(node) in type_only, id(node) in lazy)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    edges.append(edge(owner(alias.name), node))
                    if alias.asname:
                        bound[alias.asname] = owner(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    edges.append(edge(full, node))
                    bound[alias.asname or alias.name] = full
                    continue
                target = owner(source)
                edges.append(edge(target, node))
                if alias.name.startswith("_") and not alias.name.startswith("__") and target != module:
                    private.append(f"{module}:{node.lineno} imports {alias.name} from {target}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_TARGET.match(node.value):
            edges.append(Edge(module, owner(node.value.split(":")[0]), node.lineno))
    for node in ast.walk(tree):  # ``m._helper`` through a module bound above is the same reach into privates
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__") and bound[node.value.id] != module):
            private.append(f"{module}:{node.lineno} uses {node.attr} of {bound[node.value.id]}")
    return [e for e in edges if e.target != module], private


def graph() -> tuple[list[Edge], list[str]]:
    edges: list[Edge] = []
    private: list[str] = []
    for module, path in MODULES.items():
        e, p = imports(module, path)
        edges += e
        private += p
    return edges, private


EDGES, PRIVATE = graph()


def test_the_walker_sees_lazy_type_checking_and_string_imports(tmp_path: Path) -> None:
    """The rules below are only as good as the walker: it must see every kind of import it claims to."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tradebot.daemon import Daemon\n"
        "def f() -> None:\n    import tradebot.web.app\n    from ..regime import router\n"
        "    from tradebot.orderflow.footprint import FootprintBar, _hidden\n"
        "H = 'tradebot.ops.watchdog:watchdog_command'\n"
        "G = router._describe\n",
        encoding="utf-8")
    edges, private = imports("tradebot.execution.model", src)
    assert {e.target for e in edges} == {"tradebot.daemon", "tradebot.web.app", "tradebot.regime.router",
                                          "tradebot.orderflow.footprint", "tradebot.ops.watchdog"}
    assert {e.target for e in edges if e.type_only} == {"tradebot.daemon"}
    assert {e.target for e in edges if e.lazy} == {"tradebot.web.app", "tradebot.regime.router",
                                                   "tradebot.orderflow.footprint"}
    assert private == ["tradebot.execution.model:7 imports _hidden from tradebot.orderflow.footprint",
                       "tradebot.execution.model:9 uses _describe of tradebot.regime.router"]
    assert len(EDGES) > 500  # the real package: hundreds of edges, so the walk did not silently find nothing


def test_every_unit_has_a_layer() -> None:
    units = {unit(m) for m in MODULES}
    assert units - set(RANK) == set(), "place the new top-level module or package in LAYERS (and the docs)"
    assert set(RANK) - units == set(), "a layer names a unit that no longer exists"


def test_no_backwards_edge() -> None:
    bad = [f"{e.source}:{e.line} imports {e.target} ({unit(e.source)} may not import {unit(e.target)})"
           for e in EDGES
           if unit(e.source) != unit(e.target) and RANK[unit(e.source)] <= RANK[unit(e.target)]]
    assert bad == []


def test_no_import_cycle() -> None:
    succ: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        if not e.plugin_load:
            succ[e.source].add(e.target)
    # Tarjan's strongly connected components, iterative (the graph is a few hundred modules).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(MODULES):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, todo = work[-1]
            if todo:
                w = todo.pop()
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, sorted(succ[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    assert cycles == []


def test_no_private_name_imported_from_another_module() -> None:
    assert PRIVATE == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.rsplit(".", 1)[-1].startswith("_")
                                          and not m.endswith("__main__")))
def test_private_modules_are_imported_only_inside_their_package(module: str) -> None:
    package = module.rsplit(".", 1)[0]
    outside = [f"{e.source}:{e.line}" for e in EDGES if e.target == module and not e.source.startswith(package)]
    assert outside == []


DOCS = SRC.parent / "docs" / "architecture.md"


def test_the_architecture_page_names_every_layer_and_journal_kind() -> None:
    """docs/architecture.md is read by people deciding where code goes: it must match LAYERS and the journal."""
    from tradebot.execution.journal import JournalKind

    text = DOCS.read_text(encoding="utf-8")
    rows = {line.split("|")[2].strip(): int(line.split("|")[1]) for line in text.splitlines()
            if re.match(r"^\| \d+ \|", line)}
    documented = {u.strip(" `"): rank for units, rank in rows.items() for u in units.split(",")}
    assert documented == RANK
    missing = [k.value for k in JournalKind if f"| `{k.value}` |" not in text]
    assert missing == [], "add these journal kinds to docs/architecture.md"


MAX_LINES = 500


def test_no_module_over_500_lines_without_a_reason() -> None:
    """A module past ~500 lines is split, or says in its docstring why it stays whole (a paragraph ``Size: ...``):
    size alone is not a reason to split, but it must be a decision, not an accident."""
    bad = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and not re.search(r"^Size: \S", doc, re.M):
            bad.append(f"{module} ({lines} lines)")
    assert bad == [], "split these modules or state why they stay whole in a 'Size:' paragraph of the docstring"
