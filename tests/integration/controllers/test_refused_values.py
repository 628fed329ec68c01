"""A resource or tmpfs value runc refuses on the node fails the cell for good as InvalidSpec
naming the field (it was an UnexpectedError, retried for ever); fixing the spec recovers.

The API refuses a memory limit under 6 MiB: the cells here are written through the registry,
as a document stored before that floor was; a NUMA node the host lacks only the node knows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, ContainerSpec, Kind, Realm
from kukeon.api.realm import RealmLimits
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, get_cell, rewrite, update_cell

pytestmark = pytest.mark.integration

FIRST_RETRY_SECONDS = 0.1
QUIET_SECONDS = 1.0


def _absent_numa_node() -> int:
    present = {
        int(entry.name[4:])
        for entry in Path("/sys/devices/system/node").glob("node*")
        if entry.name[4:].isdigit()
    }
    return max(present, default=0) + 1


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_values_runc_refuses_fail_the_cell_naming_the_field(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    sleeper = {"id": "app", "image": k.image.name, "command": "sleep", "args": ["60"]}
    node = _absent_numa_node()
    cases: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
        (
            "lowmem",
            {"resources": {"memoryLimitBytes": 1 << 20}},
            "resources.memoryLimitBytes",
            "runc could not set the limit of 1048576 bytes",
            {"resources": {"memoryLimitBytes": 16 << 20}},
        ),
        (
            "numa",
            {"tmpfs": [{"path": "/t", "options": [f"mpol=bind:{node}"]}]},
            "tmpfs[0].options",
            f"'mpol=bind:{node}'",
            {"tmpfs": [{"path": "/t"}]},
        ),
    ]

    async def fails_then_recovers(
        name: str, fields: dict[str, Any], field: str, words: str, fixed: dict[str, Any]
    ) -> None:
        key = cell_key(k, name)
        await k.apply(cell_doc(k, name, [{**sleeper, **fields}]))
        failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
        assert isinstance(failed, Cell)
        message = failed.status.message or ""
        assert failed.status.reason == "InvalidSpec", message
        assert f"container 'app': {field}: " in message, message
        assert words in message, message
        # For good: no retry rewrites the status while the spec stays the same.
        await asyncio.sleep(QUIET_SECONDS)
        again = await get_cell(k, key)
        assert again.metadata.resource_version == failed.metadata.resource_version

        cell = await get_cell(k, key)
        containers = [
            ContainerSpec.model_validate({**c.model_dump(by_alias=True), **fixed})
            for c in cell.spec.containers
        ]
        await update_cell(k, key, spec={"containers": containers})
        ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
        assert isinstance(ready, Cell)
        assert ready.status.reason is None, ready.status.message

    await asyncio.gather(*(fails_then_recovers(*case) for case in cases))


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_an_init_its_realm_leaves_no_memory_is_oom_killed_and_retried(
    kukeond: Kukeond,
) -> None:
    """A realm held to 1 MiB (an admin may set it): runc's init of a container without a
    limit of its own is OOM-killed ('container init was OOM-killed (memory limit too
    low?)'). It was an UnexpectedError; now OOMKilled, naming both limits, retried (the
    realm may have room later), and the cell runs once the realm's limit is raised."""
    k = kukeond
    await k.hierarchy()

    def limited(memory: int) -> Callable[[Realm], Realm]:
        def change(realm: Realm) -> Realm:
            spec = realm.spec.model_copy(update={"limits": RealmLimits(memory_bytes=memory)})
            return realm.model_copy(update={"spec": spec})

        return change

    await rewrite(k, Kind.REALM, (k.realm,), limited(1 << 20))
    await k.wait_for(
        Kind.REALM, (k.realm,), until=lambda r: r.status.observed_generation >= 2, within=30
    )
    key = cell_key(k, "starved")
    sleeper = {"id": "app", "image": k.image.name, "command": "sleep", "args": ["60"]}
    await k.apply(cell_doc(k, "starved", [sleeper]))
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    assert isinstance(failed, Cell)
    message = failed.status.message or ""
    assert failed.status.reason == "OOMKilled", message
    assert "no resources.memoryLimitBytes" in message, message
    assert "spec.limits.memoryBytes" in message, message

    await rewrite(k, Kind.REALM, (k.realm,), limited(256 << 20))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(ready, Cell)
