"""containerd dies while a task runs: the client reconnects and the task is still there."""

from __future__ import annotations

import asyncio
import signal

import pytest

from kukeon.runtime.containerd import (
    Subscribed,
    TaskExited,
    TaskStatus,
    task_lifecycle_filters,
)
from tests.fixtures.containerd import PrivateContainerd
from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration


async def test_client_reconnects_after_containerd_is_killed_and_the_task_survives(
    runner: Runner, containerd_daemon: PrivateContainerd
) -> None:
    tasks = runner.client.tasks(runner.namespace)
    container_id, _log = await runner.create({"command": "sleep", "args": ["300"]}, name="survivor")
    pid = await tasks.start(container_id)
    generation_before = runner.client.generation

    events = runner.client.events.subscribe(*task_lifecycle_filters(namespace=runner.namespace))
    seen: list[object] = []
    subscribed = asyncio.Event()
    resubscribed = asyncio.Event()

    async def follow() -> None:
        async for event in events:
            seen.append(event)
            if isinstance(event, Subscribed):
                (resubscribed if event.reconnected else subscribed).set()
            if isinstance(event, TaskExited) and event.container_id == container_id:
                return

    following = asyncio.ensure_future(follow())
    await asyncio.wait_for(subscribed.wait(), 30)

    # A Wait in flight when containerd dies is re-made against the new daemon.
    waiting = asyncio.ensure_future(tasks.wait(container_id))
    await asyncio.sleep(0.2)
    await asyncio.to_thread(containerd_daemon.kill)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(containerd_daemon.start)

    info = await tasks.get(container_id)
    assert info.status is TaskStatus.RUNNING
    assert info.pid == pid
    assert runner.client.generation >= generation_before

    # Events published while the stream was down are lost: the iterator says when it is
    # back (Subscribed(reconnected=True)), after which a consumer re-reads state.
    await asyncio.wait_for(resubscribed.wait(), 30)
    await tasks.kill(container_id, signal.SIGKILL)
    status = await asyncio.wait_for(waiting, 30)
    assert status.code == 137
    try:
        await asyncio.wait_for(following, 30)
    except TimeoutError:
        raise AssertionError(f"events seen: {seen}") from None
    await events.aclose()

    assert [e for e in seen if isinstance(e, Subscribed)] == [
        Subscribed(reconnected=False),
        Subscribed(reconnected=True),
    ]
    exits = [event for event in seen if isinstance(event, TaskExited)]
    assert exits[-1].container_id == container_id
    assert exits[-1].exit_status == 137
    assert await tasks.delete(container_id) is not None
