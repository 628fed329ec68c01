"""A new generation recreates exactly the containers whose effective spec changed; the
scheduler's binding (spec.nodeName) is not one, as a pod's binding is not."""

from __future__ import annotations

import pytest

from kukeon.api import AnyResource, Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in, get_cell, update_cell

pytestmark = pytest.mark.integration


def settled(obj: AnyResource) -> bool:
    """Ready, with the latest generation observed."""
    return (
        str(obj.status.state) == "Ready"
        and obj.status.observed_generation == obj.metadata.generation
    )


async def test_spec_change_recreates_only_the_changed_container(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "gen")
    await k.apply(cell_doc(k, "gen", [container(k, "keep"), container(k, "change")]))
    first = await k.wait_for(Kind.CELL, key, until=settled)
    assert isinstance(first, Cell)
    # Placed by the scheduler (nodeName written after the create), changed by nobody.
    assert first.spec.node_name == k.config.node_name
    assert (first.metadata.generation, first.status.observed_generation) == (1, 1)
    containers = k.containerd.containers(k.namespace)
    keep_before = await containers.get("s1_st1_gen_keep")
    change_before = await containers.get("s1_st1_gen_change")
    old_pids = {c.id: c.pid for c in first.status.containers}

    cell = await get_cell(k, key)
    edited = [
        c.model_copy(update={"env": ["COLOUR=blue"]}) if c.id == "change" else c
        for c in cell.spec.containers
    ]
    await update_cell(k, key, spec={"containers": edited})

    def observed_change(obj: AnyResource) -> bool:
        return obj.metadata.generation > first.metadata.generation and settled(obj)

    second = await k.wait_for(Kind.CELL, key, until=observed_change, within=30)
    assert isinstance(second, Cell)
    assert second.metadata.generation == 2
    new_pids = {c.id: c.pid for c in second.status.containers}
    assert new_pids["keep"] == old_pids["keep"]
    assert new_pids["change"] != old_pids["change"]

    keep_after = await containers.get("s1_st1_gen_keep")
    change_after = await containers.get("s1_st1_gen_change")
    assert keep_after.created_at == keep_before.created_at
    assert change_after.created_at != change_before.created_at
    code, output = await exec_in(k, "s1_st1_gen_change", "cat", "/proc/1/environ")
    assert code == 0
    assert "COLOUR=blue" in output.split("\0")
