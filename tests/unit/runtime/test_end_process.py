"""TaskService.end_process lets go of an exec's wait without leaving asyncio an exception
"never retrieved" (an exec probe's process whose task went with its deleted cell)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.tasks import ExitStatus, TaskInfo, TaskService


class GoneTasks(TaskService):
    """Every call fails as on a task whose shim is gone."""

    def __init__(self) -> None:
        super().__init__(client=cast(ContainerdClient, object()), namespace="ns")
        self.deleted: list[str] = []

    async def get(self, *args: Any, **kwargs: Any) -> TaskInfo:
        raise ContainerdError("ttrpc: closed")

    async def kill(self, *args: Any, **kwargs: Any) -> None:
        raise ContainerdError("ttrpc: closed")

    async def wait(self, *args: Any, **kwargs: Any) -> ExitStatus:
        raise ContainerdError("ttrpc: closed")

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus | None:
        self.deleted.append(exec_id)
        return None


async def test_a_failed_wait_let_go_is_not_an_unretrieved_exception() -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    tasks = GoneTasks()

    async def wait_failing_later() -> ExitStatus:
        await asyncio.sleep(0.01)
        raise ContainerdError("ttrpc: closed")

    for waiting in (
        asyncio.ensure_future(wait_failing_later()),  # fails while end_process kills
        asyncio.ensure_future(tasks.wait("c", exec_id="e")),  # failed before
    ):
        await asyncio.sleep(0)  # the second has failed by now, the first not yet
        await tasks.end_process("c", "probe-1", waiting, within=0.05)
        await asyncio.sleep(0.05)
        del waiting
    gc.collect()
    await asyncio.sleep(0)
    assert tasks.deleted == ["probe-1", "probe-1"]
    assert not unretrieved, unretrieved
