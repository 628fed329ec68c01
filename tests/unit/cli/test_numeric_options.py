"""Every numeric option of kukectl refuses what is no number in its range (``nan``,
``inf``, ``1e400``, ``0x10``, a negative) as a usage error naming the option, exit 2."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.params import DurationType

from .test_docs_cover_cli import _commands

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]
_NUMERIC = (click.types.FloatParamType, click.types.IntParamType, DurationType)
_NOT_NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "1e400", "0x10"]


def _numeric_params() -> list[tuple[str, click.Parameter]]:
    found = []
    for path, command in [((), cli), *_commands(cli)]:
        for param in command.params:
            if isinstance(param.type, _NUMERIC):
                found.append((" ".join(("kukectl", *path, param.name or "")), param))
    return found


def test_every_numeric_option_refuses_what_is_no_finite_number() -> None:
    params = _numeric_params()
    assert any("run cpus" in name for name, _ in params)  # the walk reaches them
    accepted = []
    for name, param in params:
        for text in _NOT_NUMBERS:
            try:
                value = param.type.convert(text, param, None)
            except click.BadParameter:
                continue
            accepted.append(f"{name} {text!r}: {value!r}")
    assert not accepted, "\n".join(accepted)


@pytest.mark.parametrize("cpus", ["nan", "inf", "-1", "1e400", "0x10", "0"])
def test_run_cpus_out_of_range_is_a_usage_error_naming_it(cpus: str) -> None:
    result = CliRunner().invoke(
        cli, [*NO_SERVER, "run", "web", "--image", "img", "--dry-run=client", "--cpus", cpus]
    )
    assert result.exit_code == 2, result.output
    assert "--cpus" in result.output
    assert "unexpected failure" not in result.output


def test_run_cpus_in_range_is_millicores() -> None:
    result = CliRunner().invoke(
        cli,
        [*NO_SERVER, "run", "web", "--image", "img", "--dry-run=client", "-o", "json",
         "--cpus", "0.25"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"cpuLimitMillicores": 250' in result.output


def test_a_numeric_option_given_a_word_says_it_wants_a_number() -> None:
    """click's ranges said "'abc' is not a valid integer range" (or "float range"), as if
    a range were asked for: every bounded option says "integer" or "float", as an
    unbounded one does, and its help shows INTEGER or FLOAT."""
    said = []
    for name, param in _numeric_params():
        try:
            param.type.convert("abc", param, None)
        except click.BadParameter as refused:
            said.append((name, refused.message))
    assert any("scale replicas" in name for name, _ in said)  # a range is among them
    wrong = [(n, m) for n, m in said if " range" in m]
    assert not wrong, wrong
    assert not [(n, p.type.name) for n, p in _numeric_params() if p.type.name.endswith(" range")]
    result = CliRunner().invoke(cli, ["scale", "cellset/web", "--replicas", "abc"])
    assert result.exit_code == 2
    assert "'abc' is not a valid integer." in result.output
