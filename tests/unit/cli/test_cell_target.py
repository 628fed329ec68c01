"""The commands that act on one cell take it as `NAME`, `cell NAME` or `cell/NAME`, and
refuse another kind with a usage error (exit 2) naming the accepted forms."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from kukeon.api import Kind
from kukeon.cli.main import cli
from kukeon.cli.params import cell_named, kind_name_groups
from kukeon.cli.runner import EXIT_USAGE

CELL_VERBS = ("start", "stop", "restart", "kill", "logs", "attach")


@pytest.mark.parametrize(
    "words",
    [("hello",), ("cell", "hello"), ("cells", "hello"), ("cell/hello",), ("ce/hello",)],
)
def test_the_three_forms_name_the_same_cell(words: tuple[str, ...]) -> None:
    assert cell_named(words) == "hello"


def test_a_cell_named_like_the_kind_is_a_name() -> None:
    assert cell_named(("cell",)) == "cell"


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (("realm", "hello"), "realms are not accepted"),
        (("space/hello",), "spaces are not accepted"),
        (("hello", "extra"), "'hello' is not a kind"),
        (("cell", "a", "b"), "'cell a b'"),
        (("cell/",), "with KIND/NAME every argument is KIND/NAME"),
        (("cell/a", "cell/b"), "'cell/a cell/b'"),
    ],
)
def test_other_shapes_are_usage_errors(
    words: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(click.exceptions.Exit) as exit_info:
        cell_named(words)
    assert exit_info.value.exit_code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_kind_name_groups_reads_both_forms() -> None:
    assert kind_name_groups("cell", ["a", "b"]) == [(Kind.CELL, ["a", "b"])]
    assert kind_name_groups("cell/a", ["cell/b", "realm/r"]) == [
        (Kind.CELL, ["a", "b"]),
        (Kind.REALM, ["r"]),
    ]


@pytest.mark.parametrize("verb", CELL_VERBS)
def test_a_cell_command_refuses_another_kind_before_any_request(verb: str) -> None:
    result = CliRunner().invoke(
        cli, ["--server", "unix:///nonexistent.sock", verb, "realm", "hello"]
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "realms are not accepted: expected NAME, cell NAME or cell/NAME" in result.output


@pytest.mark.parametrize("verb", CELL_VERBS)
@pytest.mark.parametrize("words", [["cell", "hello"], ["cell/hello"], ["hello"]])
def test_a_cell_command_takes_each_form(verb: str, words: list[str]) -> None:
    # Parsed, then the (absent) server is tried: not a usage error.
    result = CliRunner().invoke(cli, ["--server", "unix:///nonexistent.sock", verb, *words])
    assert result.exit_code not in (0, EXIT_USAGE), result.output
    assert "unexpected extra argument" not in result.output


def test_exec_takes_cell_slash_name_and_refuses_another_kind() -> None:
    args = ["--server", "unix:///nonexistent.sock", "exec"]
    result = CliRunner().invoke(cli, [*args, "realm/r", "--", "ls"])
    assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "cell/web", "--", "ls"])
    assert result.exit_code not in (0, EXIT_USAGE), result.output


def test_describe_takes_kind_slash_name() -> None:
    args = ["--server", "unix:///nonexistent.sock", "describe"]
    result = CliRunner().invoke(cli, [*args, "cell"])  # every cell: asks the server
    assert result.exit_code not in (0, EXIT_USAGE), result.output
    result = CliRunner().invoke(cli, [*args, "cell", "web", "-l", "a=b"])
    assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "nothing/x"])
    assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "cell/web"])
    assert result.exit_code not in (0, EXIT_USAGE), result.output


def test_wait_takes_kind_slash_name_and_kind_name() -> None:
    args = ["--server", "unix:///nonexistent.sock", "wait"]
    for words in (["cell/web"], ["cell", "web"], ["cell/web", "realm/r"]):
        result = CliRunner().invoke(cli, [*args, *words, "--for=delete"])
        assert result.exit_code not in (0, EXIT_USAGE), result.output
    for words in (["cell"], ["web"]):
        result = CliRunner().invoke(cli, [*args, *words, "--for=delete"])
        assert result.exit_code == EXIT_USAGE, result.output


def test_wait_selects_with_l_or_all_only_by_kind() -> None:
    args = ["--server", "unix:///nonexistent.sock", "wait", "--for=delete"]
    for words in (["cells", "--all"], ["cell", "-l", "app=web"]):
        result = CliRunner().invoke(cli, [*args, *words])
        assert result.exit_code not in (0, EXIT_USAGE), result.output
    for words in (
        ["cell", "web", "--all"],
        ["cell/web", "-l", "app=web"],
        ["cell", "--all", "-l", "app=web"],
    ):
        result = CliRunner().invoke(cli, [*args, *words])
        assert result.exit_code == EXIT_USAGE, result.output


def test_logs_takes_a_cell_or_a_selector_and_run_labels_need_no_profile() -> None:
    args = ["--server", "unix:///nonexistent.sock"]
    for words in (["logs"], ["logs", "web", "-l", "app=web"]):
        result = CliRunner().invoke(cli, [*args, *words])
        assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "logs", "-l", "app=web"])
    assert result.exit_code not in (0, EXIT_USAGE), result.output
    for label in ("noequals", "=x"):
        result = CliRunner().invoke(cli, [*args, "run", "w", "--image", "i", "-l", label])
        assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "run", "--profile", "p", "-l", "a=b"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--label cannot be given with --profile" in result.output


def test_get_takes_kubectls_kind_lists_and_all() -> None:
    from kukeon.api import Kind
    from kukeon.cli.get import _kind_groups

    assert _kind_groups("cells,realms", []) == [(Kind.CELL, []), (Kind.REALM, [])]
    assert _kind_groups("all", ["web"]) == [(Kind.CELL_SET, ["web"]), (Kind.CELL, ["web"])]
    assert _kind_groups("cells,all", []) == [(Kind.CELL, []), (Kind.CELL_SET, [])]
    assert _kind_groups("cell/web", []) == [(Kind.CELL, ["web"])]
    result = CliRunner().invoke(cli, ["--server", "unix:///x.sock", "get", "cells,nope"])
    assert result.exit_code == EXIT_USAGE, result.output


def test_run_stop_timeout_is_the_cells_termination_grace() -> None:
    from kukeon.cli.run import _cell_by_hand

    cell = _cell_by_hand(
        "w",
        {"id": "w", "image": "busybox"},
        ("r", "s", "st"),
        labels={},
        attachable=False,
        stop_timeout=30,
    )
    assert cell.spec.termination_grace_period_seconds == 30
    args = ["--server", "unix:///x.sock", "run", "w", "--image", "i", "--stop-timeout", "-1"]
    assert CliRunner().invoke(cli, args).exit_code == EXIT_USAGE


def test_logs_exec_and_attach_also_take_a_cellset() -> None:
    from kukeon.api import Kind
    from kukeon.cli.params import cell_or_set_named

    assert cell_or_set_named(["web"]) == (Kind.CELL, "web")
    assert cell_or_set_named(["cell/web"]) == (Kind.CELL, "web")
    assert cell_or_set_named(["cellset/web"]) == (Kind.CELL_SET, "web")
    assert cell_or_set_named(["cellsets", "web"]) == (Kind.CELL_SET, "web")
    args = ["--server", "unix:///nonexistent.sock"]
    for words in (["exec", "realm/x", "--", "true"], ["logs", "stack/x"], ["attach", "a", "b"]):
        result = CliRunner().invoke(cli, [*args, *words])
        assert result.exit_code == EXIT_USAGE, result.output
    result = CliRunner().invoke(cli, [*args, "stop", "cellset/web"])
    assert result.exit_code == EXIT_USAGE, result.output  # a set's cells are not stopped one by one


def test_label_patch_edit_and_delete_take_kubectls_kind_slash_name() -> None:
    from kukeon.api import Kind
    from kukeon.cli.delete import _named_targets
    from kukeon.cli.params import KIND_OR_OBJECT, one_object, with_names

    assert KIND_OR_OBJECT.convert("cell/web", None, None) == (Kind.CELL, "web")
    assert KIND_OR_OBJECT.convert("cells", None, None) == (Kind.CELL, None)
    assert with_names((Kind.CELL, "a"), ["cell/b"]) == (Kind.CELL, ["a", "b"])
    assert with_names((Kind.CELL, None), ["a", "b"]) == (Kind.CELL, ["a", "b"])
    assert one_object((Kind.CELL, None), "web") == (Kind.CELL, "web")
    scope = ("r", "s", "st")
    targets, _ = _named_targets((Kind.CELL, "a"), ["cellset/b"], [], 0, scope)
    assert targets == [(Kind.CELL, ("r", "s", "st", "a")), (Kind.CELL_SET, ("r", "s", "st", "b"))]
    args = ["--server", "unix:///nonexistent.sock"]
    for words in (
        ["label", "cell/a", "b", "k=v"],  # after KIND/NAME, KIND/NAME again
        ["patch", "cell/a", "b", "-p", "{}"],  # one object
        ["edit", "cell"],  # no name
        ["delete", "cell/a", "b"],
        ["delete", "cell/", "x"],
    ):
        result = CliRunner().invoke(cli, [*args, *words])
        assert result.exit_code == EXIT_USAGE, (words, result.output)
