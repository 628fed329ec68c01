"""autoDelete: a finished cell goes with everything it had on the host; a never-Ready one stays."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import (
    cell_doc,
    cell_key,
    cgroup_dirs,
    container,
    container_ids,
    get_cell,
    netns_names,
    task_ids,
)

pytestmark = pytest.mark.integration

UNREACHABLE_IMAGE = "127.0.0.1:1/kukeon-test/absent:latest"


async def test_auto_delete_removes_document_and_host_resources(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "once")
    await k.apply(
        cell_doc(k, "once", [container(k, "job", script="sleep 1; exit 0")], autoDelete=True)
    )
    await k.wait_for(Kind.CELL, key, until=lambda c: bool(c.status.ready_observed))
    await k.wait_gone(Kind.CELL, key, within=30)

    assert "s1_st1_once_job" not in await container_ids(k)
    assert "s1_st1_once_job" not in await task_ids(k)
    assert not [name for name in netns_names(k) if name.endswith("_once")]
    assert cgroup_dirs(k, *key) == []
    assert not (k.config.state_dir / "cells" / "/".join(key)).exists()
    attachments = k.config.state_dir / "network" / "attachments"
    assert not list(attachments.glob("*_once.json"))
    # The stack's document stays Ready; its cgroup went with the node's last cell in it.
    stack = await k.wait_for(
        Kind.STACK, key[:3], until=lambda s: not getattr(s.status, "nodes", {}), within=30
    )
    assert str(stack.status.state) == "Ready"
    assert cgroup_dirs(k, *key[:3]) == []


# kukeond's first retry at 0.1 s (`retryBackoffInitialSeconds`; 0.5 s by default): the pull
# that fails is tried again at 0.1, 0.3 and 0.7 s, three passes that could delete the cell
# within the second watched below (two in 2 s by default).
@pytest.mark.kukeond_config(retry_backoff_initial_seconds=0.1)
async def test_auto_delete_spares_a_cell_that_was_never_ready(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "broken")
    await k.apply(
        cell_doc(k, "broken", [{"id": "job", "image": UNREACHABLE_IMAGE}], autoDelete=True)
    )
    await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    await asyncio.sleep(1)
    cell = await get_cell(k, key)
    assert isinstance(cell, Cell)
    assert str(cell.status.state) == "Failed"
    assert not cell.status.ready_observed
