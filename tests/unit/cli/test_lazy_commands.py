"""kukectl imports a command's module only when that command is asked for (issue 18: a
whole `kukectl get` in 0.25 s): to run, to complete, or to be listed by ``--help``.

Each import check runs in a fresh interpreter: the test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from kukeon.cli.main import COMMANDS, SUBCOMMANDS, cli, main
from tests.fixtures.interpreter import printed_after

from .listserver import list_server

COMMAND_MODULES = sorted({f"kukeon.cli.{home.partition(':')[0]}" for home in COMMANDS.values()})


def _command_modules_after(code: str) -> list[str]:
    return list(
        printed_after(
            f"{code}\nprint(json.dumps(sorted(m for m in {COMMAND_MODULES!r} if m in sys.modules)))"
        )
    )


def test_listing_the_commands_imports_none() -> None:
    code = (
        "import click\nfrom kukeon.cli.main import cli\n"
        "assert 'get' in cli.list_commands(click.Context(cli))"
    )
    assert _command_modules_after(code) == []


def test_running_a_command_imports_its_module_only() -> None:
    code = (
        "from kukeon.cli.main import main\n"
        "try:\n    main(['version', '--client'])\nexcept SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code"
    )
    assert _command_modules_after(code) == ["kukeon.cli.version"]


def test_every_registration_names_its_command() -> None:
    """The name a command is registered under is its own (``kukectl describe`` is
    ``get.describe_command``, named ``describe``), so help and errors read the same."""
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert command.name == name
    for (group, name), _ in SUBCOMMANDS.items():
        parent = cli.get_command(ctx, group)
        assert isinstance(parent, click.Group)
        assert parent.get_command(ctx, name) is not None, (group, name)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:", 1)[1]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ")]
    assert names == sorted(COMMANDS)


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["gte", "cells"])
    assert result.exit_code == 2
    assert "No such command 'gte'. Did you mean 'get'?" in result.output


def test_a_get_table_defines_no_model(tmp_path: Path) -> None:
    """`get cells -A` prints its table from the server's JSON: neither the models
    (``kukeon.api``'s, pydantic) nor a config file's reader (yaml) load, nor the other
    commands."""
    socket = tmp_path / "api.sock"
    with list_server(socket, [ONE_CELL]):
        code = (
            "from kukeon.cli.main import main\n"
            f"try:\n    main(['--server', 'unix://{socket}', 'get', 'cells', '-A'])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "heavy = ('pydantic', 'yaml', 'kukeon.api.cell', 'kukeon.cli.output')\n"
            "print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)"
        )
        done = subprocess.run(
            [sys.executable, "-c", f"import json, sys\n{code}"],
            capture_output=True,
            text=True,
            env={"KUKEON_CONFIG": str(tmp_path / "absent.yaml"), "PATH": "/usr/bin"},
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.splitlines()[-1]) == []
    assert done.stdout.split() == [
        *("REALM", "SPACE", "STACK", "NAME", "STATE", "READY", "RESTARTS", "AGE"),
        *("r", "s", "t", "web", "Ready", "1/1", "2", "<none>"),
    ]


ONE_CELL: dict[str, Any] = {
    "apiVersion": "kukeon.io/v1beta1",
    "kind": "Cell",
    "metadata": {"name": "web"},
    "spec": {
        "realmId": "r",
        "spaceId": "s",
        "stackId": "t",
        "containers": [{"id": "main", "image": "busybox"}],
    },
    "status": {
        "state": "Ready",
        "containers": [{"id": "main", "ready": True, "restartCount": 2}],
    },
}


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["logs", "web", "--tail"], "(see 'kukectl logs --help')"),
        (["get", "cells", "-o"], "(see 'kukectl get --help')"),
        (["--context"], "(see 'kukectl --help')"),  # the root's own option
    ],
)
def test_an_option_missing_its_value_points_at_its_commands_help(
    capsys: pytest.CaptureFixture[str], args: list[str], hint: str
) -> None:
    """It said "see 'kukectl --help'" for a subcommand's option: click's parser raises that
    error without the subcommand's context."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "requires an argument" in err
    assert err.rstrip().endswith(hint)
