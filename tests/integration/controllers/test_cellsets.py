"""CellSets on one real kukeond: replicas come up Ready, scale up and down (the newest go
first), a template change rolls without the Ready count dropping, a broken image stops at
its progress deadline, a cell on a lost node comes back, deletion cascades."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kukeon.api import (
    CELLSET_LABEL,
    SCHEDULED_BY_ANNOTATION,
    SCHEDULED_BY_SCHEDULER,
    TEMPLATE_HASH_LABEL,
    Cell,
    CellSet,
    CellState,
    Kind,
)
from kukeon.api.cellset import PROGRESS_DEADLINE_EXCEEDED
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_key, container, rewrite

pytestmark = pytest.mark.integration

READY_FILE = {
    "exec": {"command": ["test", "-f", "/tmp/ready"]},
    "periodSeconds": 1,
    "failureThreshold": 1,
}
SCRIPT = "trap 'exit 0' TERM; sleep 1; touch /tmp/ready; sleep 2147483647 & wait"


def set_doc(k: Kukeond, replicas: int, *, version: str = "1") -> dict[str, Any]:
    probe = container(k, "a", script=SCRIPT, readinessProbe=READY_FILE, env=[f"V={version}"])
    return {
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [probe]}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        },
    }


async def cells_of(k: Kukeond) -> list[Cell]:
    listed = await k.registry.list(
        Kind.CELL, (k.realm, "s1", "st1"), label_selector=f"{CELLSET_LABEL}=web"
    )
    return [c for c in listed.items if isinstance(c, Cell)]


def live(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.metadata.deletion_timestamp is None]


def ready(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.status.state == CellState.READY]


async def settle(k: Kukeond, replicas: int, *, within: float = 90.0) -> list[Cell]:
    """Wait until the set has exactly ``replicas`` cells, all Ready and up to date."""
    deadline = time.monotonic() + within
    while True:
        cells = await cells_of(k)
        found = await k.registry.get(Kind.CELL_SET, (k.realm, "s1", "st1", "web"))
        assert isinstance(found, CellSet)
        hash_ = found.template_hash()
        fresh = [c for c in cells if c.metadata.labels.get(TEMPLATE_HASH_LABEL) == hash_]
        status = found.status
        if (
            len(cells) == len(live(cells)) == len(ready(fresh)) == replicas
            and status.ready_replicas == status.updated_replicas == replicas
        ):
            return cells
        assert time.monotonic() < deadline, [(c.metadata.name, c.status.state) for c in cells]
        await asyncio.sleep(0.3)


async def update_set(k: Kukeond, document: dict[str, Any]) -> None:
    wanted = CellSet.model_validate({"apiVersion": "kukeon.io/v1beta1", **document})
    await rewrite(
        k,
        Kind.CELL_SET,
        (k.realm, "s1", "st1", "web"),
        lambda current: current.model_copy(update={"spec": wanted.spec}),
    )


def progressing(cellset: CellSet) -> tuple[str, str | None]:
    for condition in cellset.status.conditions:
        if condition.type == "Progressing":
            return condition.status, condition.reason
    return "", None


async def a_broken_image_stops_at_its_deadline(k: Kukeond, serving: list[Cell]) -> None:
    """A template whose image cannot be pulled: one new cell (maxSurge 1) that never gets
    Ready, `Progressing=False` after the deadline, no more new cells, the old ones serve;
    putting the template back ends it."""
    broken = set_doc(k, 2, version="2")
    broken["spec"]["progressDeadlineSeconds"] = 3
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "127.0.0.1:9/none/broken:1"
    await update_set(k, broken)
    key = (k.realm, "s1", "st1", "web")
    deadline = time.monotonic() + 60
    while True:
        found = await k.registry.get(Kind.CELL_SET, key)
        assert isinstance(found, CellSet)
        if progressing(found) == ("False", PROGRESS_DEADLINE_EXCEEDED):
            break
        assert len(live(await cells_of(k))) <= 3
        assert time.monotonic() < deadline, found.status
        await asyncio.sleep(0.3)
    stalled = {c.metadata.name for c in live(await cells_of(k))}
    await asyncio.sleep(1.5)  # a few passes: nothing is made, the old replicas stay Ready
    cells = live(await cells_of(k))
    assert {c.metadata.name for c in cells} == stalled
    assert len(stalled) == 3
    assert {c.metadata.name for c in ready(cells)} == {c.metadata.name for c in serving}
    await update_set(k, set_doc(k, 2, version="2"))
    await settle(k, 2)


async def test_a_set_comes_up_scales_rolls_and_cascades(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(set_doc(k, 3))
    first = await settle(k, 3)
    assert all(c.metadata.name.startswith("web-") for c in first)
    assert all(c.metadata.labels["app"] == "web" for c in first)

    await update_set(k, set_doc(k, 5))
    five = await settle(k, 5)
    await update_set(k, set_doc(k, 2))
    two = await settle(k, 2)
    oldest = sorted(five, key=lambda c: (c.metadata.creation_timestamp, c.metadata.name))[:2]
    assert {c.metadata.name for c in two} == {c.metadata.name for c in oldest}

    # A template change rolls: one new cell at a time, never fewer than 2 Ready.
    await update_set(k, set_doc(k, 2, version="2"))
    lowest = 2
    deadline = time.monotonic() + 120
    while True:
        cells = await cells_of(k)
        lowest = min(lowest, len(ready(live(cells))))
        assert len(live(cells)) <= 3  # replicas + maxSurge
        names = {c.metadata.name for c in cells}
        if not names & {c.metadata.name for c in two} and len(ready(cells)) == 2:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert lowest >= 2
    rolled = await settle(k, 2)
    assert all(c.spec.containers[0].env == ["V=2"] for c in rolled)

    await a_broken_image_stops_at_its_deadline(k, rolled)
    await a_cell_on_a_lost_node_comes_back(k, await settle(k, 2))

    # Deleting the set deletes its cells.
    await k.registry.delete(Kind.CELL_SET, (k.realm, "s1", "st1", "web"))
    deadline = time.monotonic() + 60
    while await cells_of(k):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)


async def test_deleting_the_realm_takes_a_running_set_and_its_cells(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(set_doc(k, 2))
    await settle(k, 2)
    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True, background=True)
    await k.wait_gone(Kind.REALM, (k.realm,), within=90)
    assert not await cells_of(k)


async def test_a_cell_that_ends_after_it_ran_is_replaced(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    document = set_doc(k, 1)
    document["spec"]["template"]["spec"]["containers"] = [
        container(k, "a", script="sleep 2; exit 3")
    ]
    await k.apply(document)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while True:
        cells = await cells_of(k)
        names = {c.metadata.name for c in cells}
        seen |= names
        # One copy runs at a time. The one that ended is replaced first and deleted right
        # after (it runs nothing meanwhile), so a list between the two writes holds both.
        ended = {CellState.FAILED, CellState.ERROR, CellState.EXITED}
        assert len([c for c in live(cells) if c.status.state not in ended]) <= 1
        if len(seen) >= 3:
            break
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.3)
    await k.registry.delete(Kind.CELL_SET, (k.realm, "s1", "st1", "web"))


async def a_cell_on_a_lost_node_comes_back(k: Kukeond, cells: list[Cell]) -> None:
    """A Node with no kukeond behind it (so NotReady at once) holding one of the set's
    cells: after lostNode.replaceAfterSeconds the same cell is placed back on the live node
    (node-lost-timeout is 300 s here), and the set never makes another cell meanwhile."""
    document = set_doc(k, 2, version="2")
    document["spec"]["lostNode"] = {"replaceAfterSeconds": 2}
    await update_set(k, document)  # not part of the template hash: nothing rolls
    await k.apply({"kind": "Node", "metadata": {"name": "ghost"}, "spec": {}})
    try:
        first = cells[0]

        def moved(latest: Cell) -> Cell:
            annotations = {
                **latest.metadata.annotations,
                SCHEDULED_BY_ANNOTATION: SCHEDULED_BY_SCHEDULER,
            }
            return latest.model_copy(
                update={
                    "spec": latest.spec.model_copy(update={"node_name": "ghost"}),
                    "metadata": latest.metadata.model_copy(update={"annotations": annotations}),
                }
            )

        # Its status may have been written since `cells` was read: from the latest version.
        await rewrite(k, Kind.CELL, cell_key(k, first.metadata.name), moved)
        left = time.monotonic()
        deadline = left + 60
        names = sorted(c.metadata.name for c in cells)
        while True:
            now = await cells_of(k)
            assert sorted(c.metadata.name for c in now) == names
            back = next(c for c in now if c.metadata.name == first.metadata.name)
            if back.spec.node_name == k.config.node_name and back.status.state == CellState.READY:
                break
            assert time.monotonic() < deadline, back.status
            await asyncio.sleep(0.3)
        assert time.monotonic() - left >= 2  # not before replaceAfterSeconds
    finally:
        await k.registry.delete(Kind.NODE, ("ghost",))
