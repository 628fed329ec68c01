"""patch_status: merge, observedGeneration, CAS retry on Conflict, None when gone."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind, RealmState
from kukeon.framework import patch_status
from kukeon.framework.status import finish_even_if_cancelled
from kukeon.store import Conflict

from .fakes import FakeStore, realm, relabel


async def test_fields_are_merged_and_the_generation_observed() -> None:
    store = FakeStore()
    created = await store.create(realm("r"))
    written = await patch_status(store, created, state=RealmState.READY, message="up")
    assert written is not None
    assert written.status.state == RealmState.READY
    assert written.status.message == "up"
    assert written.status.observed_generation == 1
    again = await patch_status(store, written, reason="Checked", observe=False)
    assert again is not None
    assert again.status.message == "up"
    assert again.status.reason == "Checked"


async def test_a_conflict_rereads_and_applies_the_same_fields() -> None:
    store = FakeStore()
    created = await store.create(realm("r"))
    # A user changes the labels after the handler read the object.
    await store.update(relabel(created, owner="someone"))
    store.conflicts_to_inject = 2
    written = await patch_status(store, created, state=RealmState.READY)
    assert written is not None
    assert written.status.state == RealmState.READY
    assert written.metadata.labels == {"owner": "someone"}
    # The generation the handler acted on, not a newer one it never saw.
    assert written.status.observed_generation == created.metadata.generation


async def test_endless_conflicts_give_up() -> None:
    store = FakeStore()
    created = await store.create(realm("r"))
    store.conflicts_to_inject = 100
    with pytest.raises(Conflict, match="3 compare-and-swaps"):
        await patch_status(store, created, max_conflicts=3, state=RealmState.READY)


async def test_a_vanished_object_is_none() -> None:
    store = FakeStore()
    created = await store.create(realm("r"))
    del store.objects[(Kind.REALM, ("r",))]
    assert await patch_status(store, created, state=RealmState.READY) is None


async def test_unknown_fields_are_named() -> None:
    store = FakeStore()
    created = await store.create(realm("r"))
    with pytest.raises(TypeError, match="no field\\(s\\) colour"):
        await patch_status(store, created, colour="blue")


async def test_a_cancelled_write_still_lands() -> None:
    landed = asyncio.Event()

    async def slow_write() -> str:
        await asyncio.sleep(0.05)
        landed.set()
        return "written"

    task = asyncio.create_task(finish_even_if_cancelled(slow_write()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert landed.is_set()


async def test_a_second_cancellation_does_not_abort_the_write() -> None:
    landed = asyncio.Event()
    write_cancelled = False

    async def slow_write() -> str:
        nonlocal write_cancelled
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            write_cancelled = True
            raise
        landed.set()
        return "written"

    task = asyncio.create_task(finish_even_if_cancelled(slow_write()))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # a second signal during shutdown
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert landed.is_set()
    assert not write_cancelled


async def test_a_hanging_write_is_cancelled_after_the_grace() -> None:
    write_cancelled = asyncio.Event()

    async def hanging_write() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            write_cancelled.set()
            raise

    task = asyncio.create_task(finish_even_if_cancelled(hanging_write(), within=0.1))
    await asyncio.sleep(0.01)
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert write_cancelled.is_set()


async def test_a_failed_write_after_cancellation_still_ends_in_cancelled() -> None:
    async def failing_write() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("etcd said no")

    task = asyncio.create_task(finish_even_if_cancelled(failing_write()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
