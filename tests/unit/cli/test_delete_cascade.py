"""`kukectl delete --cascade[=background|foreground|orphan]`, as kubectl takes it."""

from __future__ import annotations

from click.testing import CliRunner

from kukeon.cli.main import cli


def delete(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["delete", *args, "--dry-run=client"])
    return result.exit_code, result.output


def test_the_cascade_values() -> None:
    for value in ("--cascade", "--cascade=background", "--cascade=foreground"):
        assert delete("realm", "demo", value, "--wait") == (
            0,
            "realm/demo deleted (client dry run)\n",
        )
    assert delete("cellset", "web", "--cascade=orphan")[0] == 0
    code, output = delete("realm", "demo", "--cascade=orphan")
    assert code == 2
    assert "only a cell set's cells can outlive it" in output
    assert delete("realm", "demo", "--cascade=sometimes")[0] == 2
