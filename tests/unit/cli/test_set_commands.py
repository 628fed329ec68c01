"""kubectl's `set image` and `set env` on a cell's or a set's containers (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import pytest
from click.testing import CliRunner

from kukeon.api import Cell, CellSet, parse_resource
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION
from kukeon.cli.main import cli
from kukeon.cli.setcommands import _changed, changed_env

NO_SERVER = ["--server", "unix:///nonexistent/kukeond.sock"]
CONTAINERS = [{"id": "main", "image": "a:1", "env": ["A=1"]}, {"id": "side", "image": "b:1"}]


def _cell() -> Cell:
    cell = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell", "metadata": {"name": "c"},
         "spec": {"containers": CONTAINERS}}
    )  # fmt: skip
    assert isinstance(cell, Cell)
    return cell


def _set(**spec: Any) -> CellSet:
    found = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "CellSet", "metadata": {"name": "web"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
                  "template": {"metadata": {"labels": {"app": "w"}},
                               "spec": {"containers": CONTAINERS}}, **spec}}
    )  # fmt: skip
    assert isinstance(found, CellSet)
    return found


def _image(container: dict[str, Any]) -> bool:
    if container["id"] != "main":
        return False
    container["image"] = "a:2"
    return True


def test_env_keeps_its_order_and_only_what_changes() -> None:
    before = ["A=1", "B=2", "C=3"]
    assert changed_env(before, {"B": "9", "D": "4"}, {"C"}) == ["A=1", "B=9", "D=4"]
    assert changed_env(before, {"A": "1"}, set()) == before
    assert changed_env(["A=1", "A=2"], {"A": "3"}, set()) == ["A=3"]


def test_a_cells_containers_change_and_nothing_else() -> None:
    changed = _changed(_cell(), ["main"], _image, "set image main=a:2")
    assert isinstance(changed, Cell)
    assert [c.image for c in changed.spec.containers] == ["a:2", "b:1"]
    assert changed.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION) is None
    assert _changed(_cell(), [], lambda container: False, "") is None


def test_a_sets_template_changes_with_its_cause() -> None:
    changed = _changed(_set(), ["main"], _image, "set image main=a:2")
    assert isinstance(changed, CellSet)
    assert changed.spec.template.spec is not None
    assert changed.spec.template.spec.containers[0].image == "a:2"
    assert changed.metadata.annotations[CHANGE_CAUSE_ANNOTATION] == "set image main=a:2"


def test_refusals_are_usage_errors() -> None:
    with pytest.raises(click.exceptions.Exit) as raised:
        _changed(_cell(), ["nope"], _image, "")
    assert raised.value.exit_code == 2
    with pytest.raises(click.exceptions.Exit):
        _changed(_set(profile="worker"), [], _image, "")  # its template is the profile's

    def empty(container: dict[str, Any]) -> bool:
        container["image"] = ""
        return True

    with pytest.raises(click.exceptions.Exit):
        _changed(_cell(), [], empty, "")


@pytest.mark.parametrize(
    "args",
    [
        ["image", "cell/c", "main"],
        ["image", "cell/c", "main="],
        ["image", "realm/r", "main=x"],
        ["image", "cell/c", "main=x", "--dry-run=client"],
        ["env", "cell/c", "=x"],
        ["env", "cell/c", "-"],
        ["image", "cell/c", " =x"],
    ],
)
def test_malformed_arguments_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*NO_SERVER, "set", *args])
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["set", "env", "cell/c", "A=1", "-c", ""], "'-c' / '--containers'"),
        (["set", "env", "cell/c", "A=1", "--containers", " "], "'-c' / '--containers'"),
        (["set", "env", "cell/c", "A=1", "-c", ","], "'-c' / '--containers'"),
        (["set", "env", "cell/c", "A=1", "-c", "main,,side"], "'-c' / '--containers'"),
        (["logs", "c", "-c", ""], "'--container' / '-c'"),
        (["exec", "c", "-c", "", "--", "true"], "'--container' / '-c'"),
        (["attach", "c", "-c", ""], "'--container' / '-c'"),
        (["cp", "c:/a", "b", "-c", ""], "'--container' / '-c'"),
        (["kill", "c", "-c", ""], "'--container' / '-c'"),
        (["get", "cells", "--realm", ""], "'--realm'"),
        (["image", "ls", "--node", ""], "'--node'"),
    ],
)
def test_an_empty_name_is_a_usage_error_naming_its_option(args: list[str], option: str) -> None:
    """``set env -c ''`` chose no container and said "unchanged", exit 0; ``kill -c ''``
    signalled every container, ``logs``/``exec``/``cp -c ''`` took the root container,
    ``--node ''`` the server's node and ``--realm ''`` asked for ``realms//cells``. An
    empty name is now refused before anything is sent (no server here)."""
    result = CliRunner().invoke(cli, [*NO_SERVER, *args])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output
    assert "empty" in result.output


class _Stored:
    """A server holding one object: what `set env --list` reads; a write is a failure."""

    def __init__(self, found: Cell | CellSet) -> None:
        self.found = found

    async def get(self, kind: Any, key: tuple[str, ...]) -> Cell | CellSet:
        return self.found

    async def update(self, *_: Any, **__: Any) -> None:
        raise AssertionError("--list writes nothing")


def _listed(monkeypatch: pytest.MonkeyPatch, found: Cell | CellSet, *args: str) -> tuple[int, str]:
    server = _Stored(found)
    monkeypatch.setattr("kukeon.cli.setcommands.run", lambda ctx, work: asyncio.run(work(server)))
    result = CliRunner().invoke(cli, [*NO_SERVER, "set", "env", *args, "--list"])
    return result.exit_code, result.output


def test_list_prints_each_containers_env_as_kubectl_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _listed(monkeypatch, _cell(), "cell/c") == (
        0,
        "# Cell c, container main\nA=1\n# Cell c, container side\n",
    )
    assert _listed(monkeypatch, _set(), "cellset/web", "-c", "main", "B=2", "A-") == (
        0,
        "# CellSet web, container main\nB=2\n",
    )
    code, output = _listed(monkeypatch, _cell(), "cell/c", "-c", "nope")
    assert code == 2
    assert "no container nope" in output


def test_env_without_changes_or_list_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, [*NO_SERVER, "set", "env", "cell/c"])
    assert result.exit_code == 2
    assert "give KEY=VALUE... or KEY-... (or --list)" in result.output
