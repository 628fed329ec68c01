"""kukectl's commands are registered in one place: the command modules never import
``kukeon.cli.main`` (no import cycle), and every command they define is on ``kukectl``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import click

import kukeon.cli
from kukeon.cli.main import cli

PACKAGE = "kukeon.cli"
REGISTRY = f"{PACKAGE}.main"
# The console script runs it; completion describes the whole tree (lazily, on a cache miss).
MAY_IMPORT_REGISTRY = {f"{PACKAGE}.entry", f"{PACKAGE}.completion", REGISTRY}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for info in pkgutil.iter_modules(kukeon.cli.__path__):
        path = Path(kukeon.cli.__path__[0]) / f"{info.name}.py"
        yield f"{PACKAGE}.{info.name}", ast.parse(path.read_text(), str(path))


def _imported(module: str, tree: ast.Module) -> set[str]:
    """Every module ``module`` imports, at any depth of its code, resolved to a full name
    (``from . import main`` and ``from kukeon.cli import main`` name ``kukeon.cli.main``)."""
    names: set[str] = set()
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_resolver_sees_every_spelling() -> None:
    spellings = [
        "from .main import cli",
        "from . import main",
        "from kukeon.cli.main import cli",
        "from kukeon.cli import main",
        "import kukeon.cli.main",
        "def f():\n    from .main import cli\n",
    ]
    for code in spellings:
        assert REGISTRY in _imported(f"{PACKAGE}.nodes", ast.parse(code)), code


def test_command_modules_do_not_import_the_registry() -> None:
    found = sorted(
        module
        for module, tree in _modules()
        if module not in MAY_IMPORT_REGISTRY and REGISTRY in _imported(module, tree)
    )
    assert found == []


def _reachable(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _reachable(sub)


def test_every_command_defined_is_registered() -> None:
    registered = {id(command) for command in _reachable(cli)}
    unregistered = [
        f"{module}.{name}"
        for module, _ in _modules()
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, click.Command) and id(value) not in registered
    ]
    assert unregistered == []
