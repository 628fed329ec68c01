"""`get -o json` of a listing is a List however many objects it holds, as kubectl's: a
script reading `.items` works with none, one or many; `get KIND NAME` is the object. And
`get -w -o jsonpath=` prints each object on one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from tests.unit.cli.listserver import answering, list_server


def cell_document(name: str) -> dict[str, Any]:
    """A cell of the default stack as the API answers it."""
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "resourceVersion": "3", "uid": f"u-{name}"},
        "spec": {
            "realmId": "default",
            "spaceId": "default",
            "stackId": "default",
            "containers": [{"id": "main", "image": "busybox"}],
        },
    }


@pytest.fixture
def socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{tmp_path / 'k.sock'}")
    return tmp_path / "k.sock"


def _json(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("names", [[], ["api"], ["api", "web"]])
def test_a_listing_is_a_list_however_many_it_holds(socket: Path, names: list[str]) -> None:
    with list_server(socket, [cell_document(name) for name in names]):
        listed = _json("get", "cells", "-o", "json")
    assert listed["kind"] == "List"
    assert [item["metadata"]["name"] for item in listed["items"]] == names


def test_a_named_object_is_the_object(socket: Path) -> None:
    with answering(socket, json.dumps(cell_document("api")).encode(), methods=("GET",)):
        shown = _json("get", "cell", "api", "-o", "json")
    assert shown["kind"] == "Cell"
    assert shown["metadata"]["name"] == "api"


@pytest.mark.parametrize(
    ("template", "printed"),
    [('{.metadata.name}{"\\n"}', "api\nweb\n"), ("{.metadata.name}", "api\nweb\n")],
)
def test_a_watched_jsonpath_is_one_line_per_object(
    socket: Path, template: str, printed: str
) -> None:
    """`get -w -o jsonpath=` with the usual {"\\n"} printed a blank line after each object."""
    with list_server(socket, [cell_document("api"), cell_document("web")]):
        args = ["get", "cells", "-w", "-o", f"jsonpath={template}", "--watch-timeout", "1s"]
        result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.stdout) == (0, printed)
