"""Layering rules of ``src/noisetrace``, read from the source with ``ast`` (nothing imported):

1. **No import cycles** among module-level imports. Imports inside functions are left out on
   purpose: importing heavy or optional code lazily, where it is used, is how the project
   keeps ``noisetrace --help`` fast, and such an import runs after every module involved has
   finished loading, so it cannot deadlock a partly initialised module. Imports under
   ``if TYPE_CHECKING:`` never run and are left out too.
2. **No module uses another module's private names**: neither ``from noisetrace.x import _y``
   nor ``x._y`` where ``x`` names a noisetrace module (anywhere in the file, lazy imports
   included). Dunders (``__version__``) are public.

Known exceptions are listed in :data:`ALLOWED` with the reason each is still there; anything
else fails, so a new cycle or private reach is caught when it is written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (importing module, "target.module._name") -> why it is allowed for now. None: what one
# module needs of another has a public name there (media.image.to_rgb, media.faces.import_cv2,
# explain.ig.gaussian_blur, Detector.fit_size).
ALLOWED: dict[tuple[str, str], str] = {}
# Accepted cycles (the modules in one) -> why. None: keep it that way.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


# -- reading the source ----------------------------------------------------------------------
def modules(root: Path = SRC, package: str = "noisetrace") -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) for every module of ``package``."""
    out = {}
    for f in sorted((root / package).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _absolute(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) ``from ... import`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in functions or lambdas, not under
    ``if TYPE_CHECKING:`` (its ``else`` branch runs)."""

    def walk(nodes: list[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
        for n in nodes:
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(n, ast.If) and _is_type_checking(n.test):
                yield from walk(n.orelse)
                continue
            if isinstance(n, ast.Import | ast.ImportFrom):
                yield n
            yield from walk(list(ast.iter_child_nodes(n)))

    yield from walk(list(tree.body))


def _owner(name: str, known: dict[str, tuple[Path, bool]]) -> str | None:
    """The longest prefix of ``name`` that is a known module."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(known: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """module -> the modules its module-level imports load (``from pkg import sub`` loads
    ``pkg.sub`` when ``sub`` is a module, else ``pkg``)."""
    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in known.items():
        deps: set[str] = set()
        for node in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _absolute(mod, is_pkg, node)
                targets = [f"{base}.{a.name}" for a in node.names]
            deps |= {t for t in map(lambda n: _owner(n, known), targets) if t}
        deps.discard(mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(known: dict[str, tuple[Path, bool]]) -> set[tuple[str, str]]:
    """(module, "other.module._name") for every private name a module takes from another."""
    found: set[tuple[str, str]] = set()
    for mod, (path, is_pkg) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> the noisetrace module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(mod, is_pkg, node)
                if not base.startswith("noisetrace"):
                    continue
                for a in node.names:
                    full = f"{base}.{a.name}"
                    if full in known:
                        aliases[a.asname or a.name] = full
                    elif _private(a.name) and _owner(base, known) not in (None, mod):
                        found.add((mod, full))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "noisetrace":
                        # `import a.b.c` binds `a`; `import a.b.c as x` binds x to a.b.c
                        aliases[a.asname or "noisetrace"] = a.name if a.asname else "noisetrace"
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            chain, v = [], node.value
            while isinstance(v, ast.Attribute):
                chain.append(v.attr)
                v = v.value
            if isinstance(v, ast.Name) and v.id in aliases:
                target = ".".join([aliases[v.id], *reversed(chain)])
                if target in known and target != mod:
                    found.add((mod, f"{target}.{node.attr}"))
    return found


# -- the rules ---------------------------------------------------------------------------------
def test_no_import_cycles_at_module_level() -> None:
    found = [c for c in cycles(import_graph(modules())) if c not in ALLOWED_CYCLES]
    assert not found, "import cycles (move an import into the function that needs it, or " \
        f"move the shared code down a layer): {[sorted(c) for c in found]}"


def test_no_module_uses_another_modules_private_names() -> None:
    found = private_uses(modules())
    new = sorted(found - set(ALLOWED))
    assert not new, f"private names used across modules (make them public): {new}"
    stale = sorted(set(ALLOWED) - found)
    assert not stale, f"fixed: remove them from ALLOWED in tests/test_architecture.py: {stale}"


def test_the_checks_see_cycles_and_private_names(tmp_path: Path) -> None:
    """The rules above on a made-up package: a real cycle and real private reaches are
    found; a lazy import, a TYPE_CHECKING import and a module's own names are not."""
    pkg = tmp_path / "noisetrace"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "__version__ = '1'\n",
        "a.py": "from noisetrace import b\n",
        "b.py": "from noisetrace.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a\n_own = 1\nx = _own\n",
        "d.py": (
            "from typing import TYPE_CHECKING\nfrom noisetrace import __version__\n"
            "if TYPE_CHECKING:\n    from noisetrace import e\n"
            "def f():\n    from noisetrace import e\n    return e\n"
            "from noisetrace.sub.c import _own\nimport noisetrace.b as bee\nbee._x\n"
        ),
        "e.py": "import noisetrace.d\nnoisetrace.sub.c._own\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    known = modules(tmp_path)
    assert cycles(import_graph(known)) == [
        frozenset({"noisetrace.a", "noisetrace.b", "noisetrace.sub.c"})
    ]  # d <-> e is no cycle: d imports e only lazily or for type checkers
    assert private_uses(known) == {
        ("noisetrace.d", "noisetrace.sub.c._own"),
        ("noisetrace.d", "noisetrace.b._x"),
        ("noisetrace.e", "noisetrace.sub.c._own"),
    }
