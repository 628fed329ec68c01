"""`--sort-by` and `-o custom-columns` read paths as kubectl's RelaxedJSONPathExpression does
(`metadata.name` as `.metadata.name`, braces or not), and a `--sort-by` path that no object
has is an error naming it, as kubectl's, not a table in the server's order."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.jsonpath import parse_columns, sort_key
from kukeon.cli.main import cli
from tests.unit.cli.listserver import list_server
from tests.unit.cli.test_get_json_list import cell_document, socket

__all__ = ["socket"]  # the fixture, shared


@pytest.mark.parametrize(
    "path", ["metadata.name", ".metadata.name", "{metadata.name}", "{.metadata.name}"]
)
def test_a_path_with_or_without_its_leading_dot(path: str) -> None:
    assert parse_columns(f"NAME:{path}") == [("NAME", ".metadata.name")]
    documents = [{"metadata": {"name": "web"}}, {"metadata": {"name": "api"}}]
    assert [d["metadata"]["name"] for d in sorted(documents, key=sort_key(path))] == [
        "api",
        "web",
    ]


def _get(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["get", "cells", *args])
    return result.exit_code, result.stdout, result.stderr


def test_sort_by_and_custom_columns_without_the_leading_dot(socket: Path) -> None:
    with list_server(socket, [cell_document("web"), cell_document("api")]):
        code, out, err = _get("--sort-by", "metadata.name", "-o", "custom-columns=N:metadata.name")
    assert (code, out, err) == (0, "N\napi\nweb\n", "")


def test_a_sort_by_path_no_object_has_is_an_error(socket: Path) -> None:
    with list_server(socket, [cell_document("web"), cell_document("api")]):
        code, out, err = _get("--sort-by", ".status.restartCount")
    assert code == 1
    assert out == ""
    assert err == (
        "error: --sort-by: couldn't find any field with path '.status.restartCount' "
        "in the list of objects\n"
    )


def test_a_sort_by_path_some_objects_lack_sorts_them_last(socket: Path) -> None:
    labelled = cell_document("web")
    labelled["metadata"]["labels"] = {"tier": "a"}
    with list_server(socket, [cell_document("api"), labelled]):
        code, out, _ = _get("--sort-by", "metadata.labels.tier", "-o", "name")
    assert (code, out) == (0, "cell/web\ncell/api\n")
