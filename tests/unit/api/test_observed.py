"""Status enum values another (newer) version wrote: kept as written, printed, written
back unchanged, matching no member in code; spec enums stay strict."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kukeon.api import (
    Cell,
    CellSet,
    CellState,
    ContainerState,
    InvalidResource,
    Node,
    NodeLayerState,
    NodeState,
    Realm,
    parse_resource,
    to_document,
)
from kukeon.api.observed import unknown_member
from kukeon.api.probes import ProbeResult
from kukeon.api.tolerant import parse_tolerating_status
from tests.unit.api.test_cellset import set_doc


def _cell(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c"},
        "spec": {"containers": [{"id": "main", "image": "busybox"}], **spec},
        "status": status,
    }


FUTURE_CELL = _cell(
    {
        "state": "Hibernating",
        "containers": [
            {
                "id": "main",
                "state": "Checkpointing",
                "probes": [{"probe": "shutdown", "result": "Flaky"}],
                "ports": [{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}],
            }
        ],
    }
)


def test_unknown_status_values_are_kept_and_written_back_as_they_were() -> None:
    cell = parse_resource(copy.deepcopy(FUTURE_CELL))
    assert isinstance(cell, Cell)

    assert cell.status.state == "Hibernating"
    assert str(cell.status.state) == "Hibernating"
    assert f"{cell.status.state}" == "Hibernating"
    assert cell.status.state not in list(CellState)
    assert cell.status.state != CellState.UNKNOWN
    container = cell.status.containers[0]
    assert container.state == "Checkpointing"
    assert container.probes[0].probe == "shutdown"
    assert container.probes[0].result == "Flaky"
    # A Literal field's type names the words this version writes; another's reads as a str.
    assert str(container.ports[0].protocol) == "sctp"
    # Written back (a read-modify-write of another node's status): nothing replaced.
    stored = to_document(cell)["status"]
    assert stored["state"] == "Hibernating"
    assert stored["containers"][0]["state"] == "Checkpointing"
    probe = stored["containers"][0]["probes"][0]
    assert (probe["probe"], probe["result"]) == ("shutdown", "Flaky")
    assert stored["containers"][0]["ports"][0]["protocol"] == "sctp"
    again = parse_resource(to_document(cell))
    assert again == cell
    assert cell.model_copy(deep=True) == cell


def test_an_unknown_member_is_of_its_enum_and_none_of_its_members() -> None:
    waiting = unknown_member(ContainerState, "Hibernating")
    assert isinstance(waiting, ContainerState)
    assert waiting.value == "Hibernating"
    assert waiting == "Hibernating"
    assert all(waiting is not member and waiting != member for member in ContainerState)
    assert hash(waiting) == hash("Hibernating")  # usable as a key beside the string


def test_layer_node_and_condition_values_are_tolerated() -> None:
    realm = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r"},
            "status": {
                "state": "Draining",
                "nodes": {"n2": {"state": "Evacuating"}, "n1": {"state": "Ready"}},
            },
        }
    )
    assert isinstance(realm, Realm)
    assert realm.status.state == "Draining"
    assert realm.status.nodes["n2"].state == "Evacuating"
    assert realm.status.nodes["n1"].state is NodeLayerState.READY
    node = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {"state": "Draining", "conditions": [{"type": "Ready", "status": "Maybe"}]},
        }
    )
    assert isinstance(node, Node)
    assert node.status.state == "Draining"
    assert node.status.state != NodeState.READY
    assert str(node.status.conditions[0].status) == "Maybe"
    cellset = parse_resource(
        {
            **set_doc(),
            "status": {"conditions": [{"type": "Paused", "status": "Unknown"}]},
        }
    )
    assert isinstance(cellset, CellSet)
    assert str(cellset.status.conditions[0].type) == "Paused"
    assert to_document(cellset)["status"]["conditions"][0]["status"] == "Unknown"


@pytest.mark.parametrize("value", ["", "two words", "x" * 64, "line\nbreak", 42, None, ["Ready"]])
def test_what_is_not_an_enum_like_word_is_still_invalid(value: Any) -> None:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(_cell({"state": value}))
    assert any(cause.field == "status.state" for cause in caught.value.causes)


def test_known_and_legacy_values_read_as_before() -> None:
    cell = parse_resource(_cell({"state": 1, "containers": [{"id": "main", "state": "Ready"}]}))
    assert isinstance(cell, Cell)
    assert cell.status.state is CellState.READY  # kukeon's Go integer, mapped
    assert cell.status.containers[0].state is ContainerState.RUNNING
    assert cell.status.containers[0].probes == []
    assert ProbeResult("Unknown") is ProbeResult.UNKNOWN


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"desiredState": "Hibernating"}, "spec.desiredState"),
        (
            {"containers": [{"id": "main", "image": "busybox", "restartPolicy": "Sometimes"}]},
            "spec.containers[0].restartPolicy",
        ),
    ],
)
def test_spec_enums_stay_strict(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(_cell({"state": "Ready"}, **spec))
    assert [cause.field for cause in caught.value.causes] == [field]
    with pytest.raises(InvalidResource):  # and stored, such a document is invalid
        parse_tolerating_status(_cell({"state": "Hibernating"}, **spec))
