"""A failed in-place update whose old container runs on says so (Degraded, the container
Running and ready, the reason naming it and the cause, an Event), and one container's
failure does not hold back its siblings: each is converged on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kukeon.api import Cell, ContainerSpec, Event, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, get_cell, update_cell

pytestmark = pytest.mark.integration

MISSING_IMAGE = "127.0.0.1:1/kukeon-test/no-such-image:v1"

FIRST_RETRY_SECONDS = 20.0
"""kukeond's `retryBackoffInitialSeconds` here: a retry comes no sooner than 18 s after a
failure, so a start within 8 s of the Secret is its watch's doing."""


async def _failed_events(k: Kukeond, name: str, within: float = 20.0) -> list[Event]:
    assert k.daemon.events is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        events = [
            e
            for e in (await k.daemon.events.list(k.realm)).items
            if e.involved_object.name == name and e.reason == "Failed"
        ]
        if events or loop.time() > deadline:
            return events
        await asyncio.sleep(0.3)


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_an_update_naming_a_missing_secret_keeps_the_old_container_and_says_so(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "sec")
    await k.apply(cell_doc(k, "sec", [container(k, "app"), container(k, "side")]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert isinstance(ready, Cell)
    pid = ready.status.containers[1].pid

    cell = await get_cell(k, key)
    ref = {"name": "API_TOKEN", "secretRef": {"name": "later", "key": "token"}}
    side_spec = ContainerSpec.model_validate(
        {**cell.spec.containers[1].model_dump(by_alias=True), "secrets": [ref]}
    )
    changed = [cell.spec.containers[0], side_spec]
    await update_cell(k, key, spec={"containers": changed})
    held = await k.wait_for(
        Kind.CELL, key, until=lambda c: c.status.reason == "SecretUnavailable", within=30
    )
    assert isinstance(held, Cell)
    assert str(held.status.state) == "Degraded"  # it was Failed beside READY 2/2
    assert "container side keeps running as it was" in (held.status.message or "")
    assert "'later'" in (held.status.message or "")
    side = held.status.containers[1]
    assert (str(side.state), side.ready, side.pid) == ("Running", True, pid)
    assert side.reason == "SecretUnavailable"
    assert held.status.containers[0].reason is None
    events = await _failed_events(k, "sec")
    assert any("container side keeps running" in e.message for e in events), events

    started = asyncio.get_running_loop().time()
    await k.apply(
        {
            "kind": "Secret",
            "metadata": {"name": "later", "realm": k.realm, "space": "s1"},
            "stringData": {"token": "came"},
        }
    )
    done = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: str(c.status.state) == "Ready" and c.status.reason is None,
        within=30,
    )
    assert asyncio.get_running_loop().time() - started < 8
    assert isinstance(done, Cell)
    assert done.status.containers[1].pid != pid  # made again, with the Secret
    assert done.status.containers[1].reason is None


async def test_a_container_whose_image_is_missing_does_not_hold_back_its_siblings(
    kukeond: Kukeond,
) -> None:
    """The containers after one whose image cannot be had were neither started nor
    refreshed until it came; now each is converged on its own."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "sib")
    bad: dict[str, Any] = {"id": "bad", "image": MISSING_IMAGE, "command": "sleep", "args": ["60"]}
    crashing = container(
        k, "late", script="sleep 0.5; exit 3", restartPolicy="always", restartBackoffSeconds=1
    )
    await k.apply(cell_doc(k, "sib", [container(k, "app"), bad, crashing]))

    def restarted(cell: Any) -> bool:
        statuses = {c.id: c for c in cell.status.containers}
        late = statuses.get("late")
        return late is not None and late.restart_count >= 1

    failed = await k.wait_for(Kind.CELL, key, until=restarted, within=40)
    assert isinstance(failed, Cell)
    assert str(failed.status.state) == "Failed"
    assert failed.status.reason == "ImageUnavailable"
    assert MISSING_IMAGE in (failed.status.message or "")
    statuses = {c.id: c for c in failed.status.containers}
    assert str(statuses["app"].state) == "Running"
    assert (str(statuses["bad"].state), statuses["bad"].reason) == ("Failed", "ImageUnavailable")

    cell = await get_cell(k, key)
    fixed = [
        c.model_copy(update={"image": k.image.name}) if c.id == "bad" else c
        for c in cell.spec.containers
    ]
    await update_cell(k, key, spec={"containers": fixed})
    back = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: {s.id: str(s.state) for s in c.status.containers}.get("bad") == "Running",
        within=30,
    )
    assert isinstance(back, Cell)
    assert back.status.reason != "ImageUnavailable"
