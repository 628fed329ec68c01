"""`kukectl patch -p` that is not a patch says what is wrong with it, where (exit 2,
nothing sent): a key given twice was "neither JSON nor YAML: while constructing a
mapping", the YAML error's context line, not its problem."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.runner import EXIT_USAGE


@pytest.mark.parametrize(
    ("patch", "said"),
    [
        ('{"spec": {"desiredState": "Stopped", "desiredState": "Running"}}', "duplicate key"),
        ("spec: [1", "expected ',' or ']'"),
        ("spec: a: b", "mapping values are not allowed"),
    ],
)
def test_a_patch_that_does_not_read_says_why(patch: str, said: str) -> None:
    result = CliRunner().invoke(
        cli, ["--server", "unix:///nonexistent.sock", "patch", "cell", "web", "-p", patch]
    )
    assert result.exit_code == EXIT_USAGE
    assert "the patch is neither JSON nor YAML: " in result.output
    assert said in result.output
    assert "(line " in result.output
    assert "while constructing" not in result.output
