"""No import cycles among xcap_wsgi's modules, counting imports inside functions.

An import hidden inside a function still ties two modules together: it only moves the failure
from import time to the first call. The graph is read from the source with ``ast`` (nothing is
imported); importing ``pkg.sub`` also runs ``pkg/__init__.py``, so it counts as an edge to the
package too, unless the importing module is inside that package (Python initialises a package
before its modules), and except for the top package ``xcap_wsgi``, whose ``__init__`` only
gathers the public names. Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "xcap_wsgi"

#: Cycles another change is taking apart (frozensets of the modules of one cycle); none now.
KNOWN: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The xcap_wsgi modules ``path`` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import sub" imports the module pkg.sub; "from pkg import name" uses pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
            # importing a.b.c runs a/b/__init__ as well, unless that package is one this module is
            # in (Python has initialised it first)
            parent = target.rpartition(".")[0]
            while parent and parent != "xcap_wsgi":
                if not name.startswith(parent + "."):
                    found.add(parent)
                parent = parent.rpartition(".")[0]
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions(tmp_path):
    """The checker itself: a function-level import closing a loop is a cycle."""
    package = tmp_path / "xcap_wsgi"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    paths = sorted(package.rglob("*.py"))
    global PACKAGE
    saved, PACKAGE = PACKAGE, package
    try:
        modules = {module_name(p) for p in paths}
        graph = {module_name(p): imports_of(p, modules) for p in paths}
    finally:
        PACKAGE = saved
    assert cycles(graph) == [frozenset({"xcap_wsgi.a", "xcap_wsgi.b"})]


def test_no_import_cycles_among_xcap_wsgi_modules():
    found = [sorted(cycle) for cycle in cycles(import_graph()) if cycle not in KNOWN]
    assert found == []


def test_usage_modules_import_only_downwards():
    """The usage registry, the shared reference checks, validation and the computed documents
    know no application usage: usage modules import them, never the other way round."""
    graph = import_graph()
    for module in ("xcap_wsgi.usages.registry", "xcap_wsgi.constraints", "xcap_wsgi.validation",
                   "xcap_wsgi.computed"):
        assert not {m for m in graph[module] if m.startswith("xcap_wsgi.usages")}, (module, graph[module])
