"""A running cell whose document in etcd becomes undecodable (malformed JSON written over
its key): kukeond leaves its containers running, says so (a Warning Event naming the key
and the decode error, the Node condition CellDocumentsUnreadable, the registry's
invalid-documents metric), and converges once the document is fixed (managed again) or
deleted (its containers removed now, not at the next periodic orphan pass)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import pytest
from aetcd import rpc

from kukeon.api import Cell, EventType, Kind, Node
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.store import NotFound, Registry
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = [pytest.mark.integration, pytest.mark.kukeond_config(node_heartbeat_seconds=2)]

MALFORMED = b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Cell", broken'


async def until(condition: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "not true in time"
        await asyncio.sleep(0.1)


async def put_raw(registry: Registry, key: str, value: bytes) -> None:
    """Write ``value`` at the etcd key ``key`` as is, around the registry's checks."""
    client = registry.client
    await client.kvstub.Put(rpc.PutRequest(key=key.encode(), value=value), metadata=client.metadata)


async def _condition(k: Kukeond) -> tuple[str, str]:
    node = await k.registry.get(Kind.NODE, (k.config.node_name,))
    assert isinstance(node, Node)
    for condition in node.status.conditions:
        if condition.type == "CellDocumentsUnreadable":
            return condition.status, condition.message or ""
    return "absent", ""


async def _tasks(k: Kukeond) -> dict[str, tuple[int, TaskStatus]]:
    return {t.container_id: (t.pid, t.status) for t in await k.containerd.tasks(k.namespace).list()}


def _invalid_cells(k: Kukeond) -> float:
    value = k.daemon.metrics_registry.get_sample_value(
        "kukeon_registry_invalid_documents", {"kind": "Cell"}
    )
    return 0.0 if value is None else value


async def test_an_unreadable_cell_runs_on_is_said_and_converges_when_fixed_or_deleted(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    key = (k.realm, "s1", "st1", "c1")
    await k.hierarchy()
    await k.apply(cell_doc(k, "c1", [container(k, "main")]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    etcd_key = k.registry.key_for(Kind.CELL, key)
    client = k.registry.client
    stored = await client.kvstub.Range(
        rpc.RangeRequest(key=etcd_key.encode()), metadata=client.metadata
    )
    good = stored.kvs[0].value
    running = await _tasks(k)
    assert [status for _, status in running.values()] == [TaskStatus.RUNNING]
    controllers = k.daemon.controllers
    assert controllers is not None

    # 1. Malformed: the workload runs on (an orphan pass too), and the node says why.
    await put_raw(k.registry, etcd_key, MALFORMED)

    async def said() -> bool:
        status, message = await _condition(k)
        return status == "True" and etcd_key in message

    await until(said)
    _, message = await _condition(k)
    assert "not JSON" in message, message
    assert "left running, unmanaged" in message
    assert _invalid_cells(k) == 1
    await controllers.collect_orphans()
    assert await _tasks(k) == running
    assert k.daemon.events is not None

    async def warned() -> list[str]:
        assert k.daemon.events is not None
        events = (await k.daemon.events.list()).items
        return [
            e.message or ""
            for e in events
            if e.reason == "DocumentUnreadable"
            and e.type == EventType.WARNING
            and e.involved_object.key == key
        ]

    async def one_warning() -> bool:
        return len(await warned()) == 1

    await until(one_warning)
    (event,) = await warned()
    assert etcd_key in event, event
    assert "not JSON" in event
    # The heartbeat, which writes the node's status, keeps the condition.
    assert k.daemon.fleet is not None
    agent = k.daemon.fleet.agent
    beats = agent.beats

    async def beaten() -> bool:
        return agent.beats >= beats + 2

    await until(beaten)
    assert (await _condition(k))[0] == "True"

    # 2. Fixed: managed again (a killed task's exit is in its status), the condition False.
    await put_raw(k.registry, etcd_key, good)

    async def readable() -> bool:
        return (await _condition(k))[0] == "False"

    await until(readable)
    assert await _tasks(k) == running
    ((pid, _),) = running.values()
    os.kill(pid, signal.SIGKILL)

    seen: list[object] = []

    async def exit_recorded() -> bool:  # what only a managed cell gets
        cell = await k.registry.get(Kind.CELL, key)
        assert isinstance(cell, Cell)
        seen[:] = [cell.status]
        return any(c.exit_signal == "SIGKILL" for c in cell.status.containers)

    try:
        await until(exit_recorded)
    except AssertionError:
        raise AssertionError(seen) from None

    # 3. Malformed again, then its key deleted: the containers go within seconds.
    await put_raw(k.registry, etcd_key, MALFORMED)
    await until(said)
    await client.kvstub.DeleteRange(
        rpc.DeleteRangeRequest(key=etcd_key.encode()), metadata=client.metadata
    )

    async def removed() -> bool:
        return await _tasks(k) == {} and await k.containerd.containers(k.namespace).list() == []

    await until(removed, within=30)
    await until(readable)
    assert _invalid_cells(k) == 0
    assert len(await warned()) == 2
    with pytest.raises(NotFound):
        await k.registry.get(Kind.CELL, key)
