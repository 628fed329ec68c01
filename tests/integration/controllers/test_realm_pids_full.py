"""A realm at its `spec.limits.pids`: the next container's task cannot be created (runc's
init dies making its threads: "read init-p: connection reset by peer"). The cell says why
(reason PidsLimitReached, naming the realm's cgroup, its limit and count) instead of an
UnexpectedError, is retried, and starts once the limit is raised or room is freed."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import AnyResource, Event, EventType, Kind
from kukeon.api.realm import RealmLimits
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container, rewrite

pytestmark = pytest.mark.integration

# Four tasks: three sleeps and the shell that becomes the fourth (8 - 4 < runc's init's 6).
FILL = "sleep 300 & sleep 300 & sleep 300 & exec sleep 300"


async def _set_pids(k: Kukeond, pids: int) -> None:
    await rewrite(
        k,
        Kind.REALM,
        (k.realm,),
        lambda realm: realm.model_copy(
            update={"spec": realm.spec.model_copy(update={"limits": RealmLimits(pids=pids)})}
        ),
    )


def _realm_pids(k: Kukeond) -> int:
    found = [d / "pids.current" for d in cgroup_dirs(k, k.realm) if (d / "pids.current").exists()]
    return int(found[0].read_text())


def _pids_full(cell: AnyResource) -> bool:
    return bool(cell.status.reason == "PidsLimitReached")


async def _warning(k: Kukeond, cell: str) -> Event:
    """The cell's Event saying PidsLimitReached (the recorder writes them after the pass)."""
    assert k.daemon.events is not None
    async with asyncio.timeout(30):
        while True:
            for event in (await k.daemon.events.list(k.realm)).items:
                if event.involved_object.name == cell and "PidsLimitReached" in event.message:
                    return event
            await asyncio.sleep(0.3)


async def _a_cell_past_the_limit(k: Kukeond) -> AnyResource:
    """Realm pids 8, a cell "fill" holding 4, and cell "next" failed PidsLimitReached."""
    await k.hierarchy()
    await _set_pids(k, 8)
    await k.apply(cell_doc(k, "fill", [container(k, "main", script=FILL)]))
    await k.wait_for(Kind.CELL, cell_key(k, "fill"), state="Ready")
    async with asyncio.timeout(30):  # its sleeps forked: 4 of 8 taken
        while _realm_pids(k) < 4:  # noqa: ASYNC110 (cgroupfs has no event)
            await asyncio.sleep(0.05)
    await k.apply(cell_doc(k, "next", [container(k, "main")]))
    return await k.wait_for(Kind.CELL, cell_key(k, "next"), until=_pids_full)


@pytest.mark.parametrize("heal", ["raised", "freed"])
async def test_a_cell_past_its_realms_pids_limit_says_so_and_starts_once_there_is_room(
    kukeond: Kukeond, heal: str
) -> None:
    k = kukeond
    cell = await _a_cell_past_the_limit(k)
    message = cell.status.message or ""
    assert str(cell.status.state) == "Failed"
    assert "the realm's pids limit is reached" in message, message
    assert f"/{k.realm}: pids.max 8, pids.current 4 after the failed start" in message, message
    warned = await _warning(k, "next")
    assert warned.type == EventType.WARNING
    assert "pids limit is reached" in warned.message
    if heal == "raised":
        await _set_pids(k, 64)
    else:
        await k.registry.delete(Kind.CELL, cell_key(k, "fill"))
    await k.wait_for(Kind.CELL, cell_key(k, "next"), state="Ready", within=90)


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=60.0, retry_backoff_max_seconds=300.0)
async def test_raising_the_limit_wakes_the_cell_it_held_before_its_back_off(
    kukeond: Kukeond,
) -> None:
    # The cell's next try is 60 s away: only the realm's new limits, once written to its
    # cgroup, bring it sooner (controllers/limitwakes.py).
    k = kukeond
    await _a_cell_past_the_limit(k)
    await _set_pids(k, 64)
    await k.wait_for(Kind.CELL, cell_key(k, "next"), state="Ready", within=20)
