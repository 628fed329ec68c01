"""A lease held for a block (``LeaseService.lease``) is released with a collection run
(``sync``) when the block fails or is cancelled: what a cancelled pull wrote goes at once.
The release is bounded and finishes even when the cancelled caller is cancelled again
meanwhile; the cancellation still comes through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kukeon.cancelling import cancel_and_wait
from kukeon.runtime.containerd import leases as leases_module
from kukeon.runtime.containerd._gen.services.leases.v1 import leases_pb2
from kukeon.runtime.containerd.leases import LeaseService


class FakeLeases:
    """containerd's lease service: records each delete once it has answered."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, bool]] = []
        self.answer = asyncio.Event()
        self.answer.set()
        self.asked = asyncio.Event()

    async def Create(self, request: Any, **_: Any) -> Any:  # noqa: N802 -- gRPC's name
        return leases_pb2.CreateResponse(lease=leases_pb2.Lease(id=request.id))

    async def Delete(self, request: Any, **_: Any) -> Any:  # noqa: N802 -- gRPC's name
        self.asked.set()
        await self.answer.wait()
        self.deleted.append((request.id, request.sync))


class FakeClient:
    call_timeout = 5.0

    def __init__(self) -> None:
        self.leases = FakeLeases()

    async def call(self, operation: str, invoke: Any, **_: Any) -> Any:
        return await invoke(self, ())


def service() -> tuple[LeaseService, FakeLeases]:
    client = FakeClient()
    return LeaseService(client=client, namespace="ns"), client.leases  # type: ignore[arg-type]


async def hold(leases: LeaseService, inside: asyncio.Event) -> None:
    async with leases.lease():
        inside.set()
        await asyncio.Event().wait()  # a pull dripping for minutes


async def test_a_block_done_releases_its_lease_without_a_collection() -> None:
    leases, fake = service()
    async with leases.lease() as lease:
        pass
    assert fake.deleted == [(lease, False)]


async def test_a_failed_block_releases_its_lease_with_a_collection() -> None:
    leases, fake = service()
    with pytest.raises(OSError, match="refused"):
        async with leases.lease():
            raise OSError("refused")
    assert [sync for _, sync in fake.deleted] == [True]


async def test_a_cancelled_block_releases_its_lease_with_a_collection() -> None:
    """Before: released without one (a CancelledError is no Exception)."""
    leases, fake = service()
    inside = asyncio.Event()
    task = asyncio.create_task(hold(leases, inside))
    await inside.wait()
    await cancel_and_wait(task)
    assert task.cancelled()
    assert [sync for _, sync in fake.deleted] == [True]


async def test_cancelled_again_during_the_release_it_still_ends_then_the_cancel_comes() -> None:
    leases, fake = service()
    fake.answer.clear()
    inside = asyncio.Event()
    task = asyncio.create_task(hold(leases, inside))
    await inside.wait()
    task.cancel()
    await fake.asked.wait()
    task.cancel()  # kukeond's stop cancelling again
    await asyncio.sleep(0)
    assert not task.done()
    fake.answer.set()
    await cancel_and_wait(task)
    assert task.cancelled()
    assert [sync for _, sync in fake.deleted] == [True]


async def test_a_release_containerd_does_not_answer_is_left_to_expire(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(leases_module, "RELEASE_SECONDS", 0.05)
    leases, fake = service()
    fake.answer.clear()
    inside = asyncio.Event()
    task = asyncio.create_task(hold(leases, inside))
    await inside.wait()
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled()
    assert fake.deleted == []
    assert "not released" in caplog.text
