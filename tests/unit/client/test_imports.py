"""``kukeon.client`` stands apart from the server: what a client (kukectl first) loads.

Each check runs in a fresh interpreter: the test process has imported everything already.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kukeon.client

SERVER_SIDE = ("aetcd", "grpc", "prometheus_client", "aiohttp", "kukeon.apiserver")


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({SERVER_SIDE!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.strip().strip("[]").split(", ") if line]


def test_the_client_modules_load_nothing_of_the_server() -> None:
    modules = sorted(p.stem for p in Path(kukeon.client.__path__[0]).glob("*.py"))
    imports = "\n".join(f"import kukeon.client.{m}" for m in modules if m != "__init__")
    assert _loaded_after(imports) == []


def test_kukectls_entry_loads_nothing_of_the_server() -> None:
    """The console script, with the command tree of ``kukectl --help``."""
    code = (
        "import kukeon.cli.entry, kukeon.cli.main\n"
        "import click\n"
        "kukeon.cli.main.cli.list_commands(click.Context(kukeon.cli.main.cli))"
    )
    assert _loaded_after(code) == []


def test_no_kukectl_command_loads_the_server() -> None:
    """Every command's module, as ``kukectl --help`` loads them all: the server's
    dependencies are not kukectl's, and aiohttp loads only when a stream or watch runs."""
    code = (
        "import click\nfrom kukeon.cli.main import cli\n"
        "ctx = click.Context(cli)\n"
        "loaded = [cli.get_command(ctx, name) for name in cli.list_commands(ctx)]"
    )
    assert _loaded_after(code) == []


def test_no_client_module_imports_the_server_package() -> None:
    """The direction is ``kukeon.apiserver -> kukeon.client``, never the reverse."""
    found = []
    for path in sorted(Path(kukeon.client.__path__[0]).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.startswith("kukeon.apiserver")]
    assert found == []
