"""A cell's root task is created while its network namespace is attached, started after.

On real containerd, runc and the in-process bridge attachment: an attachment that fails
once the task was created leaves no task behind and the cell says why; the next passes
attach first (no task made and deleted at every retry), and the cell runs once the
attachment works again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd.errors import TaskNotFoundError
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.runtime.network import NetworkError
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration


async def test_an_attachment_failing_after_the_task_was_created_leaves_no_task(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    networks = controllers.cells.host.networks
    tasks = k.containerd.tasks(k.namespace)
    name = "s1_st1_flaky_app"
    attach = networks.attach_cell
    seen: list[TaskStatus] = []  # the root task's status when the first attachment failed
    failing = True

    async def attach_or_fail(**kwargs: Any) -> Any:
        if not failing:
            return await attach(**kwargs)
        if not seen:
            async with asyncio.timeout(30):
                while not seen:
                    try:
                        seen.append((await tasks.get(name)).status)
                    except TaskNotFoundError:
                        await asyncio.sleep(0.01)
        raise NetworkError("injected: no address left on the space's network")

    monkeypatch.setattr(networks, "attach_cell", attach_or_fail)
    await k.apply(cell_doc(k, "flaky", [container(k, "app")]))
    key = cell_key(k, "flaky")
    failed = await k.wait_for(Kind.CELL, key, state="Failed")
    assert isinstance(failed, Cell)
    assert failed.status.reason == "NetworkFailed"
    assert "no address left" in (failed.status.message or "")
    assert seen == [TaskStatus.CREATED]  # created in the namespace, never started
    with pytest.raises(TaskNotFoundError):
        await tasks.get(name)

    failing = False
    ready = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(ready, Cell)
    assert ready.status.network.ip
    assert (await tasks.get(name)).status == TaskStatus.RUNNING
    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key)
