"""Documents of another version: unknown status fields left out, nothing else forgiven;
the restart loop's step is left out of a stored status at 0 (an older kukeond reads it)."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Cell, InvalidResource, to_document
from kukeon.api.container import ContainerStatus
from kukeon.api.tolerant import parse_tolerating_status, without_fields


def _cell(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c"},
        "spec": {"containers": [{"id": "main", "image": "busybox"}]},
        "status": {"state": "Ready", **status},
    }


def test_unknown_status_fields_are_left_out() -> None:
    document = _cell(future={"a": 1}, containers=[{"id": "main", "futureStep": 2}])
    cell = parse_tolerating_status(document)
    assert isinstance(cell, Cell)
    assert cell.status.containers[0].id == "main"
    assert "future" in document["status"]  # the caller's document is not changed


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["spec"].update(future=1),
        lambda d: d["metadata"].update(future=1),
        # not only unknowns (an unknown state *word* is kept: tests/unit/api/test_observed.py)
        lambda d: d["status"].update(state="no such state", future=1),
    ],
)
def test_anything_else_is_still_invalid(change: Any) -> None:
    document = _cell()
    change(document)
    with pytest.raises(InvalidResource):
        parse_tolerating_status(document)


def test_without_fields_follows_paths_and_ignores_what_is_not_there() -> None:
    document = {"a": {"b": [{"c": 1, "d": 2}]}, "e": 3}
    assert without_fields(document, ["a.b[0].c", "a.x.y", "a.b[5].c", "e.f"]) == {
        "a": {"b": [{"d": 2}]},
        "e": 3,
    }


def test_the_loop_step_is_stored_only_once_there_is_one() -> None:
    cell = parse_tolerating_status(_cell(containers=[{"id": "main", "backoffRestarts": 0}]))
    assert "backoffRestarts" not in to_document(cell)["status"]["containers"][0]
    looping = ContainerStatus.model_validate({"id": "main", "backoffRestarts": 3})
    assert looping.model_dump(by_alias=True, exclude_none=True)["backoffRestarts"] == 3
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ContainerStatus.model_validate({"id": "main", "backoffRestarts": -1})
