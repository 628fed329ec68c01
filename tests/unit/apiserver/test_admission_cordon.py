"""A realm editor may not pin a cell to a cordoned node (`nodeName` bypasses the scheduler);
an admin may (drain and maintenance work); an unregistered node is let through."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import CellSet, Node
from kukeon.apiserver.status import ApiError
from tests.unit.apiserver.test_admission import ADMIN, EDITOR, admission, cell, parsed, realm
from tests.unit.apiserver.test_cellset_admission import cellset as a_cellset


def node(name: str, *, cordoned: bool) -> Node:
    return parsed(Node, name, {"unschedulable": cordoned})


def cellset(**template: Any) -> CellSet:
    return a_cellset({}, cell=template)


async def test_an_editor_may_not_pin_a_cell_to_a_cordoned_node() -> None:
    checker, _ = admission(realm(), node("n1", cordoned=True), node("n2", cordoned=False))
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cell([{"id": "a"}], nodeName="n1"), None)
    error = caught.value
    assert (error.code, error.reason) == (403, "Forbidden")
    assert [c.field for c in error.causes] == ["spec.nodeName"]
    assert "node 'n1' is cordoned" in error.message
    assert "security level" not in error.message  # not the realm's level: the node's cordon
    # moved there from an open node: refused as well
    with pytest.raises(ApiError):
        await checker.admit(
            EDITOR, cell([{"id": "a"}], nodeName="n1"), cell([{"id": "a"}], nodeName="n2")
        )
    await checker.admit(EDITOR, cell([{"id": "a"}], nodeName="n2"), None)
    await checker.admit(EDITOR, cell([{"id": "a"}]), None)  # the scheduler places it


async def test_a_cell_pinned_before_the_cordon_stays_writable() -> None:
    checker, _ = admission(realm(), node("n1", cordoned=True))
    before = cell([{"id": "a"}], nodeName="n1")
    await checker.admit(EDITOR, cell([{"id": "a", "command": "true"}], nodeName="n1"), before)


async def test_an_admin_may_pin_to_a_cordoned_node() -> None:
    checker, store = admission(realm(), node("n1", cordoned=True))
    await checker.admit(ADMIN, cell([{"id": "a"}], nodeName="n1"), None)
    assert store.reads == []


async def test_an_unregistered_node_is_let_through() -> None:
    """The scheduler marks such a cell Pending/NodeNotFound until a node of that name joins."""
    checker, _ = admission(realm())
    await checker.admit(EDITOR, cell([{"id": "a"}], nodeName="not-yet"), None)


async def test_a_sets_template_is_checked_as_its_cells() -> None:
    checker, _ = admission(realm(), node("n1", cordoned=True))
    with pytest.raises(ApiError) as caught:
        await checker.admit(EDITOR, cellset(nodeName="n1"), None)
    assert [c.field for c in caught.value.causes] == ["spec.template.spec.nodeName"]
    await checker.admit(EDITOR, cellset(), None)
    await checker.admit(ADMIN, cellset(nodeName="n1"), None)
