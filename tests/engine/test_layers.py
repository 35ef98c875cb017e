"""The engine's imports run one way: each module imports only modules of a lower layer (or of
its own layer, without a circle), counting the imports made inside functions, since an import
moved into a function to dodge a circle is still a circle."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import flask_backup_manager.engine as engine

ROOT = Path(engine.__file__).parent
TOP = "flask_backup_manager"
PACKAGE = f"{TOP}.engine"

#: the layers, lowest first; a module's layer is that of its longest listed prefix
LAYERS = [
    ("model", "url", "child", "manifest", "version"),
    ("base",),
    ("redaction",),
    ("gzipout", "checks", "encryption"),
    ("parallel",),
    ("sources",),
    ("writers",),
    ("restore",),
    ("verify",),
    ("export",),
    ("__init__",),
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(name: str) -> int:
    best, rank = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"engine module {name} belongs to no layer: add it to LAYERS"
    return rank


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """The engine modules ``path`` imports, anywhere in it (at the top or inside a function,
    relative or absolute, ``import a.b`` or ``from a import b``), by their names under the
    engine (``__init__`` for the package); a module of the package around the engine (the web
    layer) as ``../name``."""
    name = module_name(path, root)
    here = [] if name == "__init__" else name.split(".")
    package = [*PACKAGE.split("."), *(here if path.name == "__init__.py" else here[:-1])]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *filter(None, (node.module or "").split("."))])
            modules = [imported(module, a.name, root) for a in node.names]
        else:
            continue
        found |= {local(m) for m in modules if m.split(".")[0] == TOP}
    found.discard(name)
    return found


def imported(module: str, name: str, root: Path) -> str:
    """What ``from module import name`` imports: ``module.name`` if that is a module (outside
    the engine, if ``module`` is the top package: ``from flask_backup_manager import models``),
    else ``module``."""
    full = f"{module}.{name}"
    if full != PACKAGE and not full.startswith(PACKAGE + "."):
        return full if module == TOP else module
    sub = Path(root, *full.removeprefix(PACKAGE).strip(".").split("."))
    return full if sub.with_suffix(".py").exists() or sub.is_dir() else module


def local(module: str) -> str:
    if module == PACKAGE:
        return "__init__"
    if module.startswith(PACKAGE + "."):
        return module.removeprefix(PACKAGE + ".")
    return "../" + (module.removeprefix(TOP).strip(".") or "__init__")


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}


def test_every_engine_import_goes_to_a_lower_layer_or_sideways():
    upward = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        for b in targets
        if b.startswith("../") or layer(b) > layer(a)
    ]
    assert not upward, upward


def test_the_engine_has_no_import_circle():
    edges = graph()
    circles = []

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            circles.append(" -> ".join(path[path.index(node) :] + [node]))
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, path + [node])

    for start in sorted(edges):
        visit(start, [])
    assert not circles, sorted(set(circles))[:5]


def test_the_checker_sees_an_upward_import_made_inside_a_function(tmp_path):
    """The rules above are not vacuous: a model.py that imports the export module inside a
    function is caught as importing an upper layer."""
    (tmp_path / "export.py").write_text("")
    module = tmp_path / "model.py"
    module.write_text("def f():\n    from .export import export\n    from . import export\n")
    assert imports_of(module, tmp_path) == {"export"}
    assert layer("export") > layer("model")


def test_the_checker_sees_absolute_imports_and_the_web_layer(tmp_path):
    """``import flask_backup_manager.engine.x``, ``from flask_backup_manager import engine`` and
    imports of the web layer around the engine (relative or absolute) are seen too."""
    (tmp_path / "export.py").write_text("")
    module = tmp_path / "model.py"
    module.write_text(
        "import flask_backup_manager.engine.export\n"
        "from flask_backup_manager import engine\n"
        "def f():\n"
        "    from flask_backup_manager import models\n"
        "    from ..service import x\n"
        "    import flask_backup_manager\n"
    )
    assert imports_of(module, tmp_path) == {
        "export",
        "__init__",
        "../models",
        "../service",
        "../__init__",
    }


#: modules a helper process runs by their path, without the package (see engine/child.py):
#: child.py itself, and each work it imports as a top-level module (``command("render:...")``)
RUN_BY_PATH = ["child.py", "writers/sqlite/render.py"]
#: what those may import besides the standard library (each imports in about 5 ms)
THIRD_PARTY_BY_PATH = {"zlib_ng", "apsw"}


def outside_the_stdlib(path: Path) -> list[str]:
    """The imports of ``path`` (anywhere in it) a helper started by path could not make in
    milliseconds: relative ones, the package's, and any but the standard library's and
    :data:`THIRD_PARTY_BY_PATH`."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            bad.append("." * node.level + (node.module or ""))
            continue
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for m in modules:
            top = m.split(".")[0]
            if top not in sys.stdlib_module_names and top not in THIRD_PARTY_BY_PATH:
                bad.append(m)
    return bad


def test_the_modules_a_helper_runs_by_path_import_only_the_standard_library():
    bad = {name: outside_the_stdlib(ROOT / name) for name in RUN_BY_PATH}
    assert not any(bad.values()), bad


def test_every_work_run_as_a_top_level_module_is_checked():
    """A ``parallel.command("module:function", ...)`` whose module has no dot runs that module
    by path: it must be in :data:`RUN_BY_PATH`."""
    stems = {Path(n).stem for n in RUN_BY_PATH}
    found = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "command"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                module = node.args[0].value.partition(":")[0]
                if "." not in module:
                    found.add(module)
    assert "render" in found  # the scan sees today's one
    assert found <= stems, found - stems


def test_the_checker_sees_a_non_stdlib_import_in_a_module_run_by_path(tmp_path):
    """The check above is not vacuous: a relative import, the package's, a third-party library,
    even inside a function, are each caught; the standard library and zlib-ng are not."""
    module = tmp_path / "render.py"
    module.write_text(
        "from __future__ import annotations\n"
        "import os.path, sqlite3\n"
        "from zlib_ng import zlib_ng\n"
        "from .base import ident\n"
        "def f():\n"
        "    import flask_backup_manager.engine\n"
        "    from sqlalchemy import types\n"
        "    from .. import model\n"
    )
    assert outside_the_stdlib(module) == [
        ".base",
        "flask_backup_manager.engine",
        "sqlalchemy",
        "..",
    ]
