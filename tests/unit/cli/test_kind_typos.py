"""A kind kukectl does not know is said in kubectl's words, with the kind meant: it was
"Invalid value: unknown kind 'cel'; expected one of ..." (click's prefix, no hint), where
kubectl says `the server doesn't have a resource type "cel"`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.params import unknown_kind

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("cel", "cells"), ("cellz", "cells"), ("sapces", "spaces"), ("CellSte", "cellsets")],
)
def test_a_typo_names_the_kind_meant(typed: str, meant: str) -> None:
    said = unknown_kind(typed)
    assert said.startswith(f'the server doesn\'t have a resource type "{typed}": ')
    assert f"(did you mean {meant}?)" in said


def test_nothing_close_is_no_guess_and_kubectls_kinds_name_ours() -> None:
    assert "did you mean" not in unknown_kind("foo")
    assert "(for kubectl's 'pods': cells)" in unknown_kind("pods")
    assert "did you mean" not in unknown_kind("pods")


@pytest.mark.parametrize(
    "args",
    [["get", "cel"], ["get", "cel/x"], ["describe", "cel", "x"], ["wait", "cel/x", "--for=delete"]],
)
def test_the_commands_say_it_without_clicks_prefix(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*NO_SERVER, *args])
    assert result.exit_code == 2  # nothing sent
    assert result.output.startswith(
        "error: the server doesn't have a resource type \"cel\": unknown kind 'cel' "
        "(did you mean cells?)"
    )
