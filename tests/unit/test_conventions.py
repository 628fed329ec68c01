"""Conventions of the code that a reader relies on, checked over every module of kukeon."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kukeon"


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    """Every module parsed once for the tests of this file (they only read the trees)."""
    return [
        (str(path.relative_to(PACKAGE)), ast.parse(path.read_text()))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "_gen" not in path.relative_to(PACKAGE).parts
    ]


def _is_get_logger(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "getLogger"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "logging"
    )


def test_module_loggers_are_named_after_their_module() -> None:
    """``log = logging.getLogger(__name__)``: a record's logger says which module wrote it,
    and a handler or level set on a package (``kukeon.framework``) covers its modules."""
    wrong = []
    for name, tree in _modules():
        for node in tree.body:
            if not isinstance(node, ast.Assign) or not _is_get_logger(node.value):
                continue
            if not any(isinstance(t, ast.Name) and t.id in ("log", "logger") for t in node.targets):
                continue
            assert isinstance(node.value, ast.Call)
            args = node.value.args
            if not (len(args) == 1 and isinstance(args[0], ast.Name) and args[0].id == "__name__"):
                wrong.append(f"{name}:{node.lineno}")
    assert wrong == []


def test_no_asyncio_wait_for() -> None:
    """``async with asyncio.timeout(...)`` instead: on Python 3.11 ``asyncio.wait_for`` loses
    a cancellation that arrives as the awaited thing finishes (see framework/waits.py)."""
    found = [
        f"{name}:{node.lineno}"
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "wait_for"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    ]
    found += [
        f"{name}:{node.lineno}"
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module == "asyncio"
        and any(alias.name == "wait_for" for alias in node.names)
    ]
    assert found == []


def test_kukectl_does_not_import_the_server() -> None:
    """kukectl runs on every command: the server, the store (aetcd, gRPC) and the metrics
    are not its to load; nor are rich (a wait's spinner) and aiohttp (streams, watches and
    WebSockets: a plain request has its own connection), which load when used."""
    code = (
        "import sys, kukeon.cli.main; "
        "print(sorted(m for m in ('aetcd', 'grpc', 'prometheus_client', 'kukeon.store', "
        "'kukeon.apiserver.app', 'kukeon.daemon', 'rich', 'aiohttp') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80


def test_modules_stay_readable_in_one_sitting() -> None:
    """A module over 700 lines holds more than one concept: split it (aiohttp's habit of
    one concept per module). Complexity (mccabe ≤ 15) is ruff's C901, in pyproject.toml."""
    long = [
        f"{path.relative_to(PACKAGE)}: {lines} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "_gen" not in path.relative_to(PACKAGE).parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_functions_fit_on_a_screen() -> None:
    """No function over 80 lines, from ``def`` to its last line, docstring included."""
    long = [
        f"{name}:{node.lineno} {node.name}: {lines} lines"
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and (lines := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert long == []
