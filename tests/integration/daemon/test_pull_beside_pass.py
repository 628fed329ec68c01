"""A cell's image pull runs beside its pass (``controllers/imagepulls.py``), as kubelet's
image puller does: a registry dripping a layer just above the registry client's pace (a
pull of many minutes) holds neither the cell's deletion, nor kukeond's handler workers,
nor kukeond's stop; and it ends once its cell needs it no more (stopped, moved), leaving
nothing in containerd. Real containerd; the registry on loopback, listed as insecure as an
installation must list it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from kukeon.api import Cell, DesiredCellState, Kind
from kukeon.controllers.imagepulls import BackgroundPulls
from kukeon.daemon import app as daemon_app
from kukeon.daemon.app import Daemon
from tests.fixtures.kukeond import Kukeond, another_realm
from tests.integration.containerd.test_pull_cancelled import ingests
from tests.integration.controllers.helpers import update_cell
from tests.integration.controllers.test_slow_pull_other_realms import Slow
from tests.integration.daemon.test_image_routes import cell_document
from tests.unit.runtime.test_hostile_registry import Hostile, serve
from tests.unit.runtime.test_registry_client import make_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"]),
]

WORKERS = 2
"""kukeond's handler workers in the workers' test (any realm may take them all)."""
SLOW_CELLS = WORKERS + 1


class Dripping(Slow):
    """`Slow`'s registry (its 300 kB layer takes 12 minutes), counting the answers under
    way (`open`) and those begun (`begun`)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.begun = 0

    async def __call__(self, request: web.Request, body: bytes) -> web.StreamResponse:
        self.open += 1
        self.begun += 1
        try:
            return await super().__call__(request, body)
        finally:
            self.open -= 1


@pytest.fixture
async def dripping() -> AsyncIterator[tuple[Dripping, str]]:
    """The dripping registry and its host:port. Asked for before ``kukeond`` (closed after
    it): a close waits for the answers under way, each of which drips for minutes."""
    registry = Hostile(make_image(layer_count=1))
    drip = registry.blob = Dripping()
    server = await serve(registry)
    try:
        yield drip, f"127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
def few_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kukeond asked for after this fixture runs `WORKERS` handlers, any realm all."""
    settings = daemon_app.operator_settings

    def fewer(*args: Any, **kwargs: Any) -> Any:
        made = settings(*args, **kwargs)
        return dataclasses.replace(made, max_workers=WORKERS, max_workers_per_realm=WORKERS)

    monkeypatch.setattr(daemon_app, "operator_settings", fewer)


async def until(condition: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


Key = tuple[str, ...]


async def pulling_cell(k: Kukeond, drip: Dripping, name: str, image: str) -> Key:
    """A cell of `image` applied, its pull fetching the dripped layer and said (Pulling)."""
    begun = drip.begun
    await k.apply(cell_document(k, name, image))
    key = (k.realm, "s1", "st1", name)
    await until(lambda: drip.begun > begun, 30)
    cell = await k.wait_for(
        Kind.CELL, key, until=lambda c: isinstance(c, Cell) and c.status.reason == "Pulling"
    )
    assert str(cell.status.state) == "Pending"
    return key


async def slow_cell(k: Kukeond, drip: Dripping, host: str) -> tuple[Key, BackgroundPulls]:
    """The realm's hierarchy and a cell pulling from the dripping registry; its pulls."""
    await k.hierarchy()
    key = await pulling_cell(k, drip, "slow", f"{host}/app:1")
    controllers = k.daemon.controllers
    assert controllers is not None
    assert controllers.images.pulls.under_way() == 1
    return key, controllers.images.pulls


async def cancelled(pulls: BackgroundPulls, drip: Dripping) -> None:
    """The pull ends within seconds: kukeond hung up on the registry."""
    await until(lambda: pulls.under_way() == 0, 5)
    await until(lambda: drip.open == 0, 5)


async def test_a_cell_is_deleted_at_once_and_its_pull_cancelled(
    dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """Before: the deletion waited for the pass, which waited for the pull (12 minutes)."""
    k, (drip, host) = kukeond, dripping
    key, pulls = await slow_cell(k, drip, host)
    started = time.monotonic()
    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key, within=10)
    assert time.monotonic() - started < 5
    await cancelled(pulls, drip)
    assert not [
        image.name
        for image in await k.containerd.images(k.namespace).list()
        if image.name.startswith("127.0.0.1:")
    ]


async def left_in_containerd(k: Kukeond) -> tuple[list[str], list[str]]:
    """The namespace's leases and writes under way (``ctr content active``)."""
    leases = await k.containerd.leases(k.namespace).list()
    return [lease.id for lease in leases], await ingests(k.containerd, k.namespace)


async def test_a_stopped_cell_cancels_its_pull_and_pulls_again_once_running(
    dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """Before: a stopped cell still waited for its pull, which ran to its end (12 minutes
    here; as long as a realm editor's registry drips)."""
    k, (drip, host) = kukeond, dripping
    key, pulls = await slow_cell(k, drip, host)
    await update_cell(k, key, spec={"desired_state": DesiredCellState.STOPPED})
    await cancelled(pulls, drip)
    await k.wait_for(Kind.CELL, key, state="Stopped")
    assert await left_in_containerd(k) == ([], [])  # the pull's lease and ingest went
    begun = drip.begun
    await update_cell(k, key, spec={"desired_state": DesiredCellState.RUNNING})
    await until(lambda: drip.begun > begun, 10)  # running again: it pulls again
    assert pulls.under_way() == 1


async def test_a_moved_cell_cancels_its_pull_and_pulls_again_once_back(
    dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """Before: the cell's pull ran on on the node it left."""
    k, (drip, host) = kukeond, dripping
    key, pulls = await slow_cell(k, drip, host)
    pinned: dict[str, Any] = {"annotations": {}}  # the user's: the scheduler moves it nowhere
    await update_cell(k, key, spec={"node_name": "elsewhere"}, metadata=pinned)
    await cancelled(pulls, drip)
    begun = drip.begun
    await update_cell(k, key, spec={"node_name": k.config.node_name})
    await until(lambda: drip.begun > begun, 10)
    assert pulls.under_way() == 1


async def test_a_fenced_node_cancels_its_cells_pull_and_pulls_again_once_unfenced(
    dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """Fencing (the node's heartbeat lease not renewed, ``daemon/node.py``) stops the
    scheduler-placed cells but writes no new version of them. Before: the pull ran on."""
    k, (drip, host) = kukeond, dripping
    _, pulls = await slow_cell(k, drip, host)
    controllers = k.daemon.controllers
    assert controllers is not None
    # What the node's fencing watch calls when the lease goes unrenewed, and once renewed.
    assert await controllers.departures.fence() == 0  # nothing of the cell runs yet
    await cancelled(pulls, drip)
    begun = drip.begun
    await controllers.departures.unfence()
    await until(lambda: drip.begun > begun, 10)  # its pass, requeued, pulls again
    assert pulls.under_way() == 1


async def test_slow_pulls_hold_no_worker_from_another_realm(
    few_workers: None, dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """More slow pulls than kukeond has workers: another realm's cell still becomes Ready.
    Before: each pull held a worker for its pass, the other realm's levels waited."""
    k, (drip, host) = kukeond, dripping
    operator = k.daemon.operator
    assert operator is not None
    assert operator.settings.max_workers == WORKERS
    await k.hierarchy()
    for index in range(SLOW_CELLS):
        await k.apply(cell_document(k, f"slow{index}", f"{host}/app{index}:1"))
    await until(lambda: drip.open >= WORKERS, 30)
    async with another_realm(k) as other:
        await other.hierarchy()
        await other.apply(cell_document(other, "fine", other.image.name))
        await other.wait_for(Kind.CELL, (other.realm, "s1", "st1", "fine"), state="Ready")
    await until(lambda: drip.open == SLOW_CELLS, 30)  # each pull goes on beside


async def test_kukeond_stops_at_once_during_a_slow_pull(
    dripping: tuple[Dripping, str], kukeond: Kukeond
) -> None:
    """Before: the stop waited its whole shutdown grace (10 s) for the pass pulling."""
    k, (drip, host) = kukeond, dripping
    await k.hierarchy()
    await pulling_cell(k, drip, "slow", f"{host}/app:1")
    started = time.monotonic()
    await k.daemon.stop()
    assert time.monotonic() - started < 2.5
    await until(lambda: drip.open == 0, 5)
    k.daemon = Daemon(k.config)  # the realm is deleted in teardown, as by a restarted node
    await k.daemon.start()
