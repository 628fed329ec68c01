"""A cell pinned to a node (`nodeName`) must be one its `nodeSelector` would choose."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kukeon.api import AnyResource, CellSet, Kind, parse_resource
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.target import Target
from kukeon.apiserver.writerules import check_node_selector
from kukeon.store import NotFound
from tests.unit.api.samples import cell_doc, container

CELL = Target(Kind.CELL, ("default", "default", "default"), "web", None)
SET = Target(Kind.CELL_SET, ("default", "default", "default"), "web", None)


class Nodes:
    """A registry holding node n1, labelled disk=ssd."""

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        assert kind == Kind.NODE
        if key != ("n1",):
            raise NotFound(f"node {key} not found")
        node = {"kind": "Node", "metadata": {"name": "n1", "labels": {"disk": "ssd"}}}
        return parse_resource({"apiVersion": "kukeon.io/v1beta1", **node})


REGISTRY = cast(RegistryApi, Nodes())


async def refusals(target: Target, res: AnyResource, current: AnyResource | None) -> list[str]:
    try:
        await check_node_selector(REGISTRY, target, res, current)
    except ApiError as error:
        return [f"{error.code} {cause.field}" for cause in error.causes]
    return []


def cell(**spec: Any) -> AnyResource:
    return parse_resource(cell_doc(**spec))


async def test_a_pinned_cell_whose_node_does_not_match_is_refused() -> None:
    """nodeName n1 with nodeSelector disk=hdd ran on n1: the scheduler, the selector's only
    reader, never looks at a cell that has a node (found on a private kukeond)."""
    assert await refusals(CELL, cell(nodeName="n1", nodeSelector={"disk": "hdd"}), None) == [
        "422 spec.nodeSelector"
    ]
    assert await refusals(CELL, cell(nodeName="n1", nodeSelector={"disk": "ssd"}), None) == []
    assert await refusals(CELL, cell(nodeSelector={"disk": "hdd"}), None) == []  # scheduled
    assert await refusals(CELL, cell(nodeName="n9", nodeSelector={"disk": "hdd"}), None) == []


async def test_a_selector_changed_on_a_placed_cell_is_judged() -> None:
    placed = cell(nodeName="n1")
    changed = cell(nodeName="n1", nodeSelector={"zone": "b"})
    assert await refusals(CELL, changed, placed) == ["422 spec.nodeSelector"]
    # stored so (the node's labels changed since): the cell stays writable
    assert await refusals(CELL, changed, changed) == []


async def test_a_set_pinning_its_cells_is_judged_with_its_own_selector() -> None:
    template = {"nodeName": "n1", "containers": [container()]}
    res = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web"},
            "spec": {
                "nodeSelector": {"disk": "hdd"},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template},
            },
        }
    )
    assert isinstance(res, CellSet)
    assert await refusals(SET, res, None) == ["422 spec.template.spec.nodeSelector"]


@pytest.mark.parametrize("selector", [{}, {"disk": "ssd"}])
async def test_what_the_node_matches_passes(selector: dict[str, str]) -> None:
    assert await refusals(CELL, cell(nodeName="n1", nodeSelector=selector), None) == []


async def test_a_selector_added_to_a_scheduled_cell_says_how_to_move_it() -> None:
    from kukeon.api import SCHEDULED_BY_ANNOTATION, SCHEDULED_BY_SCHEDULER

    document = cell_doc(nodeName="n1", nodeSelector={"zone": "b"})
    document["metadata"]["annotations"] = {SCHEDULED_BY_ANNOTATION: SCHEDULED_BY_SCHEDULER}
    with pytest.raises(ApiError) as refused:
        await check_node_selector(REGISTRY, CELL, parse_resource(document), cell(nodeName="n1"))
    assert "delete and create it again" in refused.value.causes[0].message
