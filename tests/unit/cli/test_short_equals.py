"""kubectl's (pflag's) ``-o=json``: a short option's value after ``=``, as kubectl's own
documentation writes ``-o=jsonpath=...``, ``-o=custom-columns=...``, ``-l=app=web``.
click read ``=json`` as the value: "unknown output format '=name'", a selector
"'=app=web' is not a requirement", "no container '=main'"."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from kukeon.cli.lazygroup import split_short_equals
from kukeon.cli.main import cli

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


@click.command()
@click.option("-o", "--output")
@click.option("-p", "--patch")
@click.option("-w", "--watch", is_flag=True)
@click.argument("words", nargs=-1)
def _command(output: str | None, patch: str | None, watch: bool, words: tuple[str, ...]) -> None:
    """A command with a short option that takes a value, one that takes none."""


@pytest.mark.parametrize(
    ("args", "split"),
    [
        (["-o=json"], ["-o", "json"]),
        (["-o=jsonpath={.a}={.b}"], ["-o", "jsonpath={.a}={.b}"]),
        (["-o="], ["-o", ""]),
        (["x", "-o=name", "y"], ["x", "-o", "name", "y"]),
        # another option's value, a flag, a long option and what follows -- stay as given
        (["-p", "-o=x"], ["-p", "-o=x"]),
        (["--patch", "-o=x", "-o=y"], ["--patch", "-o=x", "-o", "y"]),
        (["-w=true"], ["-w=true"]),
        (["--output=json"], ["--output=json"]),
        (["--", "-o=x"], ["--", "-o=x"]),
        (["-oname"], ["-oname"]),
    ],
)
def test_a_short_options_value_after_equals_is_its_value(args: list[str], split: list[str]) -> None:
    assert split_short_equals(_command, args) == split


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["get", "cells", "-o=bogus"], "unknown output format 'bogus'"),
        (["get", "cells", "-o=jsonpath={.a"], "unclosed expression '{.a'"),
        (["rollout", "status", "cellset/web", "--timeout=1s", "-o=x"], "No such option '-o'"),
    ],
)
def test_the_commands_read_it(args: list[str], said: str) -> None:
    # refused before anything is sent: the value is the text after '=', not '=bogus'
    result = CliRunner().invoke(cli, [*NO_SERVER, *args])
    assert result.exit_code == 2
    assert said in result.output


def test_a_root_option_and_an_exec_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["-s=unix:///nonexistent/x.sock", "get", "cells"])
    assert result.exit_code == 1  # the server named after '=' was tried (unreachable)
    assert "/nonexistent/x.sock" in result.output
    group = cli.get_command(click.Context(cli), "exec")
    assert group is not None
    args = ["c1", "-c=main", "--", "grep", "-e=x"]
    assert split_short_equals(group, args) == ["c1", "-c", "main", "--", "grep", "-e=x"]
