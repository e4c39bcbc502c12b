"""The package's modules import each other without cycles (lazy imports inside functions count;
imports made only for the type checker do not), and nothing but the HTTP edge reaches Litestar,
directly or through any chain of imports: services know nothing about HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "lms"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Modules `path` imports at run time, at module level or inside functions (a lazy import
    does not hide a cycle); imports under `if TYPE_CHECKING:` are for the type checker only."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    Visitor().visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(p): p for p in PACKAGE.rglob("*.py") if "piccolo_migrations" not in p.parts
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {m for m in runtime_imports(path) if m in modules and m != name}
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_domain_knows_nothing_about_http() -> None:
    offenders = sorted(
        name
        for name, path in ((module_name(p), p) for p in (PACKAGE / "domain").rglob("*.py"))
        if path.name != "controllers.py"
        and any(
            m == "litestar" or m.startswith(("litestar.", "lms.api.security", "lms.api.uploads"))
            for m in runtime_imports(path)
        )
    )
    assert offenders == []


def is_http_edge(name: str) -> bool:
    """Modules that may import Litestar: the app, its edge and lane, the API layer, controllers."""
    return (
        name in ("lms.app", "lms.edge", "lms.hot_lane", "lms.api")
        or name.startswith("lms.api.")
        or name.endswith(".controllers")
    )


def chains_to_litestar() -> dict[str, list[str]]:
    """For each module that reaches Litestar, one import chain that does."""
    modules = {
        module_name(p): p for p in PACKAGE.rglob("*.py") if "piccolo_migrations" not in p.parts
    }
    edges = graph()
    found: dict[str, list[str]] = {
        name: [name, "litestar"]
        for name, path in modules.items()
        if any(m == "litestar" or m.startswith("litestar.") for m in runtime_imports(path))
    }
    changed = True
    while changed:  # a fixed point: a module reaches it when one it imports does
        changed = False
        for name in sorted(modules):
            if name in found:
                continue
            via = next((t for t in sorted(edges[name]) if t in found), None)
            if via is not None:
                found[name] = [name, *found[via]]
                changed = True
    return found


def test_nothing_but_the_http_edge_reaches_litestar_through_any_import_chain() -> None:
    offenders = {
        name: " -> ".join(chain)
        for name, chain in chains_to_litestar().items()
        if not is_http_edge(name)
    }
    assert offenders == {}


def test_the_transitive_check_sees_a_chain() -> None:
    """The check above follows chains: a controller reaches Litestar, and so does the app."""
    chains = chains_to_litestar()
    assert chains["lms.domain.courses.controllers"][-1] == "litestar"
    assert chains["lms.app"][0] == "lms.app"
    assert "lms.context" not in chains and "lms.domain.learning.progress" not in chains


def test_the_services_load_no_litestar_when_imported() -> None:
    """The same, as Python sees it: every module off the HTTP edge imported in a fresh process
    (the raw-limit bench peer relies on it), and Litestar is still not loaded."""
    import subprocess
    import sys

    names = sorted(
        name
        for name in (module_name(p) for p in PACKAGE.rglob("*.py"))
        if not is_http_edge(name)
        and "piccolo_migrations" not in name
        and name
        not in ("lms.__main__", "lms.cli", "lms.server", "lms.worker", "lms.db.piccolo_conf")
    )
    program = f"import importlib, sys\nfor n in {names!r}: importlib.import_module(n)\n"
    program += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'litestar'))"
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_api_does_not_load_pyav_until_an_upload_is_probed() -> None:
    """PyAV (FFmpeg's libraries) is some 16 MB per API process: it is imported by the first
    probe (lms.integrations.media), never by building the app."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, lms.app; print('av' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "False"
