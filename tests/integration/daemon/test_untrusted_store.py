"""A running kukeond against malformed documents in its etcd and a crashing watch loop.

The issue's reproducer (``etcdctl put /kukeon/registry/realms/x '{"x":1}'``) used to kill
the Realm watch for good while /readyz said ok. Here every kind gets a malformed document
(written raw with the registry's own etcd client, as etcdctl would), and everything
created afterwards must still converge, with one warning per bad key and the documents
counted in ``kukeon_registry_invalid_documents``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aetcd import rpc

from kukeon.api import Kind
from kukeon.framework import TasksDown
from kukeon.store import Registry
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


async def put_raw(registry: Registry, key: str, value: bytes) -> None:
    client = registry.client
    await client.kvstub.Put(
        rpc.PutRequest(key=key.encode(), value=value), timeout=10, metadata=client.metadata
    )


async def delete_raw(registry: Registry, key: str) -> None:
    client = registry.client
    await client.kvstub.DeleteRange(
        rpc.DeleteRangeRequest(key=key.encode()), timeout=10, metadata=client.metadata
    )


def sample(k: Kukeond, name: str, **labels: str) -> float:
    value = k.daemon.metrics_registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _until(condition: Callable[[], Any], within: float = 30.0) -> None:
    for _ in range(int(within / 0.05)):
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {within}s")


def _bad_documents(k: Kukeond) -> dict[str, tuple[Kind, bytes]]:
    registry = k.registry
    invalid_stack = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Stack",
        "metadata": {"name": "badspec"},
        "spec": {"realmId": k.realm, "spaceId": "s1", "replicas": "many"},
    }
    cell_of_another_realm = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "elsewhere"},
        "spec": {
            "realmId": f"{k.realm}other",
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [{"id": "main", "image": k.image.name}],
        },
    }
    return {
        registry.key_for(Kind.REALM, (f"{k.realm}x",)): (Kind.REALM, b'{"x":1}'),
        registry.key_for(Kind.SPACE, (k.realm, "notjson")): (Kind.SPACE, b"{{{ not json"),
        registry.key_for(Kind.STACK, (k.realm, "s1", "badspec")): (
            Kind.STACK,
            json.dumps(invalid_stack).encode(),
        ),
        registry.key_for(Kind.CELL, (k.realm, "s1", "st1", "elsewhere")): (
            Kind.CELL,
            json.dumps(cell_of_another_realm).encode(),
        ),
    }


async def test_malformed_documents_of_every_kind_leave_kukeond_converging(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    bad = _bad_documents(k)
    caplog.set_level(logging.WARNING, logger="kukeon.store.decoding")
    try:
        for key, (_, value) in bad.items():
            await put_raw(k.registry, key, value)

        # Created afterwards, the valid hierarchy and a cell converge as ever.
        await k.hierarchy()
        await k.apply(
            {
                "kind": "Cell",
                "metadata": {"name": "good"},
                "spec": {
                    "realmId": k.realm,
                    "spaceId": "s1",
                    "stackId": "st1",
                    "containers": [
                        {"id": "main", "image": k.image.name, "command": "sleep", "args": ["3600"]}
                    ],
                },
            }
        )
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "good"), state="Ready")

        # More passes over every kind: the orphan collector lists them all.
        controllers = k.daemon.controllers
        assert controllers is not None
        for _ in range(2):
            await controllers.collect_orphans()
        operator = k.daemon.operator
        assert operator is not None

        for kind in (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL):
            assert sample(k, "kukeon_registry_invalid_documents", kind=kind.value) == 1, kind
        warnings = [r for r in caplog.records if "skipping the invalid" in r.getMessage()]
        for key in bad:
            mentions = [r for r in warnings if key in r.getMessage()]
            assert len(mentions) == 1, (key, [r.getMessage() for r in warnings])
            assert mentions[0].exc_info is None
        crashed = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
        assert crashed == []
        for task in operator.tasks.tasks:
            assert sample(k, "kukeon_task_restarts_total", task=task.name) == 0, task.name

        async with session(k) as http:
            async with http.get("http://kukeond/readyz") as response:
                body = await response.text()
                assert response.status == 200, body
                assert "[+]controllers ok" in body
            # The bad document by name: a 422 Status naming the problem, never a 500.
            async with http.get(f"{API}/realms/{k.realm}x") as response:
                status = await response.json()
                assert response.status == 422, status
                assert status["kind"] == "Status"
                assert "no metadata object" in status["message"]
            # And deleting it removes the key.
            async with http.delete(f"{API}/realms/{k.realm}x") as response:
                assert response.status == 200, await response.text()
        await _until(lambda: sample(k, "kukeon_registry_invalid_documents", kind="Realm") == 0)
    finally:
        for key in bad:
            await delete_raw(k.registry, key)


def _ready(k: Kukeond) -> bool:
    operator = k.daemon.operator
    assert operator is not None
    try:
        return operator.ready()
    except TasksDown:
        return False


async def test_a_crashed_watch_is_restarted_and_readyz_follows(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    operator = k.daemon.operator
    assert operator is not None
    queues = operator._queues  # the loop the watch feeds: crash it from inside
    assert queues is not None
    real_offer = queues.offer
    crash = asyncio.Event()

    def offer(obj: Any, **kwargs: Any) -> None:
        if crash.is_set() and obj.kind == "Realm":
            crash.clear()
            raise RuntimeError("injected: a bug in the realm watch loop")
        real_offer(obj, **kwargs)

    caplog.set_level(logging.ERROR, logger="kukeon.framework.aiotasks")
    seen: list[int] = []
    queues.offer = offer  # type: ignore[method-assign]
    try:
        async with session(k) as http:

            async def readyz() -> int:
                async with http.get("http://kukeond/readyz") as response:
                    body = await response.text()
                    seen.append(response.status)
                    if response.status != 200:
                        assert "[-]controllers failed: TasksDown: kukeon-watch Realm" in body
                    return response.status

            assert await readyz() == 200
            crash.set()
            await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
            await _until(lambda: not _ready(k))
            assert await readyz() == 503
            await _until(lambda: _ready(k))
            assert await readyz() == 200
        # Restarted and relisted: the realm whose event crashed the loop converges.
        await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    finally:
        queues.offer = real_offer  # type: ignore[method-assign]
    assert sample(k, "kukeon_task_restarts_total", task="kukeon-watch Realm") == 1
    crashes = [r for r in caplog.records if "kukeon-watch Realm crashed" in r.getMessage()]
    assert len(crashes) == 1
    assert crashes[0].exc_info is not None


async def test_garbage_in_lease_keys_leaves_kukeond_converging(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer heartbeat and a leader key holding garbage on a live lease (etcdctl put
    --lease): kukeond keeps serving and converging, its peers read the heartbeat as an
    unknown peer with one warning (a JSONDecodeError at every read before), and normally
    once it is fixed."""
    k = kukeond
    operator = k.daemon.operator
    assert operator is not None
    client, prefix = k.registry.client, k.registry.key_prefix
    granted = await client.leasestub.LeaseGrant(
        rpc.LeaseGrantRequest(TTL=60, ID=0), metadata=client.metadata
    )
    ghost = f"{prefix}/leases/nodes/ghost".encode()
    # An election kukeond has none of: its singletons keep theirs, cells keep converging.
    other = f"{prefix}/leases/leader/elsewhere".encode()
    caplog.set_level(logging.WARNING, logger="kukeon.framework")
    try:
        for key in (ghost, other):
            await client.kvstub.Put(
                rpc.PutRequest(key=key, value=b"garbage{", lease=granted.ID),
                metadata=client.metadata,
            )
        for _ in range(3):
            peers = {p.node: p for p in await operator.peers()}
            assert peers["ghost"].identity == ""
            assert peers[k.config.node_name].identity
        said = [r for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert said[0].exc_info is None

        await k.hierarchy()
        await k.apply(cell_doc(k, "after-garbage", [container(k, "main")]))
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "after-garbage"), state="Ready")
        assert _ready(k)

        fixed = json.dumps({"node": "ghost", "identity": "ghost/1", "startedAt": "t"})
        await client.kvstub.Put(
            rpc.PutRequest(key=ghost, value=fixed.encode(), lease=granted.ID),
            metadata=client.metadata,
        )
        peers = {p.node: p for p in await operator.peers()}
        assert peers["ghost"].identity == "ghost/1"
    finally:
        await client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=granted.ID), metadata=client.metadata
        )
